"""What the world is told next.

The director owns the story: the audience's winning prompt, wrapped in the
preset's style, or, when nobody has asked for anything for a while, the
world's own next story beat, so the stream never stands still. It is driven
by `tick(now)` from the app's loop (or a test's virtual clock) and hands each
`Direction` to the world.

The director owns "this went on air": each change of picture is published
once, as an `OnAir` (streambot/surface.py), to its listeners (the timeline,
`!now`, the soundtrack, the show's state), whoever asked for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .onair import OnAir
from .world.base import Direction, World
from .worldspec import WorldSpec

log = logging.getLogger(__name__)


class Director:
    def __init__(
        self,
        world: World,
        spec: WorldSpec,
        *,
        beat_interval_s: float = 20.0,
        transition_s: float = 1.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.world = world
        self.spec = spec
        self.beat_interval_s = beat_interval_s
        self.transition_s = transition_s
        self.story_paused = False
        self._clock = clock
        self._lock = threading.Lock()
        self._beat = 0
        self._last_change = clock()
        self.on_air: OnAir | None = None
        self.history: list[OnAir] = []
        self.listeners: list[Callable[[OnAir], object]] = []  # told of every OnAir, in order

    def subscribe(self, listener: Callable[[OnAir], object]) -> Callable[[], None]:
        """Call `listener(entry)` each time something goes on air; returns the unsubscriber."""
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener) if listener in self.listeners else None

    def style(self, text: str) -> str:
        return f"{text}, {self.spec.style}" if self.spec.style else text

    def begin(self) -> OnAir:
        """Open the show on the world's first beat."""
        return self._send(self.spec.beats[0], "story", None)

    def resume(self, text: str, *, source: str = "story", user: str | None = None, beat: int = 0) -> OnAir:
        """After a restart: what was on air goes back on air, the story at the same beat."""
        with self._lock:
            self._beat = beat % len(self.spec.beats)
        return self._send(text, source, user)

    @property
    def beat(self) -> int:
        """Which of the preset's story beats the story is at."""
        return self._beat

    def submit(
        self,
        text: str,
        *,
        source: str = "audience",
        user: str | None = None,
        round: int | None = None,
        actor: str | None = None,
    ) -> OnAir:
        """A prompt that has won (`round`) or was forced (by `actor`): on air now."""
        return self._send(text, source, user, round=round, actor=actor)

    def tick(self, now: float | None = None) -> OnAir | None:
        """Move the story on by itself when nobody has prompted for a while."""
        now = self._clock() if now is None else now
        with self._lock:
            due = not self.story_paused and now - self._last_change >= self.beat_interval_s
            if due:
                self._beat = (self._beat + 1) % len(self.spec.beats)
                beat = self.spec.beats[self._beat]
        return self._send(beat, "story", None) if due else None

    def set_world(self, spec: WorldSpec) -> None:
        with self._lock:
            self.spec = spec
            self._beat = 0

    def _send(
        self, text: str, source: str, user: str | None, *, round: int | None = None, actor: str | None = None
    ) -> OnAir:
        direction = Direction(text=text, styled=self.style(text), source=source, user=user)
        generation = self.world.steer(direction, self.transition_s)
        now = self._clock()
        entry = OnAir(direction, generation, now, round=round, actor=actor)
        with self._lock:
            self._last_change = now
            self.on_air = entry
            self.history.append(entry)
            del self.history[:-200]
        log.info("on air (%s%s): %s", source, f", {user}" if user else "", text)
        for listener in list(self.listeners):
            try:
                listener(entry)
            except Exception:  # a listener (overlay, timeline) must never stop the show
                log.exception("on-air listener failed")
        return entry
