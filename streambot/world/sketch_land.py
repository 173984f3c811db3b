"""The sketch world's land: five parallax terrain layers and what lies between them.

`Terrain` draws each layer from the biomes' blended height profiles: ground
colour by depth, sunlit and shaded slopes, snow caps, near-ground texture
and a city's lit windows. Between the layers the renderer puts the water
(`Water`, over the farthest), the floating islands (`Islands`) and smoke
columns (`Smoke`). Column maths that mixes in the camera's travel is float64
(see `Canvas.cols64`); everything per pixel is float32.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .sketch_assets import (
    BIOME_ORDER,
    CITY_TILE,
    LAYER_BASE,
    LAYER_PARALLAX,
    N_LAYERS,
    PROFILE_LEN,
    REF_H,
    Assets,
)
from .sketch_canvas import F32, Canvas, Field, PlaneTexture, View, hash01, lerp, rgb, smoothstep
from .sketch_scene import Biomes
from .sketch_sky import Lighting

# Daylight albedo of each biome's ground: (ridge colour, foot colour) per layer
# depth class (far, mid, near). Layers in between are blended.
_GROUND = {
    "grass": (
        (rgb(0.34, 0.42, 0.56), rgb(0.30, 0.38, 0.50)),
        (rgb(0.40, 0.58, 0.24), rgb(0.22, 0.40, 0.16)),
        (rgb(0.30, 0.52, 0.18), rgb(0.12, 0.28, 0.09)),
    ),
    "desert": (
        (rgb(0.78, 0.52, 0.36), rgb(0.68, 0.44, 0.32)),
        (rgb(0.93, 0.72, 0.46), rgb(0.82, 0.58, 0.36)),
        (rgb(0.95, 0.76, 0.50), rgb(0.76, 0.52, 0.30)),
    ),
    "mountains": (
        (rgb(0.42, 0.46, 0.56), rgb(0.34, 0.38, 0.48)),
        (rgb(0.40, 0.40, 0.44), rgb(0.26, 0.28, 0.32)),
        (rgb(0.22, 0.34, 0.20), rgb(0.10, 0.18, 0.10)),
    ),
    "ocean": (
        (rgb(0.30, 0.40, 0.34), rgb(0.24, 0.32, 0.30)),
        (rgb(0.3, 0.45, 0.3), rgb(0.2, 0.3, 0.2)),
        (rgb(0.3, 0.45, 0.3), rgb(0.2, 0.3, 0.2)),
    ),
    "forest": (
        (rgb(0.20, 0.32, 0.30), rgb(0.16, 0.26, 0.26)),
        (rgb(0.10, 0.30, 0.15), rgb(0.06, 0.20, 0.10)),
        (rgb(0.06, 0.22, 0.09), rgb(0.03, 0.12, 0.05)),
    ),
    "city": (
        (rgb(0.40, 0.44, 0.52), rgb(0.34, 0.38, 0.46)),
        (rgb(0.32, 0.34, 0.40), rgb(0.24, 0.26, 0.32)),
        (rgb(0.22, 0.22, 0.26), rgb(0.12, 0.12, 0.15)),
    ),
    "space": ((rgb(0, 0, 0), rgb(0, 0, 0)),) * 3,
    "islands": (
        (rgb(0.45, 0.38, 0.62), rgb(0.36, 0.32, 0.55)),
        (rgb(0.26, 0.56, 0.44), rgb(0.16, 0.36, 0.34)),
        (rgb(0.20, 0.46, 0.30), rgb(0.08, 0.24, 0.20)),
    ),
    "candy": (
        (rgb(0.98, 0.62, 0.80), rgb(0.90, 0.55, 0.75)),
        (rgb(0.55, 0.92, 0.72), rgb(0.40, 0.80, 0.62)),
        (rgb(1.0, 0.80, 0.35), rgb(0.95, 0.55, 0.45)),
    ),
    "wasteland": (
        (rgb(0.42, 0.40, 0.38), rgb(0.36, 0.34, 0.33)),
        (rgb(0.42, 0.36, 0.28), rgb(0.30, 0.25, 0.20)),
        (rgb(0.30, 0.25, 0.19), rgb(0.16, 0.13, 0.10)),
    ),
}
_GROUND_ARR = np.array(
    [[[_GROUND[b][k][j] for j in range(2)] for k in range(3)] for b in BIOME_ORDER], F32
)  # (biomes, depth class, ridge/foot, rgb)
_SNOW = rgb(0.93, 0.95, 1.0)
_WIN_PAL_NIGHT = np.array(
    [[0, 0, 0], [0.02, 0.03, 0.05], [1.0, 0.78, 0.42], [0.85, 0.9, 1.0], [0.2, 1.0, 1.0], [1.0, 0.25, 0.85]], F32
)
_HAZE = (0.5, 0.33, 0.2, 0.1, 0.03)  # aerial perspective of each layer, far -> near


class Ground(NamedTuple):
    """The shape and colour of this frame's land, worked out once for all its layers."""

    tops: np.ndarray  # (N_LAYERS, W): the row where each layer's ground begins, per column
    covers: np.ndarray  # (N_LAYERS + 1, W): the highest ground of layers i and nearer (H: none)
    x: list[np.ndarray]  # per layer: the profile column under each screen column (float64)
    zoom: list[float]  # per layer: its magnification
    albedo: np.ndarray  # (depth class, ridge/foot, rgb): the biomes' ground colours blended


