"""The `[world.video]` table: what the video world is told in config, validated once.

The window sizes are counted in chunks of latent frames: with Wan 2.1's VAE one
latent frame is four pictures (the very first is one), so the default chunk of
three latent frames is twelve pictures, 0.75 s of video at 16 fps.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..config import ConfigError, explain_validation


class VideoWorldSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # what to load
    model: str = "nvidia/AnyFlow-FAR-Wan2.1-1.3B-Diffusers"  # a hub id or a local diffusers folder
    offline: bool = False
    cache_dir: str | None = None
    device: str = "auto"  # auto (the first CUDA GPU), cuda, cuda:N, or cpu for a (very) slow preview
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"

    # what to render
    resolution: str = "832x480"
    steps: Annotated[int, Field(ge=1, le=50)] = 4  # flow-map steps per chunk; the checkpoint is any-step
    chunk_frames: Annotated[int, Field(ge=1, le=8)] = 3  # latent frames per chunk (3 is what FAR was trained on)
    sink_chunks: Annotated[int, Field(ge=0, le=4)] = 1  # the first chunks, kept for ever as attention sinks
    window_chunks: Annotated[int, Field(ge=0, le=32)] = 3  # older chunks kept (compressed) besides the sink
    recache_on_switch: bool = True  # a new prompt rebuilds the cache over the window under it (LongLive)
    max_sequence_length: Annotated[int, Field(ge=8, le=512)] = 512
    prompt_cache_size: Annotated[int, Field(ge=1, le=10_000)] = 64

    # how the chunks are played out at the broadcast's frame rate
    source_fps: Annotated[float, Field(gt=0, le=120)] = 16.0  # the frame rate the model's motion is made for
    pacing: Literal["blend", "nearest"] = "blend"

    @field_validator("resolution")
    @classmethod
    def _resolution(cls, v: str) -> str:
        m = re.fullmatch(r"\s*(\d{2,4})\s*[xX]\s*(\d{2,4})\s*", v)
        if not m:
            raise ValueError(f"resolution {v!r} is not WIDTHxHEIGHT, e.g. 832x480")
        w, h = int(m.group(1)), int(m.group(2))
        # 8 (the VAE) x 4 (the compressed patches of older chunks) must divide both sides
        if w % 32 or h % 32 or not (64 <= w <= 1920 and 64 <= h <= 1920):
            raise ValueError(f"resolution {w}x{h} must be multiples of 32 between 64 and 1920")
        return f"{w}x{h}"

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", v):
            raise ValueError(f"device {v!r} is not one of auto, cpu, cuda, cuda:N")
        return v

    @property
    def size(self) -> tuple[int, int]:
        w, h = self.resolution.lower().split("x")
        return int(w), int(h)


def parse_video_settings(data: dict[str, Any] | None, source: str = "[world.video]") -> VideoWorldSettings:
    """Validate the table, or stop with one sentence naming the field."""
    try:
        return VideoWorldSettings.model_validate(data or {})
    except ValidationError as e:
        raise ConfigError(explain_validation(e, source)) from None
