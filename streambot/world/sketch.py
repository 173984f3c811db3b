"""The sketch world: a procedural landscape drawn with numpy on the CPU.

No weights, no GPU. The world is a vector of scene parameters (time of day,
weather, mood, biome weights, kinds of moving things, camera) drawn by
`sketch_render.Renderer`. A steer's text is mapped to a target vector by
meaning (`sketch_concepts.SceneMapper`, all-MiniLM-L6-v2) in a small worker
thread, and the scene eases towards it over the steer's transition time, so
nothing ever cuts. Left alone the world keeps going: the camera travels over
endless terrain, clouds drift, the day turns, things fly by.

World time advances exactly 1/fps per rendered frame: motion is smooth and
deterministic whatever the render speed.

A preset's `[sketch]` table sets where the world starts: `scene` (text,
mapped like a prompt; the description when absent) and optionally `params`
(a table of exact scene parameters, see `sketch_concepts.PARAMS`).
"""

from __future__ import annotations

import enum
import functools
import logging
import math
import threading
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import numpy as np
from numpy.typing import NDArray

from ..worldspec import WorldSpec
from .base import Ambience, Direction, Frame, World, WorldError, _Steer
from .sketch_concepts import CONCEPTS, DEFAULTS, IDX, NAMES, TOD, Activations, SceneMapper, clamp
from .sketch_render import Renderer
from .sketch_scene import Scene
from .sketch_sky import daylight

if TYPE_CHECKING:
    from ..embeddings import SentenceEncoder

log = logging.getLogger(__name__)


class _Auto(enum.Enum):
    AUTO = enum.auto()


_AUTO = _Auto.AUTO  # "the shared sentence model", as distinct from None (keywords only)
DAY_LENGTH_S = 1800.0  # left alone, a full day passes in half an hour
# What a prompt leaves unsaid stays this much as it was; the rest returns to
# the preset. Weather and passing things fade faster than the place and mood.
CARRY = 0.6
_FAST = (
    "rain",
    "snow",
    "storm",
    "fog",
    "wind",
    "birds",
    "planes",
    "cars",
    "balloons",
    "fireflies",
    "embers",
    "fireworks",
    "meteors",
    "dragons",
    "bubbles",
    "asteroids",
    "nova",
    "searchlights",
    "aurora",
    "rainbow",
    "bob",
    "pan",
    "zoom",
    "altitude",
)
_CARRY = np.array([0.35 if n in _FAST else CARRY for n in NAMES])
MIN_TRANSITION_S = 0.5  # never a cut, even when asked for an instant change


class _DayClock:
    """Time of day re-parametrised so equal steps change the light equally.

    The light changes little at noon and a lot around sunrise and sunset; a
    transition interpolated in plain hours would race through a sunset in a
    few frames. Interpolating in this warped time spreads the change evenly.
    """

    def __init__(self, n: int = 2048) -> None:
        self.tod = np.arange(n + 1) / n
        ang = 2 * np.pi * self.tod
        # Light levels, plus where the sun and moon stand (their glow moves).
        f = np.stack(daylight(np.sin(ang - np.pi / 2)) + (0.4 * np.cos(ang), 0.4 * np.sin(ang)), axis=1)
        step = np.linalg.norm(np.diff(f, axis=0), axis=1) + 0.3 / n  # never flat
        cum = np.r_[0.0, np.cumsum(step)]
        self.cum = cum / cum[-1]

    def warp(self, tod: float) -> float:
        k = math.floor(tod)
        return k + float(np.interp(tod - k, self.tod, self.cum))

    def unwarp(self, w: float) -> float:
        k = math.floor(w)
        return k + float(np.interp(w - k, self.cum, self.tod))


_DAY = _DayClock()


def _ease(u: float) -> float:
    u = min(max(u, 0.0), 1.0)
    return u * u * u * (u * (u * 6 - 15) + 10)


