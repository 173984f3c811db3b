"""The OBS browser-source page: its files, and its logic run in node against the
same layouts and states the burned-in overlay draws (skipped without node)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from streambot.broadcast.overlay_layout import OVERLAY_DIR, layout_json
from streambot.broadcast.overlay_state import OverlayCandidate, OverlayState

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")


def run_js(expr: str, **values) -> object:
    """Evaluate `expr` with obs.js's functions (as `o`) and `values` in scope."""
    script = (
        f"const o = require({json.dumps(str(OVERLAY_DIR / 'obs.js'))});\n"
        + "".join(f"const {k} = {json.dumps(v, ensure_ascii=False)};\n" for k, v in values.items())
        + f"process.stdout.write(JSON.stringify({expr}));\n"
    )
    out = subprocess.run([NODE, "-e", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def state(**kw) -> dict:
    base = OverlayState(
        title="Neon Megacity",
        on_air="a dragon over the towers",
        on_air_by="viewer42",
        source="audience",
        mode="rounds",
        round=7,
        seconds_left=65,
        round_s=90.0,
        locked=False,
        off_air=False,
        candidates=tuple(OverlayCandidate(i + 1, f"idea {i + 1}", 5 - i, (5 - i) / 15) for i in range(5)),
        how_to_play="!p your idea  ·  !vote N  ·  discord.gg/abc",
    ).to_json()
    base.update(kw)
    return base


def test_the_page_links_files_that_exist():
    html = (OVERLAY_DIR / "obs.html").read_text()
    for ref in re.findall(r'(?:href|src)="([^"]+)"', html):
        if ref.startswith("/overlay/"):
            continue
        assert (OVERLAY_DIR / ref).is_file(), ref
    assert '<base href="/overlay/">' in html
    assert "background: transparent" in (OVERLAY_DIR / "obs.css").read_text()
    for name in ("default", "neon", "compact"):
        fonts = layout_json(name)["fonts"]
        for f in [fonts["primary"], fonts["light"], fonts["emoji"], *fonts["fallbacks"]]:
            assert (OVERLAY_DIR / "fonts" / f).is_file(), f


def test_chat_text_only_goes_in_as_text():
    js = (OVERLAY_DIR / "obs.js").read_text()
    # the one innerHTML is a fixed template; everything from the socket uses textContent
    assert js.count("innerHTML") == 1 and "textContent" in js
    assert "eval(" not in js and "insertAdjacentHTML" not in js


@needs_node
def test_the_socket_and_layout_urls_keep_the_viewer_token():
    loc = {"protocol": "https:", "host": "console.example:8443", "search": "?token=abc"}
    assert run_js("o.wsUrl(loc)", loc=loc) == "wss://console.example:8443/ws/overlay?token=abc"
    assert run_js("o.layoutUrl(loc)", loc=loc) == "/overlay/layout.json?token=abc"
    plain = {"protocol": "http:", "host": "localhost:8080", "search": ""}
    assert run_js("o.wsUrl(loc)", loc=plain) == "ws://localhost:8080/ws/overlay"


@needs_node
def test_the_page_shows_what_the_burned_in_overlay_shows():
    layout = layout_json("default")
    vm = run_js("o.viewModel(s, l)", s=state(), l=layout)
    assert vm["visible"] and vm["now"]["prompt"] == "a dragon over the towers" and vm["now"]["by"] == "by viewer42"
    assert vm["vote"]["clock"] == "1:05" and vm["vote"]["round"] == "ROUND 7"
    assert [c["number"] for c in vm["vote"]["candidates"]] == ["1", "2", "3", "4"]  # max_candidates
    assert vm["vote"]["candidates"][0]["lead"] and vm["vote"]["candidates"][0]["percent"] == "33%"
    assert [p["kind"] for p in vm["help"]["pieces"]][:4] == ["cmd", "word", "word", "sep"]
    # off air: nothing; anarchy without candidates: no vote panel
    assert run_js("o.viewModel(s, l)", s=state(off_air=True), l=layout) == {"visible": False}
    anarchy = run_js("o.viewModel(s, l)", s=state(mode="anarchy", candidates=[]), l=layout)
    assert anarchy["vote"] is None and anarchy["now"]
    # the story's own prompt
    story = run_js("o.viewModel(s, l)", s=state(source="story", on_air_by=None), l=layout)
    assert story["now"]["by"] == "the world's own story"


@needs_node
def test_the_page_cleans_hostile_text():
    nasty = "a\u202eevil\u202c\x00b\u200bc" + "Z" + "\u0301" * 500 + " " * 50 + "x" * 10_000
    out = run_js("o.cleanText(t)", t=nasty)
    assert "\u202e" not in out and "\x00" not in out and "\u200b" not in out
    assert "\u0301\u0301\u0301" not in out and "  " not in out
    assert len(out) <= 401 and out.endswith("…")
    assert run_js("o.cleanText(t)", t="👨\u200d👩\u200d👧 ok") == "👨\u200d👩\u200d👧 ok"
    assert run_js("o.cleanText(null)") == ""


@needs_node
@pytest.mark.parametrize("name", ["default", "neon", "compact"])
def test_the_page_uses_the_layouts_geometry_and_colours(name):
    layout = layout_json(name)
    css = run_js("o.cssVars(l)", l=layout)
    assert css["--accent"] == layout["style"]["accent"]
    assert css["--vote-w"] == f"{round(layout['vote']['width'] * 100, 4):g}vw"
    assert css["--now-lines"] == str(layout["now"]["max_lines"])
    place = run_js("o.placement(p)", p=layout["vote"])
    assert place["left"] == f"{round(layout['vote']['x'] * 100, 4):g}vw"
    right = layout["vote"]["anchor"].endswith("right")
    assert place["transform"].startswith("translate(-100%" if right else "translate(0")
    faces = run_js("o.fontFaces(l)", l=layout)
    assert "/overlay/fonts/NotoColorEmoji.ttf" in faces and layout["fonts"]["primary"] in faces


@needs_node
def test_the_page_never_draws_a_box_for_what_no_shipped_font_has():
    layout = layout_json("default")
    out = run_js("o.cleanText(t, l.coverage)", t="\ue000\U00013000 𝕳𝖊𝖑𝖑𝖔 東京 مدينة 🐉 ok", l=layout)
    assert out == "?? Hello 東京 مدينة 🐉 ok"
    vm = run_js("o.viewModel(s, l)", s=state(on_air="\U0010fffd dragon"), l=layout)
    assert vm["now"]["prompt"] == "? dragon"
