"""The video world's own costs, apart from the model's arithmetic, and the judder of its pacing.

1. Loop overhead per chunk: the real loop (`VideoEngine`: cache bookkeeping,
   rotary tables, the attention processor, the streaming decode, the copy to
   numpy) on the tiny random model, whose arithmetic is negligible, so what is
   timed is the loop itself. Also counted: the tensor operations a chunk issues
   (on a GPU each is a kernel launch of a few microseconds).
2. The pacer's cost per output tick at 832x480 (the cross-fade, on the clock's thread).
3. Judder: chunks of 12 pictures arriving in bursts, played at 30 fps by the
   plain queue the clock had before, by the pacer showing the nearest frame, and
   by the pacer cross-fading; in virtual time (one call per tick), so the figures
   are exact and repeatable. The content is a sine pattern moving at a steady
   speed, so even playback gives an even frame-to-frame change.

    .venv/bin/python benchmarks/video_overhead.py [--chunks 40] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streambot.broadcast.pacer import FramePacer, blend, change_spread, longest_still  # noqa: E402
from streambot.world.base import Frame, Pacing  # noqa: E402
from streambot.world.video_engine import VideoEngine  # noqa: E402
from streambot.world.video_models import random_models  # noqa: E402
from streambot.world.video_settings import VideoWorldSettings  # noqa: E402


class OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


def steady_engine(resolution: str, layers: int = 2) -> VideoEngine:
    models = random_models("tiny", tokenizer_dir=tempfile.mkdtemp(), transformer={"num_layers": layers})
    settings = VideoWorldSettings(resolution=resolution, device="cpu", max_sequence_length=16)
    engine = VideoEngine(models, settings, device=torch.device("cpu"))
    engine.prepare("a wide green valley", 0)
    fill = 1 + settings.sink_chunks + settings.window_chunks + engine.full_slots
    for _ in range(fill):  # steady state: the window is full
        engine.decode(engine.next_chunk())
    return engine


def ops_per_chunk(engine: VideoEngine) -> int:
    with OpCounter() as ops:
        engine.next_chunk()
    return ops.ops


def loop_overhead(chunks: int, resolution: str) -> dict:
    engine = steady_engine(resolution)
    settings = engine.settings
    loop_ms, decode_ms = [], []
    for _ in range(chunks):
        t = time.perf_counter()
        x = engine.next_chunk()
        m = time.perf_counter()
        engine.decode(x)
        loop_ms.append((m - t) * 1e3)
        decode_ms.append((time.perf_counter() - m) * 1e3)
    passes = engine.stats["passes"]
    with OpCounter() as ops:
        x = engine.next_chunk()
    passes = engine.stats["passes"] - passes
    with OpCounter() as dec_ops:
        engine.decode(x)
    t = time.perf_counter()
    engine.set_prompt("a storm over the sea")  # a new prompt: UMT5 (tiny) + the re-cache
    switch_ms = (time.perf_counter() - t) * 1e3
    # tensor ops grow with the blocks (identical): count with 1 and 2, extrapolate to the real 30
    one = ops_per_chunk(steady_engine(resolution, layers=1))
    two = ops_per_chunk(steady_engine(resolution, layers=2))
    loop_ms.sort()
    return {
        "ops_per_chunk_30_blocks": one + 29 * (two - one),
        "resolution": resolution,
        "steps": settings.steps,
        "chunk_loop_ms_p50": statistics.median(loop_ms),
        "chunk_loop_ms_p95": loop_ms[int(0.95 * (len(loop_ms) - 1))],
        "decode_ms_p50": statistics.median(decode_ms),
        "passes_per_chunk": passes,
        "ops_per_chunk": ops.ops,
        "ops_per_pass": ops.ops / passes,
        "decode_ops_per_chunk": dec_ops.ops,
        "prompt_switch_ms": switch_ms,
    }


def pacer_cost(ticks: int = 300) -> dict:
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (480, 832, 3), dtype=np.uint8) for _ in range(2))
    times = []
    for i in range(ticks):
        t = time.perf_counter()
        blend(a, b, (i % 7 + 1) / 8)
        times.append((time.perf_counter() - t) * 1e3)
    return {"blend_ms_p50_832x480": statistics.median(times)}


def wave(k: int) -> np.ndarray:
    x = np.arange(256)
    row = np.round(127.5 + 100 * np.sin(2 * np.pi * (x - 4 * k) / 256)).astype(np.uint8)
    return np.broadcast_to(row, (8, 256))[..., None].repeat(3, 2).copy()


class PlainQueue:
    """The clock's queue before pacing: each frame once as soon as it is there."""

    def __init__(self, depth: int = 2):
        self.q = queue.Queue(maxsize=depth)

    def put(self, frame, timeout=None):
        self.q.put_nowait(frame)

    def get(self, timeout=None):
        return self.q.get_nowait()

    def get_nowait(self):
        return self.q.get_nowait()


