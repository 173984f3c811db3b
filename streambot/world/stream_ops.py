"""Small tensor helpers of the stream world, each doing one job.

slerp between prompt embeddings, the stochastic similarity filter, the camera
path and its warp, the LCM guidance embedding, the latent re-anchoring blend
and range guard, and the pictures' way back to the host.
"""

from __future__ import annotations

import math
import random
from collections import deque
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F


class Slerp:
    """Spherical interpolation from `a` to `b` along the last dimension (token by token).

    Directions move on the great circle, norms linearly; nearly parallel vectors
    fall back to a lerp, where slerp is unstable. Everything that does not depend
    on `t` is computed once, so each frame of a transition costs a few passes.
    """

    def __init__(self, a: torch.Tensor, b: torch.Tensor, eps: float = 1e-4) -> None:
        self.dtype = a.dtype
        a32, b32 = a.float(), b.float()
        self.na, self.nb = a32.norm(dim=-1, keepdim=True), b32.norm(dim=-1, keepdim=True)
        self.ua, self.ub = a32 / self.na.clamp_min(1e-8), b32 / self.nb.clamp_min(1e-8)
        dot = (self.ua * self.ub).sum(-1, keepdim=True).clamp(-1 + eps, 1 - eps)
        self.omega = torch.acos(dot)
        self.parallel = (1 - dot.abs()) < 10 * eps
        # where parallel, sin(t w) / sin(w) -> t: the lerp weights
        self.inv_sin = torch.where(self.parallel, torch.zeros_like(dot), 1 / torch.sin(self.omega))

    def __call__(self, t: float) -> torch.Tensor:
        wa = torch.where(self.parallel, 1 - t, torch.sin((1 - t) * self.omega) * self.inv_sin)
        wb = torch.where(self.parallel, t, torch.sin(t * self.omega) * self.inv_sin)
        scale = (1 - t) * self.na + t * self.nb
        return torch.addcmul(self.ua * (wa * scale), self.ub, wb * scale).to(self.dtype)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """One-off spherical interpolation (see `Slerp`)."""
    return Slerp(a, b)(t)


def ease_out(t: float) -> float:
    """Front-loaded progress: a steer shows early, then settles (t in 0..1)."""
    t = min(max(t, 0.0), 1.0)
    return 1.0 - (1.0 - t) ** 2


class SimilarityFilter:
    """Skip the model when rendering would hardly change the picture (StreamDiffusion's stochastic filter).

    StreamDiffusion compares each camera frame with the last one it rendered.
    A fed-back world cannot: its input is its own last output, moved a little,
    so consecutive inputs always look alike, and a skipped frame would also
    stop the camera (the next input is made from the output). So the engine
    hands this filter the similarity of the last render's output to its input,
    the model's own change, measured on the device and read back with that
    picture, and asks only while the camera is still and the prompt steady:
    then the next input is the last output, and a render that changed nothing
    would change nothing again.

    The skip probability rises from 0 at `threshold` cosine similarity to 1 at
    no change, so slow change is still rendered now and then; after `max_skip`
    skips in a row one frame is always rendered. Host numbers only: deciding
    never waits for the device.
    """

    def __init__(self, threshold: float = 0.98, max_skip: int = 10, seed: int = 0) -> None:
        self.threshold = threshold
        self.max_skip = max_skip
        self._rng = random.Random(seed)
        self._skipped = 0
        self.skips = 0  # total, for figures
        self.last_similarity: float | None = None  # of the last render's output to its input

    def reset(self) -> None:
        """The picture changed by other hands (a re-anchor): nothing is known about the next render."""
        self.last_similarity = None
        self._skipped = 0

    def observe(self, similarity: float) -> None:
        """A render came back: how alike its output and its input were."""
        self.last_similarity = similarity

    def __call__(self, allowed: bool = True) -> bool:
        """True when the next frame should be skipped (the previous picture stands).

        `allowed` False: this frame must be rendered whatever was measured.
        """
        sim = self.last_similarity
        if not allowed or sim is None or sim != sim:  # nothing measured yet, or NaN
            self._skipped = 0
            return False
        p_skip = 0.0 if self.threshold >= 1 else max(0.0, 1 - (1 - sim) / (1 - self.threshold))
        if self._skipped < self.max_skip and self._rng.random() < p_skip:
            self._skipped += 1
            self.skips += 1
            return True
        self._skipped = 0
        return False


