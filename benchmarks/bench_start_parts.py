"""Seconds of the two slow parts of `streambot run`'s start: the sketch world's
`start` and the moderation layers' `Moderation(...)`, each run in a fresh process.

Both are built as `streambot run` builds them (the default world at 1280x720,
render scale 0.5; moderation with the sentence model left to its own process),
after their modules are imported, so the figure is the work itself. `--cache
cold` gives every run an empty cache folder; `--cache warm` fills one first
(one run, not counted) and reads it in every run.

    .venv/bin/python benchmarks/bench_start_parts.py --runs 5 --cache cold
    .venv/bin/python benchmarks/bench_start_parts.py --runs 5 --cache warm
    .venv/bin/python benchmarks/bench_start_parts.py --runs 5 --root OLD_CHECKOUT   # before
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROGRAM = """
import json, time
from streambot.audience.moderation import Moderation
from streambot.config import ModerationSettings, resolve_world
from streambot.world.sketch import SketchWorld

spec = resolve_world("meadow")
world = SketchWorld(0.5, embedder=None)
t0 = time.perf_counter()
world.start(spec, (1280, 720), 30, seed=0)
t1 = time.perf_counter()
Moderation(ModerationSettings(), wait_for_model=False)
t2 = time.perf_counter()
world.close()
print(json.dumps({"sketch_start_s": t1 - t0, "moderation_s": t2 - t1}))
"""


def one_run(root: Path, cache_home: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="streambot-parts-") as d:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMBOT_", "TWITCH_"))}
        env.update(XDG_STATE_HOME=f"{d}/state", XDG_CONFIG_HOME=f"{d}/config", XDG_DATA_HOME=f"{d}/data")
        env["XDG_CACHE_HOME"] = cache_home or f"{d}/cache"
        out = subprocess.run(
            [sys.executable, "-c", PROGRAM], cwd=root, env=env, capture_output=True, text=True, timeout=300
        )
        if out.returncode != 0:
            raise SystemExit(f"the run failed:\n{out.stderr[-2000:]}")
        result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
        return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cache", choices=("cold", "warm"), default="warm")
    ap.add_argument("--root", type=Path, default=ROOT, help="the checkout to time (another one: before/after)")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="streambot-parts-cache-") as shared:
        if a.cache == "warm":
            one_run(a.root, shared)  # fills the cache; not counted
        runs = []
        for k in range(a.runs):
            r = one_run(a.root, shared if a.cache == "warm" else "")
            runs.append(r)
            print(
                f"run {k + 1}/{a.runs}: sketch start {r['sketch_start_s']:.2f} s, moderation {r['moderation_s']:.2f} s",
                file=sys.stderr,
            )
    out = {
        "cache": a.cache,
        "runs": a.runs,
        **{
            f"{name}_median": round(statistics.median(r[name] for r in runs), 3)
            for name in ("sketch_start_s", "moderation_s")
        },
        **{f"{name}_all": [round(r[name], 3) for r in runs] for name in ("sketch_start_s", "moderation_s")},
    }
    print(json.dumps(out) if a.json else "\n".join(f"{k}: {v}" for k, v in out.items()))


if __name__ == "__main__":
    main()