def play(buffer, chunk: int, ticks_per_chunk: float, ticks: int) -> list[np.ndarray]:
    """A model making `chunk` pictures every `ticks_per_chunk` ticks, never more than one chunk
    in hand (it waits while its last chunk is not all in the buffer), played one tick at a time."""
    pending: list[Frame] = []
    k, next_chunk_at, shown, last = 0, 0.0, [], None
    for tick in range(ticks):
        if not pending and tick >= next_chunk_at:
            pending = [Frame(wave(i), i, 0) for i in range(k, k + chunk)]
            k += chunk
            next_chunk_at = tick + ticks_per_chunk
        while pending:
            try:
                buffer.put(pending[0], timeout=0)
            except queue.Full:
                break
            pending.pop(0)
        try:
            frame = buffer.get_nowait() if last is not None else buffer.get(timeout=0)
        except queue.Empty:
            frame = last
        if frame is not None:
            shown.append(frame.image)
            last = frame
    return shown


def judder(chunk: int = 12, source_fps: float = 16, output_fps: int = 30, seconds: float = 40) -> list[dict]:
    rows = []
    ticks = int(seconds * output_fps)
    for speed in (0.6, 0.9, 1.5):  # the model's frame rate over the world's own 16 fps
        ticks_per_chunk = chunk / (speed * source_fps) * output_fps
        for name, make in (
            ("plain queue (before)", lambda: PlainQueue()),
            ("pacer, nearest frame", lambda: FramePacer(Pacing(source_fps, chunk, blend=False), output_fps)),
            ("pacer, cross-fade", lambda: FramePacer(Pacing(source_fps, chunk, blend=True), output_fps)),
        ):
            buffer = make()
            shown = play(buffer, chunk, ticks_per_chunk, ticks)[5 * output_fps :]  # after the pace is found
            rows.append(
                {
                    "model_speed": speed,
                    "buffer": name,
                    "judder_spread": change_spread(shown),
                    "longest_still_ticks": longest_still(shown),
                    "playback_fps": getattr(buffer, "rate", None) and buffer.rate * output_fps,
                }
            )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=40)
    ap.add_argument("--resolution", default="64x64")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result = {"loop": loop_overhead(args.chunks, args.resolution), "pacer": pacer_cost(), "judder": judder()}
    print(json.dumps(result, indent=2))
    lo = result["loop"]
    print(
        f"\nloop per chunk (tiny model, {lo['resolution']}, {lo['steps']} steps, CPU, {args.threads} thread): "
        f"p50 {lo['chunk_loop_ms_p50']:.1f} ms, p95 {lo['chunk_loop_ms_p95']:.1f} ms; decode {lo['decode_ms_p50']:.1f} ms; "
        f"{lo['passes_per_chunk']} passes, {lo['ops_per_chunk']} tensor ops ({lo['ops_per_pass']:.0f} a pass), "
        f"decode {lo['decode_ops_per_chunk']} ops; a prompt switch {lo['prompt_switch_ms']:.1f} ms"
    )
    print(
        f"with the real model's 30 blocks: {lo['ops_per_chunk_30_blocks']} tensor ops a chunk "
        f"(at 5 us a kernel launch: {lo['ops_per_chunk_30_blocks'] * 5e-3:.0f} ms of launches)"
    )
    print(f"cross-fade per tick at 832x480: {result['pacer']['blend_ms_p50_832x480']:.2f} ms")
    print("| model speed | buffer | judder (spread) | longest still (ticks) | playback fps |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for r in result["judder"]:
        fps = "-" if r["playback_fps"] is None else f"{r['playback_fps']:.1f}"
        print(
            f"| {r['model_speed']:.1f}x | {r['buffer']} | {r['judder_spread']:.3f} | {r['longest_still_ticks']} | {fps} |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
