"""The frame clock: exactly `fps` frames per second of output, for hours.

The world renders in its own thread (`WorldRunner`) into a small bounded
queue; the `Clock` thread wakes on a fixed schedule of deadlines and hands
one frame per tick to its sink (compositor + encoder). When the world is late
the clock repeats the last frame instead of stalling, so the stream's
timestamps never have a gap; the counts of late and repeated frames say how
healthy that is. (Nothing is dropped here: the world waits for the clock.) Presentation time is the tick index, never the time
a model finished.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

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
    ticks: int = 0
    late: int = 0
    repeated: int = 0
    started: float = 0.0
    tick_times: deque = field(default_factory=lambda: deque(maxlen=300))
    sink_ms: deque = field(default_factory=lambda: deque(maxlen=300))

    @property
    def output_fps(self) -> float:
        """Frames emitted per wall-clock second over the recent window."""
        t = list(self.tick_times)
        if len(t) < 2 or t[-1] <= t[0]:
            return 0.0
        return (len(t) - 1) / (t[-1] - t[0])

    @property
    def sink_ms_avg(self) -> float:
        s = list(self.sink_ms)
        return sum(s) / len(s) if s else 0.0


Sink = Callable[[int, Frame, bool], None]


class Clock:
    """Emits one frame per 1/fps s to `sink(index, frame, repeated)`."""

    def __init__(
        self,
        runner: WorldRunner,
        fps: int,
        sink: Sink,
        *,
        max_frames: int | None = None,
        late_tolerance: float = 0.5,
    ) -> None:
        self.runner = runner
        self.fps = fps
        self.sink = sink
        self.max_frames = max_frames
        self.stats = ClockStats(fps=fps)
        self._late_after = late_tolerance / fps  # a tick later than this is counted late
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: Frame | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def start(self, first_frame_timeout: float = 60.0) -> None:
        # The show opens on a real frame, however long the model takes to warm up.
        self.last = self.runner.frames.get(timeout=first_frame_timeout)
        self._thread = threading.Thread(target=self._run, name="clock", daemon=True)
        self._thread.start()

    def _next_frame(self) -> tuple[Frame, bool]:
        try:
            frame = self.runner.frames.get_nowait()
        except queue.Empty:
            return self.last, True
        return frame, False

    def _run(self) -> None:
        period = 1.0 / self.fps
        t0 = time.monotonic()
        self.stats.started = t0
        index = 0
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and index >= self.max_frames:
                    break
                deadline = t0 + index * period
                now = time.monotonic()
                if now < deadline:
                    time.sleep(deadline - now)
                    if self._stop.is_set():
                        break
                elif now - deadline > self._late_after:
                    self.stats.late += 1
                if index == 0:
                    frame, repeated = self.last, False  # taken in start()
                else:
                    frame, repeated = self._next_frame()
                if repeated:
                    self.stats.repeated += 1
                self.last = frame
                t = time.perf_counter()
                self.sink(index, frame, repeated)
                self.stats.sink_ms.append((time.perf_counter() - t) * 1000)
                self.stats.tick_times.append(time.monotonic())
                index += 1
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
