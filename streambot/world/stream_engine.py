"""The stream world's core: StreamDiffusion's techniques on current diffusers.

`prepare()` once, `step()` and `take()` per frame, `set_conditioning()` cheap.
Each frame is img2img of the previous one, in latent space: the last clean
latent is moved by the camera, noised to the first timestep of `t_index_list`,
denoised (all the steps of consecutive frames in one UNet call, the "stream
batch"), kept in range, and decoded by the tiny VAE. Everything a CUDA graph
needs is a static buffer, so the whole denoise-and-decode can be captured once
and replayed; `step()` never waits for the device (no host reads: the filter's
measure comes back with its picture), and `take()` waits only for the copy of
the picture it returns.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

import torch
from cachetools import LRUCache

from .base import WorldError
from .model_types import Model, TextModel, Tokenizer, UNet, UNetForward
from .stream_models import StreamModels, needed_gib, not_enough_memory_message
from .stream_ops import (
    HostFrames,
    Picture,
    SimilarityFilter,
    cosine_similarity_into,
    guidance_embedding,
    keep_in_range,
    match_stats,
    warp,
)
from .stream_settings import StreamWorldSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Conditioning:
    """One prompt, encoded: the UNet's cross-attention input (+ SDXL's pooled text)."""

    embeds: torch.Tensor  # (1, tokens, dim)
    pooled: torch.Tensor | None = None  # (1, dim), SDXL only


def schedule_timesteps(num_train_timesteps: int, num_inference_steps: int) -> list[int]:
    """The LCM-style schedule StreamDiffusion indexes into: 999, 979, ..., 19 for 1000/50."""
    c = num_train_timesteps // num_inference_steps
    return [num_inference_steps * c - 1 - i * c for i in range(num_inference_steps)]


def boundary_scalings(
    t: torch.Tensor, sigma_data: float = 0.5, scaling: float = 10.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Consistency-model boundary condition (c_skip, c_out); ~(0, 1) except at the cleanest steps."""
    st = t.double() * scaling
    c_skip = sigma_data**2 / (st**2 + sigma_data**2)
    c_out = st / (st**2 + sigma_data**2) ** 0.5
    return c_skip, c_out


def _move(module: Model, device: torch.device, dtype: torch.dtype) -> None:
    """To the device and precision, casting only when needed (diffusers warns on every cast)."""
    module.eval().requires_grad_(False)
    param = next(module.parameters())
    if param.device != device:
        module.to(device)
    if param.dtype != dtype:
        module.to(dtype=dtype)


# The UNets whose QKV projections are fused, by identity: a UNet may be shared between worlds.
_fused: weakref.WeakSet[UNet] = weakref.WeakSet()


def _fuse_qkv(unet: UNet, fuse: bool) -> bool:
    """One matmul for q, k and v in self-attention (k and v in cross-attention): fewer kernels.

    Set both ways, as the UNet may be shared between worlds (the fused weights
    follow later casts); False where it does not apply.
    """
    fused = unet in _fused
    if fused and not fuse:
        unet.unfuse_qkv_projections()
        _fused.discard(unet)
    if fused or not fuse:
        return fused and fuse
    try:
        unet.fuse_qkv_projections()
    except (AttributeError, ValueError) as e:
        log.info("fused QKV projections do not apply to this UNet (%s)", e)
        return False
    _fused.add(unet)
    return True


class UNetExtras(TypedDict, total=False):
    """The UNet's conditioning beyond the text, where the model takes it."""

    added_cond_kwargs: dict[str, torch.Tensor]  # SDXL: the pooled text and the size ids
    timestep_cond: torch.Tensor  # LCM: the guidance embedding