class Terrain:
    """The five layers of ground, far to near."""

    def __init__(self, c: Canvas, assets: Assets) -> None:
        self.c = c
        self.profiles = assets.profiles  # (biomes, layers, PROFILE_LEN) heights
        self.detail = assets.detail
        self.win_codes = assets.windows
        self.box = {r: np.full(2 * r + 1, 1.0 / (2 * r + 1), F32) for r in range(2, 32)}

    def ground(self, view: View, land: Biomes, altitude: float) -> Ground:
        c = self.c
        H = c.H
        weights = land.weights()
        tops = np.empty((N_LAYERS, c.W), F32)
        xs, zooms = [], []
        active = [k for k in range(len(BIOME_ORDER)) if weights[k] > 1e-3]
        prof = self.profiles
        for i in range(N_LAYERS):
            par = LAYER_PARALLAX[i]
            zi = 1 + (view.zoom - 1) * (0.3 + 0.7 * par)
            x = view.travel * par + i * 1777.0 + (c.cols64 - c.W / 2) / (c.s * zi)
            xs.append(x)
            zooms.append(zi)
            xf = np.floor(x)
            f = (x - xf).astype(F32)
            i0 = xf.astype(np.intp) % PROFILE_LEN
            i1 = (i0 + 1) % PROFILE_LEN
            h = np.zeros(c.W, F32)
            for k in active:
                pr = prof[k, i]
                h += weights[k] * (pr.take(i0) * (1 - f) + pr.take(i1) * f)
            # Higher cameras see flatter, lower ground; zoom magnifies the near layers.
            amp = H * zi * (1 - 0.35 * altitude)
            tops[i] = H * LAYER_BASE[i] + view.shift * (0.4 + 0.6 * LAYER_PARALLAX[i]) - h * amp
        # What is nearer hides what is behind.
        covers = np.full((N_LAYERS + 1, c.W), float(H), F32)
        for i in range(N_LAYERS - 1, -1, -1):
            covers[i] = np.minimum(covers[i + 1], tops[i])
        albedo = np.tensordot(weights, _GROUND_ARR, axes=1)
        return Ground(tops, covers, xs, zooms, albedo)

    def draw_layer(
        self,
        i: int,
        ground: Ground,
        light: Lighting,
        view: View,
        land: Biomes,
        *,
        snowcover: float,
        fog: float,
        city_lights: float,
        neon: float,
    ) -> None:
        """Layer i from its ridge line down to the nearer ground that hides the rest."""
        c = self.c
        H = c.H
        top, cover, x = ground.tops[i], ground.covers[i + 1], ground.x[i]
        tmin = float(top.min())
        r0 = max(0, int(math.floor(tmin)))
        r1 = min(H, int(math.ceil(float(np.minimum(cover, H).max()))) + 1)
        if r0 >= r1:
            return
        col, snow_col = self._colour(i, ground.albedo, light, land, view.shift, tmin, snowcover, fog)
        y = c.rows[r0:r1, None]
        a = np.clip(y + 1 - top[None, :], 0, 1)  # coverage: anti-aliased ridge line
        reg = c.img[:, r0:r1]
        # Slopes facing the sun are lit, the others in shade (fading with distance).
        r = min(31, max(2, int(6 * c.s)))
        smooth = np.convolve(np.pad(top, r, mode="edge"), self.box[r], mode="valid")
        slope = np.gradient(smooth) / max(c.s, 1e-3)
        side = math.copysign(1.0, c.W / 2 - light.sun.x) if light.sun.elevation > -0.05 else 0.0
        k = 0.35 * light.direct * (0.3 + 0.7 * i / (N_LAYERS - 1)) * side
        # Only near the ridge: a 1-D profile says nothing about the faces below it.
        band = 0.07 * H
        near = np.clip(1 - (y - top[None, :]) / band, 0, 1)
        shade = 1 + near * (k * np.clip(-slope, -1.5, 1.5)).astype(F32)[None, :]
        for ch in range(3):
            reg[ch] += (col[ch, r0:r1, None] * shade - reg[ch]) * a
        mw = land.mountains * (1 - land.space)
        if mw > 0.01 and i < 3:
            # Snow caps on the peaks, thicker on the higher ones, ragged at the edge.
            base = H * LAYER_BASE[i] + view.shift
            height = base - top
            line = (base - tmin) * (0.5 - 0.25 * snowcover)
            rag = 0.75 + 0.25 * np.sin(x * 0.31) * np.sin(x * 0.073 + 1.0)
            cap = np.clip(height - line, 0, None) * 0.7 * rag
            snow = np.clip((top + cap)[None, :] - y, 0, 1.5) / 1.5 * a * mw
            for ch in range(3):
                reg[ch] += (snow_col[ch] - reg[ch]) * snow
        if i >= 3:
            # Texture on the near ground so it reads as land, not a flat cut-out.
            det = self.detail
            ridx = (c.rows[r0:r1] * (1.0 / c.s) * 0.7).astype(np.intp) % det.shape[0]
            cidx = x.astype(np.intp) % det.shape[1]
            d = det[ridx][:, cidx] * (a * (0.35 if i == 4 else 0.22))
            reg *= 1 + d
        if land.city > 0.01 and i <= 3:
            self._windows(i, x, ground.zoom[i], r0, r1, a, light, view, land.city, city_lights, neon)

    def _colour(
        self,
        i: int,
        albedo: np.ndarray,
        light: Lighting,
        land: Biomes,
        shift: float,
        top_min: float,
        snowcover: float,
        fog: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(3, H) colour of layer i per row: ground, lighting, snow, haze, valley mist; and its snow's rgb."""
        c = self.c
        H = c.H
        depth = i / (N_LAYERS - 1)  # 0 far .. 1 near
        k = min(2.0, depth * 2.0)
        k0, kf = int(min(1, k)), k - int(min(1, k))
        ridge = lerp(albedo[k0, 0], albedo[k0 + 1, 0], kf)
        foot = lerp(albedo[k0, 1], albedo[k0 + 1, 1], kf)
        snow = snowcover * (1 - land.ocean * 0.5) * (1 - land.space)
        ridge = lerp(ridge, _SNOW, snow)
        foot = lerp(foot, _SNOW * 0.9, snow * 0.95)
        base = H * LAYER_BASE[i] + shift
        y = c.rows
        tt = np.clip((y - top_min) / max(base - top_min, 4), 0, 1)
        col = ridge[:, None] + (foot - ridge)[:, None] * tt[None, :]
        lit = col * light.colour[:, None]
        # Aerial perspective and valley mist.
        haze_amt = min(0.95, _HAZE[i] * (1 + 1.3 * fog) + fog * 0.2 * (1 - depth))
        # At night a city stands out as dark towers against its own glow.
        haze_amt *= 1 - 0.45 * land.city * light.night
        lit = lit + (light.haze[:, None] - lit) * haze_amt
        mist = (0.15 + 0.75 * fog) * (1 - depth * 0.7) * (1 - 0.7 * land.city)
        m = smoothstep(base - (0.05 + 0.08 * fog) * H, base + 0.02 * H, y) * mist
        lit = lit + (light.haze[:, None] * 1.05 - lit) * m[None, :]
        snow_col = _SNOW * light.colour
        snow_col = snow_col + (light.haze - snow_col) * haze_amt
        return lit.astype(F32), snow_col.astype(F32)

    def _windows(
        self,
        i: int,
        x: np.ndarray,
        zi: float,
        r0: int,
        r1: int,
        a: np.ndarray,
        light: Lighting,
        view: View,
        city: float,
        city_lights: float,
        neon: float,
    ) -> None:
        """Lit windows and neon: sparse, so only the lit pixels are touched."""
        c = self.c
        base = c.H * LAYER_BASE[i] + view.shift * (0.4 + 0.6 * LAYER_PARALLAX[i])
        codes = self.win_codes[i]
        k = ((base - c.rows[r0:r1]) / (c.s * zi)).astype(np.intp)
        ok_rows = (k >= 0) & (k < codes.shape[0])
        if not ok_rows.any():
            return
        lo = int(np.argmax(ok_rows))
        hi = len(ok_rows) - int(np.argmax(ok_rows[::-1]))
        ci = np.floor(x).astype(np.intp) % CITY_TILE
        sub = codes.take(k[lo:hi], axis=0).take(ci, axis=1)
        idx = np.flatnonzero(sub >= 2)
        if len(idx) == 0:
            return
        night = light.night * 0.85 + 0.15 * (1 - light.direct)
        pal = _WIN_PAL_NIGHT.copy()
        pal[2:4] *= city_lights * night * 0.9
        pal[4:6] *= city_lights * (0.25 + 0.75 * night) * (0.35 + 0.65 * neon) * 1.1
        w = a[lo:hi].ravel().take(idx) * F32(city * (1 - _HAZE[i] * 0.6))
        kind = sub.ravel().take(idx)
        flat = idx + (r0 + lo) * c.W
        for ch in range(3):
            plane = c.img[ch].reshape(-1)
            plane[flat] += pal[:, ch].take(kind) * w


class Water:
    """Lakes and the sea: the sky mirrored in waves, a glitter path under the sun or moon."""

    def __init__(self, c: Canvas, assets: Assets) -> None:
        self.c = c
        self.tex = PlaneTexture((assets.water * 255).astype(np.uint8))

    def draw(
        self,
        light: Lighting,
        view: View,
        t: float,
        row: float,
        cover: np.ndarray,
        wet: float,
        *,
        snowcover: float,
        clouds: float,
    ) -> None:
        """From the water line `row` down to the nearer ground `cover`; `wet` is its opacity."""
        c = self.c
        H, W, s = c.H, c.W, c.s
        r0 = int(max(0, math.ceil(row)))
        r1 = int(min(H, math.ceil(float(cover.max())) + 1))
        if r1 <= r0:
            return
        y = c.rows[r0:r1]
        d = (y - row + 1.5) / H  # depth below the horizon
        z = 0.05 / (d + 0.03)  # distance to the water along each row (never too close)
        du = (z * 5.0 / s).astype(F32)
        v = z * 5.0 * REF_H * 0.5 + (t * 2.0) % 256.0
        dv = np.abs(np.gradient(v)) if len(v) > 1 else du
        u0 = (view.travel * 0.6) % 512.0 + z * 5 - (W / 2) * du
        n = self.tex.sample(v, u0, np.maximum(du, dv * 0.5).astype(F32), c.cols, du).astype(F32) * (1 / 255)
        mirror = np.clip((2 * row - y).astype(np.intp), 0, H - 1)
        refl = light.sky_rows[:, mirror] * 0.85
        deep = lerp(rgb(0.03, 0.12, 0.16), rgb(0.05, 0.2, 0.28), light.day) * (0.3 + 0.7 * light.colour.mean())
        fres = np.clip(1.2 - d * 4.5, 0.15, 1.0)
        col = deep[:, None] + (refl - deep[:, None]) * fres[None, :]
        ice = snowcover * 0.6
        col = col + (light.colour[:, None] * 0.8 - col) * ice
        wave = 0.78 + 0.45 * n
        # Glitter path under the sun or the moon.
        sun, moon = light.sun, light.moon
        gx: float | None = None
        gcol: Field | None = None
        if sun.elevation > -0.05:
            gx, gcol = sun.x, light.sun_colour * float(smoothstep(-0.05, 0.1, sun.elevation)) * (1 - 0.8 * clouds)
        elif moon.elevation > 0:
            gx, gcol = moon.x, rgb(0.6, 0.65, 0.75) * light.night * (1 - 0.8 * clouds)
        reg = c.img[:, r0:r1]
        alpha = (np.clip(y + 1 - row, 0, 1) * wet)[:, None]
        if gx is not None and gcol is not None:
            width = (0.04 + 0.5 * d) * W
            gl = np.exp(-(((c.cols[None, :] - gx) / width[:, None]) ** 2)).astype(F32)
            spark = np.clip((n - 0.62) * 4, 0, 1) * gl
        for ch in range(3):
            cc = col[ch][:, None] * wave
            if gx is not None and gcol is not None:
                cc = cc + spark * gcol[ch] * 1.6
            reg[ch] += (cc - reg[ch]) * alpha


class Islands:
    """Floating islands drifting between the far layers."""

    def __init__(self, c: Canvas, assets: Assets) -> None:
        self.c = c
        self.top, self.bottom = assets.islands  # fractions of H per profile column

    def draw(self, light: Lighting, view: View, t: float, amount: float, *, magic: float) -> None:
        c = self.c
        H, W = c.H, c.W
        top, bot = self.top, self.bottom
        par = 0.3
        x = view.travel * par + 333.0 + (c.cols64 - W / 2) / c.s + t * 3.0
        xi = np.floor(x).astype(np.intp) % PROFILE_LEN
        boby = 0.012 * np.sin(t * 0.4 + xi * 0.004)
        tp = (top.take(xi) + boby) * H
        bt = (bot.take(xi) + boby) * H
        mid = tp + (bt - tp) * 0.25
        tp = mid - (mid - tp) * amount
        bt = mid + (bt - mid) * amount
        if not (bt - tp > 0.5).any():
            return
        r0 = max(0, int(tp[bt - tp > 0.5].min()) - 1)
        r1 = min(H, int(bt.max()) + 2)
        y = c.rows[r0:r1, None]
        a = (np.clip(y + 1 - tp[None, :], 0, 1) * np.clip(bt[None, :] - y, 0, 1)).astype(F32)
        depth = np.clip((y - tp[None, :]) / np.maximum(bt - tp, 1)[None, :], 0, 1)
        grass = lerp(rgb(0.3, 0.7, 0.4), rgb(0.6, 0.45, 0.8), magic * 0.5) * light.colour
        rock_top = rgb(0.46, 0.38, 0.34) * light.colour
        rock_bot = rgb(0.16, 0.13, 0.16) * light.colour + light.haze * 0.15
        haze = light.haze * 0.25
        reg = c.img[:, r0:r1]
        rim = (depth < 0.12).astype(F32)
        for ch in range(3):
            cc = rock_top[ch] + (rock_bot[ch] - rock_top[ch]) * depth
            cc = cc + (grass[ch] - cc) * rim
            cc = cc * 0.75 + haze[ch]
            reg[ch] += (cc - reg[ch]) * a


class Smoke:
    """Columns of smoke rising from the second layer, leaning with the wind; fires under them."""

    def __init__(self, c: Canvas, mist8: np.ndarray) -> None:
        self.c = c
        self.mist8 = mist8  # uint8 noise the columns are textured with

    def draw(self, light: Lighting, view: View, t: float, ground: np.ndarray, *, amount: float, embers: float) -> None:
        """`ground`: the second layer's ridge row per column, where the columns stand."""
        c = self.c
        H, W, s = c.H, c.W, c.s
        travel, wind = view.travel, view.wind
        amt = amount
        period = W * 0.9
        base_x = -(travel * LAYER_PARALLAX[1] * s) % period
        col = light.haze * 0.3 + rgb(0.07, 0.065, 0.06)
        th, tw = self.mist8.shape
        for k in range(-1, 3):
            cx = base_x + k * period + W * 0.2 * hash01(k + int(travel * LAYER_PARALLAX[1] * s // period), 9)
            if cx < -W * 0.3 or cx > W * 1.3:
                continue
            gy = float(ground[int(min(W - 1, max(0, cx)))])
            top = max(0.0, gy - H * 0.55)
            r0, r1 = int(top), int(min(H, gy))
            if r1 - r0 < 4:
                continue
            y = c.rows[r0:r1]
            hfrac = np.clip((gy - y) / (gy - top), 0, 1)  # 0 at the ground, 1 at the top
            lean = hfrac**1.5 * (40 + 120 * wind) * s
            width = (8 + 75 * hfrac) * s
            x0 = int(max(0, (cx + lean - width).min() - 1))
            x1 = int(min(W, (cx + lean + width).max() + 2))
            if x1 <= x0:
                continue
            xs = c.cols[x0:x1]
            dx = (xs[None, :] - (cx + lean)[:, None]) / width[:, None]
            v = ((y / s * 0.8 + (t * 22) % th).astype(np.intp) % th)[:, None]
            u = ((xs[None, :] / s * 0.7 - (t * 5) % tw + k * 300).astype(np.intp)) % tw
            n = self.mist8.ravel().take(v * tw + u).astype(F32) * (1 / 255)
            a = (np.clip(1 - dx * dx, 0, 1) * (0.35 + 1.0 * n) * (1 - hfrac[:, None]) ** 0.6 * amt).astype(F32)
            np.clip(a, 0, 0.95, out=a)
            reg = c.img[:, r0:r1, x0:x1]
            for ch in range(3):
                reg[ch] += (col[ch] - reg[ch]) * a
            if embers > 0.05:  # something burns under the smoke
                flick = 0.8 + 0.2 * math.sin(t * 7 + k * 3)
                c.glow(cx, gy, rgb(1.0, 0.45, 0.12), embers * amt * 0.6 * flick, H, radius=0.25 * H)
