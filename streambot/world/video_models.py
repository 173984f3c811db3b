"""The models behind the `video` world: loading them, and building them from configs.

`VideoModels` is the bundle the world is handed: diffusers' AnyFlow-FAR parts
(the causal Wan 2.1 transformer, the Wan VAE, the flow-map scheduler) and the
UMT5 text encoder. `load_models` fills it from a hub id or a local folder (a
progress bar on a first download, never the network when offline);
`random_models` builds the same classes with random weights from the configs
below: full size for FLOP counts and GPU benchmarks, tiny for tests. The
full-size values are the published configs of nvidia/AnyFlow-FAR-Wan2.1-1.3B-
Diffusers (Wan2.1-T2V-1.3B with AnyFlow's FAR settings), the Wan 2.1 VAE and
google/umt5-xxl's encoder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .base import WorldError
from .model_types import FarTransformer, FlowSchedule, Model, PromptEncoder, WanVae
from .stream_models import ModuleT, resolve_folder, tiny_tokenizer

log = logging.getLogger(__name__)

# -- full-size configs ---------------------------------------------------------

# The transformer: Wan2.1-T2V-1.3B (dim 1536 = 12 heads x 128, 30 layers) with
# FAR's compressed context patches and AnyFlow's dual-timestep embedding.
ANYFLOW_FAR_1_3B: dict[str, Any] = dict(
    patch_size=(1, 2, 2),
    compressed_patch_size=(1, 4, 4),
    full_chunk_limit=3,
    num_attention_heads=12,
    attention_head_dim=128,
    in_channels=16,
    out_channels=16,
    text_dim=4096,
    freq_dim=256,
    ffn_dim=8960,
    num_layers=30,
    cross_attn_norm=True,
    eps=1e-6,
    rope_max_seq_len=1024,
    gate_value=0.25,
    deltatime_type="r",
    chunk_partition=(1, 3, 3, 3, 3, 3, 3, 2),
)

# The Wan 2.1 VAE (AutoencoderKLWan's defaults are its published config).
WAN_VAE: dict[str, Any] = dict(
    base_dim=96,
    z_dim=16,
    dim_mult=[1, 2, 4, 4],
    num_res_blocks=2,
    temperal_downsample=[False, True, True],
)

# google/umt5-xxl, encoder only (what Wan conditions on).
UMT5_XXL: dict[str, Any] = dict(
    vocab_size=256384,
    d_model=4096,
    d_kv=64,
    d_ff=10240,
    num_layers=24,
    num_heads=64,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu",
    layer_norm_epsilon=1e-6,
    tie_word_embeddings=False,
)

# Wan 2.1 sampling: flow shift 5 (AnyFlow's released settings, 16 fps video).
FLOW_MAP_SCHEDULER: dict[str, Any] = dict(num_train_timesteps=1000, shift=5.0)

# -- tiny configs for tests (same classes, a second or two on a CPU) ------------

TINY_TRANSFORMER: dict[str, Any] = dict(
    ANYFLOW_FAR_1_3B,
    num_attention_heads=2,
    attention_head_dim=12,
    text_dim=32,
    ffn_dim=32,
    num_layers=2,
    rope_max_seq_len=64,
)

TINY_VAE: dict[str, Any] = dict(WAN_VAE, base_dim=3, dim_mult=[1, 1, 1, 1], num_res_blocks=1)

TINY_TEXT_ENCODER: dict[str, Any] = dict(
    d_model=32,
    d_kv=8,
    d_ff=37,
    num_layers=2,
    num_heads=4,
    relative_attention_num_buckets=8,
)


@dataclass
class VideoModels:
    """What the video world is handed; `pipeline` is diffusers' own AnyFlow-FAR pipeline over the same parts."""

    transformer: FarTransformer  # AnyFlowFARTransformer3DModel
    vae: WanVae  # AutoencoderKLWan
    text_encoder: Model  # UMT5EncoderModel
    tokenizer: Any
    scheduler: FlowSchedule  # FlowMapEulerDiscreteScheduler
    name: str = "models"
    pipeline: PromptEncoder = field(init=False, repr=False)

    def __post_init__(self) -> None:
        from diffusers import AnyFlowFARPipeline

        # The pipeline only registers the parts: its prompt encoding is the reference one,
        # and tests compare the world's loop against its __call__.
        # (the two ignores: diffusers shows type checkers placeholder classes, see stream_models.random_models)
        self.pipeline = AnyFlowFARPipeline(  # type: ignore[assignment]
            tokenizer=self.tokenizer,
            text_encoder=self.text_encoder,
            transformer=self.transformer,
            vae=self.vae,
            scheduler=self.scheduler,
        )
        self.pipeline.set_progress_bar_config(disable=True)  # type: ignore[attr-defined]


