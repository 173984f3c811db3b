"""The sketch world's pictures, held against thumbnails kept in tests/data.

A fixed set of scenes (every biome, weather, time of day, the things that
fly, particles, grading, a change of world) is rendered at fixed times and
compared with 4x4 block-mean thumbnails of the same frames made earlier. A
change to how the world is drawn that a viewer could see fails here; a
refactor that keeps the pictures passes.

The comparison allows a little: numpy's float32 sin, exp and log take
different SIMD paths on different CPUs, which moves a pixel by a grey level
now and then; anything a viewer could notice is far beyond it.

After a deliberate change of the look, write new thumbnails and say why:
    python -m tests.test_sketch_pictures --write
After adding a scene parameter, check that some scene here shows it (each
parameter nudged in turn; a few minutes):
    python -m tests.test_sketch_pictures --coverage
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from streambot.world.sketch import SketchWorld
from streambot.world.sketch_canvas import Motion
from streambot.world.sketch_concepts import DEFAULTS, HIGH, IDX, NAMES
from streambot.world.sketch_render import Renderer
from streambot.world.sketch_scene import Scene
from streambot.worldspec import WorldSpec

DATA = Path(__file__).parent / "data" / "sketch_pictures.npz"
W, H = 320, 180  # the sketch world's native frame for a 640x360 stream
SEED = 5
DT = 1 / 30
FRAMES = 24  # per scene; the 12th and the 24th are kept
BLOCK = 4
# A thumbnail block may move by this many grey levels (CPU maths, rounding of
# the block mean); on average the blocks of a frame may move this much.
MAX_BLOCK_DIFF = 2.0
MAX_MEAN_DIFF = 0.05
MAX_LIGHT_DIFF = 1e-4

NO_BIOME = {n: 0.0 for n in NAMES if n.startswith("b_")}

# name, start time (s), parameters that differ from the defaults.
SCENES: list[tuple[str, float, dict[str, float]]] = [
    ("meadow_noon", 3.0, {"tod": 0.5, "birds": 1.0}),
    ("desert_dusk", 40.0, {**NO_BIOME, "b_desert": 1.0, "tod": 0.74, "balloons": 1.0, "planes": 1.0, "warmth": 0.6}),
    (
        "mountains_dawn",
        11.0,
        {**NO_BIOME, "b_mountains": 1.0, "tod": 0.26, "snowcover": 0.6, "clouds": 0.75, "fog": 0.45, "dragons": 1.0},
    ),
    # Sun glitter on a half-frozen sea, in a cool sunrise, snow falling lightly.
    (
        "frozen_sea",
        47.0,
        {
            **NO_BIOME,
            "b_ocean": 1.0,
            "tod": 0.27,
            "snowcover": 0.7,
            "clouds": 0.45,
            "snow": 0.25,
            "warmth": -0.6,
            "fog": 0.0,
        },
    ),
    (
        "ocean_night",
        25.0,
        {
            **NO_BIOME,
            "b_ocean": 1.0,
            "tod": 0.02,
            "moon2": 1.0,
            "stars": 1.0,
            "meteors": 1.0,
            "planets": 0.8,
            "clouds": 0.1,
        },
    ),
    (
        "forest_night",
        60.0,
        {
            **NO_BIOME,
            "b_forest": 1.0,
            "tod": 0.9,
            "fireflies": 1.0,
            "fog": 0.6,
            "aurora": 1.0,
            "clouds": 0.05,
            "magic": 0.5,
        },
    ),
    # Starts just before a lightning strike: the 12th frame has the flash and the bolt.
    (
        "city_storm",
        77.55,
        {
            **NO_BIOME,
            "b_city": 1.0,
            "tod": 0.95,
            "lights": 1.0,
            "neon": 0.8,
            "cars": 1.0,
            "searchlights": 1.0,
            "rain": 0.8,
            "storm": 0.9,
            "clouds": 0.9,
            "wind": 0.7,
        },
    ),
    (
        "space",
        130.0,
        {**NO_BIOME, "b_space": 1.0, "nebula": 1.0, "asteroids": 1.0, "planets": 1.0, "nova": 1.0, "stars": 1.0},
    ),
    (
        "islands_magic",
        7.0,
        {
            **NO_BIOME,
            "b_islands": 1.0,
            "tod": 0.45,
            "magic": 1.0,
            "rainbow": 1.0,
            "bubbles": 1.0,
            "dragons": 0.6,
            "clouds": 0.3,
        },
    ),
    (
        "candy_fireworks",
        52.0,
        {**NO_BIOME, "b_candy": 1.0, "tod": 0.8, "fireworks": 1.0, "saturation": 1.5, "hue": 0.2, "trippy": 1.0},
    ),
    (
        "wasteland_smoke",
        19.0,
        {
            **NO_BIOME,
            "b_wasteland": 1.0,
            "tod": 0.6,
            "smoke": 1.0,
            "embers": 1.0,
            "grain": 1.0,
            "vignette": 0.9,
            "exposure": -0.5,
            "contrast": 1.4,
            "tint_r": 1.2,
            "tint_b": 0.8,
        },
    ),
    (
        "blizzard",
        90.0,
        {"tod": 0.4, "snow": 1.0, "wind": 0.95, "snowcover": 1.0, "clouds": 1.0, "fog": 0.3, "storm": 0.3},
    ),
    (
        "mixed_high_camera",
        33.0,
        {
            **NO_BIOME,
            "b_mountains": 0.5,
            "b_city": 0.3,
            "b_forest": 0.2,
            "tod": 0.3,
            "altitude": 0.8,
            "zoom": 1.5,
            "bob": 0.8,
            "pan": -2.5,
        },
    ),
    # Five days on air: world time that has grown large.
    (
        "five_days_later",
        5 * 86400.0 + 17.0,
        {
            **NO_BIOME,
            "b_grass": 0.5,
            "b_forest": 0.5,
            "tod": 0.85,
            "rain": 0.4,
            "snow": 0.4,
            "fireflies": 1.0,
            "embers": 0.5,
            "wind": 0.8,
        },
    ),
]
# A change of world: the meadow at noon becomes the stormy city at night over the scene.
CHANGE = ("meadow_to_city", 200.0, SCENES[0][2], SCENES[5][2])


def vector(overrides: dict[str, float]) -> np.ndarray:
    v = DEFAULTS.copy()
    for k, x in overrides.items():
        v[IDX[k]] = x
    return v


def draw(r: Renderer, v: np.ndarray, t: float) -> np.ndarray:
    return r.draw(Scene.from_params(dict(zip(NAMES, v.tolist()))), t, DT)


def thumbnail(img: np.ndarray) -> np.ndarray:
    h, w, _ = img.shape
    blocks = img.reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK, 3).astype(np.float32)
    return np.rint(blocks.mean(axis=(1, 3))).astype(np.uint8)


def render_all() -> dict[str, tuple[np.ndarray, float]]:
    """Every kept frame by name, with the renderer's overall brightness."""
    r = Renderer(W, H, SEED)
    out: dict[str, tuple[np.ndarray, float]] = {}
    for name, t0, over in SCENES:
        v = vector(over)
        for k in range(1, FRAMES + 1):
            img = draw(r, v, t0 + k * DT)
            if k in (FRAMES // 2, FRAMES):
                out[f"{name}@{k}"] = (img, r.light)
    name, t0, a, b = CHANGE
    va, vb = vector(a), vector(b)
    n = 30
    for k in range(1, n + 1):
        u = k / n
        u = u * u * u * (u * (u * 6 - 15) + 10)
        img = draw(r, va + (vb - va) * u, t0 + k * DT)
        if k % 10 == 0:
            out[f"{name}@{k}"] = (img, r.light)
    # Through the world itself: its wandering weather and the hand-over of parameters.
    spec = WorldSpec(
        "judge",
        "Judge",
        "",
        "plain",
        ("it begins",),
        {
            "sketch": {
                "params": {**NO_BIOME, "b_forest": 0.6, "b_mountains": 0.4, "tod": 0.7, "birds": 1.0, "clouds": 0.6}
            }
        },
    )
    world = SketchWorld(embedder=None, background=False)
    world.start(spec, (2 * W, 2 * H), 30, seed=SEED)
    try:
        for k in range(1, 46):
            img = world.render().image
            if k in (15, 45):
                out[f"world@{k}"] = (img, world._renderer.light)
    finally:
        world.close()
    return out


def write() -> None:
    frames = render_all()
    DATA.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        DATA,
        **{k: thumbnail(img) for k, (img, _) in frames.items()},
        light=np.array([light for _, light in frames.values()]),
        names=np.array(list(frames)),
    )
    print(f"wrote {len(frames)} thumbnails to {DATA}")


