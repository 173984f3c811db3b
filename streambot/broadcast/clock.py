"""The frame clock: exactly `fps` frames per second of output, on the wall clock, for hours.

The world renders in its own thread (`WorldRunner`) into a small bounded
queue; the `Clock` thread wakes on a fixed schedule of deadlines and hands
one frame per tick to its sink (compositor + encoder). Presentation time is
the tick index, never the time a model finished, so the stream's timestamps
advance exactly as the wall clock does.

Two rules keep it on the wall clock, as OBS's output thread does:
- the world is late: the tick repeats the last frame instead of waiting for it
  (counted as `repeated`);
- the sink is late (a slow encode, a busy machine): a tick whose whole slot
  of 1/fps s has passed before it could start is skipped, never sent late
  (counted as `skipped`). Its index is left out, so the next frame's
  timestamp is where the wall clock is: an ingest fed slower than real time
  would make every viewer buffer.
A tick sent within its slot but more than `late_tolerance` of a period after
its deadline is counted `late`.

Time comes from `now` and `sleep` (time.monotonic and a sleep on the stop
event by default): tests hand in a fake clock and run minutes of ticks at once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..priority import yield_to_clock
from ..world.base import Frame, World
from .pacer import FramePacer

log = logging.getLogger(__name__)


class WorldRunner:
    """Runs `world.render()` in a thread, a few frames ahead of the clock.

    A world that renders in chunks (`world.pacing()`) gets a `FramePacer` instead
    of the plain queue: a chunk ahead, played out evenly at the world's own rate
    when `fps` (the clock's) is given.
    """

    def __init__(self, world: World, depth: int = 2, fps: float | None = None) -> None:
        self.world = world
        pacing = world.pacing()
        self.frames: queue.Queue[Frame] | FramePacer = (
            FramePacer(pacing, fps) if pacing is not None and fps else queue.Queue(maxsize=depth)
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.rendered = 0
        self._render_s: deque[float] = deque(maxlen=300)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="world", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        yield_to_clock()  # a late render repeats a frame; a late tick stutters
        while not self._stop.is_set():
            t = time.perf_counter()
            try:
                frame = self.world.render()
            except BaseException as e:  # the clock keeps the stream up on the last frame
                self.error = e
                log.exception("world %s failed to render", self.world.name)
                return
            self._render_s.append(time.perf_counter() - t)
            self.rendered += 1
            while not self._stop.is_set():
                try:
                    self.frames.put(frame, timeout=0.1)
                    break
                except queue.Full:
                    continue

    @property
    def capacity_fps(self) -> float:
        """Frames per second the world could render free-running (recent average)."""
        times = list(self._render_s)
        return len(times) / sum(times) if times and sum(times) > 0 else 0.0

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


@dataclass
class ClockStats:
    fps: int
    ticks: int = 0  # slots elapsed since the start: sent + skipped
    sent: int = 0  # frames handed to the sink
    late: int = 0
    repeated: int = 0
    skipped: int = 0
    started: float = 0.0
    last_sent_at: float = 0.0  # when the last frame sent began its tick
    tick_times: deque[float] = field(default_factory=lambda: deque(maxlen=300))
    sink_ms: deque[float] = field(default_factory=lambda: deque(maxlen=300))

    @property
    def output_fps(self) -> float:
        """Frames sent per wall-clock second over the recent window."""
        t = list(self.tick_times)
        if len(t) < 2 or t[-1] <= t[0]:
            return 0.0
        return (len(t) - 1) / (t[-1] - t[0])

    @property
    def sink_ms_avg(self) -> float:
        s = list(self.sink_ms)
        return sum(s) / len(s) if s else 0.0


Sink = Callable[[int, Frame, bool], None]
# After each tick: (its start, the sink's seconds, slots skipped just before it).
AfterTick = Callable[[float, float, int], None]


class Clock:
    """Sends one frame per 1/fps s of wall-clock time to `sink(index, frame, repeated)`.

    `index` is the tick's slot number since the start (its presentation time
    in frames); after skipped slots it jumps by more than one. `max_frames`
    ends the broadcast after that many slots (`--duration`).
    """

    def __init__(
        self,
        runner: WorldRunner,
        fps: int,
        sink: Sink,
        *,
        max_frames: int | None = None,
        late_tolerance: float = 0.5,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        after_tick: AfterTick | None = None,
    ) -> None:
        self.runner = runner
        self.fps = fps
        self.sink = sink
        self.max_frames = max_frames
        self.stats = ClockStats(fps=fps)
        self._late_after = late_tolerance / fps  # a tick later than this is counted late
        self._stop = threading.Event()
        self._now = now
        # The default sleep wakes at once on stop(); a test's fake one advances its clock.
        self._sleep = sleep or self._stop.wait
        self.after_tick = after_tick
        self._thread: threading.Thread | None = None
        self.last: Frame | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def start(self, first_frame_timeout: float = 60.0) -> None:
        """Wait for the world's first frame (the show opens on a real picture),
        then run the ticks in the clock thread."""
        self.last = self.runner.frames.get(timeout=first_frame_timeout)
        self._thread = threading.Thread(target=self.run, name="clock", daemon=True)
        self._thread.start()

    def _next_frame(self) -> tuple[Frame, bool]:
        try:
            frame = self.runner.frames.get_nowait()
        except queue.Empty:
            assert self.last is not None  # start() took the first frame
            return self.last, True
        return frame, False

    def run(self) -> None:
        """The tick loop (the clock thread's body; tests may call it directly)."""
        period = 1.0 / self.fps
        t0 = self._now()
        self.stats.started = t0
        index = 0
        first = True
        assert self.last is not None  # start() took the first frame
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and index >= self.max_frames:
                    break
                deadline = t0 + index * period
                now = self._now()
                if now < deadline:
                    self._sleep(deadline - now)
                    if self._stop.is_set():
                        break
                    now = self._now()
                # Slots that are wholly over are skipped: the wall clock never waits.
                behind = int((now - t0) / period) - index
                skipped = max(0, behind)
                if behind > 0:
                    if self.max_frames is not None:
                        behind = skipped = min(behind, self.max_frames - index)
                    self.stats.skipped += behind
                    index += behind
                    self.stats.ticks = index
                    if self.max_frames is not None and index >= self.max_frames:
                        break
                    deadline = t0 + index * period
                if now - deadline > self._late_after:
                    self.stats.late += 1
                if first:
                    frame, repeated, first = self.last, False, False  # taken in start()
                else:
                    frame, repeated = self._next_frame()
                if repeated:
                    self.stats.repeated += 1
                self.last = frame
                self.stats.last_sent_at = now
                self.sink(index, frame, repeated)
                end = self._now()
                self.stats.sink_ms.append((end - now) * 1000)
                self.stats.tick_times.append(end)
                if self.after_tick is not None:
                    self.after_tick(now, end - now, skipped)
                index += 1
                self.stats.sent += 1
                self.stats.ticks = index
        except BaseException as e:
            self.error = e
            log.exception("broadcast clock stopped by an error")
        finally:
            self.done.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)