def random_models(
    size: str = "tiny",
    *,
    tokenizer_dir: str | Path,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    transformer: dict[str, Any] | None = None,
) -> VideoModels:
    """The real diffusers/transformers classes with random weights, from configs.

    size: "tiny" (tests, CPU) or "full" (the 1.3B model's real shapes, with the
    XXL text encoder: GPU benchmarks). `transformer` overrides config values.
    """
    from diffusers import AnyFlowFARTransformer3DModel, AutoencoderKLWan, FlowMapEulerDiscreteScheduler
    from transformers import UMT5Config, UMT5EncoderModel

    if size not in ("tiny", "full"):
        raise ValueError(f"size must be 'tiny' or 'full', not {size!r}")
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer(tokenizer_dir)  # a character tokenizer: any prompt, no download
    full = size == "full"
    te_cfg = dict(UMT5_XXL if full else TINY_TEXT_ENCODER, vocab_size=len(tokenizer))
    with torch.device(device):
        tr_cfg = {**(ANYFLOW_FAR_1_3B if full else TINY_TRANSFORMER), **(transformer or {})}
        # (the ignores: see stream_models.random_models)
        model: FarTransformer = AnyFlowFARTransformer3DModel(**tr_cfg)  # type: ignore[assignment]
        vae: WanVae = AutoencoderKLWan(**(WAN_VAE if full else TINY_VAE))  # type: ignore[assignment]
        text_encoder: Model = UMT5EncoderModel(UMT5Config(**te_cfg))  # type: ignore[assignment]
    scheduler: FlowSchedule = FlowMapEulerDiscreteScheduler(**FLOW_MAP_SCHEDULER)  # type: ignore[assignment]

    def cast(module: ModuleT) -> ModuleT:
        return module.eval() if dtype == torch.float32 else module.to(dtype=dtype).eval()

    return VideoModels(
        transformer=cast(model),
        vae=cast(vae),
        text_encoder=cast(text_encoder),
        tokenizer=tokenizer,
        scheduler=scheduler,
        name=f"random-{size}",
    )


# -- loading real weights ---------------------------------------------------------

# Peak GPU memory at 832x480 in half precision, GiB: the 1.3B transformer (2.8),
# the UMT5-XXL encoder (11.4), the VAE and its decode (2), the rolling cache at
# the default window (5.3) and activations.
NEEDED_GIB_HALF = 24.0

_FILES = ["*.json", "*.txt", "*.model", "*.safetensors", "tokenizer/*"]


def needed_gib(dtype: torch.dtype) -> float:
    return NEEDED_GIB_HALF * (2 if dtype == torch.float32 else 1)


def not_enough_memory_message(model: str, need_gib: float, free_gib: float | None) -> str:
    have = f"only {free_gib:.1f} GiB is free" if free_gib is not None else "the GPU ran out of memory"
    return (
        f"{model} needs about {need_gib:.0f} GiB of GPU memory but {have}; lower the resolution "
        "or window_chunks in [world.video], close other GPU programs, or use --world stream or sketch."
    )


def check_gpu_memory(device: torch.device, model: str, dtype: torch.dtype) -> None:
    """Stop early, in one sentence, when the GPU cannot hold the model."""
    if device.type != "cuda":
        return
    free, _ = torch.cuda.mem_get_info(device)
    need = needed_gib(dtype)
    if free / 2**30 < need:
        raise WorldError(not_enough_memory_message(model, need, free / 2**30))


def load_models(
    model: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    offline: bool = False,
    cache_dir: str | None = None,
) -> VideoModels:
    """An AnyFlow-FAR diffusers folder (hub id or local path), moved to `device` in `dtype`."""
    from diffusers import AnyFlowFARPipeline

    check_gpu_memory(device, model, dtype)
    folder = resolve_folder(model, offline=offline, cache_dir=cache_dir, allow=_FILES)
    if not (folder / "transformer").is_dir() or not (folder / "vae").is_dir():
        raise WorldError(f"{folder} has no transformer and vae folders, so it is not an AnyFlow-FAR diffusers folder.")
    try:
        pipe = AnyFlowFARPipeline.from_pretrained(folder, dtype=dtype)
    except (OSError, ValueError, TypeError) as e:
        raise WorldError(f"The model in {folder} could not be loaded ({str(e).splitlines()[0]}).") from None
    if type(pipe.transformer).__name__ != "AnyFlowFARTransformer3DModel":
        raise WorldError(
            f"{model} is not a causal AnyFlow-FAR model (its transformer is {type(pipe.transformer).__name__})."
        )
    try:
        pipe.to(device)
    except torch.cuda.OutOfMemoryError:
        raise WorldError(not_enough_memory_message(model, needed_gib(dtype), None)) from None
    return VideoModels(
        transformer=pipe.transformer.eval(),
        vae=pipe.vae.eval(),
        text_encoder=pipe.text_encoder.eval(),
        tokenizer=pipe.tokenizer,
        scheduler=pipe.scheduler,
        name=model,
    )
