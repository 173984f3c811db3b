"""The stream world's own overhead per frame: everything except the models' forward passes.

Runs the real StreamWorld.render() loop on the CPU at 512x512 with tiny
random-weight models whose tensors at the seams have the real sizes (64x64x4
latents, 77x1024 prompt embeddings, 512x512 frames), and times the forward
passes of the UNet, the VAE encoder and decoder, and the text encoder with
hooks. overhead = frame time - forward time: the steer hand-off, the slerp,
the camera warp, noise and scheduler arithmetic, the stream-batch buffer, the
similarity filter, the uint8 conversion and the copy out to numpy. On a GPU
most of that becomes a few kernel launches, so this CPU figure is an upper
bound; the goal is < 2 ms so the loop never limits a GPU. Only frames the
model painted are counted; a frame the similarity filter skipped is reported apart.

    .venv/bin/python benchmarks/stream_overhead.py [--frames 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streambot.world.base import Direction  # noqa: E402
from streambot.world.stream import Motion, StreamWorld, StreamWorldSettings  # noqa: E402
from streambot.world.stream_models import (  # noqa: E402
    TINY_TAESD,
    TINY_TEXT_ENCODER,
    TINY_UNET,
    StreamModels,
    tiny_tokenizer,
)
from streambot.worldspec import WorldSpec  # noqa: E402

SPEC = WorldSpec("meadow", "Endless Valley", "A valley.", "painterly landscape", ("morning mist",))

CONFIGS = {
    "default (1 step, latent feedback, zoom+drift)": {},
    "2 steps, stream batch": {"steps": 2},
    "similarity filter on": {"similarity_filter": True},
    "steer every 30 frames (slerp running)": {"_steer_every": 30},
    "pixel feedback (warp 512x512 + TAESD encode)": {"feedback": "pixel"},
    "static camera": {"motion": Motion()},
}


def seam_sized_models(tokenizer_dir: str) -> StreamModels:
    """Tiny networks, real-sized seams: 1024-wide text, 4x64x64 latents, 512x512 pictures."""
    from diffusers import AutoencoderTiny, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from streambot.world.stream_models import SD_TURBO_SCHEDULER

    torch.manual_seed(0)
    tok = tiny_tokenizer(tokenizer_dir)
    te_cfg = dict(TINY_TEXT_ENCODER, hidden_size=1024, num_attention_heads=16, num_hidden_layers=1, vocab_size=len(tok))
    return StreamModels(
        unet=UNet2DConditionModel(**dict(TINY_UNET, cross_attention_dim=1024)).eval(),
        vae=AutoencoderTiny(**TINY_TAESD).eval(),
        text_encoder=CLIPTextModel(CLIPTextConfig(**te_cfg)).eval(),
        tokenizer=tok,
        scheduler=EulerDiscreteScheduler(**SD_TURBO_SCHEDULER),
        name="seam-sized tiny",
    )


class ForwardClock:
    """Sums the wall time spent inside the hooked modules' forward passes."""

    def __init__(self, modules) -> None:
        self.total = 0.0
        self._start: dict[int, float] = {}
        self._handles = []
        for m in modules:
            if m is None:
                continue
            self._handles.append(m.register_forward_pre_hook(self._pre))
            self._handles.append(m.register_forward_hook(self._post))

    def _pre(self, module, args):
        self._start[id(module)] = time.perf_counter()

    def _post(self, module, args, out):
        self.total += time.perf_counter() - self._start.pop(id(module))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def measure(models: StreamModels, options: dict, frames: int, warmup: int = 20) -> dict:
    options = dict(options)
    steer_every = options.pop("_steer_every", 0)
    settings = StreamWorldSettings(device="cpu", resolution="512x512", **options)
    world = StreamWorld(models, settings)
    world.start(SPEC, (1280, 720), 30, seed=0)
    m = models
    clock = ForwardClock([m.unet, m.vae.decoder, m.vae.encoder, m.text_encoder])
    overhead, totals, skipped = [], [], 0
    try:
        for i in range(warmup + frames):
            if steer_every and i % steer_every == 0:
                world.steer(Direction(f"beat {i}", f"beat {i}, painterly"), 1.5)
            clock.total = 0.0
            before = world.stats["skipped"]
            t0 = time.perf_counter()
            world.render()
            dt = time.perf_counter() - t0
            if i < warmup:
                continue
            if world.stats["skipped"] > before:
                skipped += 1
                continue
            totals.append(dt * 1e3)
            overhead.append((dt - clock.total) * 1e3)
    finally:
        clock.remove()
    overhead.sort()
    return {
        "overhead_ms_median": statistics.median(overhead),
        "overhead_ms_mean": statistics.fmean(overhead),
        "overhead_ms_p95": overhead[int(0.95 * (len(overhead) - 1))],
        "frame_ms_median_cpu": statistics.median(totals),
        "rendered": len(totals),
        "skipped": skipped,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    models = seam_sized_models(tempfile.mkdtemp())
    results = {}
    print(f"CPU ({args.threads} threads), 512x512, {args.frames} frames each; overhead = frame - forward passes\n")
    print("| configuration | overhead median ms | mean ms | p95 ms |")
    print("| --- | ---: | ---: | ---: |")
    for name, options in CONFIGS.items():
        r = measure(models, options, args.frames)
        results[name] = r
        print(f"| {name} | {r['overhead_ms_median']:.2f} | {r['overhead_ms_mean']:.2f} | {r['overhead_ms_p95']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