class StreamEngine:
    def __init__(
        self, models: StreamModels, settings: StreamWorldSettings, *, device: torch.device, dtype: torch.dtype
    ) -> None:
        self.models = models
        self.settings = settings
        self.device = device
        self.dtype = dtype
        self.width, self.height = settings.size
        vae_cfg, unet_cfg = models.vae.config, models.unet.config
        self.vae_scale = 2 ** (len(vae_cfg.block_out_channels) - 1)
        self.vae_scaling = float(getattr(vae_cfg, "scaling_factor", 1.0))
        unet_factor = 2 ** (len(unet_cfg.block_out_channels) - 1)
        if (self.width // self.vae_scale) % unet_factor or (self.height // self.vae_scale) % unet_factor:
            step = self.vae_scale * unet_factor
            raise WorldError(
                f"The resolution {self.width}x{self.height} does not fit this model; "
                f"use multiples of {step}, such as 512x512."
            )
        self.latent_shape = (1, unet_cfg.in_channels, self.height // self.vae_scale, self.width // self.vae_scale)
        self.k = len(settings.timestep_indices)
        self.batch = self.k if settings.stream_batch else 1
        self.prediction_type: str = getattr(models.scheduler.config, "prediction_type", "epsilon")
        self._cache: LRUCache[str, Conditioning] = LRUCache(settings.prompt_cache_size)
        self.filter = (
            SimilarityFilter(settings.similarity_threshold, settings.similarity_max_skip)
            if settings.similarity_filter
            else None
        )
        # frames in flight: on a GPU the host takes one while the next is painted
        self.depth = settings.frames_in_flight or (2 if device.type == "cuda" else 1)
        self._graph: torch.cuda.CUDAGraph | None = None
        self.active: dict[str, bool] = {}  # which speed switches really took effect
        self.unet_calls = 0  # for tests and figures
        self._anchor: torch.Tensor | None = None
        self._anchor_left = 0
        self._anchor_rate = 0.0
        self._prepared = False

    # -- once ------------------------------------------------------------------
    @torch.inference_mode()
    def prepare(self, prompt: str, seed: int, tag: Any = None) -> None:
        """Move the models, build the schedule and buffers, render the first picture.

        With frames in flight, the first picture is queued as the first frame, tagged `tag`.
        """
        try:
            self._prepare(prompt, seed, tag)
        except torch.cuda.OutOfMemoryError:
            raise WorldError(
                not_enough_memory_message(self.models.name, needed_gib(self.models.name, self.dtype), None)
            ) from None

    def _prepare(self, prompt: str, seed: int, tag: Any) -> None:
        s, m, dev, dt = self.settings, self.models, self.device, self.dtype
        # 1. models on the device, in the working precision and memory layout; a VAE
        # that overflows in half precision (SDXL's own) says so, and runs in float32
        upcast = dt == torch.float16 and bool(getattr(m.vae.config, "force_upcast", False))
        self.vae_dtype = torch.float32 if upcast else dt
        for module in (m.unet, m.text_encoder, m.text_encoder_2):
            if module is not None:
                _move(module, dev, dt)
        _move(m.vae, dev, self.vae_dtype)
        self.active["vae_upcast"] = upcast
        channels_last = s.channels_last  # also makes the decoded picture HWC in memory: a cheap uint8 copy
        layout = torch.channels_last if channels_last else torch.contiguous_format
        # set both ways: the models may be shared between worlds. (Model.to follows torch's stubs
        # for Module.to, which leave out the memory_format keyword that it documents and takes.)
        m.unet.to(memory_format=layout)  # type: ignore[call-arg]
        m.vae.to(memory_format=layout)  # type: ignore[call-arg]
        self.active["channels_last"] = channels_last
        if dev.type == "cuda":
            torch.backends.cudnn.benchmark = True  # shapes never change, so tune convs once
        self.active["fuse_qkv"] = _fuse_qkv(m.unet, s.fuse_qkv)

        # 2. the noise schedule at the chosen steps
        train_steps = int(m.scheduler.config.num_train_timesteps)
        schedule = schedule_timesteps(train_steps, s.num_inference_steps)
        ts = [schedule[i] for i in s.timestep_indices]
        acp = m.scheduler.alphas_cumprod.to(torch.float64)
        t = torch.tensor(ts + [train_steps - 1], dtype=torch.long)  # the last one is txt2img's
        c_skip, c_out = boundary_scalings(t)

        def col(v: torch.Tensor) -> torch.Tensor:
            return v.to(device=dev, dtype=dt).view(-1, 1, 1, 1)

        self.timesteps = t[:-1].to(dev)
        self.alpha, self.beta = col(acp[t[:-1]].sqrt()), col((1 - acp[t[:-1]]).sqrt())
        self.c_skip, self.c_out = col(c_skip[:-1]), col(c_out[:-1])
        self.t_full = t[-1:].to(dev)
        self.full = tuple(col(v[-1:]) for v in (acp[t].sqrt(), (1 - acp[t]).sqrt(), c_skip, c_out))

        # 3. static buffers: what a CUDA graph reads and writes
        self.gen = torch.Generator(device=dev).manual_seed(seed)
        self.noise = torch.randn((self.k, *self.latent_shape[1:]), generator=self.gen, device=dev, dtype=dt)
        self.x_in = torch.zeros(self.latent_shape, device=dev, dtype=dt)
        self.x_out = torch.zeros_like(self.x_in)
        self.buffer = torch.zeros((self.k - 1, *self.latent_shape[1:]), device=dev, dtype=dt)
        self.image = torch.zeros((1, 3, self.height, self.width), device=dev, dtype=dt)
        self.frame = torch.zeros((self.height, self.width, 3), device=dev, dtype=torch.uint8)
        self.similarity = torch.zeros(1, device=dev, dtype=torch.float32)  # the last render's output to its input
        self.host = HostFrames(tuple(self.frame.shape), dev, self.depth)
        cond = self.encode_prompt(prompt)
        self.embeds = torch.zeros((self.batch, *cond.embeds.shape[1:]), device=dev, dtype=dt)
        self.added: dict[str, torch.Tensor] = {}
        if m.is_sdxl:
            assert cond.pooled is not None  # SDXL's second encoder gives it
            size = [self.height, self.width, 0, 0, self.height, self.width]  # original, crop, target
            self.added = {
                "text_embeds": torch.zeros((self.batch, cond.pooled.shape[-1]), device=dev, dtype=dt),
                "time_ids": torch.tensor([size] * self.batch, device=dev, dtype=dt),
            }
        proj: int | None = getattr(m.unet.config, "time_cond_proj_dim", None)
        self.timestep_cond: torch.Tensor | None = None
        if proj:
            w = guidance_embedding(s.lcm_guidance, proj, device=dev, dtype=dt)
            self.timestep_cond = w.expand(self.batch, -1).contiguous()
        self.set_conditioning(cond)

        # 4. the callables, compiled when asked
        self._unet_fn: UNetForward = m.unet
        self._decode_fn: Callable[[torch.Tensor], torch.Tensor] = self._decode_latents
        self.active["compile"] = False
        if s.compile:
            try:
                self._unet_fn = torch.compile(m.unet, dynamic=False)
                self._decode_fn = torch.compile(self._decode_latents, dynamic=False)
                self.active["compile"] = True
            except Exception as e:  # a missing compiler toolchain must not stop the show
                log.warning("torch.compile is not available here (%s); running eagerly", e)

        # 5. the first picture: txt2img, then the stream-batch buffer filled from it
        self._start_state()
        if self.active["compile"] or s.cuda_graphs:
            self._warm_up()
        self.active["cuda_graphs"] = False
        if s.cuda_graphs and dev.type == "cuda":
            self._capture()
        self._start_state()  # warm-up frames must not change what the seed shows
        self.active["stream_batch"] = s.stream_batch and self.k > 1
        self.active["similarity_filter"] = self.filter is not None
        self.active["frames_in_flight"] = self.depth > 1
        for _ in range(self.depth - 1):  # the pipeline starts full: the first picture is the first frame
            self.host.push(self.frame, tag)
        self._prepared = True

    def _start_state(self) -> None:
        self._anchor, self._anchor_left = None, 0
        self.gen.manual_seed(self.gen.initial_seed())
        self.noise.normal_(generator=self.gen)
        self.x_out.copy_(self.txt2img())
        if self.k > 1:
            self.buffer.copy_(self.alpha[1:] * self.x_out + self.beta[1:] * self.noise[1:])
        self._decode_into(self.x_out)
        if self.filter is not None:
            self.filter.reset()

    def _warm_up(self, frames: int = 3) -> None:
        """Compile (and let cuDNN pick kernels) before anything is timed or captured."""
        # (torch.cuda.Stream's constructor is unannotated)
        stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None  # type: ignore[no-untyped-call]
        if stream is not None:
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(frames):
                    self._denoise_decode()
                self.txt2img()
            torch.cuda.current_stream(self.device).wait_stream(stream)
        else:
            for _ in range(frames):
                self._denoise_decode()
            self.txt2img()

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._denoise_decode()
        except Exception as e:  # fall back to eager; the benchmark reports what took effect
            log.warning("CUDA graph capture failed (%s); running without CUDA graphs", e)
            torch.cuda.synchronize(self.device)
            return
        self._graph = graph
        self.active["cuda_graphs"] = True

    # -- cheap, any time between frames -----------------------------------------
    @torch.inference_mode()
    def encode_prompt(self, prompt: str) -> Conditioning:
        """A prompt's embedding, computed once and cached (an LRU of recent prompts)."""
        hit = self._cache.get(prompt)
        if hit is not None:
            return hit
        m = self.models
        ids = self._token_ids(m.tokenizer, m.text_encoder, prompt)
        if not m.is_sdxl:
            cond = Conditioning(m.text_encoder(ids, return_dict=True).last_hidden_state)
        else:  # SDXL: both encoders' penultimate layers side by side, and the second one's pooled text
            h1 = m.text_encoder(ids, output_hidden_states=True, return_dict=True).hidden_states[-2]
            assert m.tokenizer_2 is not None and m.text_encoder_2 is not None  # an SDXL UNet comes with both
            ids2 = self._token_ids(m.tokenizer_2, m.text_encoder_2, prompt)
            out2 = m.text_encoder_2(ids2, output_hidden_states=True, return_dict=True)
            cond = Conditioning(torch.cat([h1, out2.hidden_states[-2]], dim=-1), out2.text_embeds)
        self._cache[prompt] = cond
        return cond

    def _token_ids(self, tokenizer: Tokenizer, encoder: TextModel, prompt: str) -> torch.Tensor:
        length = min(int(tokenizer.model_max_length), int(encoder.config.max_position_embeddings))
        ids = tokenizer(prompt, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        return ids.input_ids.to(self.device)

    @torch.inference_mode()
    def set_conditioning(self, cond: Conditioning) -> None:
        """Copy a (possibly interpolated) conditioning into the static buffers."""
        self.embeds.copy_(cond.embeds.expand(self.batch, -1, -1))
        if self.added and cond.pooled is not None:
            self.added["text_embeds"].copy_(cond.pooled.expand(self.batch, -1))

    # -- per frame ---------------------------------------------------------------
    @torch.inference_mode()
    def step(self, theta: torch.Tensor | None = None, *, allow_skip: bool = True, tag: Any = None) -> bool:
        """Queue one frame on the device, tagged `tag`; False if the filter kept the last picture.

        `theta` is this frame's camera move as an affine (1, 2, 3) sampling matrix
        (None: a still camera); `allow_skip` is False while the conditioning
        changes. Nothing here waits for the device.
        """
        # 1. would a render change anything? Only a still camera and a settled picture can tell (see SimilarityFilter)
        if self.filter is not None and self.filter(allowed=allow_skip and theta is None and self._anchor_left == 0):
            self.host.push(None, tag)
            return False
        # 2. the input: the last clean picture (re-anchoring, if under way), moved by the camera
        self._pull_to_anchor()
        if self.settings.feedback == "latent":
            x = self.x_out if theta is None else warp(self.x_out, theta)
        else:  # pixel feedback: move the decoded picture, encode it again
            image = self.image if theta is None else warp(self.image, theta)
            x = self._encode(image)
        self.x_in.copy_(x)
        if self.settings.noise == "fresh":
            self.noise.normal_(generator=self.gen)
        # 3. denoise and decode, replayed from the CUDA graph when captured
        self.unet_calls += 1 if (self.settings.stream_batch or self.k == 1) else self.k
        if self._graph is not None:
            self._graph.replay()
        else:
            self._denoise_decode()
        # 4. the picture (and the filter's measure) on its way to the host
        self.host.push(self.frame, tag, self.similarity if self.filter is not None else None)
        return True

    def take(self) -> Picture:
        """The oldest frame in flight, on the host: the one just queued on a CPU, the one before on a GPU."""
        picture = self.host.pop()
        if self.filter is not None and picture.similarity is not None:
            self.filter.observe(picture.similarity)
        return picture

    def _denoise_decode(self) -> None:
        """Reads x_in, noise, buffer, embeds; writes buffer, x_out, image, frame, similarity (all static)."""
        x_t = self.alpha[:1] * self.x_in + self.beta[:1] * self.noise[:1]
        if self.k == 1:
            x0 = self._x0(self._unet(x_t, self.timesteps, 1), x_t, slice(0, 1))
        elif self.settings.stream_batch:
            # every step of k consecutive frames in one call; frame n finishes k-1 frames later
            x_batch = torch.cat([x_t, self.buffer])
            x0_batch = self._x0(self._unet(x_batch, self.timesteps, self.k), x_batch, slice(None))
            self.buffer.copy_(self.alpha[1:] * x0_batch[:-1] + self.beta[1:] * self.noise[1:])
            x0 = x0_batch[-1:]
        else:
            for i in range(self.k):
                x0 = self._x0(self._unet(x_t, self.timesteps[i : i + 1], 1), x_t, slice(i, i + 1))
                if i + 1 < self.k:
                    x_t = self.alpha[i + 1 : i + 2] * x0 + self.beta[i + 1 : i + 2] * self.noise[i + 1 : i + 2]
        x0 = keep_in_range(x0)  # the picture is the next frame's input: finite and in range, whatever the model did
        self.x_out.copy_(x0)
        self._decode_into(x0)
        if self.filter is not None:
            cosine_similarity_into(self.similarity, self.x_in, x0)

    def _unet(self, x: torch.Tensor, t: torch.Tensor, batch: int) -> torch.Tensor:
        kwargs: UNetExtras = {}
        if self.added:
            kwargs["added_cond_kwargs"] = {k: v[:batch] for k, v in self.added.items()}
        if self.timestep_cond is not None:
            kwargs["timestep_cond"] = self.timestep_cond[:batch]
        return self._unet_fn(x, t, encoder_hidden_states=self.embeds[:batch], return_dict=False, **kwargs)[0]

    def _x0(
        self,
        pred: torch.Tensor,
        x_t: torch.Tensor,
        idx: slice | None,
        coeffs: tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor:
        alpha, beta, c_skip, c_out = coeffs or (self.alpha[idx], self.beta[idx], self.c_skip[idx], self.c_out[idx])
        if self.prediction_type == "v_prediction":
            f = alpha * x_t - beta * pred
        elif self.prediction_type == "sample":
            f = pred
        else:
            f = (x_t - beta * pred) / alpha
        return c_out * f + c_skip * x_t

    def _decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.models.vae.decode((latents / self.vae_scaling).to(self.vae_dtype), return_dict=False)[0]

    def _decode_into(self, latents: torch.Tensor) -> None:
        image = self._decode_fn(latents)
        if self.settings.feedback == "pixel":  # only pixel feedback reads the float picture back
            self.image.copy_(image)
        # [-1, 1] -> 0..255: (x + 1) * 127.5, +0.5 so that the uint8 cast (truncating) rounds
        pixels = image[0].permute(1, 2, 0).mul(127.5).add_(128.0).clamp_(0, 255)
        self.frame.copy_(pixels)

    def _encode(self, image: torch.Tensor) -> torch.Tensor:
        out = self.models.vae.encode(image.to(self.vae_dtype), return_dict=False)[0]
        latents = out if torch.is_tensor(out) else out.mode()  # AutoencoderTiny vs AutoencoderKL
        return (latents * self.vae_scaling).to(self.dtype)

    # -- the long run ----------------------------------------------------------------
    def txt2img(self) -> torch.Tensor:
        """A fresh picture of the current prompt from pure noise, one step (batch of one)."""
        self.unet_calls += 1
        noise = torch.randn(self.latent_shape, generator=self.gen, device=self.device, dtype=self.dtype)
        return keep_in_range(self._x0(self._unet(noise, self.t_full, 1), noise, None, coeffs=self.full))

    @torch.inference_mode()
    def reanchor(self, strength: float, frames: int = 1) -> None:
        """Pull the fed-back picture toward a fresh one of the same prompt, so hours never drift into mush.

        Over the next `frames` frames the picture's colour statistics move to the
        fresh picture's and, in all, `strength` of the fresh picture is blended in
        (1.0 in one frame replaces the picture outright). Spread out, it does not pop.
        """
        self._anchor = self.txt2img()
        self._anchor_left = max(1, frames)
        self._anchor_rate = 1.0 - (1.0 - strength) ** (1.0 / self._anchor_left)
        if frames <= 1:
            self._pull_to_anchor()

    def _pull_to_anchor(self) -> None:
        if self._anchor_left <= 0:
            return
        assert self._anchor is not None  # set with _anchor_left
        x = torch.lerp(self.x_out, match_stats(self.x_out, self._anchor), 1.0 / self._anchor_left)
        self.x_out.copy_(torch.lerp(x, self._anchor, self._anchor_rate))
        self._anchor_left -= 1
        if self._anchor_left == 0:
            self._anchor = None
        if self.settings.feedback == "pixel":
            self._decode_into(self.x_out)
        if self.filter is not None:
            self.filter.reset()
