"""FLOPs per output frame of the video world's real configuration, and the frame-rate ceiling they imply.

The AnyFlow-FAR 1.3B transformer, the Wan 2.1 VAE and the UMT5-XXL encoder are
built from their published configs on PyTorch's meta device (shapes only: no
weights, no memory) and the video world's own loop (`VideoEngine`) runs on
them under torch.utils.flop_counter, which counts matrix multiplies,
convolutions and attention (2 FLOPs per multiply-add) and ignores element-wise
work. Meta tensors still run Python shape code for every element-wise op, so
the transformer is counted with 1 and 2 blocks and extrapolated to 30 (the
blocks are identical in shape, so this is exact); the counts are taken once the
window has filled (steady state).

    .venv/bin/python benchmarks/video_flops.py [--peak-tflops 790] [--json out.json]

Published figures are listed beside ours: Self-Forcing and LongLive run the
same Wan 2.1 1.3B backbone at 832x480 on one H100.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streambot.world.video_models import ANYFLOW_FAR_1_3B, random_models  # noqa: E402
from streambot.world.video_settings import VideoWorldSettings  # noqa: E402

H100_BF16_TFLOPS = 790.0  # dense bf16 matmul, measured on the project's H100 machines (as stream_flops.py)

PUBLISHED = [
    {
        "setup": "Self-Forcing, Wan 2.1 1.3B, 832x480, chunks of 3 latent frames, 4 steps, one H100",
        "fps": 17.0,
        "first_frame_s": 0.69,
    },
    {"setup": "LongLive, Wan 2.1 1.3B, 832x480, one H100", "fps": 20.7, "first_frame_s": None},
    {"setup": "Krea Realtime, Wan 2.1 14B, one B200", "fps": 11.0, "first_frame_s": None},
]


def count(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def steady_counts(layers: int, settings: VideoWorldSettings) -> dict:
    """FLOPs of one steady-state chunk, its decode, and a re-cache, with `layers` blocks."""
    from streambot.world.video_engine import VideoEngine

    models = random_models(
        "full",
        tokenizer_dir=tempfile.mkdtemp(),
        device="meta",
        dtype=torch.bfloat16,
        transformer={"num_layers": layers},
    )
    # UMT5 is counted on its own (main); inside the loop only the shape of its output matters
    text_dim = models.transformer.config.text_dim
    models.pipeline.encode_prompt = lambda prompt, **kw: (
        torch.zeros((1, kw["max_sequence_length"], text_dim), device="meta", dtype=torch.bfloat16),
        None,
    )
    engine = VideoEngine(models, settings, device=torch.device("meta"))
    engine.prepare("a wide green valley", 0)
    fill = 1 + settings.sink_chunks + settings.window_chunks + engine.full_slots  # then every chunk is alike
    x = None
    for _ in range(fill):
        x = engine.next_chunk()
        engine.decoder(x)
    out = {"chunk": count(engine.next_chunk), "passes_per_chunk": None}
    passes = engine.stats["passes"]
    x = engine.next_chunk()
    out["passes_per_chunk"] = engine.stats["passes"] - passes
    out["decode"] = count(lambda: engine.decoder(x))
    out["recache"] = count(engine.recache)
    out["pictures"] = x.shape[1] * 4
    out["window_frames"] = engine.longest
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peak-tflops", type=float, default=H100_BF16_TFLOPS)
    ap.add_argument("--resolution", default="832x480")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    settings = VideoWorldSettings(resolution=args.resolution, steps=args.steps, device="cpu")
    t0 = time.perf_counter()
    one, two = steady_counts(1, settings), steady_counts(2, settings)
    layers = ANYFLOW_FAR_1_3B["num_layers"]

    def extrapolate(key: str) -> int:
        return one[key] + (layers - 1) * (two[key] - one[key])

    chunk, recache = extrapolate("chunk"), extrapolate("recache")
    decode = one["decode"]
    pictures = one["pictures"]

    # the text encoder, once per new prompt (no attention mask: the same FLOPs, and meta-safe)
    from transformers import UMT5Config, UMT5EncoderModel

    from streambot.world.video_models import UMT5_XXL

    with torch.device("meta"):
        umt5 = UMT5EncoderModel(UMT5Config(**UMT5_XXL)).to(torch.bfloat16).eval()
    ids = torch.zeros((1, settings.max_sequence_length), dtype=torch.long, device="meta")
    with torch.inference_mode():
        text = count(lambda: umt5(input_ids=ids))

    per_frame = (chunk + decode) / pictures
    result = {
        "config": f"AnyFlow-FAR Wan2.1 1.3B, {settings.resolution}, {settings.steps} steps, "
        f"chunks of {settings.chunk_frames} latent frames ({pictures} pictures), window "
        f"{one['window_frames']} latent frames",
        "transformer_tflop_per_chunk": chunk / 1e12,
        "transformer_passes_per_chunk": one["passes_per_chunk"],
        "vae_decode_tflop_per_chunk": decode / 1e12,
        "tflop_per_frame": per_frame / 1e12,
        "transformer_share": chunk / (chunk + decode),
        "recache_tflop_per_prompt_switch": recache / 1e12,
        "text_encoder_tflop_per_new_prompt": text / 1e12,
        "peak_tflops": args.peak_tflops,
        "ceiling_fps": args.peak_tflops * 1e12 / per_frame,
        "recache_ceiling_ms": recache / (args.peak_tflops * 1e12) * 1e3,
        "published": [
            {
                **p,
                "share_of_peak_at_our_flops": (p["fps"] * per_frame / (args.peak_tflops * 1e12))
                if "H100" in p["setup"]
                else None,
            }
            for p in PUBLISHED
        ],
        "count_s": time.perf_counter() - t0,
    }
    print(json.dumps(result, indent=2))
    print(f"\n{result['config']}")
    print(
        f"transformer {chunk / 1e12:.1f} TFLOP a chunk ({one['passes_per_chunk']} passes) + VAE decode "
        f"{decode / 1e12:.1f} TFLOP = {per_frame / 1e12:.2f} TFLOP per frame "
        f"-> ceiling {result['ceiling_fps']:.1f} fps at {args.peak_tflops:.0f} TFLOP/s"
    )
    print(
        f"a prompt switch: re-cache {recache / 1e12:.1f} TFLOP ({result['recache_ceiling_ms']:.0f} ms at peak), "
        f"UMT5-XXL {text / 1e12:.2f} TFLOP for a new prompt"
    )
    for p in result["published"]:
        share = p["share_of_peak_at_our_flops"]
        print(f"  {p['setup']}: {p['fps']} fps" + (f" = {share:.0%} of peak at these FLOPs" if share else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
