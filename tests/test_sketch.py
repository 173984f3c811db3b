"""The sketch world: frames, determinism, evolution, steering by meaning, no cuts."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from streambot.config import list_presets, resolve_world
from streambot.world.base import Direction, WorldError
from streambot.world.sketch import SketchWorld, bench
from streambot.world.sketch_concepts import CONCEPTS, DEFAULTS, IDX, NAMES, SceneMapper
from streambot.world.sketch_scene import Scene, param_names
from streambot.worldspec import WorldSpec

FPS = 30
SIZE = (640, 360)  # output size; native frames are half of it


@pytest.fixture(scope="module")
def embedder():
    from streambot.embeddings import get_embedder

    emb = get_embedder()
    if emb is None:
        pytest.skip("the sentence model is not installed")
    return emb


def make(preset: str = "meadow", seed: int = 0, embedder=None, **kw) -> SketchWorld:
    w = SketchWorld(embedder=embedder, background=kw.pop("background", False), **kw)
    w.start(resolve_world(preset), SIZE, FPS, seed=seed)
    return w


def run(w: SketchWorld, seconds: float):
    return [w.render() for _ in range(int(round(seconds * FPS)))]


def steer(w: SketchWorld, text: str, transition_s: float = 1.0) -> int:
    return w.steer(Direction(text=text, styled=text, source="audience"), transition_s)


def luma(img: np.ndarray) -> float:
    return float((img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).mean())


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def whiteness(img: np.ndarray) -> float:
    """Mean of the smallest channel over the ground (lower half): green grass
    scores low, snow and frost high, whatever their tint."""
    return float(img[img.shape[0] // 2 :].min(axis=2).mean())


def blueness(img: np.ndarray) -> float:
    low = img[img.shape[0] // 2 :].astype(np.float32)
    return float((low[..., 2] - low[..., 0]).mean())


# -- frames ----------------------------------------------------------------------


def test_frames_have_the_native_size_and_keep_coming():
    w = make()
    assert w.frame_size == (320, 180)
    frames = run(w, 1.0)
    for i, f in enumerate(frames, start=1):
        assert f.image.shape == (180, 320, 3)
        assert f.image.dtype == np.uint8 and f.image.flags.c_contiguous
        assert f.index == i and f.generation == 0
    # Each frame is its own array: keeping one does not see the next.
    assert not np.shares_memory(frames[0].image, frames[1].image)
    assert frames[-1].image.std() > 10  # a picture, not a flat fill


def test_native_size_is_scaled_and_even():
    w = SketchWorld(render_scale=0.5, embedder=None, background=False)
    w.start(resolve_world("meadow"), (1002, 602), FPS)
    assert w.frame_size == (502, 302)  # half of it, rounded to even numbers for the encoder
    assert w.render().image.shape == (w.frame_size[1], w.frame_size[0], 3)
    with pytest.raises(WorldError):
        SketchWorld(render_scale=3.0)


def test_a_world_file_can_set_its_scene_and_parameters():
    spec = WorldSpec(
        "custom",
        "Custom",
        "a custom world",
        "plain",
        ("it begins",),
        {"sketch": {"scene": "a desert at night", "params": {"pan": 2.0, "birds": 0.0}}},
    )
    w = SketchWorld(embedder=None, background=False)
    w.start(spec, SIZE, FPS)
    assert w.params["b_desert"] > 0.9 and w.params["pan"] == 2.0 and w.params["birds"] == 0.0
    assert w.render().image.std() > 5
    bad = WorldSpec("bad", "Bad", "d", "s", ("b",), {"sketch": {"params": {"unicorns": 1}}})
    with pytest.raises(WorldError, match="unicorns"):
        w.start(bad, SIZE, FPS)
    with pytest.raises(RuntimeError):
        SketchWorld(embedder=None).render()


@pytest.mark.parametrize("spec", list_presets(), ids=lambda s: s.name)
def test_every_preset_draws_a_picture(spec):
    w = SketchWorld(embedder=None, background=False)
    w.start(spec, SIZE, FPS, seed=3)
    img = run(w, 0.5)[-1].image
    assert img.std() > 8, f"{spec.name} looks flat"
    assert 5 < img.mean() < 250


def test_same_seed_and_steers_give_the_same_frames():
    def play(seed):
        w = make(seed=seed)
        out = run(w, 0.5)
        steer(w, "a stormy night with heavy rain and lightning")
        out += run(w, 1.5)
        return [f.image for f in out]

    a, b, c = play(7), play(7), play(8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert mad(a[10], c[10]) > 3.0  # another seed, another world


# -- left alone ---------------------------------------------------------------------


def test_left_alone_it_evolves_but_smoothly():
    w = make()
    frames = run(w, 10.0)
    first, last = frames[0].image, frames[-1].image
    steps = [mad(frames[i].image, frames[i + 1].image) for i in range(len(frames) - 1)]
    assert mad(first, last) > 6.0, "nothing moved in ten seconds"
    assert max(steps) < 4.0, "consecutive frames jump"
    assert np.mean(steps) < mad(first, last) / 5


def test_days_on_air_stay_as_smooth_as_the_first_minute():
    """World time and camera travel grow for as long as the show runs."""

    def steps(w):
        frames = run(w, 1.0)
        return [mad(a.image, b.image) for a, b in zip(frames, frames[1:])]

    fresh = make()
    steer(fresh, "a windy snowy night with rain, fireflies and embers")
    run(fresh, 2.0)
    aged = make()
    steer(aged, "a windy snowy night with rain, fireflies and embers")
    run(aged, 2.0)
    aged._t += 5 * 86400.0  # five days later, same scene
    aged._t0 += 5 * 86400.0
    aged._renderer.motion.travel += 24.0 * 5 * 86400
    aged._renderer.motion.gust += 0.3 * 5 * 86400
    # Rain and snow make every frame differ; precision loss shows as extra churn.
    assert np.mean(steps(aged)) < 1.25 * np.mean(steps(fresh)) + 0.5


# -- steering by meaning ------------------------------------------------------------


def test_a_stormy_night_is_darker_than_a_sunny_day(embedder):
    day, night = make(embedder=embedder), make(embedder=embedder)
    steer(day, "a sunny day")
    steer(night, "a dark stormy night with heavy rain")
    d, n = run(day, 3.0)[-1].image, run(night, 3.0)[-1].image
    assert luma(n) < 0.5 * luma(d)
    a_day, a_night = day.ambience(), night.ambience()
    assert a_night.brightness < a_day.brightness
    assert a_night.rain > 0.5 and a_night.tension > a_day.tension


def test_a_snowy_winter_is_whiter_and_bluer(embedder):
    base, snow = make(embedder=embedder), make(embedder=embedder)
    steer(base, "a sunny day")
    steer(snow, "a snowy winter")
    b, s = run(base, 3.0)[-1].image, run(snow, 3.0)[-1].image
    assert whiteness(s) > whiteness(b) + 60
    assert blueness(s) > blueness(b) + 15


@pytest.mark.parametrize(
    "keywords, paraphrase, check",
    [
        ("a dark night", "the sky turns black and only the moon is out", "dark"),
        ("a snowy winter", "it's freezing and everything is white", "white"),
    ],
)
def test_a_paraphrase_without_keywords_makes_the_same_change(embedder, keywords, paraphrase, check):
    # The paraphrase names nothing in the concept table: keywords alone find nothing.
    act, _, _ = SceneMapper(None).activations(paraphrase)
    assert not act.any()
    base = run(make(embedder=embedder), 3.0)[-1].image
    results = {}
    for text in (keywords, paraphrase):
        w = make(embedder=embedder)
        steer(w, text)
        results[text] = run(w, 3.0)[-1].image
    for text, img in results.items():
        if check == "dark":
            assert luma(img) < 0.6 * luma(base), text
        else:
            assert whiteness(img) > whiteness(base) + 40, text


def test_keyword_fallback_still_steers():
    w = make(embedder=None)
    target = w.target_for("heavy rain and thunder")
    assert target["rain"] > 0.6 and target["storm"] > 0.5
    assert w.target_for("no rain")["rain"] == 0.0
    assert w.target_for("lots of cats") == w.target_for("")  # nothing known: nothing asked


def test_unsaid_things_partly_stay():
    w = make(embedder=None)
    steer(w, "a city at night")
    run(w, 2.0)
    after = w.target_for("a flock of birds")
    assert after["b_city"] > 0.4  # birds over the same city, not back to the meadow
    assert after["birds"] > 0.9


def test_every_scene_parameter_reaches_the_renderer():
    assert param_names() == set(NAMES)
    scene = Scene.from_params(dict(zip(NAMES, DEFAULTS.tolist())))
    assert scene.weather.clouds == DEFAULTS[IDX["clouds"]] and scene.biomes.grass == DEFAULTS[IDX["b_grass"]]
    with pytest.raises(KeyError):
        Scene.from_params({})


def test_concept_table_is_well_formed():
    names = [c.name for c in CONCEPTS]
    assert len(names) == len(set(names)) and 40 <= len(names) <= 120
    assert all(c.phrases and c.targets for c in CONCEPTS)


# -- transitions -----------------------------------------------------------------------


def test_a_transition_morphs_without_a_cut(embedder):
    w = make(embedder=embedder)
    start = run(w, 1.0)[-1].image
    steer(w, "a snowy winter evening in the mountains", transition_s=1.5)
    during = run(w, 2.0)
    end = run(w, 1.0)[-1].image
    total = mad(start, end)
    steps = [mad(a.image, b.image) for a, b in zip(during, during[1:])]
    # A 1.5 s smootherstep over 45 frames moves the parameters at most 1.875/45
    # = 4.2 % of the way per frame. The picture answers some parameters more
    # steeply than others (a sunset changes faster than noon), so allow up to
    # five times that, plus a couple of grey levels of ordinary motion (camera,
    # snowflakes). A cut moves 100 % in one frame, a two-frame blend 50 %.
    assert max(steps) < 0.2 * total + 2.0
    # ...and it did get there: the middle of the transition is in between.
    mid = during[22].image
    assert 0.15 * total < mad(start, mid) < 0.95 * total


def test_zero_transition_is_still_not_a_cut():
    w = make(embedder=None)
    a = run(w, 0.5)[-1].image
    steer(w, "a dark stormy night", transition_s=0.0)
    b = w.render().image
    c = run(w, 2.0)[-1].image
    assert mad(a, b) < 0.3 * mad(a, c)


# -- generations ---------------------------------------------------------------------


def test_generation_switches_on_the_next_frame_when_mapped_inline():
    w = make(embedder=None)
    run(w, 0.2)
    g = steer(w, "fireworks")
    assert w.render().generation == g


def test_background_mapping_tags_frames_within_a_few_frames(embedder):
    w = make(embedder=embedder, background=True)
    try:
        run(w, 0.2)
        before = w.render().generation
        g = steer(w, "a flock of birds over the sea")
        # how many frames the mapping takes depends on the machine's load: not held here
        assert w.wait_mapped(g, 60), "the mapper never finished"
        seen = [w.render().generation for _ in range(3)]
        assert seen == [g] * 3 and before < g, (before, seen)
    finally:
        w.close()
        w.close()  # safe twice


def test_the_newest_steer_wins(embedder):
    w = make(embedder=embedder, background=True)
    try:
        # Each render hands the pending steer to the mapper while it may still
        # be embedding the one before: the last one must be where it ends.
        steer(w, "a desert at noon")
        w.render()
        steer(w, "a snowy forest")
        w.render()
        last = steer(w, "deep space with a nebula")
        assert w.wait_mapped(last, 60), "the mapper never finished"
        assert w.render().generation == last
        run(w, 2.5)
        assert w.params["b_space"] > 0.5
    finally:
        w.close()


# -- speed -----------------------------------------------------------------------------


def test_render_speed_is_reported():
    """The figure comes from benchmarks/bench_sketch_render.py (and `python -m
    streambot.world.sketch`); here only that the measuring runs on real frames."""
    r = bench("cyberpunk", frames=60, embedder=None)
    assert r["frame_size"] == (640, 360) and r["last"].shape == (360, 640, 3)
    assert r["last"].std() > 10  # a drawn scene, not a blank frame
    logging.getLogger(__name__).info("sketch render at 640x360: %.1f ms/frame", r["mean_ms"])
