"""The models behind the `stream` world: loading them, and building them from configs.

`StreamModels` is the bundle the world is handed. `load_models` fills it from a
hub id or a local folder (one progress bar on a first download, never the
network when offline); `random_models` builds the same architectures with
random weights from the configs below, full size for FLOP counts and GPU
benchmarks, tiny for tests. The configs are the published ones (SD 2.1 / SD-Turbo
UNet at 512, the OpenCLIP ViT-H text tower as SD 2.x uses it, TAESD).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from .base import WorldError
from .model_types import Model, NoiseSchedule, ProjectedTextEncoder, TextEncoder, Tokenizer, UNet, Vae

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

ModuleT = TypeVar("ModuleT", bound=Model)

log = logging.getLogger(__name__)

# -- full-size configs ---------------------------------------------------------

# stabilityai/sd-turbo unet/config.json (the SD 2.1 UNet at 512x512).
# diffusers' attention_head_dim here is really the number of heads (64-dim heads).
SD_TURBO_UNET: dict[str, Any] = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=1024,
    attention_head_dim=(5, 10, 20, 20),
    use_linear_projection=True,
    upcast_attention=False,
    only_cross_attention=False,
    dual_cross_attention=False,
)

# stabilityai/sdxl-turbo unet/config.json (the SDXL base UNet; 512x512 native for Turbo).
SDXL_TURBO_UNET: dict[str, Any] = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    upcast_attention=False,
)

# The OpenCLIP ViT-H/14 text tower as stored for SD 2.x: 23 of its 24 layers
# (SD 2 conditions on the penultimate layer), hidden 1024.
SD2_TEXT_ENCODER: dict[str, Any] = dict(
    vocab_size=49408,
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=23,
    num_attention_heads=16,
    max_position_embeddings=77,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
    projection_dim=512,
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
)

# madebyollin/taesd (and taesdxl: same architecture, other weights).
TAESD: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    encoder_block_out_channels=(64, 64, 64, 64),
    decoder_block_out_channels=(64, 64, 64, 64),
    act_fn="relu",
    latent_channels=4,
    upsampling_scaling_factor=2,
    num_encoder_blocks=(1, 3, 3, 3),
    num_decoder_blocks=(3, 3, 3, 1),
    latent_magnitude=3,
    latent_shift=0.5,
    force_upcast=False,
    scaling_factor=1.0,
)

# stabilityai/sd-turbo scheduler/scheduler_config.json (only the noise schedule matters here).
SD_TURBO_SCHEDULER: dict[str, Any] = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    timestep_spacing="trailing",
)

# -- tiny configs for tests (same classes, seconds on a CPU) -------------------

TINY_UNET: dict[str, Any] = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(16, 32),
    layers_per_block=1,
    norm_num_groups=8,
    cross_attention_dim=32,
    attention_head_dim=(2, 4),
    use_linear_projection=True,
)

TINY_SDXL_UNET: dict[str, Any] = dict(
    TINY_UNET,
    cross_attention_dim=64,  # the two text encoders' hidden states side by side
    addition_embed_type="text_time",
    addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=6 * 8 + 32,  # six time ids + the pooled text
)

TINY_TAESD: dict[str, Any] = dict(
    TAESD,
    encoder_block_out_channels=(8, 8, 8, 8),
    decoder_block_out_channels=(8, 8, 8, 8),
    num_encoder_blocks=(1, 1, 1, 1),
    num_decoder_blocks=(1, 1, 1, 1),
)

TINY_TEXT_ENCODER: dict[str, Any] = dict(
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=77,
    projection_dim=32,
    hidden_act="gelu",
    bos_token_id=0,
    eos_token_id=1,
    pad_token_id=1,
)


@dataclass
class StreamModels:
    """What the stream world is handed: a turbo/LCM UNet, a (tiny) VAE, the text side."""

    unet: UNet
    vae: Vae
    text_encoder: TextEncoder
    tokenizer: Tokenizer
    scheduler: NoiseSchedule  # its config may also name the prediction_type
    text_encoder_2: ProjectedTextEncoder | None = None  # SDXL only
    tokenizer_2: Tokenizer | None = None
    safety_checker: Callable[[np.ndarray], bool] | None = None
    name: str = "models"

    @property
    def is_sdxl(self) -> bool:
        return getattr(self.unet.config, "addition_embed_type", None) == "text_time"


# -- a tokenizer without the hub -------------------------------------------------

_TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789,.'-!?"


def tiny_tokenizer(folder: str | Path) -> CLIPTokenizer:
    """A CLIP tokenizer over single characters, written to `folder` (no download).

    Every word splits into its letters, so any prompt tokenizes; different prompts
    give different ids, which is all a random-weight text encoder needs.
    """
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["<|startoftext|>", "<|endoftext|>", "<unk>"]
    tokens += list(_TOKEN_CHARS) + [c + "</w>" for c in _TOKEN_CHARS]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(
        str(folder / "vocab.json"),
        str(folder / "merges.txt"),
        unk_token="<unk>",
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=77,
    )


def random_models(
    size: str = "tiny",
    *,
    sdxl: bool = False,
    tokenizer_dir: str | Path,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    time_cond_proj_dim: int | None = None,
) -> StreamModels:
    """The real diffusers/transformers classes with random weights, from configs.

    size: "tiny" (tests, CPU) or "full" (SD-Turbo's real shapes: FLOP counts and
    GPU benchmarks). `time_cond_proj_dim` makes an LCM-style UNet.
    """
    from diffusers import AutoencoderTiny, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    if size not in ("tiny", "full"):
        raise ValueError(f"size must be 'tiny' or 'full', not {size!r}")
    if sdxl and size == "full":
        raise ValueError("full-size random SDXL text encoders are not built here; use the UNet config alone")
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer(tokenizer_dir)
    with torch.device(device):
        if size == "full":
            unet_cfg, vae_cfg, te_cfg = SD_TURBO_UNET, TAESD, SD2_TEXT_ENCODER
        else:
            unet_cfg = TINY_SDXL_UNET if sdxl else TINY_UNET
            vae_cfg = TINY_TAESD
            te_cfg = dict(TINY_TEXT_ENCODER, vocab_size=len(tokenizer))
        if time_cond_proj_dim:
            unet_cfg = dict(unet_cfg, time_cond_proj_dim=time_cond_proj_dim)
        # The ignores: diffusers' __init__ shows type checkers its placeholder classes
        # (utils/dummy_pt_objects, imported first under TYPE_CHECKING), which have none of the
        # real classes' members; transformers wraps PreTrainedModel.to in functools.wraps, whose
        # type mypy does not bind as a method, so its models do not match Model.to.
        unet: UNet = UNet2DConditionModel(**unet_cfg)  # type: ignore[assignment]
        vae: Vae = AutoencoderTiny(**vae_cfg)  # type: ignore[assignment]
        text_encoder: TextEncoder = CLIPTextModel(CLIPTextConfig(**te_cfg))  # type: ignore[assignment]
        text_encoder_2: ProjectedTextEncoder | None = None
        tokenizer_2 = None
        if sdxl:
            text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**te_cfg))  # type: ignore[assignment]
            tokenizer_2 = tokenizer
    scheduler: NoiseSchedule = EulerDiscreteScheduler(**SD_TURBO_SCHEDULER)  # type: ignore[assignment]  # as above

    def cast(module: ModuleT) -> ModuleT:
        return module.eval() if dtype == torch.float32 else module.to(dtype=dtype).eval()

    models = StreamModels(
        unet=cast(unet),
        vae=cast(vae),
        text_encoder=cast(text_encoder),
        tokenizer=tokenizer,
        scheduler=scheduler,
        text_encoder_2=None if text_encoder_2 is None else cast(text_encoder_2),
        tokenizer_2=tokenizer_2,
        name=f"random-{size}{'-sdxl' if sdxl else ''}",
    )
    return models


# -- loading real weights ---------------------------------------------------------

# Rough peak GPU memory for 512x512 at half precision, GiB: weights + activations + slack.
_NEEDED_GIB_HALF = {"sd": 3.5, "sdxl": 9.0}


def guess_family(model: str) -> str:
    return "sdxl" if "xl" in model.lower() else "sd"


def needed_gib(model: str, dtype: torch.dtype) -> float:
    gib = _NEEDED_GIB_HALF[guess_family(model)]
    return gib * 2 if dtype == torch.float32 else gib


def check_gpu_memory(device: torch.device, model: str, dtype: torch.dtype) -> None:
    """Stop early, in one sentence, when the GPU cannot hold the model."""
    if device.type != "cuda":
        return
    free, total = torch.cuda.mem_get_info(device)
    need = needed_gib(model, dtype)
    if free / 2**30 < need:
        raise WorldError(not_enough_memory_message(model, need, free / 2**30))


def not_enough_memory_message(model: str, need_gib: float, free_gib: float | None) -> str:
    have = f"only {free_gib:.1f} GiB is free" if free_gib is not None else "the GPU ran out of memory"
    return (
        f"{model} needs about {need_gib:.1f} GiB of GPU memory but {have}; "
        'choose a smaller option (model = "stabilityai/sd-turbo" instead of SDXL-Turbo, '
        'dtype = "float16", a lower resolution, or fewer t_index_list steps), '
        "close other GPU programs, or use --world sketch."
    )


def _hub_cache_dir(cache_dir: str | None) -> str:
    if cache_dir:
        return str(cache_dir)
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def resolve_folder(model: str, *, offline: bool, cache_dir: str | None, allow: list[str] | None = None) -> Path:
    """A local folder for `model`: the path itself, or the hub snapshot (downloaded if allowed)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    looks_like_path = model.startswith((".", "/", "~")) or os.sep + os.sep in model or model.count("/") > 1
    if looks_like_path:
        raise WorldError(f"The model folder {path} does not exist.")
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils.tqdm import enable_progress_bars

    enable_progress_bars()  # a first download of gigabytes must show that it is moving
    try:
        return Path(snapshot_download(model, cache_dir=cache_dir, local_files_only=offline, allow_patterns=allow))
    except Exception as e:  # the hub's errors vary by cause; each becomes one sentence
        if offline or type(e).__name__ in ("LocalEntryNotFoundError", "OfflineModeIsEnabled"):
            raise WorldError(
                f"The weights for {model!r} are not on this machine (looked for the folder "
                f"{path.resolve()} and in the Hugging Face cache {_hub_cache_dir(cache_dir)}); "
                "run once without --offline to download them, or set model to a local folder."
            ) from None
        raise WorldError(f"Could not download {model!r} from the Hugging Face hub ({e}).") from None


