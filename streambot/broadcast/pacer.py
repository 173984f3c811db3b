"""Playing a chunked world out evenly: the frame buffer between the world runner and the clock.

A video model makes a dozen frames at once, then nothing while it makes the
next dozen. Handed to the clock as they come, that is a burst and a freeze
every chunk. `FramePacer` stands where the runner's queue stands and plays the
frames at the world's own frame rate (`Pacing.source_fps`, 16 for Wan 2.1), a
chunk ahead of the clock:

- Each output tick advances a play position by `rate` source frames (16/30 at
  30 fps out) and shows the picture there: a cross-fade of the two frames
  around the position ("blend", a linear frame-rate conversion), or the nearer
  one ("nearest"). Blending is not motion-compensated interpolation: a fast
  move shows as a brief double exposure rather than a stutter.
- When the model is slower than real time the rate follows its measured
  production (frames arriving per tick, averaged over about three chunks), with
  a gentle pull toward keeping one chunk buffered, so playback runs evenly in
  slow motion instead of freezing at every chunk boundary.
- After a prompt switch (a frame of a newer steer generation in the buffer),
  the frames still queued from the old prompt play `catch_up` times faster,
  so the new prompt shows about a third of a second after its first frame
  arrives instead of a buffered chunk later, and the motion stays continuous
  (the new chunk continues from the last generated frames), never a cut.
- Starved anyway (a chunk far later than the others), the play position stops
  at the last frame and the tick raises `queue.Empty`, so the clock repeats and
  counts it; playback resumes from there, never skipping frames.

Time here is the tick count (one `get_nowait` per output tick), as presentation
time is the tick index everywhere in the broadcast. `change_spread` measures
the result: the spread of frame-to-frame change, 0 for perfectly even motion
(a steady 1-in-3 step and a burst-then-freeze spread alike, so `longest_still`
tells those apart).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..world.base import Frame, Pacing


def blend(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    """(1 - w) * a + w * b for uint8 pictures, in 8-bit fixed point (a few ms at 832x480)."""
    w8 = int(round(w * 256))
    if w8 <= 0:
        return a
    if w8 >= 256:
        return b
    out = a.astype(np.uint16) * (256 - w8)
    out += b.astype(np.uint16) * w8
    out += 128
    out >>= 8
    return out.astype(np.uint8)


def frame_changes(images: Iterable[ArrayLike]) -> NDArray[np.float64]:
    """Mean absolute change between consecutive pictures."""
    frames = [np.asarray(i, dtype=np.float32) for i in images]
    return np.array([np.abs(b - a).mean() for a, b in zip(frames, frames[1:])])


def change_spread(images: Iterable[ArrayLike]) -> float:
    """Judder: the coefficient of variation of the frame-to-frame change (0: perfectly even)."""
    d = frame_changes(images)
    return float(d.std() / d.mean()) if len(d) and d.mean() > 0 else 0.0


def longest_still(images: Iterable[ArrayLike], tolerance: float = 0.01) -> int:
    """The longest run of output frames that did not change: a freeze, in ticks."""
    run = best = 0
    for d in frame_changes(images):
        run = run + 1 if d <= tolerance else 0
        best = max(best, run)
    return best


class FramePacer:
    """Queue-like (`put`, `get`, `get_nowait`) so the world runner and the clock use it as their queue."""

    def __init__(
        self,
        pacing: Pacing,
        output_fps: float,
        *,
        gain: float = 0.2,
        horizon_chunks: float = 3.0,
        min_rate: float = 0.05,
        catch_up: float = 3.0,
    ) -> None:
        self.nominal = pacing.source_fps / output_fps  # source frames per output tick
        self.chunk = max(1, int(pacing.chunk_frames))
        self.blend = pacing.blend
        # A chunk lands on top of what is left of the last one: aim half a chunk (and two
        # frames) ahead on average, so that just before a chunk lands two are still in hand,
        # and make room for a whole chunk on top of that and the picture being shown.
        self.target = self.chunk / 2 + 2
        self.capacity = self.chunk + 4
        self.gain = gain
        self.min_rate = min_rate * self.nominal
        self.catch_up = catch_up
        self._newest = -1  # the newest steer generation put in
        self.caught_up = 0  # ticks played fast after a prompt switch
        self._smooth = 1.0 / max(1.0, self.chunk / self.nominal)  # averages over a chunk's playing time
        self._arrivals: deque[int] = deque(maxlen=int(horizon_chunks * self.chunk) + 1)  # tick of each frame
        self._frames: deque[Frame] = deque()
        self._pos = 0.0  # of the last picture shown, in frames past _frames[0]
        self._shown = False
        self._cond = threading.Condition()
        # what a health panel or a benchmark reads
        self.production = self.nominal  # frames arriving per tick, over the last few chunks
        self.ahead = 0.0  # frames buffered past the one shown, averaged over a chunk
        self.rate = self.nominal
        self.ticks = 0
        self.held = 0
        self.blended = 0

    # -- the world runner's side ------------------------------------------------------
    def put(self, frame: Frame, timeout: float | None = None) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._frames) < self.capacity, timeout):
                raise queue.Full
            self._frames.append(frame)
            self._newest = max(self._newest, frame.generation)
            self._arrivals.append(self.ticks)
            self._cond.notify_all()

    # -- the clock's side -----------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Frame:
        """The first picture (the clock's tick 0), waiting for it."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._frames, timeout):
                raise queue.Empty
            self._tick()
            self._shown = True
            return self._frames[0]

    def get_nowait(self) -> Frame:
        """The picture for the next output tick; queue.Empty when there is nothing new to show."""
        with self._cond:
            self._tick()
            if not self._frames:
                raise queue.Empty
            if not self._shown:
                self._shown = True
                return self._frames[0]
            last = len(self._frames) - 1
            if self._pos >= last:  # starved: stay on the last picture, the clock repeats it
                self.held += 1
                raise queue.Empty
            self.rate = self._rate(last - self._pos)
            if self._frames[0].generation < self._newest:  # a new prompt waits behind old frames
                self.rate = max(self.rate, self.nominal * self.catch_up)
                self.caught_up += 1
            pos = min(self._pos + self.rate, float(last))
            drop = int(pos)
            for _ in range(drop):
                self._frames.popleft()
            self._pos = pos - drop
            self._cond.notify_all()  # room for the world
            return self._picture()

    # -- helpers ------------------------------------------------------------------------
    def _tick(self) -> None:
        self.ticks += 1
        a = self._arrivals
        if a and a[-1] > a[0]:
            # the frames that came after the oldest arrival's tick, over the ticks since:
            # whole bursts however many of the oldest one the window still holds
            self.production = sum(1 for t in a if t > a[0]) / (a[-1] - a[0])

    def _rate(self, ahead: float) -> float:
        self.ahead += (ahead - self.ahead) * self._smooth
        # A world faster than real time is held back by the full buffer, so its frames arrive
        # as fast as they are shown; the pull (more than a target in hand) lifts that to nominal.
        base = min(self.nominal, self.production)
        pull = 1.0 + self.gain * (self.ahead - self.target) / self.target
        return min(self.nominal, max(self.min_rate, base * pull))

    def _picture(self) -> Frame:
        a, w = self._frames[0], self._pos
        if w <= 0.0 or len(self._frames) < 2:
            return a
        b = self._frames[1]
        near = a if w < 0.5 else b
        if not self.blend:
            return near
        self.blended += 1
        return Frame(blend(a.image, b.image, w), near.index, near.generation)