def different(a: np.ndarray, b: np.ndarray) -> bool:
    diff = np.abs(a.astype(np.float32) - b.astype(np.float32))
    return bool(diff.max() > MAX_BLOCK_DIFF or diff.mean() > MAX_MEAN_DIFF)


def coverage() -> None:
    """Print, for each parameter, the scenes whose 12th frame changes when it is nudged."""
    r = Renderer(W, H, SEED)

    def twelfth_frames(vectors):
        out = []
        for (_, t0, _), v in zip(SCENES, vectors):
            r.motion = Motion()
            for k in range(1, 13):
                img = draw(r, v, t0 + k * DT)
            out.append(thumbnail(img))
        return out

    base_vectors = [vector(over) for _, _, over in SCENES]
    base = twelfth_frames(base_vectors)
    unseen = []
    for name in NAMES:
        i, step = IDX[name], (0.1 if name == "tod" else 0.4)
        nudged = [v.copy() for v in base_vectors]
        for v in nudged:
            v[i] += step if v[i] + step <= min(HIGH[i], 2.0) else -step
        seen = [SCENES[j][0] for j, (a, b) in enumerate(zip(base, twelfth_frames(nudged))) if different(a, b)]
        print(f"{name:12s} {len(seen):2d} {', '.join(seen)}", flush=True)
        if not seen:
            unseen.append(name)
    if unseen:
        sys.exit(f"no scene shows: {', '.join(unseen)}")


