"""The broadcast's side of the sound: the soundtrack's process, and the feed
the clock takes its samples from, which never waits.

Why a process for the soundtrack: its chain (audio.py: the band's synthesis,
the leveller, the limiter, the meter) is built on scipy, whose import alone
takes a second and a half, and whose instruments take a third of a second
more to make; on two cores, in the broadcast's process, both would be spent
before the first frame or, loaded beside it, would hold the GIL against the
clock. `SoundtrackProcess` runs the chain in a child process
(`soundtrack_child`), spawned by the feed's first request as the show goes on
air, and relays its blocks; the broadcast's process never imports scipy. The
child builds at a lower priority (`priority.yield_to_clock`), so on a busy
machine the show's first seconds on air come first, and renders at the
show's own.

    the show: set_story / set_world_music / set_music     the world: ambience
                 \\                                          /
    SoundtrackProcess  --requests, each block's ambience-->  child: Soundtrack
         (relay)       <------- 100 ms blocks, status -----  (audio.py)
           |
    AudioFeed: its thread keeps 1.5 s of blocks ahead of the clock
           |
    the clock's `read`: takes what is there, now

The feed's thread takes blocks from the track (the child's, relayed; or an
in-process track: `Silence` when audio is off, the soundtrack itself in
tests) into a bounded queue. The clock thread only takes finished samples
(`read`) and never waits: when no block is there (the child still starting,
or late, or gone), the gap is filled with weather beds of the feed's own,
joined without a click. The music fades in when the child's first blocks
arrive. A child that dies, or gives nothing for `hang_s`, is logged once,
shown as the status's `problem`, and started again with back-off; meanwhile
the weather plays. The child ends when its pipes close: on `close()`, and
when the broadcast's process is gone.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import pickle
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.typing import NDArray
from tenacity import RetryCallState, Retrying, wait_exponential

from ..config import MusicSettings
from ..world.base import Ambience
from . import soundtrack_child
from .sound import BLOCK, RATE, Beds, SoundtrackSettings

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

FALLBACK_LOOP = 2**16  # the gap filler's noise loops (1.4 s): made in a few milliseconds
HEALTHY_S = 60.0  # a child that played this long before failing starts a fresh back-off


class Track(Protocol):
    """What the feed's thread plays: a block of `n` stereo samples, or None when
    there is none yet (a track in another process that is starting)."""

    def render(self, n: int, ambience: Ambience | None = None) -> NDArray[np.float32] | None: ...

    def status(self) -> dict[str, object]: ...


class SteeredTrack(Track, Protocol):
    """What the show steers: the soundtrack (in its process, or in this one), or silence."""

    music_on: bool

    def set_story(self, text: str) -> object: ...

    def set_world_music(self, music: MusicSettings) -> None: ...

    def set_music(self, on: bool) -> None: ...

    def close(self) -> None: ...


class Silence:
    """The track when audio is off: digital silence, still a valid AAC stream."""

    def __init__(self, rate: int = RATE) -> None:
        self.rate = rate
        self.music_on = False

    def render(self, n: int, ambience: Ambience | None = None) -> NDArray[np.float32]:
        return np.zeros((2, n), np.float32)

    def set_story(self, text: str) -> str:
        return "neutral"

    def set_world_music(self, music: MusicSettings) -> None:
        pass

    def set_music(self, on: bool) -> None:
        pass

    def status(self) -> dict[str, object]:
        return {"music_on": False, "source": "off", "problem": None}

    def close(self) -> None:
        pass


# -- the soundtrack's process ---------------------------------------------------------------

# Every figure `audio.Soundtrack.status` gives, unknown until the child's first status:
# the console and the metrics read the same keys from the first second on.
_BEFORE_FIRST_STATUS: dict[str, object] = {
    "source": "starting",
    "track": None,
    **dict.fromkeys(("style", "mood", "tempo", "key", "mode", "intensity")),
    **dict.fromkeys(("momentary_lufs", "short_term_lufs", "integrated_lufs", "gain_db")),
    "problem": None,
}


class SoundtrackProcess:
    """The soundtrack rendered in a child process, steered and read from here.

    The feed's first `render` spawns the child (or `start()`, earlier, when
    the caller wants it building sooner); the setters only leave a request, which the
    feed's thread sends with the next block's ambience (so the show's own
    thread never writes to the child); `render` gives the child's next block,
    or None when there is none yet. A thread per child receives its blocks
    into a small queue, so nothing here ever waits on the child for long."""

    def __init__(
        self,
        settings: SoundtrackSettings,
        *,
        hang_s: float = 5.0,
        start_timeout_s: float = 300.0,
        restart_max_s: float = 60.0,
    ) -> None:
        self.settings = settings
        self.music_on = settings.music_on
        self.hang_s = hang_s  # a child on air that gives nothing this long is stopped and started again
        self.start_timeout_s = start_timeout_s  # the same before its first block (scipy, the instruments)
        self._wait = wait_exponential(multiplier=1, max=restart_max_s)  # 1, 2, 4 ... s between restarts
        self._ctx = mp.get_context("spawn")  # not fork: this process has threads
        self._lock = threading.Lock()
        self._world = settings.music
        self._story: str | None = None
        self._pending: dict[str, object] = {}  # requests the child has not been sent yet
        self._sent_ambience: Ambience | None = None
        self._proc: BaseProcess | None = None
        self._requests: Connection | None = None
        self._blocks: queue.Queue[NDArray[np.float32] | None] = queue.Queue()
        self._receiver: threading.Thread | None = None
        self._child_status: dict[str, object] = {}
        self._waiting_since = 0.0  # when the child last gave a block (or was started)
        self._delivered = 0  # blocks from the child now running
        self._failures = 0  # in a row: the back-off's count
        self._first_block_at = 0.0  # the child now running: its first block
        self._next_start = 0.0
        self._closed = threading.Event()
        self.ready = threading.Event()  # a child has built the chain and sent its first block
        self.restarts = 0
        self.problem: str | None = None

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        """Spawn the child now (it builds while the show goes on); without this,
        the first `render` spawns it."""
        with self._lock:
            self._spawn()

    def _spawn(self) -> None:
        settings = replace(self.settings, music=self._world, music_on=self.music_on)
        req_recv, self._requests = self._ctx.Pipe(duplex=False)
        blk_recv, blk_send = self._ctx.Pipe(duplex=False)
        self._proc = self._ctx.Process(
            target=soundtrack_child.run,
            args=(pickle.dumps(settings), req_recv, blk_send),
            name="streambot soundtrack",
            daemon=True,
        )
        self._proc.start()
        req_recv.close()
        blk_send.close()  # the child's end only: its exit is this end's EOF
        self._blocks = queue.Queue(maxsize=2)  # the feed holds the rest; a full queue holds the child back
        self._receiver = threading.Thread(
            target=self._receive, args=(blk_recv, self._blocks), name="soundtrack receiver", daemon=True
        )
        self._receiver.start()
        self._waiting_since = time.monotonic()
        self._delivered = 0
        self._sent_ambience = None
        if self._story is not None:
            self._pending["story"] = self._story  # the new child has not heard the story so far

    def _receive(self, conn: Connection, blocks: queue.Queue[NDArray[np.float32] | None]) -> None:
        """One child's blocks and status, until its pipe ends (None marks the end)."""
        shape = (2, self.settings.block)
        try:
            while True:
                message = conn.recv_bytes()
                self.ready.set()
                if message[:1] == b"S":
                    self._child_status = pickle.loads(message[1:])
                    continue
                block = np.frombuffer(message, np.float32, offset=1).reshape(shape).copy()  # aligned, writable
                while not self._closed.is_set():  # once closed, what comes is read and dropped: the child can go
                    try:
                        blocks.put(block, timeout=0.5)
                        break
                    except queue.Full:
                        continue
        except (EOFError, OSError):
            pass
        finally:
            conn.close()
            try:
                blocks.put_nowait(None)
            except queue.Full:  # the feed will find the child gone by its exit code
                pass

    def _stop_child(self) -> None:
        if self._requests is not None:
            self._requests.close()  # the child's EOF: it ends after this block
            self._requests = None
        if self._proc is not None:
            self._proc.join(2)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
        if self._receiver is not None:
            self._receiver.join(5)

    def close(self) -> None:
        """End the child (it finishes its block and exits). Safe to call twice."""
        if self._closed.is_set():
            return
        self._closed.set()
        with self._lock:
            self._stop_child()
            self._proc = None

    @property
    def pid(self) -> int | None:
        """The child's process id, while one runs."""
        proc = self._proc
        return proc.pid if proc is not None else None

    # -- requests, from any thread ----------------------------------------------------
    def set_story(self, text: str) -> None:
        """The prompt on air; the child reads its mood."""
        with self._lock:
            self._story = text
            self._pending["story"] = text

    def set_world_music(self, music: MusicSettings) -> None:
        with self._lock:
            self._world = music
            self._pending["world"] = music

    def set_music(self, on: bool) -> None:
        """Music on or off (the child fades it); the weather always plays."""
        with self._lock:
            self.music_on = bool(on)
            self._pending["music"] = self.music_on

    # -- the feed's thread ---------------------------------------------------------------
    def render(self, n: int, ambience: Ambience | None = None) -> NDArray[np.float32] | None:
        """The child's next block (after sending it what changed), or None after a
        short wait when there is none: the child is starting, late, or gone (and
        then started again when its back-off is over)."""
        if n != self.settings.block:
            raise ValueError(f"the soundtrack's process renders blocks of {self.settings.block} samples, not {n}")
        with self._lock:
            if self._closed.is_set():
                return None
            waiting = self._proc is None and time.monotonic() < self._next_start
            if not waiting:
                if self._proc is None:
                    self._spawn()
                self._send(ambience or Ambience())
        if waiting:  # the back-off: the weather plays
            self._closed.wait(0.05)
            return None
        try:
            block = self._blocks.get(timeout=0.05)
        except queue.Empty:
            block = None
        with self._lock:
            if self._closed.is_set():
                return None
            now = time.monotonic()
            if block is not None:
                self._got_block(now)
                return block
            assert self._proc is not None
            limit = self.hang_s if self._delivered else self.start_timeout_s
            if not self._proc.is_alive() or (self._receiver is not None and not self._receiver.is_alive()):
                code = self._proc.exitcode
                self._failed(now, f"stopped (exit code {code})" if code is not None else "closed its pipe")
            elif now - self._waiting_since > limit:
                self._failed(now, f"gave no sound for {limit:.0f} s")
            return None

    def _send(self, ambience: Ambience) -> None:
        assert self._requests is not None
        messages: list[tuple[str, object]] = list(self._pending.items())
        self._pending.clear()
        if ambience != self._sent_ambience:
            messages.append(("ambience", ambience))
            self._sent_ambience = ambience
        try:
            for m in messages:
                self._requests.send(m)
        except OSError:  # the child is gone: found below, by its exit
            pass

    def _got_block(self, now: float) -> None:
        if not self._delivered:
            self._first_block_at = now
            if self.problem is not None:
                log.warning("the soundtrack's process plays again")
                self.problem = None
        elif self._failures and now - self._first_block_at > HEALTHY_S:
            self._failures = 0  # a child that played this long starts a fresh back-off
        self._delivered += 1
        self._waiting_since = now

    def _failed(self, now: float, what: str) -> None:
        """Stop the child, say why once, and plan its restart."""
        self._failures += 1
        state = RetryCallState(Retrying(), None, (), {})  # a state for the wait alone: it reads attempt_number only
        state.attempt_number = self._failures
        delay = float(self._wait(state))
        self._next_start = now + delay
        self.restarts += 1
        self._child_status = {}  # its figures are gone with it
        self.problem = f"The soundtrack's process {what}; the weather plays until it starts again (in {delay:.0f} s)."
        log.error("%s", self.problem)
        if self._requests is not None:
            self._requests.close()
            self._requests = None
        if self._proc is not None:
            self._proc.kill()  # dead already, or hung: nothing it holds is worth waiting for
            self._proc.join(5)
            self._proc = None

    def status(self) -> dict[str, object]:
        """What the console shows: the child's figures (source, style, mood,
        loudness, its own problem), the music switch as set here, and the
        process's own problem while it is down."""
        s: dict[str, object] = {**_BEFORE_FIRST_STATUS, **self._child_status}
        s["music_on"] = self.music_on
        s["restarts"] = self.restarts
        if self.problem is not None:
            s["problem"] = self.problem
        return s


