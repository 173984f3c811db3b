"""The `[world.stream]` table: what the stream world is told in config, validated once.

Every speed technique is its own switch so that its gain can be measured
(benchmarks/bench_stream_gpu.py turns them on one by one).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..config import ConfigError, explain_validation


class Motion(BaseModel):
    """The camera's slow move, per output frame, so the world travels instead of boiling."""

    model_config = ConfigDict(extra="forbid")

    pan_x: Annotated[float, Field(ge=-0.05, le=0.05)] = 0.0  # fraction of the frame width; + moves right
    pan_y: Annotated[float, Field(ge=-0.05, le=0.05)] = 0.0  # fraction of the frame height; + moves down
    zoom: Annotated[float, Field(ge=0.95, le=1.05)] = 1.0  # > 1 moves in
    rotate_deg: Annotated[float, Field(ge=-2, le=2)] = 0.0
    drift: Annotated[float, Field(ge=0, le=0.02)] = 0.0  # a slow wander added to the pan
    drift_period_frames: Annotated[int, Field(ge=2, le=100_000)] = 1800


class StreamWorldSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # what to load
    model: str = "stabilityai/sd-turbo"  # or stabilityai/sdxl-turbo, an LCM SD 1.5 repo, a local folder
    # "auto": the tiny VAE for the model's latents (madebyollin/taesd, or madebyollin/taesdxl for SDXL);
    # "model": the model's own full VAE; or a hub id or folder of another
    vae: str = "auto"
    offline: bool = False
    cache_dir: str | None = None
    device: str = "auto"  # auto (the first CUDA GPU), cuda, cuda:N, or cpu for a slow preview
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"

    # what to render
    resolution: str = "512x512"
    t_index_list: list[Annotated[int, Field(ge=0)]] | None = None  # None: chosen from `steps`
    steps: Annotated[int, Field(ge=1, le=4)] = 1
    num_inference_steps: Annotated[int, Field(ge=1, le=1000)] = 50
    lcm_guidance: Annotated[float, Field(ge=1, le=20)] = 8.0  # only for UNets with a guidance embedding
    feedback: Literal["latent", "pixel"] = "latent"
    noise: Literal["fixed", "fresh"] = "fixed"
    motion: Motion = Motion(zoom=1.001, drift=0.0005)
    reanchor_every: Annotated[int, Field(ge=0)] = 300  # frames; 0 never
    reanchor_strength: Annotated[float, Field(ge=0, le=1)] = 0.15
    reanchor_frames: Annotated[int, Field(ge=1, le=600)] = 15  # spread over this many, so it never pops
    transition_frames: Annotated[int, Field(ge=1, le=600)] | None = None  # None: the steer's transition_s
    prompt_cache_size: Annotated[int, Field(ge=1, le=10_000)] = 64

    # speed switches
    stream_batch: bool = True
    channels_last: bool = True
    fuse_qkv: bool = True
    similarity_filter: bool = False
    similarity_threshold: Annotated[float, Field(ge=0, le=1)] = 0.98
    similarity_max_skip: Annotated[int, Field(ge=0, le=1000)] = 10
    compile: bool = False
    cuda_graphs: bool = False
    # None: 2 on a GPU (the host takes one frame while the next is painted; one frame of latency), 1 elsewhere
    frames_in_flight: Annotated[int, Field(ge=1, le=2)] | None = None

    # safety on air
    safety_check_every: Annotated[int, Field(ge=0)] = 0  # frames; 0 off
    safety_model: str = "CompVis/stable-diffusion-safety-checker"

    @field_validator("resolution")
    @classmethod
    def _resolution(cls, v: str) -> str:
        m = re.fullmatch(r"\s*(\d{2,4})\s*[xX]\s*(\d{2,4})\s*", v)
        if not m:
            raise ValueError(f"resolution {v!r} is not WIDTHxHEIGHT, e.g. 512x512")
        w, h = int(m.group(1)), int(m.group(2))
        if w % 8 or h % 8 or not (64 <= w <= 2048 and 64 <= h <= 2048):
            raise ValueError(f"resolution {w}x{h} must be multiples of 8 between 64 and 2048")
        return f"{w}x{h}"

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", v):
            raise ValueError(f"device {v!r} is not one of auto, cpu, cuda, cuda:N")
        return v

    @model_validator(mode="after")
    def _steps(self) -> StreamWorldSettings:
        if self.t_index_list is not None:
            if not self.t_index_list:
                raise ValueError("t_index_list must name at least one step")
            if max(self.t_index_list) >= self.num_inference_steps:
                raise ValueError(f"t_index_list values must be below num_inference_steps ({self.num_inference_steps})")
            if sorted(self.t_index_list) != self.t_index_list:
                raise ValueError("t_index_list must go from noisy to clean (ascending indices)")
        return self

    @property
    def size(self) -> tuple[int, int]:
        w, h = self.resolution.lower().split("x")
        return int(w), int(h)

    @property
    def timestep_indices(self) -> list[int]:
        """Indices into the `num_inference_steps` schedule, noisy first (StreamDiffusion's t_index_list)."""
        if self.t_index_list is not None:
            return list(self.t_index_list)
        # img2img on the previous frame: re-paint from moderate noise; more steps start noisier
        n = self.num_inference_steps
        defaults = {1: [32], 2: [32, 45], 3: [20, 32, 45], 4: [10, 20, 32, 45]}[self.steps]
        return [min(n - 1, round(i * n / 50)) for i in defaults]


def parse_stream_settings(data: dict[str, Any] | None, source: str = "[world.stream]") -> StreamWorldSettings:
    """Validate the table, or stop with one sentence naming the field."""
    try:
        return StreamWorldSettings.model_validate(data or {})
    except ValidationError as e:
        raise ConfigError(explain_validation(e, source)) from None