class _MapperWorker:
    """Embeds steer texts off the render thread; the newest request wins."""

    def __init__(self, mapper: SceneMapper) -> None:
        self._mapper = mapper
        self._cv = threading.Condition()
        self._request: _Steer | None = None
        self._result: tuple[_Steer, Activations] | None = None
        self._mapped = 0  # the newest generation mapped, for `wait_mapped`
        self._mapped_cv = threading.Condition()
        self._closed = False
        self._source: World | None = None
        self._thread = threading.Thread(target=self._run, name="sketch-mapper", daemon=True)
        self._thread.start()

    def take_from(self, world: World) -> None:
        """Start on the world's pending steer now, not at its next frame."""
        with self._cv:
            self._source = world
            self._cv.notify()

    def use(self, mapper: SceneMapper) -> None:
        """Map with `mapper` from the next request on."""
        self._mapper = mapper

    def submit(self, steer: _Steer) -> None:
        with self._cv:
            self._request = steer
            self._cv.notify()

    def poll(self) -> tuple[_Steer, Activations] | None:
        with self._cv:
            res, self._result = self._result, None
        return res

    def wait_mapped(self, generation: int, timeout: float) -> bool:
        with self._mapped_cv:
            return self._mapped_cv.wait_for(lambda: self._mapped >= generation, timeout)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._request is None and self._source is None and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                source, self._source = self._source, None
            if source is not None:
                taken = source.take_pending()  # else the render thread already took it
                with self._cv:
                    if taken is not None and (self._request is None or self._request.generation < taken.generation):
                        self._request = taken
            with self._cv:
                if self._request is None:
                    continue
                steer, self._request = self._request, None
            acts = _activations(self._mapper, steer.direction.text)
            with self._cv:
                kept = self._request is None  # a newer steer would supersede this one
                if kept:
                    self._result = (steer, acts)
            if kept:
                with self._mapped_cv:
                    self._mapped = max(self._mapped, steer.generation)
                    self._mapped_cv.notify_all()


def _activations(mapper: SceneMapper, text: str) -> Activations:
    try:
        return mapper.activations(text)
    except RuntimeError as e:  # the model's process stopped (the show is closing) or refused
        log.warning("sentence model failed on %r (%s); using keywords", text, e)
    except Exception:  # a broken model must not stop the show: keywords still work
        log.exception("sentence model failed on %r; using keywords", text)
    return SceneMapper(None).activations(text)