# -- the feed ------------------------------------------------------------------------------


class AudioFeed:
    """The track's blocks, taken in the feed's own thread, `depth` blocks ahead
    of the clock; `read` never waits for them."""

    def __init__(
        self,
        track: Track,
        ambience: Callable[[], Ambience],
        *,
        block: int = BLOCK,
        depth: int = 15,
        rate: int = RATE,
    ) -> None:
        self.track = track
        self.ambience = ambience
        self.block = block
        self.rate = rate
        self._queue: queue.Queue[NDArray[np.float32]] = queue.Queue(maxsize=depth)
        self._buf = np.zeros((2, 0), np.float32)
        self._last = np.zeros(2, np.float32)  # the last sample the clock took
        self._last_ambience = Ambience()
        self._fallback = Beds(rate, seed=7, loop=FALLBACK_LOOP)  # the clock's own, only for gaps
        self._source = "feed"  # where the last sample came from: the track, or a gap
        self._stop = threading.Event()
        self._primed = threading.Event()  # the queue has filled once, or the track has nothing yet
        self._fed = False  # a block has come: before that, a gap is the start, not lateness
        self._thread: threading.Thread | None = None
        self.late = 0  # reads the track could not fill in time
        self.problem: str | None = None

    def start(self, ready_timeout: float = 10.0) -> None:
        """Start the feed's thread and wait until its queue is full, or the track
        has nothing more for now, or the timeout. The soundtrack's process is not
        waited for: its blocks join the broadcast as they come."""
        self._thread = threading.Thread(target=self._run, name="soundtrack", daemon=True)
        self._thread.start()
        if not isinstance(self.track, SoundtrackProcess):
            self._primed.wait(ready_timeout)

    def _run(self) -> None:
        track: Track = self.track
        while not self._stop.is_set():
            try:
                self._last_ambience = self.ambience()
            except Exception:  # the world's own trouble: the weather keeps its last mood
                log.debug("no ambience from the world", exc_info=True)
            try:
                block = track.render(self.block, self._last_ambience)
            except Exception as e:  # the whole chain broke: the weather alone, raw
                log.exception("the soundtrack stopped")
                self.problem = f"The soundtrack stopped ({type(e).__name__}: {e}); only the weather goes on."
                track = _BedsOnly(self.rate)
                continue
            if block is None:  # nothing yet: the clock's reads fill the gap
                self._primed.set()
                continue
            while not self._stop.is_set():
                try:
                    self._queue.put(block, timeout=0.1)
                    break
                except queue.Full:
                    self._primed.set()

    def read(self, n: int) -> NDArray[np.float32]:
        """`n` samples for the clock thread, now: never waits for the track."""
        pieces: list[tuple[NDArray[np.float32], bool]] = []  # (samples, from the track)
        need = n
        while need:
            if self._buf.shape[1] == 0:
                try:
                    self._buf = self._queue.get_nowait()
                    self._fed = True
                except queue.Empty:
                    break
            k = min(need, self._buf.shape[1])
            pieces.append((self._buf[:, :k], True))
            self._buf = self._buf[:, k:]
            need -= k
        if need:
            if self._fed:
                self.late += 1
            pieces.append((self._fallback.render(need, self._last_ambience), False))
        out = (
            np.concatenate([self._join(p, fresh) for p, fresh in pieces], axis=1)
            if len(pieces) > 1
            else self._join(*pieces[0])
        )
        self._last = out[:, -1].copy()
        return out

    def silence(self, n: int) -> NDArray[np.float32]:
        """`n` samples of silence (the clock skipped more than the feed holds),
        faded from the last sample taken, so neither edge clicks."""
        x = np.zeros((2, n), np.float32)
        k = min(n, int(0.005 * self.rate))
        x[:, :k] += self._last[:, None] * np.linspace(1.0, 0.0, k, dtype=np.float32)
        self._source = "silence"
        if n:
            self._last = x[:, -1].copy()
        return x

    def _join(self, x: NDArray[np.float32], fresh: bool) -> NDArray[np.float32]:
        """A piece from another source than the last sample starts where that
        sample was and glides onto its own course within 5 ms: no click."""
        source = "feed" if fresh else "gap"
        if self._source != source and x.shape[1]:
            k = min(x.shape[1], int(0.005 * self.rate))
            x = x.copy()
            x[:, :k] += (self._last - x[:, 0])[:, None] * np.linspace(1.0, 0.0, k, dtype=np.float32)
        self._source = source
        if x.shape[1]:
            self._last = x[:, -1].copy()
        return x

    def status(self) -> dict[str, object]:
        s = self.track.status()
        s["late_blocks"] = self.late
        if self.problem:
            s["problem"] = self.problem
        return s

    def close(self) -> None:
        """Stop the feed's thread (the track is its owner's to close)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _BedsOnly:
    """What the feed plays when an in-process soundtrack itself broke."""

    def __init__(self, rate: int) -> None:
        self._beds = Beds(rate, seed=11)

    def render(self, n: int, ambience: Ambience | None = None) -> NDArray[np.float32]:
        return self._beds.render(n, ambience or Ambience())

    def status(self) -> dict[str, object]:
        return {"music_on": False, "source": "none"}
