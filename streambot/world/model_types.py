"""What the world engines call on the models they are handed, as Protocols.

The models are diffusers' and transformers' torch modules. Typed as
`torch.nn.Module`, their parts read as `Tensor | Module` (Module's
`__getattr__`) and their calls return Any; these Protocols name exactly the
parts, calls and configuration values the engines use, with the types those
calls really take and return, so that the engines are checked against them.
Configs are diffusers' `FrozenDict`s and transformers' config objects; only
the values an engine reads directly are named (those it reads with a default,
through `getattr`, may be missing).

Calls are written as the engines make them (`return_dict=False`: a tuple, its
first item the result). The classes behind them: `UNet2DConditionModel`,
`AutoencoderTiny` or `AutoencoderKL`, CLIP's text models and tokenizer,
`EulerDiscreteScheduler` for the stream world; `AnyFlowFARTransformer3DModel`,
`AutoencoderKLWan`, `FlowMapEulerDiscreteScheduler` and `AnyFlowFARPipeline`
for the video world.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, Protocol, Self, overload

import torch
from torch import Tensor

# -- any model ----------------------------------------------------------------


class Model(Protocol):
    """A torch module as the engines place it: evaluation mode, no gradients, a device and a precision."""

    def eval(self) -> Self: ...
    def requires_grad_(self, requires_grad: bool = True) -> Self: ...
    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...
    def to(
        self, device: torch.device | str | int | None = ..., dtype: torch.dtype | None = ..., non_blocking: bool = ...
    ) -> Self: ...


# -- the stream world ----------------------------------------------------------


class UNetConfig(Protocol):
    @property
    def block_out_channels(self) -> Sequence[int]: ...
    @property
    def in_channels(self) -> int: ...


class UNetForward(Protocol):
    """One denoising call: the prediction (noise, v or sample) is the tuple's first item."""

    def __call__(
        self,
        sample: Tensor,
        timestep: Tensor,
        *,
        encoder_hidden_states: Tensor,
        return_dict: Literal[False],
        added_cond_kwargs: dict[str, Tensor] = ...,  # SDXL: text_embeds and time_ids
        timestep_cond: Tensor = ...,  # LCM: the guidance embedding
    ) -> tuple[Tensor, ...]: ...


class UNet(UNetForward, Model, Protocol):
    @property
    def config(self) -> UNetConfig: ...
    def fuse_qkv_projections(self) -> None: ...
    def unfuse_qkv_projections(self) -> None: ...


class VaeConfig(Protocol):
    @property
    def block_out_channels(self) -> Sequence[int]: ...


class LatentDistribution(Protocol):
    """What AutoencoderKL encodes to; AutoencoderTiny encodes to the latents themselves."""

    def mode(self) -> Tensor: ...


class Vae(Model, Protocol):
    @property
    def config(self) -> VaeConfig: ...
    def encode(self, x: Tensor, return_dict: Literal[False]) -> tuple[Tensor | LatentDistribution, ...]: ...
    def decode(self, z: Tensor, return_dict: Literal[False]) -> tuple[Tensor, ...]: ...


class TextEncoderConfig(Protocol):
    @property
    def max_position_embeddings(self) -> int: ...


class LastHiddenState(Protocol):
    @property
    def last_hidden_state(self) -> Tensor: ...


class HiddenStates(Protocol):
    @property
    def hidden_states(self) -> tuple[Tensor, ...]: ...  # the embeddings', then every layer's


class ProjectedHiddenStates(HiddenStates, Protocol):
    @property
    def text_embeds(self) -> Tensor: ...  # the pooled text, projected (SDXL's second encoder)


class TextModel(Model, Protocol):
    @property
    def config(self) -> TextEncoderConfig: ...


class TextEncoder(TextModel, Protocol):
    @overload
    def __call__(self, input_ids: Tensor, *, return_dict: Literal[True]) -> LastHiddenState: ...
    @overload
    def __call__(
        self, input_ids: Tensor, *, output_hidden_states: Literal[True], return_dict: Literal[True]
    ) -> HiddenStates: ...


class ProjectedTextEncoder(TextModel, Protocol):
    def __call__(
        self, input_ids: Tensor, *, output_hidden_states: Literal[True], return_dict: Literal[True]
    ) -> ProjectedHiddenStates: ...


class TokenIds(Protocol):
    @property
    def input_ids(self) -> Tensor: ...


class Tokenizer(Protocol):
    @property
    def model_max_length(self) -> int: ...
    def __call__(
        self,
        text: str,
        *,
        padding: Literal["max_length"],
        max_length: int,
        truncation: Literal[True],
        return_tensors: Literal["pt"],
    ) -> TokenIds: ...


class ScheduleConfig(Protocol):
    @property
    def num_train_timesteps(self) -> int: ...


class NoiseSchedule(Protocol):
    """The training noise schedule the stream engine indexes into."""

    @property
    def config(self) -> ScheduleConfig: ...
    @property
    def alphas_cumprod(self) -> Tensor: ...