class SketchWorld(World):
    """The embedded default world backend (see the module docstring)."""

    name = "sketch"

    def __init__(
        self,
        render_scale: float = 0.5,
        embedder: SentenceEncoder | None | Literal[_Auto.AUTO] = _AUTO,
        background: bool = True,
        wait_for_model: bool = True,
    ) -> None:
        """`embedder`: a `streambot.embeddings.Embedder`, None for keyword matching only,
        or left out to use the shared one. `background=False` maps prompts in the
        render thread (deterministic frame timing, for tests). `wait_for_model=False`
        starts at once on keywords and takes the shared model when its background
        load is done (`streambot run`: the first frame must not wait for torch)."""
        super().__init__()
        self._wait_for_model = wait_for_model
        self._closed = False
        if not 0.05 <= render_scale <= 1.0:
            raise WorldError(f"The sketch world's render_scale must be between 0.05 and 1, not {render_scale}.")
        self.render_scale = render_scale
        self._embedder_arg = embedder
        self._background = background
        self._mapper: SceneMapper | None = None
        self._worker: _MapperWorker | None = None
        self._renderer: Renderer | None = None
        self._size = (0, 0)
        self._fps = 30.0
        self._index = 0
        self._t = 0.0
        self._frame_gen = 0
        self._base = DEFAULTS.copy()
        self._from = DEFAULTS.copy()
        self._to = DEFAULTS.copy()
        self._t0 = 0.0
        self._dur = 1.0
        self._current = DEFAULTS.copy()

    # -- World interface -------------------------------------------------------
    def start(self, spec: WorldSpec, size: tuple[int, int], fps: float, seed: int = 0) -> None:
        w, h = size
        if w < 16 or h < 16 or fps <= 0:
            raise WorldError(f"The sketch world cannot render {w}x{h} at {fps} fps.")
        # Even sizes: the encoder's 4:2:0 chroma needs them.
        self._size = (
            max(16, 2 * int(w * self.render_scale / 2 + 0.5)),
            max(16, 2 * int(h * self.render_scale / 2 + 0.5)),
        )
        self._fps = float(fps)
        if self._mapper is None:
            emb = self._embedder_arg
            if emb is _AUTO:
                from .. import embeddings

                if self._wait_for_model:
                    emb = embeddings.get_embedder()
                else:
                    emb = embeddings.loaded()
                    if emb is None:
                        embeddings.when_ready(functools.partial(self._take_model, spec=spec))
                        embeddings.load_in_background()
            self._mapper = SceneMapper(emb)
        if self._background and self._worker is None:
            self._worker = _MapperWorker(self._mapper)
        self._renderer = Renderer(self._size[0], self._size[1], seed)
        self._base = self._preset_scene(spec)
        self._from, self._to, self._current = self._base.copy(), self._base.copy(), self._base.copy()
        self._t = 0.0
        self._t0 = 0.0
        self._index = 0
        log.info(
            "sketch world %r at %dx%d (%s)",
            spec.name,
            *self._size,
            "sentence model"
            if self._mapper.embedder is not None
            else "keywords only"
            if self._embedder_arg is None or self._wait_for_model
            else "keywords until the sentence model is loaded",
        )

    def _take_model(self, embedder: SentenceEncoder, spec: WorldSpec) -> None:
        """The sentence model is loaded (on its loader's thread): embed the concept
        table here, then prompts are mapped by meaning from the next steer on.
        The preset's resting scene is re-read by meaning too; the picture does
        not jump, since only later targets start from it."""
        if self._closed:
            return
        mapper = SceneMapper(embedder)
        self._mapper = mapper
        if self._worker is not None:
            self._worker.use(mapper)
        self._base = self._preset_scene(spec)
        log.info("sketch world: the sentence model is ready; prompts are mapped by meaning from now on")

    def steer(self, direction: Direction, transition_s: float = 1.5) -> int:
        gen = super().steer(direction, transition_s)
        if self._worker is not None:
            self._worker.take_from(self)  # embedding starts now, between frames
        return gen

    def wait_mapped(self, generation: int, timeout: float = 10.0) -> bool:
        """Wait until the scene for steer `generation` (or a newer one) is mapped,
        so the next frame starts it (tests, benchmarks), as `Compositor.flush` does.
        Without a background mapper the next frame maps it itself."""
        return self._worker is None or self._worker.wait_mapped(generation, timeout)

    @property
    def frame_size(self) -> tuple[int, int]:
        return self._size

    def render(self) -> Frame:
        if self._renderer is None:
            raise RuntimeError("SketchWorld.render() called before start()")
        dt = 1.0 / self._fps
        # 1. hand a new steer to the mapper; 2. start the transition it asks for.
        pending = self.take_pending()
        if pending is not None:
            if self._worker is not None:
                self._worker.submit(pending)
            else:
                self._apply(pending, _activations(self._started_mapper(), pending.direction.text))
        if self._worker is not None:
            ready = self._worker.poll()
            if ready is not None and ready[0].generation > self._frame_gen:
                self._apply(*ready)
        # 3. advance world time and ease the scene towards its target.
        self._t += dt
        drift = dt / DAY_LENGTH_S
        self._from[TOD] += drift
        self._to[TOD] += drift
        u = _ease((self._t - self._t0) / self._dur)
        self._current = self._from + (self._to - self._from) * u
        w0, w1 = _DAY.warp(self._from[TOD]), _DAY.warp(self._to[TOD])
        self._current[TOD] = _DAY.unwarp(w0 + (w1 - w0) * u)
        params = dict(zip(NAMES, self._current.tolist()))
        self._wander(params, self._t)
        # 4. draw.
        image = self._renderer.draw(Scene.from_params(params), self._t, dt)
        self._index += 1
        return Frame(image=image, index=self._index, generation=self._frame_gen)

    def ambience(self) -> Ambience:
        p = self._current
        light = self._renderer.light if self._renderer is not None else 0.5

        def g(n: str) -> float:
            return float(p[IDX[n]])

        tod = g("tod") % 1.0
        twilight = math.exp(-(((math.sin(2 * math.pi * (tod - 0.25)) - 0.03) / 0.15) ** 2))
        warmth = 0.5 + 0.3 * g("warmth") + 0.2 * twilight + 0.15 * g("embers") - 0.2 * g("snowcover")
        tension = (
            0.1
            + 0.6 * g("storm")
            + 0.35 * g("b_wasteland")
            + 0.2 * g("smoke")
            + 0.25 * max(0.0, -g("exposure"))
            + 0.15 * g("fireworks")
            + 0.2 * g("searchlights")
        )
        wind = g("wind") * (1 - 0.8 * g("b_space"))

        def clip(x: float) -> float:
            return float(min(1.0, max(0.0, x)))

        return Ambience(
            brightness=clip(light), warmth=clip(warmth), tension=clip(tension), wind=clip(wind), rain=clip(g("rain"))
        )

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None
        self._closed = True

    # -- steering ----------------------------------------------------------------
    @property
    def params(self) -> dict[str, float]:
        """The scene as it is now (read-only copy), for the console and tests."""
        return dict(zip(NAMES, self._current.tolist()))

    def target_for(self, text: str) -> dict[str, float]:
        """The scene `text` would ask for from here (no side effects)."""
        acts = _activations(self._started_mapper(), text)
        return dict(zip(NAMES, self._target(acts).tolist()))

    def _started_mapper(self) -> SceneMapper:
        assert self._mapper is not None, "start() makes the scene mapper"
        return self._mapper

    def _target(self, acts: Activations) -> NDArray[np.float64]:
        rest = _CARRY * self._to + (1 - _CARRY) * self._base
        # Time of day is a state, not a setting: it comes back to the preset only gently.
        cur_tod = self._to[TOD]
        back = ((self._base[TOD] - cur_tod + 0.5) % 1.0) - 0.5
        rest[TOD] = cur_tod + 0.25 * back
        return self._started_mapper().target(acts, rest)

    def _apply(self, steer: _Steer, acts: Activations) -> None:
        target = self._target(acts)
        self._from = self._current.copy()
        self._to = target
        self._t0 = self._t
        self._dur = max(MIN_TRANSITION_S, steer.transition_s)
        self._frame_gen = steer.generation
        act = acts[0]
        named = [(CONCEPTS[i].name, round(float(act[i]), 2)) for i in np.argsort(-act)[:6] if act[i] > 0]
        log.info("steer %d %r -> %s", steer.generation, steer.direction.text, named or "nothing known")

    def _preset_scene(self, spec: WorldSpec) -> NDArray[np.float64]:
        cfg = spec.extra.get("sketch", {}) if isinstance(spec.extra, dict) else {}
        text = cfg.get("scene") or spec.description
        mapper = self._started_mapper()
        acts = _activations(mapper, text)
        scene = mapper.target(acts, DEFAULTS.copy())
        for k, v in (cfg.get("params") or {}).items():
            if k not in IDX:
                raise WorldError(f"Preset {spec.name!r}: [sketch.params] has no parameter {k!r}.")
            scene[IDX[k]] = float(v)
        return clamp(scene)

    @staticmethod
    def _wander(p: dict[str, float], t: float) -> None:
        """Slow drifts so a scene left alone never freezes: weather breathes."""
        p["clouds"] = min(1.0, max(0.0, p["clouds"] + 0.07 * math.sin(t * 0.021 + 1.0) + 0.03 * math.sin(t * 0.067)))
        p["wind"] = min(1.0, max(0.0, p["wind"] + 0.08 * math.sin(t * 0.031)))
        p["fog"] = min(1.0, max(0.0, p["fog"] + 0.03 * math.sin(t * 0.017 + 2.0)))


