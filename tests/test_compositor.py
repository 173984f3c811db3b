"""The burned-in overlay: what it draws, where, into which pixels, at what
cost; layouts as files; the slate. Real fonts, real yuv420p frames."""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from streambot.broadcast.compositor import Compositor, YuvPatch, frame_planes
from streambot.broadcast.overlay_layout import LAYOUT_DIR, layout_json, layout_name, load_layout
from streambot.broadcast.overlay_render import OverlayRenderer, Patch, composite_rgb
from streambot.broadcast.overlay_state import OverlayCandidate, OverlayState
from streambot.config import ConfigError
from streambot.worldspec import WorldSpec

SIZE = (1280, 720)
ROOT = Path(__file__).resolve().parent.parent


def state(**kw) -> OverlayState:
    base = dict(
        title="Endless Valley",
        on_air="a dragon circles the old lighthouse",
        on_air_by="viewer42",
        source="audience",
        mode="rounds",
        round=3,
        seconds_left=7,
        round_s=10.0,
        locked=False,
        off_air=False,
        candidates=(OverlayCandidate(1, "make it snow", 3, 0.6), OverlayCandidate(2, "a giant robot", 2, 0.4)),
        how_to_play="!p your idea  ·  !vote N",
    )
    base.update(kw)
    return OverlayState(**base)


def four(texts=("make it snow", "a giant robot walks by", "東京の夜", "مدينة عائمة")):
    return tuple(OverlayCandidate(i + 1, t, 4 - i, (4 - i) / 10) for i, t in enumerate(texts))