def cosine_similarity_into(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """cos(a, b) over all elements, in float32, written into the one-element `out` (no host read)."""
    out.copy_(F.cosine_similarity(a.reshape(1, -1).float(), b.reshape(1, -1).float(), eps=1e-6))


def motion_theta(
    pan_x: float, pan_y: float, zoom: float, rotate_deg: float, *, aspect: float = 1.0
) -> tuple[tuple[float, float, float], tuple[float, float, float]] | None:
    """The affine sampling matrix of one frame's camera move, or None for no move.

    pan in fractions of the frame per frame (+x: the camera moves right, so the
    picture slides left), zoom > 1 moves in, rotation in degrees; aspect is width / height.
    """
    if pan_x == 0 and pan_y == 0 and zoom == 1 and rotate_deg == 0:
        return None
    s = 1.0 / zoom
    r = math.radians(rotate_deg)
    c, n = math.cos(r) * s, math.sin(r) * s
    # grid coordinates span -1..1, so a pan of a whole frame is 2 units
    return ((c, -n / aspect, 2 * pan_x), (n * aspect, c, 2 * pan_y))


class CameraPath:
    """The camera's move for each frame as an affine sampling matrix, advanced on the device.

    Zoom, rotation and pan change only when the motion is set (one small copy
    to the device then). The drift, a slow Lissajous wander added to the pan so
    the path never simply repeats, changes every frame: its phase is advanced
    in place on the device. So a moving camera costs no tensor from the host per
    frame, and `theta` is one buffer that a captured graph could read.
    """

    _IDENTITY = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0))

    def __init__(self, device: torch.device, dtype: torch.dtype, aspect: float) -> None:
        self.aspect = aspect
        self.theta = torch.zeros((1, 2, 3), device=device, dtype=dtype)  # what warp reads
        # float32, one copy per set(): matrix rows, drift amplitude (x, y), phase, phase step
        self._params = torch.zeros(12, device=device)
        self._rows = self._params[:6].view(2, 3)
        self._amp, self._phase, self._dphase = self._params[6:8], self._params[8:10], self._params[10:12]
        self._sin = torch.zeros(2, device=device)
        self._work = torch.zeros((2, 3), device=device)
        self.frames = 0  # advanced so far: where the drift is on its path
        self.still = True
        self._drifting = False

    def set(self, motion: Any) -> None:
        """A new move (a `Motion`) from the next frame on; the drift keeps its place on its path."""
        rows = motion_theta(motion.pan_x, motion.pan_y, motion.zoom, motion.rotate_deg, aspect=self.aspect)
        self._drifting = motion.drift > 0
        self.still = rows is None and not self._drifting
        step = 2 * math.pi / motion.drift_period_frames
        dphase = (step, 1.618 * step)  # y wanders on an incommensurate frequency
        phase = tuple(math.fmod(self.frames * d, 2 * math.pi) for d in dphase)
        amp = (2 * motion.drift, motion.drift)  # grid units: x at the drift, y at half of it
        flat = [v for row in (rows or self._IDENTITY) for v in row]
        self._params.copy_(torch.tensor([*flat, *amp, *phase, *dphase], dtype=torch.float32))
        self.theta[0].copy_(self._rows)

    def advance(self) -> torch.Tensor | None:
        """This frame's matrix (always the same buffer), or None while the camera is still."""
        self.frames += 1
        if self.still:
            return None
        if self._drifting:
            torch.sin(self._phase, out=self._sin)
            self._work.copy_(self._rows)
            self._work[:, 2].addcmul_(self._amp, self._sin)
            self.theta[0].copy_(self._work)
            self._phase.add_(self._dphase).remainder_(2 * math.pi)
        return self.theta


def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample `x` (N,C,H,W) through the affine `theta` (N,2,3); edges are mirrored in."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def guidance_embedding(w: float, dim: int, *, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Sinusoidal embedding of an LCM model's distilled guidance scale (w - 1), shape (1, dim)."""
    x = torch.tensor([(w - 1.0) * 1000.0], device=device, dtype=torch.float32)
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) / (half - 1) * torch.arange(half, device=device, dtype=torch.float32))
    angles = x[:, None] * freqs[None]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb.to(dtype)


