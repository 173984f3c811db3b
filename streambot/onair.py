"""What went on air and what the show shows, as values, and how a change
reaches whoever listens.

One owner per event. The director publishes an `OnAir` when it changes the
picture (a winner, a forced prompt, a story beat, a resume); the timeline,
the `!now` answer, the soundtrack and the show's state subscribe to it. The
show publishes a `ShowState` whenever what it shows changes (its own loop
steps the rounds and the story); the overlay, the console's pages and the
Discord round messages are pushed the newest one through `Latest`. Nobody
polls another's snapshot on a timer of its own.

Low in the graph: the director publishes these and the console reads them,
so they import nothing above the voting engine (whose `Snapshot` a state
carries).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from .voting import Snapshot

log = logging.getLogger(__name__)

T = TypeVar("T")


class Directed(Protocol):
    """What the world was told (`world.base.Direction` is one)."""

    @property
    def text(self) -> str: ...
    @property
    def styled(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def user(self) -> str | None: ...


@dataclass(frozen=True)
class OnAir:
    """This went on air: published once, by the director, for each change of picture.

    `round` is the voting round it won (a winner), `actor` who forced it from
    the console or the terminal; both None for the world's own story and a resume."""

    direction: Directed
    generation: int
    since: float  # the show clock when it went on air
    round: int | None = None
    actor: str | None = None

    @property
    def text(self) -> str:
        return self.direction.text

    @property
    def source(self) -> str:
        return self.direction.source

    @property
    def user(self) -> str | None:
        return self.direction.user


@dataclass(frozen=True)
class WorldInfo:
    name: str
    title: str
    description: str


@dataclass(frozen=True)
class ShowState:
    """What the show shows now: one published value, compared whole to tell a change."""

    world: WorldInfo
    on_air: OnAir | None
    off_air: bool
    story_paused: bool
    music_on: bool
    round: Snapshot
    bans: tuple[str, ...]
    counts: Mapping[str, int]
    layout: int = 0  # bumped when the overlay layout changes (another world)
    discord_invite: str | None = None


class Overlay(Protocol):
    """What the overlay shows (`broadcast.overlay_state.OverlayState` is one), for the OBS page."""

    def to_json(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TimelineEntry:
    at: float  # the show clock
    actor: str
    action: str
    detail: str


class Subscription(Generic[T]):
    """One subscriber's view of a `Latest`: an async iterator over the newest
    values. It keeps only the newest (a slow reader skips stale states, never
    falls behind), and belongs to the loop it was made on; `Latest.publish`
    may be called from another thread."""

    def __init__(self, owner: Latest[T]) -> None:
        self._owner = owner
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._queue: deque[T] = deque(maxlen=1)  # a queue that drops the stale value for the new one
        self._closed = False

    def _offer(self, value: T) -> None:  # on this subscription's loop
        self._queue.append(value)
        self._ready.set()

    def _deliver(self, value: T) -> None:
        if _running_loop() is self._loop:
            self._offer(value)
            return
        try:
            self._loop.call_soon_threadsafe(self._offer, value)
        except RuntimeError:  # its loop has closed: a subscriber that went away without closing
            self._owner._drop(self)

    async def next(self, timeout: float | None = None) -> T:
        """The newest value published since the last one read (waits for one)."""
        if timeout is None:
            await self._ready.wait()
        else:
            await asyncio.wait_for(self._ready.wait(), timeout)
        self._ready.clear()
        return self._queue.popleft()

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        while not self._closed:
            yield await self.next()

    def close(self) -> None:
        self._closed = True
        self._owner._drop(self)

    def __enter__(self) -> Subscription[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Latest(Generic[T]):
    """The newest value of something that changes, pushed to its subscribers.

    `publish` hands a value that differs from the last one to every listener
    (called at once, on the publisher's thread) and every `Subscription`
    (queued on its own loop, stale values dropped)."""

    def __init__(self) -> None:
        self._value: T | None = None
        self._lock = threading.Lock()
        self._subs: list[Subscription[T]] = []
        self._listeners: list[Callable[[T], Any]] = []
        self.published = 0

    @property
    def value(self) -> T | None:
        return self._value

    def publish(self, value: T) -> bool:
        """Push `value` if it changed; True when it did."""
        with self._lock:
            if value == self._value:
                return False
            self._value = value
            self.published += 1
            subs, listeners = list(self._subs), list(self._listeners)
        for listener in listeners:
            try:
                listener(value)
            except Exception:  # one subscriber's bug must not stop the show or the others
                log.exception("state listener failed")
        for sub in subs:
            sub._deliver(value)
        return True

    def listen(self, callback: Callable[[T], Any]) -> Callable[[], None]:
        """Call `callback(value)` on each change, on the publisher's thread; returns the unsubscriber."""
        with self._lock:
            self._listeners.append(callback)

        def stop() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return stop

    def subscribe(self, *, current: bool = True) -> Subscription[T]:
        """A subscription on the running loop; with `current`, the value now is its first."""
        sub: Subscription[T] = Subscription(self)
        with self._lock:
            self._subs.append(sub)
            value = self._value
        if current and value is not None:
            sub._offer(value)
        return sub

    def _drop(self, sub: Subscription[T]) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def __len__(self) -> int:
        return len(self._subs) + len(self._listeners)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


__all__ = ["Directed", "Latest", "OnAir", "Overlay", "ShowState", "Subscription", "TimelineEntry", "WorldInfo"]
