"""A world whose picture never freezes: a failing backend is held, retried,
and covered by a fallback world.

A backend can fail at any frame: a CUDA out-of-memory error, a driver reset,
a bug in a model's code. Left alone, the render thread would end and the
clock would repeat one frame forever. `ResilientWorld` wraps the backend:

1. the first failure is one log line; the last good frame is held with a slow
   living motion (`HeldFrame`: a Ken Burns zoom and pan and a light shimmer),
   never a still picture;
2. the backend is retried with exponential back-off (tenacity's wait), between
   held frames, in the render thread: a backend renders from one thread;
3. after `fallback_after` failures in a row the fallback world (the sketch
   world) takes over, started in the background on the preset and direction
   on air; the backend is still retried, less and less often;
4. when the backend renders again it takes the picture back.

The same fallback world covers for a backend on standby: a `budget`
(streambot/world/budget.py) is asked once per frame whether the GPU world
should be on air; while it says no (the day's GPU hours are spent, nobody is
watching), the backend is not rendered and the fallback world is on air.

Every change of source is a short cross-fade, never a cut. The director and
the broadcast see the wrapper's own steer generations; each inner world's
are mapped to them, so prompt-to-pixel latency stays right across a switch.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from tenacity import RetryCallState, Retrying, wait_exponential

from ..worldspec import WorldSpec
from .base import Ambience, Direction, Frame, Pacing, World

if TYPE_CHECKING:
    from .budget import GpuBudget

log = logging.getLogger(__name__)

CROSSFADE_S = 1.0


class HeldFrame:
    """One picture, alive: a slow zoom and pan over it and a soft band of light
    moving across it. Pure in `t` (seconds held), so the motion is smooth at
    any render speed and the same in tests."""

    ZOOM = 0.06  # up to 6 % closer, and back out, over ZOOM_PERIOD_S
    ZOOM_PERIOD_S = 20.0
    PAN_PERIOD_S = (27.0, 33.0)  # the pan wanders within the room the zoom leaves
    SHIMMER = 0.03  # +-3 % brightness, a wave crossing the picture every SHIMMER_PERIOD_S
    SHIMMER_PERIOD_S = 4.0
    EASE_IN_S = 0.5  # the shimmer grows in, so the hold begins without a jump

    def __init__(self, image: np.ndarray) -> None:
        self.image = Image.fromarray(image)
        self.height, self.width = image.shape[:2]
        self._x = np.linspace(0.0, 1.5, self.width, dtype=np.float32)[None, :, None]

    def at(self, t: float) -> np.ndarray:
        w, h = self.width, self.height
        # moving from the first frame on (a zoom that eased in would stand still at first)
        z = 1.0 + self.ZOOM * abs(math.sin(math.pi * t / self.ZOOM_PERIOD_S))
        cw, ch = w / z, h / z
        cx = w / 2 + 0.9 * (w - cw) / 2 * math.sin(2 * math.pi * t / self.PAN_PERIOD_S[0])
        cy = h / 2 + 0.9 * (h - ch) / 2 * math.sin(2 * math.pi * t / self.PAN_PERIOD_S[1])
        box = (cx - cw / 2, cy - ch / 2, cx + cw / 2, cy + ch / 2)
        moved = np.asarray(self.image.resize((w, h), Image.Resampling.BILINEAR, box=box), np.float32)
        amp = self.SHIMMER * min(1.0, t / self.EASE_IN_S)
        gain = 1.0 + amp * np.sin(2 * np.pi * (self._x - t / self.SHIMMER_PERIOD_S))
        held: NDArray[np.uint8] = np.clip(moved * gain, 0, 255).astype(np.uint8)
        return held


@dataclass(frozen=True)
class WorldStatus:
    """What the console shows about the world's health."""

    state: str  # "ok" | "holding" (the last frame, alive) | "fallback" (the fallback world on air)
    backend: str
    failures: int  # failures in a row
    error: str | None  # the last failure, one line
    retry_in_s: float | None
    standby: str | None = None  # why the backend is kept off air (the budget), or None

    def to_json(self) -> dict[str, object]:
        return {
            "state": self.state,
            "backend": self.backend,
            "failures": self.failures,
            "error": self.error,
            "retry_in_s": None if self.retry_in_s is None else round(self.retry_in_s, 1),
            "standby": self.standby,
        }


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or "no message"
    return f"{type(e).__name__}: {text[:200]}"


