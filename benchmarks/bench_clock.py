"""The frame clock against the wall clock, with worlds slower and faster than it.

    python benchmarks/bench_clock.py                  # 10 s per case at 30 fps
    python benchmarks/bench_clock.py --seconds 60 --fps 60

The real `Clock` and `WorldRunner` with a world that takes a fixed time per
frame (no drawing, so the figures are the clock's own):

1. a slow world (10 fps under the 30 fps clock): the clock repeats frames
   instead of waiting, so the last tick still goes out on schedule;
2. a fast world (no render time): every tick a new frame, one period apart;
3. `World.steer()`: the call the director makes, which must return at once.

Figures: `drift_ms` (when the last tick went out against its deadline from
the first), `late` (ticks more than half a period behind), `repeated`, the
gaps between ticks (ms), and the steer call's cost (us). Targets (what the
tests held as wall-clock bounds before): drift under 150 ms, at most 3 late
ticks in 60, a slow world's ticks two thirds repeats, a fast world's median
gap within half a period of it and no repeats, a steer under 10 ms.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streambot.broadcast.clock import Clock, WorldRunner  # noqa: E402
from streambot.world.base import Direction, Frame, World  # noqa: E402


class PacedWorld(World):
    """Takes `render_s` per frame and draws nothing."""

    name = "paced"

    def __init__(self, render_s: float) -> None:
        super().__init__()
        self.render_s = render_s
        self.index = 0
        self.size = (64, 36)

    def start(self, spec, size, fps, seed=0):
        self.size = size

    @property
    def frame_size(self):
        return self.size

    def render(self) -> Frame:
        time.sleep(self.render_s)  # the model's time per frame
        self.index += 1
        return Frame(np.full((self.size[1], self.size[0], 3), self.index % 256, np.uint8), self.index, self._generation)


def run_clock(render_s: float, fps: int, seconds: float) -> dict:
    world = PacedWorld(render_s)
    world.start(None, (64, 36), fps)
    times: list[float] = []
    runner = WorldRunner(world)
    clock = Clock(runner, fps, lambda i, f, rep: times.append(time.monotonic()), max_frames=round(seconds * fps))
    runner.start()
    clock.start()
    clock.wait(seconds + 60)
    runner.stop()
    gaps = np.diff(times) * 1000
    n = len(times)
    return {
        "world_fps": round(1 / render_s, 1) if render_s else None,
        "ticks": n,
        "drift_ms": round((times[-1] - times[0] - (n - 1) / fps) * 1000, 2),
        "late": clock.stats.late,
        "repeated": clock.stats.repeated,
        "repeated_share": round(clock.stats.repeated / n, 3),
        "gap_ms": {
            "p50": round(float(np.median(gaps)), 2),
            "p95": round(float(np.percentile(gaps, 95)), 2),
            "max": round(float(gaps.max()), 2),
        },
    }


def steer_cost(n: int = 1000) -> dict:
    world = PacedWorld(0.0)
    us = []
    for i in range(n):
        t = time.perf_counter()
        world.steer(Direction(f"beat {i}", f"beat {i}"), 1.0)
        us.append((time.perf_counter() - t) * 1e6)
    return {"p50_us": round(float(np.median(us)), 1), "max_us": round(float(max(us)), 1), "calls": n}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--fps", type=int, default=30)
    args = ap.parse_args()
    result = {
        "fps": args.fps,
        "seconds": args.seconds,
        "slow_world": run_clock(1 / 10, args.fps, args.seconds),
        "fast_world": run_clock(0.0, args.fps, args.seconds),
        "steer": steer_cost(),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
