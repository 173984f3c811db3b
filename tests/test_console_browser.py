"""End to end in a real browser: `streambot run` (the sketch world, streaming to
a real RTMP server with a stream key) with its console on a free port, driven
by headless Chromium through playwright-core (tests/browser/console_e2e.mjs):
log in, preview frames arrive, a forced prompt goes on air in the page and in
the encoded stream, the kill switch puts the slate on air, screenshots at
phone and desktop sizes.

Needs node, `npm ci` at the repository root (playwright-core) and a Chromium
binary (Debian's `chromium`; set STREAMBOT_CHROMIUM to use another); skipped
otherwise. Playwright never downloads a browser here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streambot.broadcast.compositor import slate
from streambot.devserver import free_port

from .conftest import ROOT
from .media import decode_frames

NODE = shutil.which("node")
CHROMIUM = os.environ.get("STREAMBOT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = ROOT / "tests" / "browser" / "console_e2e.mjs"
WATCH_DRIVER = ROOT / "tests" / "browser" / "watch_e2e.mjs"
HAVE_PLAYWRIGHT = (ROOT / "node_modules" / "playwright-core" / "package.json").is_file()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(NODE is None, reason="node is not installed"),
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium)"),
    pytest.mark.skipif(not HAVE_PLAYWRIGHT, reason="playwright-core is not installed (npm ci)"),
]

STREAM_KEY = "live_987654321_E2eStreamKeyNeverShown"
PROMPT = "a dark stormy night"
FPS = 15
SIZE = (640, 360)


def mean_luma(rgb: np.ndarray) -> float:
    return float((rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).mean())


def test_the_console_in_a_real_browser(tmp_path, rtmp_server, show_process):
    out = tmp_path / "browser"
    out.mkdir()
    # the forced prompt stays on air for the whole test, however slow the machine (no story beat replaces it)
    config = tmp_path / "show.toml"
    config.write_text("[director]\nbeat_interval_s = 600\n")
    # 1. the URL, and the admin token shown once, on the terminal
    show = show_process(
        "run",
        "--config",
        str(config),
        "--output",
        rtmp_server.url("{stream_key}"),
        "--size",
        f"{SIZE[0]}x{SIZE[1]}",
        "--fps",
        str(FPS),
        "--bitrate",
        "800",
        "--chat",
        "none",
        "--duration",
        "150",
        env={"STREAMBOT_STREAM_KEY": STREAM_KEY},
    )
    url, token, term = show.url, show.token, show.terminal
    token_file = Path(show.env["XDG_CONFIG_HOME"]) / "streambot" / "console_token"
    assert token_file.read_text().strip() == token and (token_file.stat().st_mode & 0o777) == 0o600

    # 2. the browser does the rest
    cfg = {"url": url, "token": token, "out": str(out), "prompt": PROMPT, "chromium": CHROMIUM}
    driver = subprocess.run([NODE, str(DRIVER), json.dumps(cfg)], cwd=ROOT, capture_output=True, text=True, timeout=180)
    results = json.loads((out / "results.json").read_text())
    assert driver.returncode == 0 and not results.get("failed"), (results.get("failed"), driver.stderr[-3000:])
    assert show.stop() == 0, term.text[-3000:]

    # -- what the browser saw
    assert results["errors"] == [], results["errors"]  # no script errors, no CSP violations, no 404s
    assert results["preview"]["fps"] > 0  # 5 a second asked; how many arrive is printed below (a figure)
    assert results["preview"]["before"]["width"] == 480 and results["preview"]["before"]["height"] == 270
    assert results["onair_text"] == PROMPT and results["onair_by"] == "by console:e2e"
    # how soon the page shows it (`force_to_page_ms`) is printed below: benchmarks/README.md has the figure
    # the world darkened under the storm; the slate replaced it
    assert results["preview"]["after_force"]["mean"] < results["preview"]["before"]["mean"] - 25
    assert results["offair_banner"] and not results["lock_toggle_checked"]
    assert results["overlay_prompt"] == PROMPT  # the OBS page, live over /ws/overlay with the viewer link
    assert "e2e" in results["timeline"] and "kill switch on" in results["timeline"]
    assert "force" in results["timeline"]

    # -- the screenshots: the sizes asked for, a real page drawn, nothing wider than a phone
    desktop = Image.open(out / "desktop.png")
    phone = Image.open(out / "phone.png")
    assert desktop.size == (1440, 900) and phone.size == (780, 1688)  # 390x844 at 2x
    for shot in (desktop, phone):
        px = np.asarray(shot.convert("RGB"), np.float32)
        assert px.std() > 20  # not a blank page
        # the kill switch's red and the accent yellow are on screen
        assert ((px[..., 0] > 200) & (px[..., 1] < 90) & (px[..., 2] < 110)).sum() > 500
        assert ((px[..., 0] > 230) & (px[..., 1] > 170) & (px[..., 2] < 110)).sum() > 500
    p = results["phone"]
    assert p["scrollWidth"] <= p["clientWidth"]  # no sideways scrolling on a phone
    assert p["kill"]["top"] < 150 and p["kill"]["height"] >= 36  # the kill switch is at hand
    assert p["force"]["height"] >= 40 and p["preview"]["width"] >= 340

    # -- the encoded stream, as the RTMP server recorded it
    frames = decode_frames(rtmp_server.recordings[-1], size=(160, 90))
    t_force, t_kill, t_back = (results[k] / FPS for k in ("force_frame", "kill_frame", "back_frame"))
    before = [mean_luma(f) for t, f in frames if t_force - 3 <= t < t_force]
    storm = [mean_luma(f) for t, f in frames if t_force + 2.5 <= t < t_kill]
    assert before and storm
    assert np.mean(storm) < np.mean(before) - 25, (np.mean(before), np.mean(storm))
    expected = np.asarray(Image.fromarray(slate(SIZE)).resize((160, 90), Image.BILINEAR), np.float32)
    off = [f for t, f in frames if t_kill + 0.2 <= t < t_back - 0.1]
    assert len(off) >= 10
    for f in off:
        assert np.abs(f.astype(np.float32) - expected).mean() < 10  # the slate, nothing else
    print(
        f"stream luma before/after the storm: {np.mean(before):.1f}/{np.mean(storm):.1f}; slate difference "
        f"{max(np.abs(f.astype(np.float32) - expected).mean() for f in off):.1f}; page: {results['times']}, "
        f"preview {results['preview']['fps']:.1f} frames/s"
    )
    after = [f for t, f in frames if t_back + 0.5 <= t]
    assert after and np.abs(after[-1].astype(np.float32) - expected).mean() > 10  # and back on air

    # -- secrets: the stream key and the admin token nowhere but the one terminal line
    log_text = (Path(show.env["XDG_STATE_HOME"]) / "streambot" / "streambot.log").read_text()
    assert STREAM_KEY not in results["html"] and token not in results["html"]
    assert STREAM_KEY not in log_text and token not in log_text
    assert STREAM_KEY not in term.text
    assert sum(token in line for line in term.lines) == 1


def test_the_watch_page_plays_the_demo_in_a_real_browser(tmp_path, show_process):
    """`streambot demo` with its console: the watch page (hls.js, shipped with the
    console) plays nginx's HLS copy of the stream in Chromium, with its frame
    rate and its sound, and a prompt typed in the demo's terminal shows on the
    page (the state) and in the picture the page plays (the storm darkens it,
    measured on the <video>'s own pixels: no OCR of the burned-in text)."""
    out = tmp_path / "watch"
    out.mkdir()
    demo = show_process(
        "demo",
        "--port",
        str(free_port()),
        "--size",
        f"{SIZE[0]}x{SIZE[1]}",
        "--fps",
        str(FPS),
        "--bitrate",
        "800",
        "--duration",
        "200",
        stdin=subprocess.PIPE,
    )
    term = demo.terminal
    assert "in a browser: the Watch address below" in term.wait_for(r"(Watch:.*)", 90).group(1)
    url = term.wait_for(r"Watch:\s+(http://127\.0\.0\.1:\d+/watch\?token=\S+)", 90).group(1)
    cfg = {"url": url, "out": str(out), "prompt": PROMPT, "chromium": CHROMIUM}
    driver = subprocess.Popen(
        [NODE, str(WATCH_DRIVER), json.dumps(cfg)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    for line in driver.stdout:  # the page plays: type the prompt in the demo's terminal
        if line.strip() == "PLAYING":
            demo.proc.stdin.write(PROMPT + "\n")
            demo.proc.stdin.flush()
    driver.wait(300)
    results = json.loads((out / "results.json").read_text())
    assert driver.returncode == 0 and not results.get("failed"), (results.get("failed"), driver.stderr.read()[-3000:])
    assert demo.stop() == 0, term.text[-3000:]
    assert results["errors"] == [], results["errors"]
    p = results["playback"]
    print(f"watch page: {p}; luma {results['luma_before']:.1f} -> {results['luma_after']:.1f}; {results['times']}")
    # it plays, with its sound (how close to real time and to the stream's frame rate, on this
    # machine, is the figure printed above: benchmarks/README.md)
    assert not p["paused"] and p["fragments"] >= 1 and (p["width"], p["height"]) == SIZE
    assert p["advanced_s"] > 0 and p["fps"] > 0, p
    assert not p["muted"] and p["audio_bytes"] > 0 and p["audio_growth"] > 0, p
    # the prompt typed in the terminal: in the page, and in the picture (a dark stormy night is darker)
    assert results["onair"] == PROMPT
    assert results["luma_after"] < results["luma_before"] - 25, (results["luma_before"], results["luma_after"])
    assert results["still_advancing"]
    assert results["console_link"] == "/watch"


@pytest.mark.skipif(
    not (ROOT / "node_modules" / "hls.js" / "package.json").is_file(), reason="hls.js is not installed (npm ci)"
)
def test_the_shipped_player_is_the_one_package_json_names():
    """hls.js ships inside the console (no CDN): the copy is npm's, at the pinned version."""
    pinned = json.loads((ROOT / "package.json").read_text())["dependencies"]["hls.js"]
    shipped = ROOT / "streambot" / "console" / "static" / "hls.light.min.js"
    installed = ROOT / "node_modules" / "hls.js"
    assert json.loads((installed / "package.json").read_text())["version"] == pinned
    assert shipped.read_bytes() == (installed / "dist" / "hls.light.min.js").read_bytes()
    assert (
        (ROOT / "streambot" / "console" / "static" / "hls.js.LICENSE.txt")
        .read_text()
        .startswith((installed / "LICENSE").read_text()[:200])
    )
