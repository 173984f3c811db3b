"""FLOPs per output frame of the stream world's real configurations, and the frame-rate ceiling they imply.

The full-size SD-Turbo UNet (SD 2.1 at 512x512), TAESD and the OpenCLIP ViT-H
text tower are built from their configs on PyTorch's meta device (shapes only:
no weights, no memory, seconds on a laptop) and counted with
torch.utils.flop_counter, which counts matrix multiplies, convolutions and
attention (2 FLOPs per multiply-add) and ignores element-wise work.

    .venv/bin/python benchmarks/stream_flops.py [--peak-tflops 790] [--json out.json] [--verify]

--verify also counts the tiny test model both on the meta device and for real
on the CPU, to show that the meta count is the real one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streambot.world.stream_models import (  # noqa: E402
    SD2_TEXT_ENCODER,
    SD_TURBO_UNET,
    SDXL_TURBO_UNET,
    TAESD,
    TINY_TAESD,
    TINY_UNET,
)

H100_BF16_TFLOPS = 790.0  # dense bf16 matmul, measured on the project's H100 machines

# StreamDiffusion (arXiv 2312.12491, and its README), SD-Turbo, one step, 512x512,
# RTX 4090 with TensorRT and TAESD.
STREAMDIFFUSION = [
    {"setup": "StreamDiffusion txt2img, SD-Turbo 1 step, RTX 4090 + TensorRT", "fps": 106.16},
    {"setup": "StreamDiffusion img2img, SD-Turbo 1 step, RTX 4090 + TensorRT", "fps": 93.90},
    {"setup": "StreamDiffusion img2img, paper's headline, RTX 4090", "fps": 91.07},
]
RTX4090_FP16_TFLOPS = 165.2  # dense fp16 tensor cores with fp32 accumulate (330 with fp16 accumulate)


def count(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def build(unet_cfg, vae_cfg, device="meta"):
    from diffusers import AutoencoderTiny, UNet2DConditionModel

    with torch.device(device):
        return UNet2DConditionModel(**unet_cfg).eval(), AutoencoderTiny(**vae_cfg).eval()


@torch.inference_mode()
def unet_flops(unet, batch: int, latent: int, sdxl: bool = False, device="meta") -> int:
    x = torch.randn(batch, 4, latent, latent, device=device)
    t = torch.full((batch,), 999, device=device)
    ctx = torch.randn(batch, 77, unet.config.cross_attention_dim, device=device)
    kwargs = {}
    if sdxl:
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(batch, 1280, device=device),
            "time_ids": torch.randn(batch, 6, device=device),
        }
    return count(lambda: unet(x, t, encoder_hidden_states=ctx, **kwargs))


@torch.inference_mode()
def vae_flops(vae, size: int, device="meta") -> tuple[int, int]:
    latent = torch.randn(1, 4, size // 8, size // 8, device=device)
    image = torch.randn(1, 3, size, size, device=device)
    return count(lambda: vae.decode(latent)), count(lambda: vae.encode(image))


@torch.inference_mode()
def text_flops() -> int:
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        te = CLIPTextModel(CLIPTextConfig(**SD2_TEXT_ENCODER)).eval()
    ids = torch.zeros(1, 77, dtype=torch.long, device="meta")
    return count(lambda: te(ids))


def verify() -> dict:
    """The tiny model counted on meta and for real on the CPU: the two must agree."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    out = {}
    for device in ("meta", "cpu"):
        torch.manual_seed(0)
        unet, vae = build(TINY_UNET, TINY_TAESD, device)
        # the CPU's fused attention kernel is not in the counter's registry; its math form is
        with sdpa_kernel(SDPBackend.MATH):
            out[device] = unet_flops(unet, 2, 8, device=device) + vae_flops(vae, 64, device=device)[0]
    out["agree"] = out["meta"] == out["cpu"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peak-tflops", type=float, default=H100_BF16_TFLOPS)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--verify", action="store_true")
    args = ap.parse_args()
    latent = args.size // 8

    unet, taesd = build(SD_TURBO_UNET, TAESD)
    xl_unet, _ = build(SDXL_TURBO_UNET, TAESD)  # TAESDXL has TAESD's architecture
    unet1 = unet_flops(unet, 1, latent)
    unet2 = unet_flops(unet, 2, latent)
    xl1 = unet_flops(xl_unet, 1, latent, sdxl=True)
    dec, enc = vae_flops(taesd, args.size)
    text = text_flops()

    rows = [
        ("SD-Turbo, 1 step, latent feedback (default)", unet1 + dec),
        ("SD-Turbo, 1 step, pixel feedback (+TAESD encode)", unet1 + dec + enc),
        ("SD-Turbo, 2 steps, stream batch", unet2 + dec),
        ("SDXL-Turbo, 1 step, latent feedback", xl1 + dec),
    ]
    peak = args.peak_tflops * 1e12
    result = {
        "size": args.size,
        "peak_tflops": args.peak_tflops,
        "parts_gflop": {
            "sd_turbo_unet_batch1": unet1 / 1e9,
            "sd_turbo_unet_batch2": unet2 / 1e9,
            "sdxl_turbo_unet_batch1": xl1 / 1e9,
            "taesd_decode": dec / 1e9,
            "taesd_encode": enc / 1e9,
            "openclip_vit_h_text_per_prompt": text / 1e9,
        },
        "per_frame": [{"setup": name, "tflop": f / 1e12, "ceiling_fps": peak / f} for name, f in rows],
        "streamdiffusion": [
            dict(r, implied_tflops=r["fps"] * (unet1 + dec + (enc if "img2img" in r["setup"] else 0)) / 1e12)
            for r in STREAMDIFFUSION
        ],
        "rtx4090_fp16_tflops": RTX4090_FP16_TFLOPS,
    }
    if args.verify:
        result["verify_tiny_meta_vs_cpu"] = verify()

    print(f"FLOPs per frame at {args.size}x{args.size} (torch.utils.flop_counter, 2 FLOPs per MAC)\n")
    for name, g in result["parts_gflop"].items():
        print(f"  {name:36s} {g:10.1f} GFLOP")
    print(f"\n| configuration | TFLOP / frame | ceiling fps at {args.peak_tflops:.0f} TFLOP/s |")
    print("| --- | ---: | ---: |")
    for r in result["per_frame"]:
        print(f"| {r['setup']} | {r['tflop']:.3f} | {r['ceiling_fps']:.0f} |")
    print("\nStreamDiffusion's published figures, and the compute they imply:")
    for r in result["streamdiffusion"]:
        util = r["implied_tflops"] / RTX4090_FP16_TFLOPS
        print(
            f"  {r['setup']}: {r['fps']:.1f} fps = {r['implied_tflops']:.0f} TFLOP/s "
            f"({util:.0%} of the 4090's {RTX4090_FP16_TFLOPS:.0f} dense fp16)"
        )
    if args.verify:
        print(f"\nmeta count == real CPU count on the tiny model: {result['verify_tiny_meta_vs_cpu']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
