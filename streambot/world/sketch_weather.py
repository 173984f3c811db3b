"""The sketch world's weather in front of the land: mist, rain, snow, lightning.

Drawn over everything else, before the grade. Drifts follow the wind
integrated over time (`View.gust`), so a change of wind never jumps.
"""

from __future__ import annotations

import numpy as np

from .sketch_canvas import F32, Canvas, View, rgb, smoothstep
from .sketch_sky import Bolt, Lighting


class Mist:
    """Ground mist rising from just above the horizon."""

    def __init__(self, c: Canvas, mist8: np.ndarray) -> None:
        self.c = c
        self.mist8 = mist8

    def draw(self, light: Lighting, view: View, t: float, fog: float) -> None:
        c = self.c
        H, s = c.H, c.s
        horizon = view.horizon
        r0 = int(max(0, horizon - 0.12 * H))
        th, tw = self.mist8.shape
        y = c.rows[r0:]
        v = ((y - r0) / s * 0.5).astype(np.intp) % th
        off = (t * 3 + view.gust * 12 + view.travel * 0.5) % tw
        u = (c.cols / s * 0.5 + off).astype(np.intp) % tw
        n = self.mist8[v][:, u].astype(F32) * (1 / 255)
        prof = smoothstep(r0, horizon + 0.08 * H, y).astype(F32)
        a = (n * 0.8 + 0.2) * prof[:, None] * (fog * 0.55)
        col = light.haze * 1.05
        reg = c.img[:, r0:]
        for ch in range(3):
            reg[ch] += (col[ch] - reg[ch]) * a


class Rain:
    """Two sheets of falling streaks, the nearer one larger and faster."""

    def __init__(self, c: Canvas, streaks: np.ndarray) -> None:
        self.c = c
        self.streaks = streaks  # (256, 256) uint8: a streak's rank, drawn while rank < amount

    def draw(self, light: Lighting, view: View, t: float, amount: float, *, neon: float) -> None:
        c = self.c
        s = c.s
        col = light.horizon * 0.5 + light.colour * 0.35 + 0.1 + light.flash * 0.5 + rgb(0.08, 0.03, 0.1) * neon
        scratch = c.tmp[0]
        for layer, (scale, speed, bright) in enumerate(((1.0, 900, 0.16), (1.9, 1300, 0.24))):
            fall = (t * speed / scale) % 256.0
            side = (view.gust * 140 / scale) % 256.0
            ridx = (c.rows / (s * scale) - fall + layer * 97).astype(np.intp) % 256
            cidx = (c.cols / (s * scale) + side + layer * 51).astype(np.intp) % 256
            codes = self.streaks.take(ridx, axis=0).take(cidx, axis=1)
            thr = int(255 * min(1.0, amount * (0.75 + 0.25 * layer)))
            np.multiply(codes < thr, F32(bright), out=scratch)
            for ch in range(3):
                c.img[ch] += scratch * col[ch]


class Snowfall:
    """Flakes at many depths: nearer ones fall faster, drift further and are bigger."""

    def __init__(self, c: Canvas, flakes: np.ndarray) -> None:
        self.c = c
        self.flakes = flakes  # (1600, 4) in 0..1: x, y, depth, phase

    def draw(self, light: Lighting, view: View, t: float, amount: float) -> None:
        c = self.c
        H, W, s = c.H, c.W, c.s
        q = self.flakes
        k = int(len(q) * min(1.0, amount))
        q = q[:k]
        depth = q[:, 2]
        fall = (14 + 40 * depth) * s
        x = (
            q[:, 0] * W
            + (view.gust * (30 + 90 * depth) * s) % W
            + 10 * s * np.sin(t * 0.8 + q[:, 3] * 12)
            - view.travel * depth * 0.5 * s
        ) % W
        y = (q[:, 1] * H + t * fall) % H
        col = light.colour * 0.6 + light.horizon * 0.3 + 0.25
        b = 0.35 + 0.65 * depth
        xi, yi = x.astype(np.intp), y.astype(np.intp)
        for ch in range(3):
            reg = c.img[ch]
            reg[yi, xi] += (col[ch] - reg[yi, xi]) * b
        big = depth > 0.7
        xb, yb = np.minimum(xi[big] + 1, W - 1), np.minimum(yi[big] + 1, H - 1)
        for xx, yy in ((xb, yi[big]), (xi[big], yb), (xb, yb)):
            for ch in range(3):
                c.img[ch, yy, xx] += (col[ch] - c.img[ch, yy, xx]) * 0.8


def lightning_bolt(c: Canvas, bolt: Bolt, horizon: float, seed: int) -> None:
    """A jagged bolt from the top of the sky down towards the horizon."""
    H, W = c.H, c.W
    rng = np.random.default_rng(bolt.slot * 7919 + seed)
    n = int(horizon * 0.9)
    steps = rng.normal(0, 1.4 * c.s, n).cumsum()
    xs = W * (0.1 + 0.8 * bolt.x) + steps
    ys = np.arange(n, dtype=F32) + H * 0.05
    b = np.full(n, min(1.5, bolt.strength * 2.2), F32)
    c.points(xs, ys, np.vstack([b, b, b * 1.1]))