def _variant(folder: Path, sub: str, dtype: torch.dtype) -> str | None:
    """The fp16 files when we run in half precision (or when they are all there is)."""
    half = any((folder / sub).glob("*.fp16.safetensors"))
    plain = any(p for p in (folder / sub).glob("*.safetensors") if ".fp16." not in p.name)
    plain = plain or any((folder / sub).glob("*.bin"))
    return "fp16" if half and (dtype != torch.float32 or not plain) else None


_WEIGHT_DIRS = ("unet", "text_encoder", "text_encoder_2")
_VAE_FILES = ["*.json", "*.safetensors"]
TAESD_REPO, TAESDXL_REPO = "madebyollin/taesd", "madebyollin/taesdxl"


def tiny_vae_for(is_sdxl: bool) -> str:
    """The tiny VAE trained on the model's latent space: SDXL's differs from SD 1.x/2.x's."""
    return TAESDXL_REPO if is_sdxl else TAESD_REPO


def vae_source(vae: str, model: str) -> str | None:
    """The VAE's repo or folder before anything is loaded (None: the model's own); "auto" guesses from the name."""
    if vae == "model":
        return None
    return tiny_vae_for(guess_family(model) == "sdxl") if vae == "auto" else vae


def model_files(model: str, dtype: torch.dtype, *, offline: bool, own_vae: bool = False) -> list[str]:
    """What to fetch from a diffusers repo: configs, tokenizers, and one copy of each weight.

    Half precision fetches the fp16 variant where the repo has one (SD-Turbo's
    UNet: 1.7 GB instead of 5.2 GB for both); the model's own VAE only when it is
    used (`own_vae`), otherwise a tiny one is fetched from its own repo.
    """
    patterns = ["*.json", "*.txt", "*.model"]
    files: list[str] = []
    if not offline:
        try:
            from huggingface_hub import list_repo_files

            files = list_repo_files(model)
        except Exception as e:  # no listing: fall back to every safetensors file
            log.debug("could not list %s (%s)", model, e)
    for sub in _WEIGHT_DIRS + (("vae",) if own_vae else ()):
        mine = [f for f in files if f.startswith(sub + "/")]
        fp16 = [f for f in mine if f.endswith(".fp16.safetensors")]
        if dtype != torch.float32 and fp16:
            patterns.append(f"{sub}/*.fp16.safetensors")
        elif mine and not any(f.endswith(".safetensors") for f in mine):
            patterns.append(f"{sub}/*.bin")
        else:
            patterns.append(f"{sub}/*.safetensors")
    return patterns


