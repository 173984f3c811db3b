"""The stream world on a GPU: fps at 512x512, first-frame latency and prompt-change latency, switch by switch.

Each combination of speed switches gets a fresh StreamWorld over the same
models and runs the real render loop (the frame is copied out to numpy every
frame, as on air). fps counts only frames the model painted: a frame the
similarity filter skipped repeats the last one and is reported apart. Prints
one JSON line per combination, then a table.

    # real weights from the local Hugging Face cache (never downloads unless --online)
    python benchmarks/bench_stream_gpu.py
    # no weights at all: full-size SD-Turbo UNet, TAESD and ViT-H text tower, random init
    python benchmarks/bench_stream_gpu.py --random-weights --json $OUT/stream_gpu.json
    # a quick check of this script's logic on a CPU
    python benchmarks/bench_stream_gpu.py --random-weights --tiny --device cpu --frames 5

Goal on one H100: >= 60 fps with SD-Turbo, one step, fp16, no compile; >= 100 fps
with torch.compile and CUDA graphs. Random weights run the same FLOPs as real
ones; only the similarity filter's skip rate depends on the picture.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streambot.world.base import Direction, WorldError  # noqa: E402
from streambot.world.stream import Motion, StreamWorld, StreamWorldSettings  # noqa: E402
from streambot.world.stream_models import load_models, random_models  # noqa: E402
from streambot.worldspec import WorldSpec  # noqa: E402

SPEC = WorldSpec(
    "meadow",
    "Endless Valley",
    "A wide green valley.",
    "painterly landscape, soft light, wide shot",
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

# name -> settings; each adds one switch to a baseline so its gain can be read off.
# cl = channels-last, qkv = fused QKV projections (on from "fp16+cl+qkv" down).
COMBOS: dict[str, dict] = {
    "fp32": dict(dtype="float32", channels_last=False, fuse_qkv=False),
    "fp16": dict(dtype="float16", channels_last=False, fuse_qkv=False),
    "fp16+cl": dict(dtype="float16", fuse_qkv=False),
    "fp16+cl+qkv": dict(dtype="float16"),
    "fp16+cl+qkv 1 in flight": dict(dtype="float16", frames_in_flight=1),
    "bf16+cl+qkv": dict(dtype="bfloat16"),
    "fp16+cl 2-step sequential": dict(dtype="float16", steps=2, stream_batch=False),
    "fp16+cl 2-step stream-batch": dict(dtype="float16", steps=2, stream_batch=True),
    "fp16+cl+filter": dict(dtype="float16", similarity_filter=True),
    "fp16+cl+filter still camera": dict(dtype="float16", similarity_filter=True, motion=Motion()),
    "fp16+cl+graphs": dict(dtype="float16", cuda_graphs=True),
    "fp16+cl+compile": dict(dtype="float16", compile=True),
    "fp16+cl+compile+graphs": dict(dtype="float16", compile=True, cuda_graphs=True),
    "fp16+cl+compile+graphs 2-step stream-batch": dict(dtype="float16", compile=True, cuda_graphs=True, steps=2),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_one(models, name: str, options: dict, args, device: torch.device) -> dict:
    settings = StreamWorldSettings(resolution=f"{args.size}x{args.size}", device=str(device), **options)
    if device.type == "cpu" and settings.dtype != "float32":
        settings = settings.model_copy(update={"dtype": "float32"})  # CPU dry runs: half is not the point
    if settings.compile:
        torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    world = StreamWorld(models, settings, device=device)
    sync(device)
    t0 = time.perf_counter()
    world.start(SPEC, (1280, 720), 30, seed=0)
    world.render()
    sync(device)
    first_frame_s = time.perf_counter() - t0  # includes compile and capture when switched on

    for _ in range(args.warmup):
        world.render()
    sync(device)
    times = []
    skipped_before = world.stats["skipped"]
    t_all = time.perf_counter()
    for _ in range(args.frames):
        t = time.perf_counter()
        world.render()  # returns numpy: the device has finished that frame (with 2 in flight, the one before)
        times.append(time.perf_counter() - t)
    sync(device)
    elapsed = time.perf_counter() - t_all
    skipped = world.stats["skipped"] - skipped_before

    # prompt change: from steer() to the first frame rendered under it (a prompt never seen before)
    latencies, cached = [], []
    for prompt in PROMPTS:
        for store in (latencies, cached):  # the second time round, the embedding is cached
            gen = world.steer(Direction(prompt, f"{prompt}, {SPEC.style}"), transition_s=0.5)
            t = time.perf_counter()
            while world.render().generation != gen:
                pass
            store.append((time.perf_counter() - t) * 1e3)
            for _ in range(5):
                world.render()
    times.sort()
    result = {
        "combo": name,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "size": args.size,
        "steps": len(settings.timestep_indices),
        "dtype": settings.dtype,
        "active": dict(world.engine.active),
        "fps": (args.frames - skipped) / elapsed,  # painted by the model; skipped frames are not
        "frames_out_fps": args.frames / elapsed,
        "rendered": args.frames - skipped,
        "skipped": skipped,
        "elapsed_s": elapsed,
        "frame_ms_p50": statistics.median(times) * 1e3,
        "frame_ms_p95": times[int(0.95 * (len(times) - 1))] * 1e3,
        "first_frame_s": first_frame_s,
        "prompt_change_ms_new": statistics.median(latencies),
        "prompt_change_ms_cached": statistics.median(cached),
    }
    if device.type == "cuda":
        result["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    world.close()
    del world
    gc.collect()
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--random-weights", action="store_true", help="full-size configs, random init, no downloads")
    ap.add_argument("--tiny", action="store_true", help="with --random-weights: the test-size models")
    ap.add_argument("--model", default="stabilityai/sd-turbo")
    ap.add_argument("--vae", default="auto", help="auto: the tiny VAE for the model (taesd or taesdxl)")
    ap.add_argument("--online", action="store_true", help="allow downloading real weights")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--combos", default="all", help="comma-separated names, or 'all': " + ", ".join(COMBOS))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            "No CUDA GPU is available; run on a GPU machine, or add --device cpu --tiny --random-weights "
            "for a dry run of this script.",
            file=sys.stderr,
        )
        return 2
    names = list(COMBOS) if args.combos == "all" else [n.strip() for n in args.combos.split(",")]
    unknown = [n for n in names if n not in COMBOS]
    if unknown:
        print(f"Unknown combination(s) {unknown}; choose from: {', '.join(COMBOS)}.", file=sys.stderr)
        return 2
    if device.type == "cpu":
        names = [n for n in names if not COMBOS[n].get("compile")]  # inductor on a CPU: minutes, not the point

    t0 = time.perf_counter()
    try:
        if args.random_weights:
            models = random_models("tiny" if args.tiny else "full", tokenizer_dir=tempfile.mkdtemp(), device=device)
        else:
            models = load_models(args.model, args.vae, device=device, dtype=torch.float16, offline=not args.online)
    except WorldError as e:
        print(str(e), file=sys.stderr)
        return 2
    load_s = time.perf_counter() - t0
    header = {
        "load_s": load_s,
        "models": models.name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
    print(json.dumps(header), flush=True)

    results = []
    for name in names:
        try:
            r = bench_one(models, name, COMBOS[name], args, device)
        except Exception as e:  # one switch failing must not lose the others' figures
            r = {"combo": name, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc(limit=3)}
            if device.type == "cuda":
                torch.cuda.empty_cache()
        results.append(r)
        print(json.dumps(r), flush=True)

    print(f"\n{args.size}x{args.size}, {header['device']}, {models.name}, {args.frames} frames")
    print(
        "| switches | fps (painted) | skipped | p50 ms | p95 ms | first frame s | prompt change ms (new / cached) | active |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in results:
        if "error" in r:
            print(f"| {r['combo']} | error: {r['error'][:80]} | | | | | | |")
            continue
        on = ",".join(k for k, v in r["active"].items() if v) or "-"
        print(
            f"| {r['combo']} | {r['fps']:.1f} | {r['skipped']} | {r['frame_ms_p50']:.2f} | {r['frame_ms_p95']:.2f} | "
            f"{r['first_frame_s']:.1f} | {r['prompt_change_ms_new']:.1f} / {r['prompt_change_ms_cached']:.1f} | {on} |"
        )
    by = {r["combo"]: r for r in results if "error" not in r}
    if device.type == "cuda" and args.size == 512 and not args.tiny:
        eager = by.get("fp16+cl+qkv", {}).get("fps")
        fast = by.get("fp16+cl+compile+graphs", {}).get("fps")
        if eager is not None:
            print(f"goal >= 60 fps eager fp16: {'met' if eager >= 60 else 'NOT met'} ({eager:.1f})")
        if fast is not None:
            print(f"goal >= 100 fps compile+graphs: {'met' if fast >= 100 else 'NOT met'} ({fast:.1f})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"header": header, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
