"""The burned-in overlay's cost per frame, as the clock thread pays it.

    python benchmarks/bench_compositor.py              # 1280x720, default layout
    python benchmarks/bench_compositor.py --layout neon --frames 2000

A full overlay (a long prompt on air, 4 candidates with long, mixed-script
text, the countdown, how to play) over 1280x720 yuv420p frames from the
encoder's own conversion. Three figures:

1. blend: `Compositor.overlay(video)` when the state has not changed, the
   cost of almost every frame (budget: < 2 ms mean);
2. frame during redraw: the same call while the overlay worker is redrawing
   (the countdown ticks once a second, votes more often), i.e. what the clock
   thread pays when PIL is busy in the other thread;
3. redraw: the worker's own time per state change (PIL + YUV conversion),
   off the clock thread;
4. set_state: what the caller (the show's loop) pays to hand a new state
   over; the drawing happens elsewhere (budget: < 10 ms).

Prints one JSON object (ms).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import av  # noqa: E402

from streambot.broadcast.compositor import Compositor  # noqa: E402
from streambot.broadcast.overlay_layout import load_layout  # noqa: E402
from streambot.broadcast.overlay_state import OverlayCandidate, OverlayState  # noqa: E402

PROMPT = (
    "a colossal glowing jellyfish drifts over the flooded city while lanterns rise "
    "from every rooftop and the rain turns to falling stars"
)
CANDIDATES = (
    "make it rain cats and dogs over the whole valley until the rivers overflow",
    "a castle made of candy rises from the hills 🍭🏰 and everyone cheers",
    "東京の夜、空に竜が飛ぶ、ネオンの光が雨に映る",
    "مدينة عائمة في السماء فوق الغيوم عند الغروب",
)


def full_state(seconds_left: int = 9, votes: tuple[int, ...] = (12, 7, 3, 1)) -> OverlayState:
    total = sum(votes) or 1
    return OverlayState(
        title="Neon Megacity",
        on_air=PROMPT,
        on_air_by="xX_dragonrider_Xx",
        source="audience",
        mode="rounds",
        round=42,
        seconds_left=seconds_left,
        round_s=10.0,
        locked=False,
        off_air=False,
        candidates=tuple(OverlayCandidate(i + 1, t, v, v / total) for i, (t, v) in enumerate(zip(CANDIDATES, votes))),
        how_to_play="!p your idea  ·  !vote N  ·  discord.gg/streambot",
    )


def frames(size: tuple[int, int], n: int = 8) -> list[av.VideoFrame]:
    """yuv420p frames made the way the encoder makes them (a 640x360 world scaled up)."""
    w, h = size
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        img = rng.integers(0, 256, (h // 2, w // 2, 3), dtype=np.uint8)
        out.append(
            av.VideoFrame.from_ndarray(img, format="rgb24").reformat(
                width=w, height=h, format="yuv420p", interpolation="BILINEAR"
            )
        )
    return out


def _stats(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {
        "mean": round(float(a.mean()), 3),
        "p50": round(float(np.percentile(a, 50)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "max": round(float(a.max()), 3),
        "n": len(ms),
    }


def measure(size=(1280, 720), layout: str = "default", n_frames: int = 1000, redraws: int = 20) -> dict:
    comp = Compositor(size, load_layout(layout), min_redraw_s=0.0)
    video = frames(size)
    # warm: fonts loaded, caches filled
    comp.set_state(full_state())
    assert comp.flush(60), "the overlay worker did not draw"
    covered = sum((p.box[2] - p.box[0]) * (p.box[3] - p.box[1]) for p in comp._layer)

    # 1. blend only
    blend = []
    for i in range(n_frames):
        t = time.perf_counter()
        comp.overlay(video[i % len(video)])
        blend.append((time.perf_counter() - t) * 1000)

    # 2. and 3. a state change per redraw (countdown and votes move), frames keep coming
    during: list[float] = []
    busy = threading.Event()
    stop = threading.Event()

    def clock():
        i = 0
        while not stop.is_set():
            t = time.perf_counter()
            comp.overlay(video[i % len(video)])
            if busy.is_set():
                during.append((time.perf_counter() - t) * 1000)
            i += 1
            time.sleep(0.002)

    th = threading.Thread(target=clock, daemon=True)
    th.start()
    first = len(comp.redraw_ms)
    set_state = []
    for k in range(redraws):
        busy.set()
        t = time.perf_counter()
        comp.set_state(full_state(seconds_left=8 - k % 9, votes=(12 + k, 7, 3 + k % 2, 1)))
        set_state.append((time.perf_counter() - t) * 1000)
        comp.flush(60)
        busy.clear()
        time.sleep(0.01)
    stop.set()
    th.join()
    redraw = comp.redraw_ms[first:] if len(comp.redraw_ms) > first else comp.redraw_ms
    comp.close()
    return {
        "size": f"{size[0]}x{size[1]}",
        "layout": layout,
        "overlay_pixels": covered,
        "overlay_fraction": round(covered / (size[0] * size[1]), 3),
        "blend_ms": _stats(blend),
        "frame_during_redraw_ms": _stats(during or [0.0]),
        "redraw_ms": _stats(redraw),
        "set_state_ms": _stats(set_state),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--layout", default="default")
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--redraws", type=int, default=30)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    print(json.dumps(measure((w, h), args.layout, args.frames, args.redraws), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