def load_models(
    model: str,
    vae: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    offline: bool = False,
    cache_dir: str | None = None,
    safety_model: str | None = None,
) -> StreamModels:
    """SD-Turbo, SDXL-Turbo or an LCM-distilled SD 1.5 folder, with a tiny VAE.

    `vae`: "auto" picks the tiny VAE that matches the model's latents (TAESDXL for
    SDXL), "model" the model's own, anything else is a hub id or a folder.
    """
    from diffusers import AutoencoderKL, AutoencoderTiny, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    check_gpu_memory(device, model, dtype)
    own_vae = vae == "model"
    local = Path(model).expanduser().is_dir()
    allow = None if local else model_files(model, dtype, offline=offline, own_vae=own_vae)
    folder = resolve_folder(model, offline=offline, cache_dir=cache_dir, allow=allow)
    if not (folder / "unet").is_dir():
        raise WorldError(f"{folder} has no unet folder, so it is not a diffusers model folder.")
    try:
        unet = UNet2DConditionModel.from_pretrained(
            folder, subfolder="unet", dtype=dtype, variant=_variant(folder, "unet", dtype)
        )
        text_encoder = CLIPTextModel.from_pretrained(
            folder, subfolder="text_encoder", dtype=dtype, variant=_variant(folder, "text_encoder", dtype)
        )
        tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
        scheduler = EulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler")
        text_encoder_2 = tokenizer_2 = None
        is_sdxl = getattr(unet.config, "addition_embed_type", None) == "text_time"
        if is_sdxl:
            text_encoder_2 = CLIPTextModelWithProjection.from_pretrained(
                folder,
                subfolder="text_encoder_2",
                dtype=dtype,
                variant=_variant(folder, "text_encoder_2", dtype),
            )
            tokenizer_2 = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer_2")
        if own_vae:  # the model's own full VAE: slower, sharper (the engine upcasts it if it asks)
            vae_model = AutoencoderKL.from_pretrained(
                folder, subfolder="vae", dtype=dtype, variant=_variant(folder, "vae", dtype)
            )
        else:
            if vae == "auto":
                vae = tiny_vae_for(is_sdxl)
            elif vae in (TAESD_REPO, TAESDXL_REPO) and vae != tiny_vae_for(is_sdxl):
                log.warning(
                    "%s decodes %s latents, but %s is not such a model; expect wrong colours",
                    vae,
                    "SDXL" if vae == TAESDXL_REPO else "SD 1.x/2.x",
                    model,
                )
            vae_folder = resolve_folder(vae, offline=offline, cache_dir=cache_dir, allow=_VAE_FILES)
            vae_model = AutoencoderTiny.from_pretrained(vae_folder, dtype=dtype)
    except (OSError, ValueError) as e:
        raise WorldError(f"The model in {folder} could not be loaded ({str(e).splitlines()[0]}).") from None
    checker = None
    if safety_model:
        checker = ClipSafetyChecker.load(safety_model, device=device, dtype=dtype, offline=offline, cache_dir=cache_dir)
    return StreamModels(
        unet=unet.eval(),
        vae=vae_model.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        scheduler=scheduler,
        text_encoder_2=None if text_encoder_2 is None else text_encoder_2.eval(),
        tokenizer_2=tokenizer_2,
        safety_checker=checker,
        name=model,
    )


class ClipSafetyChecker:
    """diffusers' StableDiffusionSafetyChecker as a callable: image -> flagged?"""

    def __init__(self, model: torch.nn.Module, processor: Any, device: torch.device, dtype: torch.dtype):
        self.model = model.to(device=device, dtype=dtype).eval()
        self.processor = processor
        self.device, self.dtype = device, dtype

    @classmethod
    def load(
        cls, name: str, *, device: torch.device, dtype: torch.dtype, offline: bool, cache_dir: str | None
    ) -> ClipSafetyChecker:
        from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
        from transformers import CLIPImageProcessor

        folder = resolve_folder(name, offline=offline, cache_dir=cache_dir, allow=["*.json", "*.safetensors"])
        model = StableDiffusionSafetyChecker.from_pretrained(folder, dtype=dtype)
        return cls(model, CLIPImageProcessor.from_pretrained(folder), device, dtype)

    @torch.inference_mode()
    def __call__(self, image: np.ndarray) -> bool:
        pixels = self.processor(images=[image], return_tensors="pt").pixel_values
        pixels = pixels.to(device=self.device, dtype=self.dtype)
        _, flagged = self.model(images=image[None].copy(), clip_input=pixels)
        return bool(flagged[0])
