"""Small tensor helpers of the stream world, each doing one job.

slerp between prompt embeddings, the stochastic similarity filter, the camera
motion warp, the LCM guidance embedding and the latent re-anchoring blend.
"""
from __future__ import annotations

import math
import random

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
    """Skip the model when its input hardly changed (StreamDiffusion's stochastic filter).

    The skip probability rises from 0 at `threshold` cosine similarity to 1 at
    identical input, so slow change is still rendered now and then; after
    `max_skip` skips in a row one frame is always rendered.
    """

    def __init__(self, threshold: float = 0.98, max_skip: int = 10, seed: int = 0) -> None:
        self.threshold = threshold
        self.max_skip = max_skip
        self._rng = random.Random(seed)
        self._last: torch.Tensor | None = None
        self._skipped = 0
        self.skips = 0  # total, for figures
        self.last_similarity: float | None = None

    def reset(self) -> None:
        self._last = None
        self._skipped = 0

    def __call__(self, x: torch.Tensor) -> bool:
        """True when this input should be skipped (the previous output stands)."""
        if self._last is None or self._last.shape != x.shape:
            self._last = x.detach().clone()
            return False
        sim = F.cosine_similarity(self._last.reshape(1, -1).float(), x.reshape(1, -1).float()).item()
        self.last_similarity = sim
        p_skip = 0.0 if self.threshold >= 1 else max(0.0, 1 - (1 - sim) / (1 - self.threshold))
        if self._skipped < self.max_skip and self._rng.random() < p_skip:
            self._skipped += 1
            self.skips += 1
            return True
        self._skipped = 0
        self._last.copy_(x)
        return False


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


def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample `x` (N,C,H,W) through the affine `theta` (N,2,3); edges are mirrored in."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def guidance_embedding(w: float, dim: int, *, device, dtype) -> torch.Tensor:
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