def match_stats(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """`x` with the per-channel mean and spread of `ref`: undoes slow colour and contrast drift."""
    dims = (-2, -1)
    xm, xs = x.mean(dims, keepdim=True), x.std(dims, keepdim=True)
    rm, rs = ref.mean(dims, keepdim=True), ref.std(dims, keepdim=True)
    return (x - xm) / xs.clamp_min(1e-5) * rs + rm


# A scaled latent's RMS is about 1 (the VAEs' scaling factors are chosen for unit
# variance) and TAESD's decoder clamps at 3, so nothing healthy comes near this.
LATENT_RMS_LIMIT = 3.0


def keep_in_range(x: torch.Tensor, limit: float = LATENT_RMS_LIMIT) -> torch.Tensor:
    """`x` with NaN and inf replaced and each sample's RMS capped at `limit`; no host read.

    A fed-back latent is the next frame's input: a model that fails to take out
    the noise it was given (an untrained one, an overflow in half precision)
    would otherwise grow it frame after frame until the decoder shows nothing
    but saturated colour, and a NaN would stay forever. Healthy latents pass unchanged.
    """
    x = torch.nan_to_num(x, nan=0.0, posinf=limit, neginf=-limit)
    rms = x.float().pow(2).mean(dim=tuple(range(1, x.ndim)), keepdim=True).sqrt()
    return x * (limit / rms.clamp_min(1e-12)).clamp_max(1.0).to(x.dtype)


class Picture(NamedTuple):
    """A frame back on the host: its pixels (None: skipped, the last picture stands), what it was tagged with."""

    image: np.ndarray | None
    tag: Any
    similarity: float | None  # the render's output to its input, when the engine measured it


class HostFrames:
    """The pictures' way back to the host: copies into pinned memory, at most `depth` in flight.

    On a GPU each frame is copied, without waiting, into the next of `depth`
    pinned slots and marked with an event; the host waits for that event only
    when it takes the frame. With depth 2 the GPU paints the next frame while
    the host copies this one out and encodes it, and nothing in the hot path
    waits for the device. On a CPU the same steps are plain copies.
    """

    def __init__(self, shape: tuple[int, ...], device: torch.device, depth: int) -> None:
        cuda = device.type == "cuda"
        self.depth = depth
        self._pixels = [torch.empty(shape, dtype=torch.uint8, pin_memory=cuda) for _ in range(depth)]
        self._values = [torch.empty(1, dtype=torch.float32, pin_memory=cuda) for _ in range(depth)]
        # blocking: the waiting thread sleeps instead of spinning a core the encoder could use
        self._events = [
            torch.cuda.Event(blocking=True) if cuda else None  # type: ignore[no-untyped-call]  # torch leaves it unannotated
            for _ in range(depth)
        ]
        self._queue: deque[tuple[int | None, bool, Any]] = deque()
        self._next = 0

    def __len__(self) -> int:
        return len(self._queue)

    def push(self, frame: torch.Tensor | None, tag: Any, value: torch.Tensor | None = None) -> None:
        """Queue `frame` (None: a skipped frame) and a one-element `value` measured with it."""
        if len(self._queue) >= self.depth:
            raise RuntimeError("more frames in flight than slots; take() one first")
        if frame is None:
            self._queue.append((None, False, tag))
            return
        # the slots in use are the last ones pushed, so the next in turn is free
        i, self._next = self._next, (self._next + 1) % self.depth
        self._pixels[i].copy_(frame, non_blocking=True)
        if value is not None:
            self._values[i].copy_(value, non_blocking=True)
        event = self._events[i]
        if event is not None:
            event.record()
        self._queue.append((i, value is not None, tag))

    def pop(self) -> Picture:
        """The oldest frame, waiting for its copy to land; the pixels are the caller's own."""
        i, has_value, tag = self._queue.popleft()
        if i is None:
            return Picture(None, tag, None)
        event = self._events[i]
        if event is not None:
            event.synchronize()
        value = float(self._values[i][0]) if has_value else None
        return Picture(self._pixels[i].numpy().copy(), tag, value)
