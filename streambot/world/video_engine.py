"""The video world's tensors: a causal video model run chunk after chunk, for ever.

The loop is built from the parts of diffusers' AnyFlow-FAR model (patch
embeddings, rotary table, timestep and text embedders, the 30 transformer
blocks, the output head) and one attention processor of our own,
`RollingCacheAttention`, installed on every block's self-attention. The model
is FAR: the two chunks before the one being made are seen at full resolution
(2x2 patches), older ones through 4x4 "compressed" patches. The cache keeps
that layout with a fixed window:

    [ sink chunks | window chunks ]  compressed, oldest first
    [ the last full_chunk_limit-1 chunks ]  full resolution
    [ the chunk being denoised ]

All of it lives in buffers allocated once: per block, one slot per chunk for
its keys and values, and one packed view that attention reads. When a chunk is
done it is written into a full slot by one pass at t=0; the oldest full chunk
is then re-encoded through the compressed patches (a pass over a quarter of the
tokens) into the window, whose oldest chunk is dropped; the sink chunks (the
first ones made) are never dropped. That is FAR's own prefill, done
incrementally: a chunk's keys are computed attending to exactly the chunks the
model's cache pass would show it, except that the full chunk before the newest
one was computed when its predecessor was still at full resolution, and the
keys of kept chunks were computed while dropped ones were still there (the
rolling-cache staleness Self-Forcing and LongLive also accept). With the
defaults (a 1-frame sink chunk, 3 window and 2 full chunks of 3 frames, and the
new one: 19 latent frames) every chunk sees exactly the layout the checkpoint's
81-frame training videos show their 7th chunk.

Keys are stored before the rotary embedding and rotated when the view is
packed, with positions counted from the start of the window: positions are
re-based every chunk, so they never grow past the window however long the
show runs (the model's table stops at `rope_max_seq_len` latent frames).

A new prompt (LongLive's technique): the cache is rebuilt over the window's
latents under the new prompt embedding, chunk by chunk in the model's causal
order; the next chunk then continues the motion without the old prompt
lingering in the keys. Without it the old prompt's keys steer for a whole
window.

diffusers' own inference path pads the query to a multiple of 128 tokens and
lets the zero-padded keys into the softmax (its training and cache passes mask
them out); here attention sees real tokens only, as in training. At sizes where
no padding happens the two agree to float precision (tests/test_video_world.py).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import MutableSequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np
import torch
from cachetools import LRUCache
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d
from diffusers.models.transformers.transformer_anyflow_far import AnyFlowCausalAttnProcessor, apply_rotary_emb

from .base import WorldError
from .model_types import AttentionProcessor, Model, SelfAttention, WanFeatureCache, WanVae
from .video_models import VideoModels, needed_gib, not_enough_memory_message
from .video_settings import VideoWorldSettings

log = logging.getLogger(__name__)


@dataclass
class Conditioning:
    """A prompt, encoded once: UMT5's output and the transformer's projection of it."""

    prompt: str
    embeds: torch.Tensor  # (1, L, text_dim), as AnyFlowFARPipeline.encode_prompt makes it
    text: torch.Tensor  # (1, L, dim): the condition embedder's text projection


@dataclass
class Chunk:
    latents: torch.Tensor  # (1, frames, C, h, w), clean, as the model made them
    frames: int
    slot: int  # its slot in the region's buffers


@dataclass
class Pass:
    """What one transformer call does with the cache; read by every block's attention."""

    segments: list[tuple[str, int, int]]  # the cache attended to, in position order: (region, slot, tokens)
    cached_tokens: int
    cache_freqs: torch.Tensor  # rotary table for the cached tokens (empty when there are none)
    own_freqs: torch.Tensor  # ... and for this call's tokens, which come right after them
    rebuild: bool  # the layout changed: pack and rotate the view from the slots first
    store: tuple[str, int] | None = None  # keep this call's keys and values in (region, slot)


