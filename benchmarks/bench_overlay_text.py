"""How long the overlay takes to wrap hostile chat text, per input.

    python benchmarks/bench_overlay_text.py            # the figures the README quotes
    python benchmarks/bench_overlay_text.py --json     # the same, machine-readable

Every hostile input of tests/test_overlay_text.py (10,000 characters, zalgo,
emoji and ZWJ floods, bidi overrides, undrawable code points...) through
`wrap` with the real fonts into a 500 px box at 30 px, one and two lines, as
the overlay's drawing process does for a prompt. Reported per input: the best
of `--repeat` runs (the cost itself) and the worst (what a busy machine adds);
the budget is 2 s for any one input, so that one hostile prompt cannot hold
the overlay's redraw up for long.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streambot.broadcast.overlay_text import FontSet, wrap
from tests.test_overlay_text import HOSTILE

BUDGET_S = 2.0


def measure(repeat: int) -> dict:
    fonts = FontSet("NotoSans-Bold.ttf")
    wrap("warm-up", fonts, 30, 500, 2)  # font loading is start-up, not wrapping
    out = {}
    for name, text in HOSTILE.items():
        for max_lines in (1, 2):
            runs = []
            for _ in range(repeat):
                t = time.perf_counter()
                wrap(text, fonts, 30, 500, max_lines)
                runs.append(time.perf_counter() - t)
            out[f"{name}, {max_lines} line{'s' if max_lines > 1 else ''}"] = {
                "best_ms": round(min(runs) * 1000, 2),
                "worst_ms": round(max(runs) * 1000, 2),
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    figures = measure(args.repeat)
    slowest = max(figures, key=lambda k: figures[k]["worst_ms"])
    summary = {
        "inputs": len(figures),
        "slowest": slowest,
        **figures[slowest],
        "budget_ms": BUDGET_S * 1000,
        "within_budget": figures[slowest]["worst_ms"] < BUDGET_S * 1000,
    }
    if args.json:
        print(json.dumps({"summary": summary, "per_input": figures}, indent=1))
        return
    for name, f in sorted(figures.items(), key=lambda kv: -kv[1]["worst_ms"]):
        print(f"{name:34} best {f['best_ms']:8.2f} ms  worst {f['worst_ms']:8.2f} ms")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