def check_settings(table: dict[str, Any]) -> None:
    """The [world.sketch] table, checked before anything starts (ConfigError: one sentence)."""
    from .sketch_settings import parse_sketch_settings

    parse_sketch_settings(table)


def create_world(table: dict[str, Any]) -> SketchWorld:
    """What app.py calls for `--world sketch`: the [world.sketch] table in, a world out.
    The first frame does not wait for the sentence model: keywords until it is loaded."""
    check_settings(table)
    return SketchWorld(**table, wait_for_model=False)


class SketchBench(TypedDict):
    frame_size: tuple[int, int]
    mean_ms: float
    p95_ms: float
    max_ms: float
    frames: int
    last: NDArray[np.uint8]  # the last frame rendered


def bench(
    preset: str = "meadow",
    prompt: str = "",
    size: tuple[int, int] = (1280, 720),
    render_scale: float = 0.5,
    frames: int = 300,
    seed: int = 0,
    embedder: SentenceEncoder | None | Literal[_Auto.AUTO] = _AUTO,
) -> SketchBench:
    """Render `frames` frames of a preset (after an optional prompt) and time them.

    Returns the frame size, mean / p95 / max milliseconds per frame and the last
    frame, for `streambot bench` and the README's figures.
    """
    import time

    from ..config import resolve_world
    from .base import Direction

    world = SketchWorld(render_scale, embedder=embedder, background=False)
    try:
        world.start(resolve_world(preset), size, 30, seed=seed)
        if prompt:
            world.steer(Direction(prompt, prompt, source="console"))
        for _ in range(30):  # warm up, and let the prompt's transition play out
            frame = world.render()
        times = np.empty(frames)
        for k in range(frames):
            t0 = time.perf_counter()
            frame = world.render()
            times[k] = time.perf_counter() - t0
    finally:
        world.close()
    ms = times * 1000
    return {
        "frame_size": world.frame_size,
        "mean_ms": float(ms.mean()),
        "p95_ms": float(np.percentile(ms, 95)),
        "max_ms": float(ms.max()),
        "frames": frames,
        "last": frame.image,
    }


if __name__ == "__main__":  # python -m streambot.world.sketch [preset] [prompt] [--keywords]
    import sys

    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    r = bench(
        args[0] if args else "meadow",
        args[1] if len(args) > 1 else "",
        embedder=None if "--keywords" in sys.argv else _AUTO,
    )
    w, h = r["frame_size"]
    print(
        f"{w}x{h}: {r['mean_ms']:.2f} ms/frame mean, p95 {r['p95_ms']:.2f}, "
        f"max {r['max_ms']:.2f} over {r['frames']} frames"
    )
