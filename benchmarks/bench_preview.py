"""What the console's live preview costs the clock thread, per frame.

    python benchmarks/bench_preview.py            # the figures the README quotes
    python benchmarks/bench_preview.py --json     # the same, machine-readable

`Preview.observe` is the broadcast's frame observer: the clock thread calls
it for every frame sent (30 a second at 1280x720), watched or not. Measured:
the mean time per call over `--calls` calls with nobody watching and with a
page watching (5 previews a second: a reference kept every sixth frame); the
budget is 5 us per call, nothing next to a 33 ms frame period. The JPEG
encode is not on the clock thread and not in these figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streambot.console.preview import Preview

BUDGET_US = 5.0


def measure(calls: int, repeat: int) -> dict:
    p = Preview((1280, 720), 30, fps=5)
    frame = object()  # observe keeps a reference and never reads the frame
    out = {}
    for watched in (False, True):
        p.active = watched
        runs = []
        for _ in range(repeat):
            t = time.perf_counter()
            for i in range(calls):
                p.observe(i, frame)
            runs.append((time.perf_counter() - t) / calls * 1e6)
        out["watched" if watched else "unwatched"] = {"best_us": round(min(runs), 3), "worst_us": round(max(runs), 3)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    figures = measure(args.calls, args.repeat) | {"budget_us": BUDGET_US}
    print(json.dumps(figures, indent=1 if args.json else None))


if __name__ == "__main__":
    main()