# -- the video world -------------------------------------------------------------


class FarConfig(Protocol):
    @property
    def full_chunk_limit(self) -> int: ...
    @property
    def patch_size(self) -> Sequence[int]: ...  # (frames, height, width)
    @property
    def compressed_patch_size(self) -> Sequence[int]: ...
    @property
    def rope_max_seq_len(self) -> int: ...
    @property
    def num_attention_heads(self) -> int: ...
    @property
    def attention_head_dim(self) -> int: ...
    @property
    def in_channels(self) -> int: ...


class AttentionProcessor(Protocol):
    """diffusers' attention processor: the block's attention module is handed in as `attn`."""

    def __call__(
        self,
        attn: SelfAttention,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor | None = None,
        attention_mask: object = None,
        rotary_emb: dict[str, Tensor] | None = None,
        kv_cache: dict[str, Tensor] | None = None,  # FAR's own cache, in diffusers' pipeline
        kv_cache_flag: dict[str, Any] | None = None,
    ) -> Tensor: ...


class SelfAttention(Protocol):
    """A FAR block's self-attention module: its projections, and the processor that runs it."""

    heads: int
    to_q: Callable[[Tensor], Tensor]
    to_k: Callable[[Tensor], Tensor]
    to_v: Callable[[Tensor], Tensor]
    norm_q: Callable[[Tensor], Tensor]
    norm_k: Callable[[Tensor], Tensor]
    to_out: Sequence[Callable[[Tensor], Tensor]]  # the output projection, then dropout

    @property
    def processor(self) -> AttentionProcessor: ...
    def set_processor(self, processor: AttentionProcessor) -> None: ...


class FarBlock(Protocol):
    attn1: SelfAttention

    def __call__(
        self,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor,
        temb: Tensor,
        rotary_emb: None,
        attention_mask: None,
        *,
        kv_cache: object,  # handed to the self-attention processor as they are
        kv_cache_flag: object,
    ) -> Tensor: ...


class FarConditionEmbedder(Protocol):
    deltatime_type: str  # "r": the second timestep is r itself; "t-r": the interval
    text_embedder: Callable[[Tensor], Tensor]

    def forward_timestep(
        self, timestep: Tensor, delta_timestep: Tensor, encoder_hidden_states: Tensor, token_per_frame: int
    ) -> tuple[Tensor, Tensor]: ...  # the time embedding, and its projection for the blocks


class FarTransformer(Model, Protocol):
    """The causal Wan transformer with FAR's compressed patches, used part by part."""

    blocks: Sequence[FarBlock]
    condition_embedder: FarConditionEmbedder
    patch_embedding: Callable[[Tensor], Tensor]  # full resolution: (1, C, frames, h, w) -> (1, dim, ...)
    far_patch_embedding: Callable[[Tensor], Tensor]  # compressed
    scale_shift_table: Tensor
    norm_out: Callable[[Tensor], Tensor]
    proj_out: Callable[[Tensor], Tensor]

    @property
    def config(self) -> FarConfig: ...
    @property
    def dtype(self) -> torch.dtype: ...
    def rope(self, *, far_cfg: dict[str, Any], device: torch.device) -> dict[str, Tensor]: ...


class WanVaeConfig(Protocol):
    @property
    def z_dim(self) -> int: ...
    @property
    def latents_mean(self) -> Sequence[float]: ...
    @property
    def latents_std(self) -> Sequence[float]: ...
    @property
    def scale_factor_spatial(self) -> int: ...


# The causal convolutions' cache between chunks: a tensor per convolution, or the
# marker "Rep" where a first chunk was too short to keep one.
WanFeatureCache = list[Tensor | str | None]


class WanDecoder(Protocol):
    def modules(self) -> Iterator[torch.nn.Module]: ...
    def __call__(self, x: Tensor, *, feat_cache: WanFeatureCache, feat_idx: list[int], first_chunk: bool) -> Tensor: ...


class WanVae(Model, Protocol):
    decoder: WanDecoder
    post_quant_conv: Callable[[Tensor], Tensor]

    @property
    def config(self) -> WanVaeConfig: ...


class FlowSchedule(Protocol):
    """The flow-map sampling schedule: sigmas from 1 (noise) down to 0."""

    @property
    def config(self) -> ScheduleConfig: ...
    @property
    def sigmas(self) -> Tensor: ...
    def set_timesteps(self, num_inference_steps: int, device: str | torch.device) -> None: ...


class PromptEncoder(Protocol):
    """The pipeline's prompt encoding: the reference one, UMT5 under the model's own rules."""

    def encode_prompt(
        self,
        prompt: str,
        *,
        do_classifier_free_guidance: Literal[False],
        max_sequence_length: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> tuple[Tensor, None]: ...  # the prompt's embedding; no negative one without guidance