@pytest.fixture(scope="module")
def rendered():
    return render_all()


@pytest.fixture(scope="module")
def reference():
    with np.load(DATA) as ref:
        return {k: ref[k] for k in ref.files}


def test_the_same_frames_are_kept(rendered, reference):
    assert list(rendered) == reference["names"].tolist()


@pytest.mark.parametrize("scene", [s[0] for s in SCENES] + [CHANGE[0], "world"])
def test_each_scene_looks_as_it_did(rendered, reference, scene):
    names = reference["names"].tolist()
    for name in [n for n in names if n.split("@")[0] == scene]:
        img, light = rendered[name]
        got = thumbnail(img).astype(np.float32)
        want = reference[name].astype(np.float32)
        diff = np.abs(got - want)
        y, x, c = np.unravel_index(int(diff.argmax()), diff.shape)
        assert diff.max() <= MAX_BLOCK_DIFF, (
            f"{name}: block ({BLOCK * x}, {BLOCK * y}) channel {c} is {got[y, x, c]:.0f}, was {want[y, x, c]:.0f}"
        )
        assert diff.mean() <= MAX_MEAN_DIFF, f"{name}: blocks moved by {diff.mean():.3f} grey levels on average"
        assert abs(light - reference["light"][names.index(name)]) <= MAX_LIGHT_DIFF, name


if __name__ == "__main__":
    if "--write" in sys.argv:
        write()
    elif "--coverage" in sys.argv:
        coverage()
    else:
        sys.exit("usage: python -m tests.test_sketch_pictures --write | --coverage")
