"""The sketch world's canvas: the float picture every layer draws into.

The picture is held planar (3 x H x W float32) because numpy broadcasts a
per-row or per-pixel factor over a contiguous row far faster than over the
last axis; `Grade` interleaves it into uint8 RGB once, at the end. Beside
the buffers the canvas owns the few drawing primitives layers share (sprites,
glowing points, soft glows) and the small maths they are written in. `Motion`
is what the world integrates over time (the camera's travel, the wind); each
frame it yields the `View` every layer is drawn from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .sketch_assets import LAYER_BASE, REF_H, glow_kernel
from .sketch_scene import Camera, Mood

F32 = np.float32


# Float pictures, rows and colours: float32 where the layers keep them, float64 where numpy promotes.
Field = NDArray[np.floating[Any]]


@overload
def smoothstep(a: float, b: float, x: float) -> np.float64: ...
@overload
def smoothstep(a: float, b: float, x: Field) -> Field: ...
def smoothstep(a: float, b: float, x: float | Field) -> np.float64 | Field:
    t = np.clip((x - a) / (b - a), 0.0, 1.0)
    step: np.float64 | Field = t * t * (3 - 2 * t)
    return step


def lerp(a: Field, b: Field, t: float | Field) -> Field:
    return a + (b - a) * t


def hash01(n: int, salt: int = 0) -> float:
    """A deterministic pseudo-random number in [0, 1) for an integer (e.g. a time slot)."""
    x = (n * 0x9E3779B1 + salt * 0x85EBCA77 + 0x165667B1) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x2C1B3C6D) & 0xFFFFFFFF
    x ^= x >> 12
    x = (x * 0x297A2D39) & 0xFFFFFFFF
    x ^= x >> 15
    return x / 4294967296.0


def rgb(*c: float) -> NDArray[np.float32]:
    return np.array(c, F32)


def _mirrored(quadrant: NDArray[np.float32], H: int, W: int) -> NDArray[np.float32]:
    """The (2H, 2W) texture centred at (H, W) from its quadrant [H..2H] x [W..2W]."""
    rows, cols = np.abs(np.arange(2 * H) - H), np.abs(np.arange(2 * W) - W)
    full: NDArray[np.float32] = np.ascontiguousarray(quadrant[rows][:, cols])
    return full


def _kernel_offsets(k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = k.shape[0] // 2
    ys, xs = np.nonzero(k > 0.02)
    return (ys - r).astype(np.intp), (xs - r).astype(np.intp), k[ys, xs].astype(F32)


class View(NamedTuple):
    """Where the camera looks this frame."""

    zoom: float
    shift: float  # pixels the ground moves down: altitude and bob
    horizon: float  # row of the far ground line
    wind: float  # this frame's wind, gusting about the scene's
    travel: float  # reference pixels the nearest layer has moved since the start
    gust: float  # wind integrated over time


@dataclass(slots=True)
class Motion:
    """What the world integrates over time.

    Drifts are rate x time; a rate that changes (pan, wind, trippy) must not
    re-scale all the time that went before, so each is summed frame by frame.
    """

    travel: float = 0.0
    gust: float = 0.0
    hue_turn: float = 0.0  # the colour wheel's own turn, in turns

    def advance(self, camera: Camera, wind: float, trippy: float, t: float, dt: float, H: int) -> View:
        """One frame on: pan, slow zoom drift, bob, altitude, gusting wind."""
        self.travel += camera.pan * 24.0 * dt * (1 + 0.15 * math.sin(t * 0.05))
        zoom = camera.zoom * (1 + 0.035 * math.sin(t * 0.043) + 0.015 * math.sin(t * 0.11))
        bob = H * (0.004 + 0.02 * camera.bob) * (math.sin(t * 0.9) + 0.5 * math.sin(t * 2.3 + 1)) * camera.bob
        bob += H * 0.006 * math.sin(t * 0.21)
        lift = H * (0.22 * camera.altitude)
        horizon = H * LAYER_BASE[0] + lift + bob
        wind = wind * (0.8 + 0.2 * math.sin(t * 0.13) + 0.15 * math.sin(t * 0.41))
        self.gust += wind * dt
        self.hue_turn = (self.hue_turn + trippy * 0.05 * dt) % 1.0  # integrated: never jumps
        return View(zoom=zoom, shift=lift + bob, horizon=horizon, wind=wind, travel=self.travel, gust=self.gust)


class Canvas:
    """The planar float picture of one frame, its pixel grid and the shared primitives.

    `s` is output pixels per reference pixel: assets and distances are
    authored for a frame `REF_H` high.
    """

    def __init__(self, width: int, height: int) -> None:
        self.W, self.H = width, height
        self.s = height / REF_H
        H, W, s = height, width, self.s
        self.img = np.zeros((3, H, W), F32)
        self.tmp = np.zeros((3, H, W), F32)  # scratch: rain's mask, the graded picture
        self.rows = np.arange(H, dtype=F32)
        self.cols = np.arange(W, dtype=F32)
        # Column maths that mixes in the camera's travel needs float64: after
        # a few days on air float32 would make the terrain shimmer.
        self.cols64 = np.arange(W, dtype=np.float64)
        # Glows, centred in textures twice the frame: sliced, never recomputed. A glow
        # depends only on the distance from the centre, so one quadrant is computed
        # (from the centre out) and mirrored: the same values, a quarter of the work.
        qy, qx = np.mgrid[H : 2 * H + 1, W : 2 * W + 1].astype(F32)
        d = np.hypot(qx - W, qy - H) / H
        self._glow = _mirrored((0.55 * np.exp(-d / 0.09) + 0.35 * np.exp(-((d / 0.45) ** 2))).astype(F32), H, W)
        # A compact glow for small lights (fires, bursts): ~0 at a quarter frame.
        self._glow_small = _mirrored(
            (0.6 * np.exp(-((d / 0.07) ** 2)) + 0.4 * np.exp(-((d / 0.03) ** 2))).astype(F32), H, W
        )
        self._dot = _kernel_offsets(glow_kernel(max(1, int(round(2 * s)))))
        self._big_dot = _kernel_offsets(glow_kernel(max(2, int(round(4 * s)))))

    def fill_rows(self, rows: np.ndarray) -> None:
        """Every pixel of a row takes that row's colour: rows is (3, H)."""
        np.copyto(self.img, rows[:, :, None])

    def blit(self, spr: np.ndarray, x: float, y: float, alpha: float, tint: ArrayLike | None = None) -> None:
        """Alpha-composite an (h, w, 4) sprite centred at (x, y)."""
        if alpha <= 0.01:
            return
        h, w = spr.shape[:2]
        x0, y0 = int(round(x - w / 2)), int(round(y - h / 2))
        sx0, sy0 = max(0, -x0), max(0, -y0)
        x1, y1 = min(self.W, x0 + w), min(self.H, y0 + h)
        if x1 <= max(0, x0) or y1 <= max(0, y0):
            return
        sub = spr[sy0 : sy0 + (y1 - max(0, y0)), sx0 : sx0 + (x1 - max(0, x0))]
        a = sub[..., 3] * alpha
        region = self.img[:, max(0, y0) : y1, max(0, x0) : x1]
        rgb = sub[..., :3].transpose(2, 0, 1)
        if tint is not None:
            rgb = rgb * np.asarray(tint, F32)[:, None, None]
        region += (rgb - region) * a

    def silhouette(self, spr: np.ndarray, x: float, y: float, a: float, col: np.ndarray) -> None:
        """A sprite's shape in one flat colour, centred at (x, y) (birds, planes, dragons)."""
        if a <= 0.01:
            return
        h, w = spr.shape[:2]
        x0, y0 = int(round(x - w / 2)), int(round(y - h / 2))
        xa, ya = max(0, x0), max(0, y0)
        x1, y1 = min(self.W, x0 + w), min(self.H, y0 + h)
        if x1 <= xa or y1 <= ya:
            return
        al = spr[ya - y0 : y1 - y0, xa - x0 : x1 - x0, 3] * a
        reg = self.img[:, ya:y1, xa:x1]
        for c in range(3):
            reg[c] += (col[c] - reg[c]) * al

    def points(self, xs: Field, ys: Field, cols: Field, big: bool = False) -> None:
        """Additive glowing points: colours (3, n) spread through a small kernel."""
        H, W = self.H, self.W
        ky, kx, kw = self._big_dot if big else self._dot
        yy = np.round(ys).astype(np.intp)[:, None] + ky[None, :]
        xx = np.round(xs).astype(np.intp)[:, None] + kx[None, :]
        ok = (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
        if not ok.any():
            return
        flat = (yy * W + xx)[ok]
        wts = np.broadcast_to(kw[None, :], ok.shape)[ok]
        for c in range(3):
            vals = np.broadcast_to(np.asarray(cols[c], F32)[:, None], ok.shape)[ok] * wts
            plane = self.img[c].reshape(-1)
            plane[flat] += vals

    def glow(
        self, cx: float, cy: float, col: np.ndarray, strength: float, rows: int, radius: float | None = None
    ) -> None:
        """Additive soft glow around (cx, cy) over rows [0, rows): the sun's wide
        glow, or with `radius` (pixels) a compact one computed only in its box."""
        if strength < 0.005 or rows <= 0:
            return
        H, W = self.H, self.W
        ox, oy = int(min(max(W - cx, 0), W)), int(min(max(H - cy, 0), H))
        r0, r1, c0, c1 = 0, rows, 0, W
        if radius is not None:
            r0, r1 = int(max(0, cy - radius)), int(min(rows, cy + radius))
            c0, c1 = int(max(0, cx - radius)), int(min(W, cx + radius))
            if r1 <= r0 or c1 <= c0:
                return
        tex = self._glow if radius is None else self._glow_small
        g = tex[oy + r0 : oy + r1, ox + c0 : ox + c1]
        for c in range(3):
            self.img[c, r0:r1, c0:c1] += g * F32(col[c] * strength)


class PlaneTexture:
    """A tileable uint8 texture with mip levels, sampled row by row in perspective.

    Each screen row looks at the plane (clouds above, water below) from its own
    distance, so each row picks the mip level that matches its footprint:
    no blocky texels overhead, no shimmering noise near the horizon.
    """

    def __init__(self, tex: np.ndarray, levels: int = 5) -> None:
        mips: list[Field] = [tex.astype(F32)]
        for _ in range(levels - 1):
            m = mips[-1]
            if min(m.shape) < 8:
                break
            mips.append((m[0::2, 0::2] + m[1::2, 0::2] + m[0::2, 1::2] + m[1::2, 1::2]) / 4)
        self.flat = np.concatenate([m.ravel() for m in mips]).astype(np.uint8)
        self.offs = np.cumsum([0] + [m.size for m in mips[:-1]]).astype(np.intp)
        self.ths = np.array([m.shape[0] for m in mips], np.intp)
        self.tws = np.array([m.shape[1] for m in mips], np.intp)
        self.levels = len(mips)

    def sample(
        self, v: np.ndarray, u0: np.ndarray, foot: np.ndarray, cols: np.ndarray, du: np.ndarray | None = None
    ) -> NDArray[np.uint8]:
        """Rows: v (texel row), u0 (texel column at cols == 0), foot (texels a pixel
        covers, picks the mip level), du (texels per pixel along the row; = foot)."""
        du = foot if du is None else du
        lvl = np.clip(np.floor(np.log2(np.maximum(foot, 1e-6)) + 0.3), 0, self.levels - 1).astype(np.intp)
        sc = np.ldexp(1.0, -lvl).astype(F32)
        tw, th = self.tws[lvl], self.ths[lvl]
        vi = (v * sc).astype(np.intp) % th
        u = ((u0 * sc)[:, None] + cols[None, :] * (du * sc)[:, None]).astype(np.intp)
        u %= tw[:, None]
        u += (self.offs[lvl] + vi * tw)[:, None]
        texels: NDArray[np.uint8] = self.flat.take(u)
        return texels


class Grade:
    """Colour grading, vignette and film grain; writes the frame as uint8 RGB."""

    def __init__(self, canvas: Canvas, grain: np.ndarray) -> None:
        H, W = canvas.H, canvas.W
        self.canvas = canvas
        self.grain = grain  # (H + 64, W + 64) standard normal, sliced at a random offset each frame
        yy, xx = np.mgrid[0:H, 0:W].astype(F32)
        r2 = ((xx - W / 2) / (W / 2)) ** 2 * 0.8 + ((yy - H / 2) / (H / 2)) ** 2 * 0.6
        self.vig_r2 = np.ascontiguousarray(np.broadcast_to(r2, (3, H, W))).astype(F32)
        self.planar8 = np.zeros((3, H, W), np.uint8)
        self.out = np.zeros((H, W, 3), np.uint8)

    def __call__(self, mood: Mood, hue_turn: float, t: float) -> np.ndarray:
        c = self.canvas
        H, W = c.H, c.W
        warm = mood.warmth
        tint = rgb(mood.tint_r, mood.tint_g, mood.tint_b) * rgb(1 + 0.12 * warm, 1 + 0.02 * warm, 1 - 0.15 * warm)
        expo = 2 ** (mood.exposure * 0.9)
        sat = mood.saturation
        lum = rgb(0.299, 0.587, 0.114)
        m_sat = (1 - sat) * np.tile(lum, (3, 1)) + sat * np.eye(3, dtype=F32)
        con = mood.contrast
        # Turn the colour wheel about the grey axis (Rodrigues' rotation).
        th = 2 * math.pi * (mood.hue + hue_turn)
        kx = np.array([[0, -1, 1], [1, 0, -1], [-1, 1, 0]], F32) / math.sqrt(3)
        m_hue = math.cos(th) * np.eye(3) + (1 - math.cos(th)) / 3 * np.ones((3, 3)) + math.sin(th) * kx
        m = (np.diag(tint * expo) @ m_sat @ m_hue) * con
        m = m.astype(F32)
        off = F32(0.42 * (1 - con))
        img, tmp = c.img, c.tmp
        # Nine multiply-adds on whole planes: faster than BLAS here, and no threads.
        for k in range(3):
            np.multiply(img[0], m[k, 0], out=tmp[k])
            tmp[k] += img[1] * m[k, 1]
            tmp[k] += img[2] * m[k, 2]
        tmp += off
        v = mood.vignette * 0.5
        if v > 0.01:
            np.multiply(self.vig_r2, -v, out=img)
            img += 1.0
            tmp *= img
        if mood.grain > 0.01:
            g = self.grain
            oy = int(hash01(int(t * 1000), 1) * (g.shape[0] - H))
            ox = int(hash01(int(t * 1000), 2) * (g.shape[1] - W))
            gs = g[oy : oy + H, ox : ox + W] * (mood.grain * 0.022)
            tmp += gs
        np.clip(tmp, 0.0, 1.0, out=tmp)
        tmp *= 255.0
        tmp += 0.5
        np.copyto(self.planar8, tmp, casting="unsafe")
        for k in range(3):
            self.out[:, :, k] = self.planar8[k]
        return self.out.copy()  # the caller may keep it while the next frame is drawn
