"""Render speed of the sketch world, preset by preset, on one core.

Renders every preset at the native size of a 1280x720 stream (640x360, the
`streambot bench` setting) with keyword mapping only, so the figure is the
drawing alone. Each preset runs `--repeats` times; the median is quoted. The
render thread's CPU time is reported beside the wall time: on a shared
machine it is the steadier of the two.

    .venv/bin/python benchmarks/bench_sketch_render.py [--frames 150] [--repeats 3] [--preset NAME]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the world renders in one thread on air
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from streambot.config import list_presets, resolve_world  # noqa: E402
from streambot.world.sketch import SketchWorld  # noqa: E402


def run(preset: str, frames: int) -> tuple[float, float, float]:
    """Wall ms per frame (mean, p95) and CPU ms per frame, after 30 warm-up frames."""
    world = SketchWorld(0.5, embedder=None, background=False)
    try:
        world.start(resolve_world(preset), (1280, 720), 30, seed=0)
        for _ in range(30):
            world.render()
        wall = np.empty(frames)
        cpu0 = time.thread_time()
        for k in range(frames):
            t0 = time.perf_counter()
            world.render()
            wall[k] = time.perf_counter() - t0
        cpu = time.thread_time() - cpu0
    finally:
        world.close()
    return float(wall.mean() * 1000), float(np.percentile(wall, 95) * 1000), cpu / frames * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--preset", action="append", help="only these presets (repeatable)")
    args = ap.parse_args()
    names = args.preset or [s.name for s in list_presets()]
    walls, cpus = [], []
    for name in names:
        runs = [run(name, args.frames) for _ in range(args.repeats)]
        wall, p95, cpu = (statistics.median(r[i] for r in runs) for i in range(3))
        walls.append(wall)
        cpus.append(cpu)
        print(f"{name:10s} wall {wall:6.2f} ms/frame (p95 {p95:6.2f}), CPU {cpu:6.2f} ms/frame", flush=True)
    wall, cpu = statistics.mean(walls), statistics.mean(cpus)
    print(
        f"{'all':10s} wall {wall:6.2f} ms/frame = {1000 / wall:.1f} fps, CPU {cpu:6.2f} ms/frame "
        f"= {1000 / cpu:.1f} fps (mean over {len(names)} presets, median of {args.repeats} runs each)"
    )


if __name__ == "__main__":
    main()
