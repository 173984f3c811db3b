"""The video world on a GPU: frames per second, time to the first chunk, prompt-switch latency, memory.

Runs the real VideoWorld (the rolling-cache loop, the streaming VAE decode, the
pictures copied out to numpy as on air), then the same world behind the real
WorldRunner, FramePacer and Clock at 30 fps for a few seconds, steered every two
seconds, to measure what viewers get: prompt-to-pixel at the clock's output and
the judder of the paced frames.

    # real weights from the local Hugging Face cache (never downloads unless --online)
    python benchmarks/bench_video_gpu.py --json $OUT/video_gpu.json
    # no weights at all: the full-size AnyFlow-FAR 1.3B, Wan VAE and UMT5-XXL, random init
    python benchmarks/bench_video_gpu.py --random-weights --json $OUT/video_gpu.json
    # a complete dry run of this script on any machine
    python benchmarks/bench_video_gpu.py --random-weights --tiny --device cpu --frames 48 --json out.json

Goal on one H100: >= 20 fps at 832x480, and a prompt switch visible within 1 s.
Random weights run the same FLOPs as real ones.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streambot.broadcast.clock import Clock, WorldRunner  # noqa: E402
from streambot.broadcast.pacer import FramePacer, change_spread, longest_still  # noqa: E402
from streambot.world.base import Direction, WorldError  # noqa: E402
from streambot.world.video import VideoWorld, resolve_dtype  # noqa: E402
from streambot.world.video_models import load_models, random_models  # noqa: E402
from streambot.world.video_settings import VideoWorldSettings  # noqa: E402
from streambot.worldspec import WorldSpec  # noqa: E402

SPEC = WorldSpec(
    "meadow",
    "Endless Valley",
    "A wide green valley.",
    "cinematic, soft light, wide shot",
    ("morning mist lifts off the river",),
)
PROMPTS = [
    "a flock of birds crosses the valley",
    "clouds gather over the mountains",
    "a light summer rain falls",
    "golden hour over the hills",
    "a clear night full of stars and fireflies",
    "a red hot air balloon rises",
]
OUTPUT_FPS = 30


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def styled(prompt: str) -> Direction:
    return Direction(prompt, f"{prompt}, {SPEC.style}")


def model_side(world: VideoWorld, args, device: torch.device) -> dict:
    """The world alone, as fast as it goes."""
    sync(device)
    t0 = time.perf_counter()
    world.start(SPEC, (1280, 720), OUTPUT_FPS, seed=0)
    world.render()
    sync(device)
    first_chunk_s = time.perf_counter() - t0  # start-up + the first chunk (one picture) decoded
    while world.stats["chunks"] < 2:
        world.render()
    first_full_chunk_s = time.perf_counter() - t0
    for _ in range(args.warmup):
        world.render()
    chunk_ms = []
    t_all = time.perf_counter()
    for _ in range(args.frames):
        before = world.stats["chunks"]
        t = time.perf_counter()
        world.render()  # numpy out: the device has finished this chunk
        if world.stats["chunks"] != before:
            chunk_ms.append((time.perf_counter() - t) * 1e3)
    elapsed = time.perf_counter() - t_all

    # a prompt switch: steer() to the first picture made under it (re-cache + a chunk + its decode)
    new, cached = [], []
    for prompt in PROMPTS[: args.switches]:
        for store in (new, cached):  # the second time, the prompt's embedding is cached
            gen = world.steer(styled(prompt))
            t = time.perf_counter()
            while world.render().generation != gen:
                pass
            store.append(time.perf_counter() - t)
            for _ in range(4):
                world.render()
    chunk_ms.sort()
    return {
        "fps": args.frames / elapsed,
        "chunk_ms_p50": statistics.median(chunk_ms) if chunk_ms else None,
        "chunk_ms_p95": chunk_ms[int(0.95 * (len(chunk_ms) - 1))] if chunk_ms else None,
        "pictures_per_chunk": world.settings.chunk_frames * 4,
        "first_chunk_s": first_chunk_s,
        "first_full_chunk_s": first_full_chunk_s,
        "prompt_switch_s": statistics.median(new),
        "prompt_switch_cached_s": statistics.median(cached),
        "recaches": world.engine.stats["recaches"],
    }


def on_air(world: VideoWorld, seconds: float) -> dict:
    """The world behind the runner, the pacer and the clock, as in a show (the sink only records)."""
    runner = WorldRunner(world, fps=OUTPUT_FPS)
    pacer = runner.frames
    assert isinstance(pacer, FramePacer)
    seen: list[tuple[float, int, np.ndarray, bool]] = []
    first_seen: dict[int, float] = {}
    lock = threading.Lock()

    def sink(index, frame, repeated):
        now = time.monotonic()
        with lock:
            seen.append((now, frame.generation, frame.image[::4, ::4].copy(), repeated))
            for g in range(frame.generation + 1):
                first_seen.setdefault(g, now)

    clock = Clock(runner, OUTPUT_FPS, sink, max_frames=round(seconds * OUTPUT_FPS))
    runner.start()
    clock.start(first_frame_timeout=600)
    steers = []
    for prompt in PROMPTS:
        if clock.done.wait(2.0):
            break
        gen = world.steer(styled(prompt))
        steers.append((gen, world.steered_at(gen)))
    clock.wait(seconds + 600)
    clock.stop()
    runner.stop()
    latencies = [first_seen[g] - at for g, at in steers if g in first_seen and at is not None]
    images = [s[2] for s in seen]
    settle = min(len(images), 2 * OUTPUT_FPS)  # skip the start-up, where the first chunks set the pace
    return {
        "on_air_s": seconds,
        "output_fps": clock.stats.output_fps,
        "prompt_to_pixel_s": statistics.median(latencies) if latencies else None,
        "prompt_to_pixel_s_max": max(latencies) if latencies else None,
        "judder_spread": change_spread(images[settle:]),
        "longest_still_ticks": longest_still(images[settle:]),
        "repeated_frames": clock.stats.repeated,
        "late_frames": clock.stats.late,
        "pacer_rate": pacer.rate,
        "pacer_production": pacer.production,
        "playback_fps": pacer.rate * OUTPUT_FPS,
    }


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak RSS, KiB on Linux


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--random-weights", action="store_true", help="full-size configs, random init, no downloads")
    ap.add_argument("--tiny", action="store_true", help="with --random-weights: the test-size models")
    ap.add_argument("--model", default="nvidia/AnyFlow-FAR-Wan2.1-1.3B-Diffusers")
    ap.add_argument("--online", action="store_true", help="allow downloading real weights")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--resolution", help="WIDTHxHEIGHT (default 832x480, 64x64 with --tiny)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--frames", type=int, default=240, help="pictures timed for the frame rate")
    ap.add_argument("--warmup", type=int, default=24)
    ap.add_argument("--switches", type=int, default=4, help="prompt switches timed")
    ap.add_argument("--on-air", type=float, default=8.0, help="seconds behind the real clock (0: skip)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for a --device cpu run")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)  # more threads than free cores make a busy CPU far slower
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            "No CUDA GPU is available; run on a GPU machine, or add --device cpu --tiny --random-weights "
            "for a dry run of this script.",
            file=sys.stderr,
        )
        return 2
    if args.tiny and not args.random_weights:
        print("--tiny builds the test-size models: add --random-weights.", file=sys.stderr)
        return 2
    resolution = args.resolution or ("64x64" if args.tiny else "832x480")
    settings = VideoWorldSettings(
        resolution=resolution,
        steps=args.steps,
        device=str(device),
        max_sequence_length=16 if args.tiny else 512,
    )
    dtype = resolve_dtype(settings.dtype, device)
    t0 = time.perf_counter()
    try:
        if args.random_weights:
            models = random_models(
                "tiny" if args.tiny else "full", tokenizer_dir=tempfile.mkdtemp(), device=device, dtype=dtype
            )
        else:
            models = load_models(args.model, device=device, dtype=dtype, offline=not args.online)
    except WorldError as e:
        print(str(e), file=sys.stderr)
        return 2
    header = {
        "load_s": time.perf_counter() - t0,
        "models": models.name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "resolution": resolution,
        "steps": args.steps,
        "dtype": str(dtype).removeprefix("torch."),
    }
    print(json.dumps(header), flush=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    world = VideoWorld(models, settings, device=device)
    result = model_side(world, args, device)
    if args.on_air > 0:
        result.update(on_air(world, args.on_air))
    result["peak_memory_mb"] = peak_memory_mb(device)
    world.close()
    print(json.dumps(result), flush=True)

    print(f"\n{resolution}, {header['device']}, {models.name}, {args.steps} steps, {args.frames} pictures")
    p50 = result["chunk_ms_p50"]
    print(
        f"fps {result['fps']:.1f} (chunk of {result['pictures_per_chunk']}: "
        f"p50 {'n/a' if p50 is None else f'{p50:.0f} ms'})"
        f" | first chunk {result['first_chunk_s']:.2f} s | prompt switch {result['prompt_switch_s']:.2f} s"
        f" (cached prompt {result['prompt_switch_cached_s']:.2f} s) | peak {result['peak_memory_mb']:.0f} MB"
    )
    if args.on_air > 0:
        p2p = result["prompt_to_pixel_s"]
        print(
            f"on air: {result['output_fps']:.1f} fps out, prompt-to-pixel "
            f"{'n/a' if p2p is None else f'{p2p:.2f} s'}, judder {result['judder_spread']:.3f}, "
            f"longest still {result['longest_still_ticks']} ticks, {result['repeated_frames']} repeated, "
            f"playing at {result['playback_fps']:.1f} fps"
        )
    if device.type == "cuda" and not args.tiny and resolution == "832x480":
        print(f"goal >= 20 fps: {'met' if result['fps'] >= 20 else 'NOT met'} ({result['fps']:.1f})")
        print(
            f"goal prompt switch visible within 1 s: {'met' if result['prompt_switch_s'] <= 1 else 'NOT met'} "
            f"({result['prompt_switch_s']:.2f} s)"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"header": header, **result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
