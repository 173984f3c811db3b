"""The `video` world: a causal video model that keeps making the next chunk of video
from its own past, for ever, and changes course when a prompt arrives.

This is the class of model the reference product (PixVerse R1) is: not an image
loop but a video world model. Open work showed how to run one live: Self-Forcing
(Wan 2.1 1.3B, chunks of three latent frames over a rolling KV cache, 17 fps on
one H100), LongLive (a frame sink, and on a prompt switch the cache re-computed
over the recent window under the new prompt so motion continues but the old
prompt stops lingering; 20.7 fps), Krea Realtime 14B (KV-cache recomputation,
11 fps on a B200), StreamDiffusionV2 (sink tokens and rotary refresh, for
hours). `video_engine` rebuilds those techniques around diffusers' parts.

Why AnyFlow-FAR (diffusers' `AnyFlowFARPipeline`: `AnyFlowFARTransformer3DModel`,
`FlowMapEulerDiscreteScheduler`, `AutoencoderKLWan`, the UMT5 encoder;
nvidia/AnyFlow-FAR-Wan2.1-1.3B-Diffusers): it is causal and chunk-wise with a KV
cache in the model itself, few-step and any-step (a flow map: 1 to 4 steps a
chunk), 1.3B parameters, and builds from configs with tiny random weights, so
the whole loop runs in CI. Its pipeline keeps the cache only inside one
`__call__`, growing with the chunks, and continuing a video re-encodes the whole
history each call; the engine instead keeps a fixed window between chunks.

What the other chunked models in diffusers 0.42 would need (none keeps a cache
across calls there):
- SkyReels-V2 diffusion forcing (`SkyReelsV2DiffusionForcingPipeline`): no KV
  cache at all; a long video is blocks whose `overlap_history` frames are
  denoised again each block (`ar_step`, `causal_block_size`), so every chunk
  pays for its history again. It would need a causal cache written into its
  attention processors and a step schedule per block kept between calls.
- Helios (`HeliosPipeline`, 14B): conditions each chunk on re-fed history
  latents at several scales (`history_sizes`), no cache; a live loop would keep
  those latents between calls (cheap) but pay a 14B forward over them every
  chunk, and one H100 is far from real time at that size.
- Krea Realtime (Wan 2.1 14B, self-forcing with KV recomputation): diffusers
  0.42 ships no blocks for it (`Krea2` is an image model); Krea's modular
  blocks live on the hub as remote code. Besides trusting that code it would
  need 14B in memory and a B200-class GPU for 11 fps.

The world's side (this module): steering (a new prompt re-caches the window,
see the engine), frames out one by one from each chunk, and a `Pacing` hint so
the broadcast plays the chunks' bursts out evenly at the model's own 16 fps
(broadcast/pacer.py). Frames are `resolution` big (832x480 by default); the
compositor scales them.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import numpy as np
import torch

from ..worldspec import WorldSpec
from .base import Ambience, Frame, Pacing, World, WorldError
from .video_engine import VideoEngine
from .video_models import VideoModels, load_models
from .video_settings import VideoWorldSettings, parse_video_settings

log = logging.getLogger(__name__)

__all__ = ["VideoWorld", "VideoWorldSettings", "VideoModels", "create_world", "parse_video_settings"]

NO_CUDA = (
    "No CUDA GPU is available for the video world; run with --world sketch, "
    "or with --device cpu for a very slow preview."
)
PICTURES_PER_LATENT_FRAME = 4  # Wan 2.1's VAE: four pictures per latent frame in time


def resolve_device(name: str) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise WorldError(NO_CUDA)
    device = torch.device("cuda" if name == "auto" else name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise WorldError(f"There is no GPU {name}; this machine has {torch.cuda.device_count()} CUDA device(s).")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        # bfloat16 is what the checkpoint was trained in; a CPU preview stays in float32
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[name]


class VideoWorld(World):
    name = "video"
    gpu = True

    def __init__(
        self,
        models: VideoModels,
        settings: VideoWorldSettings | None = None,
        *,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        self.models = models
        self.settings = settings or VideoWorldSettings()
        self.device = resolve_device(self.settings.device) if device is None else torch.device(device)
        self.engine: VideoEngine | None = None
        self.stats = {"frames": 0, "chunks": 0, "recaches": 0}

    @classmethod
    def from_settings(
        cls,
        table: dict[str, Any] | VideoWorldSettings | None = None,
        *,
        offline: bool | None = None,
        device: str | None = None,
    ) -> VideoWorld:
        """Load real weights (a hub id or a local folder) for the `[world.video]` table."""
        settings = table if isinstance(table, VideoWorldSettings) else parse_video_settings(table)
        changes = {k: v for k, v in {"offline": offline, "device": device}.items() if v is not None}
        settings = settings.model_copy(update=changes)
        dev = resolve_device(settings.device)
        if dev.type == "cpu":
            log.warning("the video world runs on the CPU: a very slow preview, many seconds per chunk")
        models = load_models(
            settings.model,
            device=dev,
            dtype=resolve_dtype(settings.dtype, dev),
            offline=settings.offline,
            cache_dir=settings.cache_dir,
        )
        return cls(models, settings, device=dev)

    # -- the World interface ------------------------------------------------------
    @property
    def frame_size(self) -> tuple[int, int]:
        return self.settings.size

    def pacing(self) -> Pacing:
        return Pacing(
            source_fps=self.settings.source_fps,
            chunk_frames=self.settings.chunk_frames * PICTURES_PER_LATENT_FRAME,
            blend=self.settings.pacing == "blend",
        )

    def start(self, spec: WorldSpec, size: tuple[int, int], fps: float, seed: int = 0) -> None:
        self.fps = float(fps)
        self.spec = spec
        prompt = f"{spec.beats[0]}, {spec.style}" if spec.style else spec.beats[0]
        self.engine = VideoEngine(self.models, self.settings, device=self.device)
        self.engine.prepare(prompt, seed)
        self._pictures: deque[np.ndarray] = deque()
        self._on_air_generation = 0
        self._index = 0
        self._last_image: np.ndarray | None = None

    def render(self) -> Frame:
        engine = self.engine
        if engine is None:
            raise RuntimeError("VideoWorld.render() before start()")
        if not self._pictures:
            # a chunk at a time: a new direction takes effect at the next chunk
            pending = self.take_pending()
            if pending is not None:
                if engine.set_prompt(pending.direction.styled):
                    self.stats["recaches"] += 1
                self._on_air_generation = pending.generation
                self.direction = pending.direction
            self._pictures.extend(engine.generate())
            self.stats["chunks"] += 1
        image = self._pictures.popleft()
        self._last_image = image
        frame = Frame(image=image, index=self._index, generation=self._on_air_generation)
        self._index += 1
        self.stats["frames"] += 1
        return frame

    def ambience(self) -> Ambience:
        return Ambience.of_picture(self._last_image)

    def close(self) -> None:
        if self.engine is None:
            return
        self.engine = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def create_world(table: dict[str, Any] | None, *, offline: bool | None = None, device: str | None = None) -> VideoWorld:
    """What app.py calls for `--world video`: the `[world.video]` table in, a loaded world out."""
    return VideoWorld.from_settings(table, offline=offline, device=device)