class ResilientWorld(World):
    """`backend` on air while it renders; the held frame, then `fallback()`, while it fails
    or while the `budget` keeps it on standby."""

    def __init__(
        self,
        backend: World,
        fallback: Callable[[], World] | None,
        *,
        fallback_after: int = 3,
        retry_min_s: float = 1.0,
        retry_max_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        background: bool = True,
        budget: GpuBudget | None = None,
    ) -> None:
        """`fallback`: builds the world that covers for a failing backend (not
        started); `background=False` starts it in the render thread (tests)."""
        super().__init__()
        self.backend = backend
        self.budget = budget
        self.name = backend.name
        self._make_fallback = fallback
        self.fallback_after = max(1, fallback_after)
        self._wait = wait_exponential(multiplier=retry_min_s, max=retry_max_s)
        self._clock = clock
        self._background = background
        self._map_lock = threading.Lock()
        self._gens: dict[int, dict[int, int]] = {id(backend): {}}  # inner world -> its generation -> ours
        self._spec: WorldSpec | None = None
        self._start_args: tuple[tuple[int, int], float, int] | None = None  # size, fps, seed
        self._direction: Direction | None = None
        self._fallback: World | None = None
        self._fallback_ready = threading.Event()
        self._fallback_thread: threading.Thread | None = None
        self.state = "ok"
        self.standby: str | None = None  # the budget's reason to keep the backend off air
        self._backend_on_air = False  # the last frame was the backend's
        self.failures = 0
        self.error: str | None = None
        self._next_try = 0.0
        self._last: np.ndarray | None = None  # the last picture that went out
        self._held: HeldFrame | None = None
        self._held_frames = 0
        self._fps = 30.0
        self._index = 0
        self._generation_out = 0
        self._fade_from: np.ndarray | None = None
        self._fade_left = 0

    # -- the World interface ---------------------------------------------------------
    def start(self, spec: WorldSpec, size: tuple[int, int], fps: float, seed: int = 0) -> None:
        self._spec = spec
        self.backend.start(spec, size, fps, seed=seed)  # a backend that cannot start is the user's to fix
        # A chunked backend's frames are played at its own rate (see `pacing`): the
        # held frame, the fades and the fallback world move at that rate too.
        pacing = self.backend.pacing()
        own_fps = pacing.source_fps if pacing is not None else fps
        self._start_args = (size, own_fps, seed)
        self._fps = float(own_fps)

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.backend.frame_size

    def steer(self, direction: Direction, transition_s: float = 1.5) -> int:
        self._direction = direction
        return self._forward(lambda w: w.steer(direction, transition_s), direction, transition_s)

    def change_world(self, spec: WorldSpec, transition_s: float = 3.0) -> int:
        self._spec = spec
        text = spec.description
        direction = Direction(text, f"{text}, {spec.style}", "console")
        self._direction = direction
        return self._forward(lambda w: w.change_world(spec, transition_s), direction, transition_s)

    def pacing(self) -> Pacing | None:
        """The backend's: the broadcast paces whatever is on air as it paces the backend."""
        return self.backend.pacing()

    def ambience(self) -> Ambience:
        covered = self.state == "fallback" or self.standby is not None
        fallback = self._fallback
        world = fallback if covered and fallback is not None and self._fallback_ready.is_set() else self.backend
        try:
            return world.ambience()
        except Exception:  # the soundtrack keeps its last mood
            return Ambience()

    def render(self) -> Frame:
        now = self._clock()
        image: np.ndarray | None = None
        generation = self._generation_out
        # 0. the budget: whether the backend may be on air now (it counts the frame just past)
        if self.budget is not None:
            self._stand_by(self.budget.update(self._backend_on_air))
        self._backend_on_air = False
        # 1. the backend, when it is on air or its retry is due, and not on standby
        if self.standby is None and (self.state == "ok" or now >= self._next_try):
            try:
                frame = self.backend.render()
            except Exception as e:
                self._failed(e, now)
            else:
                if self.state != "ok":
                    self._recovered()
                image, generation = frame.image, self._ours(self.backend, frame.generation)
                self._backend_on_air = True
        # 2. the fallback world, once it is ready
        covered = self.state == "fallback" or self.standby is not None
        if image is None and covered and self._fallback_ready.is_set():
            image, generation = self._from_fallback()
        # 3. else the last picture, alive
        if image is None:
            image = self._hold()
        else:
            self._held = None
            image = self._faded(image)
        self._last = image
        self._generation_out = generation
        self._index += 1
        return Frame(image, self._index, generation)

    def close(self) -> None:
        if self.budget is not None:
            self.budget.close()
        if self._fallback_thread is not None:
            self._fallback_thread.join(timeout=30)
        for world in (self.backend, self._fallback):
            if world is not None:
                try:
                    world.close()
                except Exception:
                    log.exception("closing the %s world failed", world.name)

    # -- health ------------------------------------------------------------------------
    def status(self) -> WorldStatus:
        retry = max(0.0, self._next_try - self._clock()) if self.state != "ok" and self.standby is None else None
        return WorldStatus(self.state, self.backend.name, self.failures, self.error, retry, self.standby)

    # -- failing and recovering ---------------------------------------------------------
    def _failed(self, e: Exception, now: float) -> None:
        self.failures += 1
        self.error = _one_line(e)
        _release_gpu_memory(e)
        state = RetryCallState(Retrying(), None, (), {})  # a state for the wait alone: it reads attempt_number only
        state.attempt_number = self.failures
        delay = float(self._wait(state))
        self._next_try = now + delay
        if self.failures == 1:
            log.error(
                "the %s world failed (%s); holding the last frame, retrying in %.0f s",
                self.backend.name,
                self.error,
                delay,
            )
            log.debug("the %s world's failure", self.backend.name, exc_info=e)
            self.state = "holding"
        else:
            log.debug("the %s world failed again (%d in a row): %s", self.backend.name, self.failures, self.error)
        if self.failures >= self.fallback_after and self.state == "holding" and self._make_fallback is not None:
            log.warning(
                "the %s world failed %d times in a row; the fallback world takes over while it is "
                "retried (next in %.0f s)",
                self.backend.name,
                self.failures,
                delay,
            )
            self.state = "fallback"
            self._start_fallback()

    def _recovered(self) -> None:
        log.warning(
            "the %s world renders again after %d failure(s); it is back on air", self.backend.name, self.failures
        )
        self.state = "ok"
        self.failures = 0
        self.error = None
        self._begin_fade()

    def _stand_by(self, reason: str | None) -> None:
        """The budget's word: the backend leaves the air for the fallback world (a reason), or comes back (None)."""
        if reason == self.standby:
            return
        self.standby = reason
        if reason is not None and self._make_fallback is not None:
            self._start_fallback()
        # a cross-fade to whichever picture is ready (a fallback world still starting fades in from the held frame)
        if reason is None or self._fallback_ready.is_set():
            self._begin_fade()

    def _start_fallback(self) -> None:
        if self._fallback is not None:
            return
        assert self._make_fallback is not None  # the callers take over only with a fallback to take over
        self._fallback = self._make_fallback()
        self._gens[id(self._fallback)] = {}
        if self._background:
            self._fallback_thread = threading.Thread(target=self._prepare_fallback, name="fallback world", daemon=True)
            self._fallback_thread.start()
        else:
            self._prepare_fallback()

    def _prepare_fallback(self) -> None:
        world = self._fallback
        assert world is not None and self._spec is not None and self._start_args is not None
        try:
            size, fps, seed = self._start_args
            world.start(self._spec, size, fps, seed=seed)
            if self._direction is not None:
                with self._map_lock:
                    self._gens[id(world)][world.steer(self._direction, 0.0)] = self._generation
        except Exception as e:
            log.error("the fallback world could not start (%s); the last frame stays on air", _one_line(e))
            return
        self._fallback_ready.set()

    def _from_fallback(self) -> tuple[np.ndarray | None, int]:
        world = self._fallback
        assert world is not None
        try:
            frame = world.render()
        except Exception as e:  # both down: the held frame it is
            self.error = f"{self.error}; the fallback too: {_one_line(e)}"
            return None, self._generation_out
        if self._held is not None:
            self._begin_fade()
        return frame.image, self._ours(world, frame.generation)

    # -- pictures ------------------------------------------------------------------------
    def _hold(self) -> np.ndarray:
        if self._last is None:  # failed before its first frame: a dark, moving nothing is all there is
            w, h = self.backend.frame_size or (64, 36)
            self._last = np.full((max(h, 16), max(w, 16), 3), 24, np.uint8)
        if self._held is None:
            self._held = HeldFrame(self._last)
            self._held_frames = 0
        self._held_frames += 1
        return self._held.at(self._held_frames / self._fps)

    def _begin_fade(self) -> None:
        if self._last is not None:
            self._fade_from = self._last
            self._fade_left = max(1, round(CROSSFADE_S * self._fps))

    def _faded(self, image: np.ndarray) -> np.ndarray:
        if self._fade_left <= 0 or self._fade_from is None:
            return image
        a = self._fade_left / (round(CROSSFADE_S * self._fps) + 1)
        self._fade_left -= 1
        old = self._fade_from
        if old.shape != image.shape:
            old = np.asarray(Image.fromarray(old).resize((image.shape[1], image.shape[0]), Image.Resampling.BILINEAR))
            self._fade_from = old
        return (old * a + image * (1.0 - a)).astype(np.uint8)

    # -- generations -------------------------------------------------------------------
    def _forward(self, call: Callable[[World], int], direction: Direction, transition_s: float) -> int:
        with self._map_lock:
            ours = World.steer(self, direction, transition_s)
            self.take_pending()  # the inner worlds have their own
            fallback = self._fallback
            worlds = [self.backend] + ([fallback] if fallback is not None and self._fallback_ready.is_set() else [])
            for world in worlds:
                try:
                    self._gens[id(world)][call(world)] = ours
                except Exception as e:  # it shows at its next frame; the steer still counts
                    log.warning("the %s world refused a steer: %s", world.name, _one_line(e))
        return ours

    def _ours(self, world: World, inner: int) -> int:
        with self._map_lock:
            gens = self._gens[id(world)]
            if inner in gens:
                return gens[inner]
            earlier = [g for g in gens if g <= inner]
            for old in [g for g in gens if g < inner - 64]:  # keep the map small
                del gens[old]
            return gens[max(earlier)] if earlier else self._generation_out


def _release_gpu_memory(e: BaseException) -> None:
    """After a CUDA out-of-memory error, give the cached blocks back before the retry."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(e, getattr(torch.cuda, "OutOfMemoryError", ())):
        return
    try:
        torch.cuda.empty_cache()
    except Exception:
        pass