def video_frame(seed=0, size=SIZE) -> av.VideoFrame:
    img = np.random.default_rng(seed).integers(0, 256, (size[1] // 2, size[0] // 2, 3), dtype=np.uint8)
    return av.VideoFrame.from_ndarray(img, format="rgb24").reformat(
        width=size[0], height=size[1], format="yuv420p", interpolation="BILINEAR"
    )


def yuv(video) -> list[np.ndarray]:
    return [p.copy() for p in frame_planes(video)]


@pytest.fixture(scope="module")
def renderer():
    return OverlayRenderer(load_layout("default"), SIZE)


def panels(r: OverlayRenderer, s: OverlayState) -> dict[str, Patch]:
    return {p.name: p for p in r.render(s)}


def straight(p: Patch) -> np.ndarray:
    """A patch over mid grey, as RGB (what a viewer would see of it)."""
    h, w = p.rgba.shape[:2]
    return composite_rgb(np.full((h, w, 3), 128, np.uint8), [Patch(0, 0, p.rgba)])


# -- what is drawn ---------------------------------------------------------------------


def test_the_overlay_shows_prompt_candidates_countdown_and_how_to_play(renderer):
    got = panels(renderer, state(candidates=four()))
    assert set(got) == {"now", "vote", "help"}
    for p in got.values():
        x0, y0, x1, y1 = p.box
        assert 0 <= x0 < x1 <= SIZE[0] and 0 <= y0 < y1 <= SIZE[1]
        rgb = straight(p).astype(int)
        luma = rgb.mean(axis=2)
        # text: bright strokes on a dark backing, a real contrast
        assert (luma > 220).sum() > 200, p.name
        assert (luma < 70).sum() > rgb.shape[0] * rgb.shape[1] * 0.3, p.name
    # the panels sit inside the 5% title-safe margins of the layout
    assert got["now"].box[0] >= 0.05 * SIZE[0] - 1 and got["now"].box[1] >= 0.05 * SIZE[1] - 1
    assert got["vote"].box[2] <= 0.95 * SIZE[0] + 1
    assert got["help"].box[3] <= 0.95 * SIZE[1] + 1


def test_each_part_of_the_state_changes_its_own_pixels(renderer):
    a = panels(renderer, state())
    # the prompt on air
    b = panels(renderer, state(on_air="a whale swims through the clouds"))
    assert not np.array_equal(a["now"].rgba, b["now"].rgba)
    assert b["vote"] is a["vote"] and b["help"] is a["help"]  # untouched panels are not redrawn
    # who gave it
    c = panels(renderer, state(on_air_by="someone_else"))
    assert not np.array_equal(a["now"].rgba, c["now"].rgba)
    # the countdown changes the header and time bar only, not the candidate rows
    d = panels(renderer, state(seconds_left=3))
    diff = np.any(a["vote"].rgba != d["vote"].rgba, axis=2)
    rows = np.flatnonzero(diff.any(axis=1))
    assert rows.size and rows.max() < a["vote"].rgba.shape[0] * 0.45
    # the number of candidates: one row each
    e = panels(renderer, state(candidates=four()))
    assert e["vote"].rgba.shape[0] > a["vote"].rgba.shape[0]
    # the votes move the bars
    f = panels(
        renderer,
        state(candidates=(OverlayCandidate(1, "make it snow", 1, 0.1), OverlayCandidate(2, "a giant robot", 9, 0.9))),
    )
    assert not np.array_equal(a["vote"].rgba, f["vote"].rgba)
    # how to play, with the Discord invite
    g = panels(renderer, state(how_to_play="!p your idea  ·  !vote N  ·  discord.gg/abc"))
    assert g["help"].rgba.shape[1] > a["help"].rgba.shape[1]


def test_a_layout_file_moves_things():
    default = panels(OverlayRenderer(load_layout("default"), SIZE), state())
    neon = panels(OverlayRenderer(load_layout("neon"), SIZE), state())
    assert default["vote"].box[0] > SIZE[0] / 2 and default["vote"].box[1] < SIZE[1] / 2  # top right
    assert neon["vote"].box[2] < SIZE[0] / 2 and neon["vote"].box[3] > SIZE[1] / 2  # bottom left
    assert neon["help"].box[2] > SIZE[0] * 0.9


def test_panels_turned_off_in_the_layout_are_not_drawn(tmp_path):
    f = tmp_path / "novote.toml"
    f.write_text('name = "novote"\n[vote]\nshow = false\n[help]\nshow = false\n')
    got = panels(OverlayRenderer(load_layout(str(f)), SIZE), state())
    assert set(got) == {"now"}


def test_anarchy_without_candidates_hides_the_vote(renderer):
    got = panels(renderer, state(mode="anarchy", candidates=(), how_to_play="!p your idea goes straight on air"))
    assert "vote" not in got and "help" in got


def test_hostile_text_everywhere_renders_inside_the_frame():
    nasty = ("Z̷̡̛͎̖̗̘̙̜̝a\u202e\x00🔥" * 300 + "東京مدينة" * 300, "\u202e" + "💀" * 1000, "\ue000" * 500)
    s = state(
        title=nasty[0],
        on_air=nasty[0],
        on_air_by=nasty[1],
        candidates=four((nasty[0], nasty[1], nasty[2], "x" * 10_000)),
        how_to_play=nasty[0],
    )
    for name in sorted(p.stem for p in LAYOUT_DIR.glob("*.toml")):
        r = OverlayRenderer(load_layout(name), SIZE)
        got = panels(r, s)
        assert {"now", "vote", "help"} <= set(got)
        for p in got.values():
            x0, y0, x1, y1 = p.box
            m = 2 * round(r.layout.style.glow * SIZE[1])  # a glow may spill past the frame's edge
            assert -m <= x0 and -m <= y0 and x1 <= SIZE[0] + m and y1 <= SIZE[1] + m, (name, p.name, p.box)


# -- into the frame ------------------------------------------------------------------------


def test_the_blend_changes_the_frame_only_inside_the_overlay_boxes():
    comp = Compositor(SIZE, load_layout("default"))
    comp.set_state(state(candidates=four()))
    assert comp.flush(30)
    video = video_frame()
    before = yuv(video)
    comp.overlay(video)
    after = yuv(video)
    inside = np.zeros(SIZE[::-1], bool)
    for p in comp._layer:
        x0, y0, x1, y1 = p.box
        inside[y0:y1, x0:x1] = True
    changed = before[0] != after[0]
    assert changed.sum() > 10_000
    assert not (changed & ~inside).any()
    changed_uv = (before[1] != after[1]) | (before[2] != after[2])
    assert not (changed_uv & ~inside[::2, ::2]).any() and changed_uv.any()
    comp.close()


def test_the_blend_matches_the_exact_premultiplied_over():
    r = OverlayRenderer(load_layout("neon"), SIZE)
    patches = r.render(state(candidates=four()))
    video = video_frame(3)
    planes = yuv(video)
    ref = [p.astype(np.float64) for p in planes]
    for patch in patches:
        yp = YuvPatch.from_patch(patch, SIZE)
        x0, y0, x1, y1 = yp.box
        for i, (pre, inv, s) in enumerate(
            ((yp.pre_y, yp.inv_y, 1), (yp.pre_u, yp.inv_uv, 2), (yp.pre_v, yp.inv_uv, 2))
        ):
            view = ref[i][y0 // s : y1 // s, x0 // s : x1 // s]
            view[...] = view * inv / 256 + pre / 256
        yp.blend(frame_planes(video))
    for got, want in zip(frame_planes(video), ref):
        assert np.abs(got.astype(float) - want).max() <= 1.0


def test_overlay_colours_match_the_encoders_own_rgb_to_yuv():
    colour = (230, 60, 40)
    patch = Patch(
        100, 100, np.dstack([np.full((64, 64), c, np.uint8) for c in colour] + [np.full((64, 64), 255, np.uint8)])
    )
    video = video_frame()
    YuvPatch.from_patch(patch, SIZE).blend(frame_planes(video))
    ref = av.VideoFrame.from_ndarray(np.full((64, 64, 3), colour, np.uint8), format="rgb24").reformat(format="yuv420p")
    got = frame_planes(video)
    want = frame_planes(ref)
    assert abs(int(got[0][130, 130]) - int(want[0][30, 30])) <= 2
    assert abs(int(got[1][65, 65]) - int(want[1][15, 15])) <= 2
    assert abs(int(got[2][65, 65]) - int(want[2][15, 15])) <= 2


def test_the_frame_planes_are_the_frames_own_memory():
    video = video_frame()
    y, u, v = frame_planes(video)
    y[:10, :10] = 255
    u[:5, :5] = 0
    v[:5, :5] = 0
    rgb = video.to_ndarray(format="rgb24")
    assert rgb[:8, :8, 0].mean() < 80 and rgb[:8, :8, 1].mean() > 200  # bright and green: what we wrote


def test_off_air_and_burn_in_off_draw_nothing():
    video = video_frame()
    before = yuv(video)
    comp = Compositor(SIZE, load_layout("default"))
    comp.set_state(state())
    assert comp.flush(30)
    comp.set_off_air(True)
    comp.overlay(video)
    assert all(np.array_equal(a, b) for a, b in zip(before, yuv(video)))
    comp.set_off_air(False)
    comp.set_state(state(off_air=True))
    assert comp.flush(30)
    comp.overlay(video)
    assert all(np.array_equal(a, b) for a, b in zip(before, yuv(video)))
    comp.close()
    off = Compositor(SIZE, burn_in=False)
    off.set_state(state())
    off.overlay(video)
    assert (
        off.layout.name == "default"
        and off.redraws == 0
        and all(np.array_equal(a, b) for a, b in zip(before, yuv(video)))
    )


class HeldCompositor(Compositor):
    """The real compositor whose drawing waits for the test's go-ahead: a redraw
    that takes as long as the test wants (PIL on a busy machine)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.go = threading.Event()
        self.drawing = threading.Event()
        self.drawn_states = []

    def draw(self, state, layout):
        self.drawing.set()
        assert self.go.wait(60), "never released"
        self.drawn_states.append(state)
        return super().draw(state, layout)


def test_set_state_never_waits_for_drawing_and_redraws_only_on_change():
    comp = HeldCompositor(SIZE, load_layout("default"), min_redraw_s=0.0)
    comp.go.set()
    comp.set_state(state())
    assert comp.flush(30)
    assert comp.redraws == 1
    comp.set_state(state())  # equal state: nothing to do
    assert comp.flush(5) and comp.redraws == 1
    video = video_frame()
    comp.overlay(video)
    with_first = yuv(video)
    # a redraw that does not finish: the callers and the clock thread go on without it
    comp.go.clear()
    comp.drawing.clear()
    comp.set_state(state(seconds_left=0, on_air="prompt number 0"))
    assert comp.drawing.wait(30), "the redraw never started"
    burst = threading.Thread(
        target=lambda: [comp.set_state(state(seconds_left=k, on_air=f"prompt number {k}")) for k in range(1, 10)]
    )
    burst.start()
    burst.join(30)
    try:
        assert not burst.is_alive(), "set_state() waited for the drawing"
        video = video_frame()
        comp.overlay(video)  # blended from the last finished layer while the new one is drawn
        assert all(np.array_equal(a, b) for a, b in zip(with_first, yuv(video)))
    finally:
        comp.go.set()
    assert comp.flush(30)
    # the burst is coalesced: the redraw that was under way, then one for the newest state
    assert comp.redraws == 3 and comp.drawn_states[-1].on_air == "prompt number 9"
    video = video_frame()
    comp.overlay(video)
    assert not all(np.array_equal(a, b) for a, b in zip(with_first, yuv(video)))
    comp.close()


def test_set_layout_redraws_with_the_new_layout():
    comp = Compositor(SIZE, load_layout("default"), min_redraw_s=0.0)
    comp.set_state(state())
    assert comp.flush(30)
    was = {p.name: p.box for p in comp._layer}
    comp.set_layout(load_layout("neon"))
    assert comp.flush(30)
    now = {p.name: p.box for p in comp._layer}
    assert now["vote"] != was["vote"]
    comp.close()


def test_the_slate_still_replaces_the_picture():
    from streambot.world.base import Frame

    comp = Compositor(SIZE)
    img = np.zeros((360, 640, 3), np.uint8)
    frame = Frame(image=img, index=0, generation=0)
    assert comp.picture(frame) is img
    comp.set_off_air(True)
    shown = comp.picture(frame)
    assert shown.shape == (720, 1280, 3)
    # the slate's words, light on its dark ground, across the middle of the frame
    middle = shown[300:420, 320:960].max(axis=2)
    assert (middle > 200).sum() > 2000 and np.median(shown) < 60
    comp.set_off_air(False)
    assert comp.picture(frame) is img


# -- layouts as files -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.stem for p in LAYOUT_DIR.glob("*.toml")))
def test_shipped_layouts_load_and_serialise(name):
    layout = load_layout(name)
    assert layout.name == name
    data = layout_json(name)
    assert json.loads(json.dumps(data))["vote"]["max_candidates"] == layout.vote.max_candidates
    assert data["fonts"]["primary"] == layout.style.font and data["fonts"]["emoji"] == "NotoColorEmoji.ttf"
    assert {"default", "neon", "compact"} <= {p.stem for p in LAYOUT_DIR.glob("*.toml")}


@pytest.mark.parametrize(
    "body, field, words",
    [
        ('[style]\naccent = "yellow"\n', "style.accent", "colour"),
        ("[vote]\nmax_candidates = 0\n", "vote.max_candidates", "greater than or equal"),
        ("[now]\nx = 1.5\n", "now.x", "less than or equal"),
        ("[help]\nsparkles = true\n", "help.sparkles", "not a known layout setting"),
        ('[style]\nfont = "../../etc/passwd"\n', "style.font", "no font file"),
        ('[vote]\nanchor = "upper-left"\n', "vote.anchor", "top-left"),
    ],
)
def test_a_bad_layout_file_is_one_sentence_naming_file_and_field(tmp_path, body, field, words):
    f = tmp_path / "mine.toml"
    f.write_text(body)
    with pytest.raises(ConfigError) as e:
        load_layout(str(f))
    msg = str(e.value)
    assert str(f) in msg and f"'{field}'" in msg and words in msg and msg.count(". ") == 0 and msg.endswith(".")


def test_unknown_layout_names_list_the_choices():
    with pytest.raises(ConfigError, match="default.*neon|neon.*default"):
        load_layout("nope")
    with pytest.raises(ConfigError):
        load_layout("../secrets")


def test_the_layout_comes_from_settings_else_the_preset_else_default():
    spec = WorldSpec("cyberpunk", "Neon", "d", "s", ("b",), {"overlay": "neon"})
    plain = WorldSpec("meadow", "Meadow", "d", "s", ("b",))
    assert layout_name("", spec) == "neon"
    assert layout_name("compact", spec) == "compact"
    assert layout_name("", plain) == "default"
    assert layout_name("", None) == "default"


# -- cost --------------------------------------------------------------------------------------


def test_the_compositor_benchmark_measures_a_full_overlay():
    path = ROOT / "benchmarks" / "bench_compositor.py"
    spec = importlib.util.spec_from_file_location("_bench_compositor", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    r = bench.measure(SIZE, "default", n_frames=30, redraws=3)
    # its figures (blend < 2 ms a frame) are read from the script's output, not held here
    assert r["overlay_fraction"] > 0.1  # a full overlay really was blended
    assert r["blend_ms"]["n"] == 30 and r["redraw_ms"]["n"] == 3 and r["set_state_ms"]["n"] == 3


# -- through the real pipeline ---------------------------------------------------------------


def _stream_to_file(path, compositor, seconds=2.0, size=(640, 360)):
    from streambot.broadcast.audio_feed import Silence
    from streambot.broadcast.pipeline import open_broadcast
    from streambot.config import StreamSettings, resolve_world
    from streambot.world.sketch import SketchWorld

    world = SketchWorld()
    world.start(resolve_world("meadow"), size, 15, seed=1)
    stream = StreamSettings(size=f"{size[0]}x{size[1]}", fps=15, bitrate_kbps=3000)
    b = open_broadcast(world, stream, [str(path)], compositor, Silence(), max_frames=round(seconds * 15))
    b.start()
    b.wait(60)
    health = b.health()
    b.stop()
    world.close()
    return health


def test_the_overlay_is_burned_into_the_encoded_stream(tmp_path):
    from .media import decode_frames

    size = (640, 360)
    on = Compositor(size, load_layout("default"))
    on.set_state(state(candidates=four()))
    assert on.flush(30)
    boxes = {p.name: p.box for p in on._layer}
    _stream_to_file(tmp_path / "on.mkv", on)
    off = Compositor(size, burn_in=False)
    off.set_state(state(candidates=four()))
    _stream_to_file(tmp_path / "off.mkv", off)
    a = decode_frames(tmp_path / "on.mkv", size=None)[-1][1].astype(int)
    b = decode_frames(tmp_path / "off.mkv", size=None)[-1][1].astype(int)
    x0, y0, x1, y1 = boxes["vote"]
    assert np.abs(a[y0:y1, x0:x1] - b[y0:y1, x0:x1]).mean() > 25  # the panel is there, in the pixels viewers get
    assert np.abs(a[200:260, 40:200] - b[200:260, 40:200]).mean() < 8  # and nowhere else
    on.close()
