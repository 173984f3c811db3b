"""`streambot bench` runs what `streambot run` runs: the app's own show with
the console up and a page previewing it, prompts typed in the terminal."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import run_cli


def test_bench_measures_the_show_as_run_runs_it(cli_env):
    r = run_cli(
        ["bench", "--seconds", "8", "--json", "--no-compare-ffmpeg", "--size", "640x360", "--prompt-every", "1.5"],
        cli_env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["slots"] == 8 * 30 and out["frames"] + out["skipped_frames"] == out["slots"]
    assert out["x264_preset_configured"] == "veryfast" and out["x264_preset_end"] in ("veryfast", "superfast")
    assert out["preview_frames"] > 0, "a console page was previewing the stream"
    assert out["prompts"] >= 1, "prompts typed in the terminal went on air"
    assert out["drift_ms"] is not None and abs(out["drift_ms"]) < 100, out["drift_ms"]
    # the show's timeline went to a scratch folder, not the streamer's
    assert not list(Path(cli_env["XDG_DATA_HOME"]).rglob("*.sqlite3"))
