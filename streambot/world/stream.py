"""The `stream` world: a diffusion model painting the world live on one GPU.

StreamDiffusion's techniques (arXiv 2312.12491) re-built on current PyTorch
and diffusers: SD-Turbo (or SDXL-Turbo, or an LCM-distilled SD 1.5) in one to
four steps, each frame img2img of the last one in latent space, a slow camera
move so the world travels, the prompt eased over by slerp between cached
embeddings, stream batch, the similarity filter, torch.compile and CUDA
graphs behind switches, and an optional safety check that holds the last safe
frame. This module owns the world's side (steering, motion, safety, frames);
`stream_engine` owns the tensors.

The frames are `resolution` big (512x512 by default), whatever the broadcast
size: the compositor scales them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from ..worldspec import WorldSpec
from .base import Ambience, Frame, World, WorldError
from .stream_engine import Conditioning, StreamEngine
from .stream_models import StreamModels, load_models
from .stream_ops import CameraPath, Slerp, ease_out
from .stream_settings import Motion, StreamWorldSettings, parse_stream_settings

log = logging.getLogger(__name__)

__all__ = ["StreamWorld", "StreamWorldSettings", "Motion", "StreamModels", "create_world", "parse_stream_settings"]

NO_CUDA = (
    "No CUDA GPU is available for the stream world; run with --world sketch, or with --device cpu for a slow preview."
)


def resolve_device(name: str) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise WorldError("The mps device is not available on this machine; use --world sketch or --device cpu.")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise WorldError(NO_CUDA)
    device = torch.device("cuda" if name == "auto" else name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise WorldError(f"There is no GPU {name}; this machine has {torch.cuda.device_count()} CUDA device(s).")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[name]


class StreamWorld(World):
    name = "stream"
    gpu = True

    def __init__(
        self,
        models: StreamModels,
        settings: StreamWorldSettings | None = None,
        *,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        self.models = models
        self.settings = settings or StreamWorldSettings()
        self.device = resolve_device(self.settings.device) if device is None else torch.device(device)
        self.dtype = resolve_dtype(self.settings.dtype, self.device)
        self.engine: StreamEngine | None = None
        self._motion_lock = threading.Lock()
        self._motion = self.settings.motion
        self._camera: CameraPath | None = None
        self._camera_motion: Motion | None = None  # what the camera was last set to
        self.stats = {"frames": 0, "skipped": 0, "flagged": 0, "reanchored": 0}

    @classmethod
    def from_settings(
        cls,
        table: dict[str, Any] | StreamWorldSettings | None = None,
        *,
        offline: bool | None = None,
        device: str | None = None,
    ) -> StreamWorld:
        """Load real weights (a hub id or a local folder) for the `[world.stream]` table."""
        settings = table if isinstance(table, StreamWorldSettings) else parse_stream_settings(table)
        changes = {k: v for k, v in {"offline": offline, "device": device}.items() if v is not None}
        settings = settings.model_copy(update=changes)
        dev = resolve_device(settings.device)
        dtype = resolve_dtype(settings.dtype, dev)
        if dev.type == "cpu":
            log.warning("the stream world runs on the CPU: a slow preview, seconds per frame")
        models = load_models(
            settings.model,
            settings.vae,
            device=dev,
            dtype=dtype,
            offline=settings.offline,
            cache_dir=settings.cache_dir,
            safety_model=settings.safety_model if settings.safety_check_every else None,
        )
        return cls(models, settings, device=dev)

    # -- the World interface ------------------------------------------------------
    @property
    def frame_size(self) -> tuple[int, int]:
        return self.settings.size

    def start(self, spec: WorldSpec, size: tuple[int, int], fps: float, seed: int = 0) -> None:
        s = self.settings
        if s.safety_check_every and self.models.safety_checker is None:
            raise WorldError("safety_check_every is set but no safety checker was loaded.")
        preset_motion = (spec.extra.get("stream") or {}).get("motion")
        if preset_motion is not None:
            try:
                self._motion = Motion.model_validate(preset_motion)
            except ValidationError as e:
                why = e.errors()[0]["msg"]
                raise WorldError(f"The world {spec.name!r} has a bad [stream.motion] table ({why}).") from None
        self.fps = float(fps)
        self.spec = spec
        prompt = f"{spec.beats[0]}, {spec.style}" if spec.style else spec.beats[0]
        self.engine = StreamEngine(self.models, s, device=self.device, dtype=self.dtype)
        self.engine.prepare(prompt, seed, tag=0)  # tag: the steer generation a frame was rendered under
        w, h = s.size
        self._camera, self._camera_motion = CameraPath(self.device, self.dtype, aspect=w / h), None
        self._current = self._to = self.engine.encode_prompt(prompt)
        self._step, self._steps = 0, 0  # progress of the prompt transition
        self._index = 0
        self._on_air_generation = 0
        self._last_image: np.ndarray | None = None
        self._last_safe: np.ndarray | None = None
        self._holding = False

    @torch.inference_mode()
    def render(self) -> Frame:
        engine = self.engine
        if engine is None:
            raise RuntimeError("StreamWorld.render() before start()")
        s = self.settings
        # 1. a new direction: its embedding (cached), and a transition from wherever we are now
        pending = self.take_pending()
        if pending is not None:
            frames = s.transition_frames or max(1, round(pending.transition_s * self.fps))
            self._begin_transition(engine.encode_prompt(pending.direction.styled), frames)
            self._on_air_generation = pending.generation
            self.direction = pending.direction
        # 2. one step along the transition: front-loaded, so the change shows at once
        transitioning = self._step < self._steps
        if transitioning:
            self._step += 1
            self._current = self._blend(ease_out(self._step / self._steps))
            engine.set_conditioning(self._current)
        # 3. now and then, pull the picture back toward a fresh one so hours never turn to mush
        if s.reanchor_every and self._index and self._index % s.reanchor_every == 0:
            engine.reanchor(s.reanchor_strength, s.reanchor_frames)
            self.stats["reanchored"] += 1
        # 4. the camera move, then the model (which may keep the last picture if rendering would change nothing)
        engine.step(self._advance_camera(), allow_skip=not transitioning, tag=self._on_air_generation)
        # 5. the oldest frame in flight, on the host: this one on a CPU, the one before on a GPU
        picture = engine.take()
        if picture.image is None:
            assert self._last_image is not None  # a skip needs a rendered picture before it, so there is one
            image = self._last_image.copy()
            self.stats["skipped"] += 1
        else:
            image = picture.image
        self._last_image = image
        # 6. safety on air: a flagged frame is never shown
        image = self._screen(image)
        frame = Frame(image=image, index=self._index, generation=picture.tag)
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

    # -- steering the camera (any thread) ---------------------------------------------
    def set_motion(self, motion: Motion | dict[str, Any]) -> None:
        """The director (or the console) changes the camera move; applies from the next frame."""
        motion = motion if isinstance(motion, Motion) else Motion.model_validate(motion)
        with self._motion_lock:
            self._motion = motion

    @property
    def motion(self) -> Motion:
        with self._motion_lock:
            return self._motion

    # -- helpers ------------------------------------------------------------------------
    def _begin_transition(self, target: Conditioning, frames: int) -> None:
        a = self._current
        self._to = target
        self._slerp = Slerp(a.embeds, target.embeds)
        # (both have a pooled embedding or neither: one model made them)
        self._slerp_pooled = None if a.pooled is None or target.pooled is None else Slerp(a.pooled, target.pooled)
        self._step, self._steps = 0, frames

    def _blend(self, t: float) -> Conditioning:
        if t >= 1.0:
            return self._to  # land exactly on the cached target
        pooled = None if self._slerp_pooled is None else self._slerp_pooled(t)
        return Conditioning(self._slerp(t), pooled)

    def _advance_camera(self) -> torch.Tensor | None:
        """This frame's camera matrix, on the device (None: still); a new motion is copied over once."""
        motion = self.motion
        assert self._camera is not None  # start() made it
        if motion is not self._camera_motion:
            self._camera.set(motion)
            self._camera_motion = motion
        return self._camera.advance()

    def _screen(self, image: np.ndarray) -> np.ndarray:
        every = self.settings.safety_check_every
        checker = self.models.safety_checker
        if not every or checker is None:
            return image
        if self._index % every == 0:
            if checker(image):
                self.stats["flagged"] += 1
                log.warning("frame %d was flagged by the safety check; holding the last safe frame", self._index)
                self._holding = True
                assert self.engine is not None  # rendering: started, not closed
                self.engine.reanchor(1.0)  # move the world away from what was flagged
            else:
                self._holding = False
                self._last_safe = image
        if self._holding:
            if self._last_safe is None:
                return np.zeros_like(image)
            return self._last_safe.copy()
        return image


def create_world(
    table: dict[str, Any] | None, *, offline: bool | None = None, device: str | None = None
) -> StreamWorld:
    """What app.py calls for `--world stream`: the `[world.stream]` table in, a loaded world out."""
    return StreamWorld.from_settings(table, offline=offline, device=device)