class LayerCache:
    """One block's keys and values: per-chunk slots (as computed, before rotation) and
    the packed, rotated view attention reads. Sizes never change after allocation."""

    def __init__(
        self,
        comp_slots: int,
        comp_tokens: int,
        full_slots: int,
        full_tokens: int,
        heads: int,
        head_dim: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        # dim 0: keys, values
        self.comp = torch.zeros((2, comp_slots, 1, heads, comp_tokens, head_dim), device=device, dtype=dtype)
        self.full = torch.zeros((2, full_slots, 1, heads, full_tokens, head_dim), device=device, dtype=dtype)
        view_tokens = comp_slots * comp_tokens + full_slots * full_tokens
        self.view = torch.zeros((2, 1, heads, view_tokens, head_dim), device=device, dtype=dtype)

    def region(self, name: str) -> torch.Tensor:
        return self.comp if name == "comp" else self.full

    def tensors(self) -> list[torch.Tensor]:
        return [self.comp, self.full, self.view]


class RollingCacheAttention:
    """A FAR block's self-attention over the rolling cache.

    Calls that carry a `LayerCache` take this path; anything else (diffusers'
    own pipeline on the same model) goes to the stock processor unchanged.
    """

    _attention_backend = None  # the active diffusers backend: SDPA, or flash etc. when set
    _parallel_config = None

    def __init__(self, fallback: AttentionProcessor) -> None:
        self.fallback = fallback

    def __call__(
        self,
        attn: SelfAttention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: object = None,
        rotary_emb: dict[str, torch.Tensor] | None = None,
        kv_cache: LayerCache | dict[str, torch.Tensor] | None = None,
        kv_cache_flag: Pass | dict[str, Any] | None = None,
    ) -> torch.Tensor:
        if not isinstance(kv_cache, LayerCache):  # diffusers' own call: its cache, if any, as it came
            assert not isinstance(kv_cache_flag, Pass)
            args = (attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
            if kv_cache is None:
                return self.fallback(*args)
            return self.fallback(*args, kv_cache=kv_cache, kv_cache_flag=kv_cache_flag)
        assert isinstance(kv_cache_flag, Pass)  # the engine hands in its cache with the call's Pass
        cache, p = kv_cache, kv_cache_flag
        dtype = hidden_states.dtype
        # RMSNorm upcasts; back to the compute dtype, as the stock processor does
        query = attn.norm_q(attn.to_q(hidden_states)).to(dtype)
        key = attn.norm_k(attn.to_k(hidden_states)).to(dtype)
        value = attn.to_v(hidden_states)
        # (Tensor.unflatten is unannotated in torch)
        query, key, value = (
            x.unflatten(2, (attn.heads, -1)).transpose(1, 2)  # type: ignore[no-untyped-call]
            for x in (query, key, value)
        )
        own = key.shape[2]
        if p.store is not None:
            region, slot = p.store
            buf = cache.region(region)
            buf[0, slot, :, :, :own] = key
            buf[1, slot, :, :, :own] = value
        n = p.cached_tokens
        if n and p.rebuild:
            at = 0
            for region, slot, tokens in p.segments:
                cache.view[:, :, :, at : at + tokens] = cache.region(region)[:, slot, :, :, :tokens]
                at += tokens
            cache.view[0, :, :, :n] = apply_rotary_emb(cache.view[0, :, :, :n], p.cache_freqs)
        query = apply_rotary_emb(query, p.own_freqs)
        key = apply_rotary_emb(key, p.own_freqs)
        if n:
            key = torch.cat([cache.view[0, :, :, :n], key], dim=2)
            value = torch.cat([cache.view[1, :, :, :n], value], dim=2)
        out = dispatch_attention_fn(
            query.transpose(1, 2),
            key.transpose(1, 2),
            value.transpose(1, 2),
            attn_mask=None,
            dropout_p=0.0,
            is_causal=False,
            backend=self._attention_backend,
            parallel_config=self._parallel_config,
        )
        out = out.flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


class StreamingDecoder:
    """The Wan VAE's decoder, one chunk at a time, its causal convolution cache kept
    between chunks: the same pictures as decoding the whole video at once."""

    def __init__(self, vae: WanVae) -> None:
        if getattr(vae.config, "patch_size", None) is not None:
            raise WorldError(
                "The video world needs the Wan 2.1 VAE; this VAE packs patches (Wan 2.2), which it does not decode."
            )
        self.vae = vae
        self._convs = sum(isinstance(m, WanCausalConv3d) for m in vae.decoder.modules())
        z = vae.config.z_dim
        p = next(vae.parameters())
        self._mean = torch.tensor(vae.config.latents_mean, device=p.device, dtype=p.dtype).view(1, z, 1, 1, 1)
        self._std = torch.tensor(vae.config.latents_std, device=p.device, dtype=p.dtype).view(1, z, 1, 1, 1)
        self.reset()

    def reset(self) -> None:
        self._feat: WanFeatureCache = [None] * self._convs
        self._first = True

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        """(1, frames, C, h, w) normalised latents -> (1, 3, pictures, H, W) in [-1, 1]."""
        z = latents.permute(0, 2, 1, 3, 4).to(self._mean.dtype) * self._std + self._mean
        x = self.vae.post_quant_conv(z)
        out = []
        for i in range(x.shape[2]):
            out.append(
                self.vae.decoder(x[:, :, i : i + 1], feat_cache=self._feat, feat_idx=[0], first_chunk=self._first)
            )
            self._first = False
        return torch.cat(out, dim=2).clamp_(-1.0, 1.0)


class VideoEngine:
    """The model, the rolling cache and the chunk loop; the world decides what to ask for."""

    def __init__(self, models: VideoModels, settings: VideoWorldSettings, *, device: torch.device) -> None:
        self.models = models
        self.settings = settings
        self.device = device
        self.tr = models.transformer
        # the models come in their working precision (some of their parts stay in float32 on purpose)
        self.dtype = self.tr.dtype
        cfg = self.tr.config
        self.full_slots = int(cfg.full_chunk_limit) - 1
        if self.full_slots < 1:
            raise WorldError("The video world needs a FAR model with full_chunk_limit of at least 2.")
        width, height = settings.size
        scale = int(models.vae.config.scale_factor_spatial)
        self.latent_hw = (height // scale, width // scale)
        h, w = self.latent_hw
        self.full_hw = (h // cfg.patch_size[1], w // cfg.patch_size[2])
        self.comp_hw = (h // cfg.compressed_patch_size[1], w // cfg.compressed_patch_size[2])
        self.full_tpf = self.full_hw[0] * self.full_hw[1]  # tokens per latent frame
        self.comp_tpf = self.comp_hw[0] * self.comp_hw[1]
        s = settings
        self.first_frames = 1  # Wan's first latent frame is a single picture
        self.longest = self._sink_frames() + (s.window_chunks + self.full_slots + 1) * s.chunk_frames
        if self.longest > cfg.rope_max_seq_len:
            raise WorldError(
                f"The cache window spans {self.longest} latent frames but the model has positions for "
                f"{cfg.rope_max_seq_len}; lower window_chunks or chunk_frames in [world.video]."
            )
        self._prompts: LRUCache[str, Conditioning] = LRUCache(settings.prompt_cache_size)
        self.cond: Conditioning | None = None
        self.stats = {"chunks": 0, "recaches": 0, "passes": 0, "max_frames_seen": 0}
        self._prepared = False

    def _sink_frames(self) -> int:
        s = self.settings
        return 0 if s.sink_chunks == 0 else self.first_frames + (s.sink_chunks - 1) * s.chunk_frames

    # -- once ------------------------------------------------------------------
    @torch.inference_mode()
    def prepare(self, prompt: str, seed: int) -> None:
        """Move the models, install the cache attention, allocate the cache, encode the first prompt."""
        try:
            self._prepare(prompt, seed)
        except torch.cuda.OutOfMemoryError:
            raise WorldError(not_enough_memory_message(self.models.name, needed_gib(self.dtype), None)) from None

    def _prepare(self, prompt: str, seed: int) -> None:
        m, s, dev = self.models, self.settings, self.device
        # 1. models on the device
        modules: tuple[Model, ...] = (m.transformer, m.vae, m.text_encoder)
        for module in modules:
            module.to(dev)
        for block in self.tr.blocks:
            current = block.attn1.processor
            if not isinstance(current, RollingCacheAttention):
                fallback = current if isinstance(current, AnyFlowCausalAttnProcessor) else AnyFlowCausalAttnProcessor()
                block.attn1.set_processor(RollingCacheAttention(fallback))
        # 2. the cache: fixed buffers for the whole show
        cfg = self.tr.config
        comp_slots = s.sink_chunks + s.window_chunks
        self.caches = [
            LayerCache(
                comp_slots,
                s.chunk_frames * self.comp_tpf,
                self.full_slots,
                s.chunk_frames * self.full_tpf,
                cfg.num_attention_heads,
                cfg.attention_head_dim,
                dev,
                self.dtype,
            )
            for _ in self.tr.blocks
        ]
        self.sink: list[Chunk] = []
        self.window: deque[Chunk] = deque()
        self.full: deque[Chunk] = deque()
        # 3. the flow-map schedule: step i goes from sigma[i] to sigma[i+1]
        sched = m.scheduler
        sched.set_timesteps(s.steps, device="cpu")
        self.sigmas = [float(x) for x in sched.sigmas]
        self.train_steps = float(sched.config.num_train_timesteps)
        # 4. noise, the decoder, the first prompt
        # (the meta device, shapes only, is how benchmarks/video_flops.py counts this loop)
        self.generator = None if dev.type == "meta" else torch.Generator(device=dev).manual_seed(seed)
        self.decoder = StreamingDecoder(m.vae)
        self.cond = self.encode_prompt(prompt)
        self._prepared = True

    # -- prompts -----------------------------------------------------------------
    @torch.inference_mode()
    def encode_prompt(self, prompt: str) -> Conditioning:
        """A prompt's embedding, computed once and cached (an LRU of recent prompts)."""
        hit = self._prompts.get(prompt)
        if hit is not None:
            return hit
        embeds, _ = self.models.pipeline.encode_prompt(
            prompt,
            do_classifier_free_guidance=False,
            max_sequence_length=self.settings.max_sequence_length,
            device=self.device,
            dtype=self.dtype,
        )
        text = self.tr.condition_embedder.text_embedder(embeds)
        cond = Conditioning(prompt, embeds, text)
        self._prompts[prompt] = cond
        return cond

    @torch.inference_mode()
    def set_prompt(self, prompt: str) -> bool:
        """Follow a new prompt from the next chunk on; True when the cache was rebuilt under it."""
        cond = self.encode_prompt(prompt)
        if self.cond is not None and cond.prompt == self.cond.prompt:
            return False
        self.cond = cond
        if self.settings.recache_on_switch and self.full:
            self.recache()
            return True
        return False

    @torch.inference_mode()
    def recache(self) -> None:
        """Rebuild every cached chunk's keys and values under the current prompt, in the model's
        causal order: each chunk attends to the ones before it, as FAR's cache pass has it."""
        compressed: list[Chunk] = []
        for c in (*self.sink, *self.window):
            self._encode(c, compressed, [], region="comp")
            compressed.append(c)
        full: list[Chunk] = []
        for c in self.full:
            self._encode(c, compressed, full, region="full")
            full.append(c)
        self.stats["recaches"] += 1

    # -- per chunk ---------------------------------------------------------------
    @torch.inference_mode()
    def next_chunk(self) -> torch.Tensor:
        """Denoise the next chunk (clean latents, (1, frames, C, h, w)) and take it into the cache."""
        if not self._prepared:
            raise RuntimeError("VideoEngine.next_chunk() before prepare()")
        frames = self.first_frames if self.stats["chunks"] == 0 else self.settings.chunk_frames
        c_lat = self.tr.config.in_channels
        h, w = self.latent_hw
        noise = torch.randn((1, frames, c_lat, h, w), generator=self.generator, device=self.device, dtype=torch.float32)
        x = self.denoise(noise.to(self.dtype))
        self._admit(x)
        self.stats["chunks"] += 1
        return x

    @torch.inference_mode()
    def denoise(self, x: torch.Tensor) -> torch.Tensor:
        """Flow-map Euler from pure noise to a clean chunk, attending to the cache."""
        compressed, full = [*self.sink, *self.window], list(self.full)
        segments = self._segments(compressed, full)
        n = sum(t for _, _, t in segments)
        freqs = self._freqs(self._frames(compressed), self._frames(full) + x.shape[1])
        first = True
        for i in range(len(self.sigmas) - 1):
            s_t, s_r = self.sigmas[i], self.sigmas[i + 1]
            if s_t == s_r:
                continue
            p = Pass(segments, n, freqs[:, :, :n], freqs[:, :, n:], rebuild=first)
            v = self._forward(x, s_t * self.train_steps, s_r * self.train_steps, p, compressed=False, head=True)
            # FlowMapEulerDiscreteScheduler.step: z_r = z_t - (sigma_t - sigma_r) * v
            x = (x.float() - (s_t - s_r) * v.float()).to(self.dtype)
            first = False
        return x

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """(pictures, H, W, 3) uint8 of a chunk, continuing the previous chunk's decode."""
        video = self.decoder(latents)[0]  # (3, pictures, H, W)
        pixels = video.permute(1, 2, 3, 0).mul(127.5).add_(127.5).round_().clamp_(0, 255).to(torch.uint8)
        return pixels.cpu().numpy()

    def generate(self) -> np.ndarray:
        """The next chunk's pictures."""
        try:
            return self.decode(self.next_chunk())
        except torch.cuda.OutOfMemoryError:
            raise WorldError(not_enough_memory_message(self.models.name, needed_gib(self.dtype), None)) from None

    # -- the window ---------------------------------------------------------------
    def _admit(self, x: torch.Tensor) -> None:
        """A finished chunk enters the cache at full resolution; the oldest full one moves
        to the compressed window (or the sink), whose oldest chunk leaves."""
        slot = len(self.full)
        if len(self.full) == self.full_slots:
            oldest = self.full.popleft()
            slot = oldest.slot
            self._demote(oldest)
        chunk = Chunk(x, x.shape[1], slot)
        self._encode(chunk, [*self.sink, *self.window], list(self.full), region="full")
        self.full.append(chunk)

    def _demote(self, chunk: Chunk) -> None:
        s = self.settings
        target: MutableSequence[Chunk]
        if len(self.sink) < s.sink_chunks:
            target, slot = self.sink, len(self.sink)
        elif s.window_chunks:
            target = self.window
            if len(self.window) == s.window_chunks:
                slot = self.window.popleft().slot
            else:
                slot = s.sink_chunks + len(self.window)
        else:
            return  # no window: the chunk is forgotten
        moved = Chunk(chunk.latents, chunk.frames, slot)
        self._encode(moved, [*self.sink, *self.window], [], region="comp")
        target.append(moved)

    def _encode(self, chunk: Chunk, compressed: list[Chunk], full: list[Chunk], *, region: str) -> None:
        """One pass of a clean chunk at t=0 that stores its keys and values in `region`."""
        segments = self._segments(compressed, full)
        n = sum(t for _, _, t in segments)
        own = chunk.frames
        if region == "comp":
            freqs = self._freqs(self._frames(compressed) + own, 0)
        else:
            freqs = self._freqs(self._frames(compressed), self._frames(full) + own)
        p = Pass(segments, n, freqs[:, :, :n], freqs[:, :, n:], rebuild=True, store=(region, chunk.slot))
        self._forward(chunk.latents, 0.0, 0.0, p, compressed=region == "comp", head=False)

    def _segments(self, compressed: list[Chunk], full: list[Chunk]) -> list[tuple[str, int, int]]:
        return [("comp", c.slot, c.frames * self.comp_tpf) for c in compressed] + [
            ("full", c.slot, c.frames * self.full_tpf) for c in full
        ]

    @staticmethod
    def _frames(chunks: list[Chunk]) -> int:
        return sum(c.frames for c in chunks)

    def _freqs(self, compressed_frames: int, full_frames: int) -> torch.Tensor:
        """The model's rotary table for a layout of compressed then full frames, from position 0."""
        total = compressed_frames + full_frames
        self.stats["max_frames_seen"] = max(self.stats["max_frames_seen"], total)
        far = {
            "total_frames": total,
            "num_compressed_frames": compressed_frames,
            "full_frame_shape": self.full_hw,
            "compressed_frame_shape": self.comp_hw,
        }
        return self.tr.rope(far_cfg=far, device=self.device)["key"]

    # -- one pass of the transformer, from its parts ---------------------------------
    @overload
    def _forward(
        self, x: torch.Tensor, t: float, r: float, p: Pass, *, compressed: bool, head: Literal[True]
    ) -> torch.Tensor: ...
    @overload
    def _forward(
        self, x: torch.Tensor, t: float, r: float, p: Pass, *, compressed: bool, head: Literal[False]
    ) -> None: ...
    def _forward(
        self, x: torch.Tensor, t: float, r: float, p: Pass, *, compressed: bool, head: bool
    ) -> torch.Tensor | None:
        """x: (1, frames, C, h, w). Returns the predicted mean velocity (same shape) when `head`."""
        tr, cond = self.tr, self.cond
        assert cond is not None  # prepare() encodes the first prompt
        self.stats["passes"] += 1
        video = x.permute(0, 2, 1, 3, 4)
        embed = tr.far_patch_embedding if compressed else tr.patch_embedding
        hidden = embed(video).flatten(2).transpose(1, 2)
        # every token of a chunk shares t and r: one embedding, broadcast over the tokens
        emb = tr.condition_embedder
        t_ = torch.full((1, 1), t, device=self.device, dtype=torch.float32)
        r_ = torch.full((1, 1), r, device=self.device, dtype=torch.float32)
        delta = r_ if emb.deltatime_type == "r" else t_ - r_
        temb, proj = emb.forward_timestep(t_, delta, cond.text, 1)
        proj = proj.unflatten(2, (6, -1))  # type: ignore[no-untyped-call]  # (unannotated in torch)
        for block, cache in zip(tr.blocks, self.caches):
            hidden = block(hidden, cond.text, proj, None, None, kv_cache=cache, kv_cache_flag=p)
        if not head:
            return None
        shift, scale = (tr.scale_shift_table + temb.unsqueeze(2)).chunk(2, dim=2)
        hidden = (tr.norm_out(hidden.float()) * (1 + scale.squeeze(2)) + shift.squeeze(2)).type_as(hidden)
        out = tr.proj_out(hidden)  # (1, tokens, p_h * p_w * C), in that order
        frames, (hp, wp) = x.shape[1], self.full_hw
        ph, pw = tr.config.patch_size[1], tr.config.patch_size[2]
        out = out.view(frames, hp, wp, ph, pw, -1).permute(0, 5, 1, 3, 2, 4)
        return out.reshape(1, frames, -1, hp * ph, wp * pw)

    # -- for tests, figures and health -------------------------------------------------
    def cache_tensors(self) -> list[torch.Tensor]:
        return [t for c in self.caches for t in c.tensors()]

    def window_chunks(self) -> list[Chunk]:
        """What the cache holds, oldest first (sink, compressed window, full)."""
        return [*self.sink, *self.window, *self.full]
