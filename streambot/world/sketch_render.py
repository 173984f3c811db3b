"""Draws one frame of the sketch world from a dict of scene parameters.

Back to front: sky gradient, space, stars, sun and moons, aurora, clouds,
five parallax terrain layers (with water, floating islands, smoke and city
windows between them), the things that fly, particles, weather, then colour
grading. The picture is held planar (3 x H x W float32) because numpy
broadcasts a per-row or per-pixel factor over a contiguous row far faster
than over the last axis; it is interleaved into uint8 RGB once at the end.

Per frame the work is slicing, gathering and blending precomputed textures;
everything that depends only on the parameters is computed on 1-D arrays
(per row or per column) before it touches pixels.
"""
from __future__ import annotations

import math

import numpy as np

from .sketch_assets import (
    BIOME_ORDER, CITY_TILE, LAYER_BASE, LAYER_PARALLAX, N_LAYERS, PROFILE_LEN, REF_H, Assets,
    balloon_sprite, bird_sprites, dragon_sprites, glow_kernel, moon_sprite, planet_sprite,
    plane_sprite, rock_sprite,
)

F32 = np.float32


def smoothstep(a: float, b: float, x):
    t = np.clip((x - a) / (b - a), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def lerp(a, b, t):
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


def daylight(e):
    """How the light depends on the sun's elevation e (-1..1): day, twilight, direct sun, sun colour."""
    return (smoothstep(-0.12, 0.3, e), np.exp(-((e - 0.03) / 0.13) ** 2), smoothstep(-0.03, 0.18, e),
            smoothstep(0.02, 0.4, e))


def _c(*rgb) -> np.ndarray:
    return np.array(rgb, F32)


# Daylight albedo of each biome's ground: (ridge colour, foot colour) per layer
# depth class (far, mid, near). Layers in between are blended.
_GROUND = {
    "grass": ((_c(.34, .42, .56), _c(.30, .38, .50)), (_c(.40, .58, .24), _c(.22, .40, .16)),
              (_c(.30, .52, .18), _c(.12, .28, .09))),
    "desert": ((_c(.78, .52, .36), _c(.68, .44, .32)), (_c(.93, .72, .46), _c(.82, .58, .36)),
               (_c(.95, .76, .50), _c(.76, .52, .30))),
    "mountains": ((_c(.42, .46, .56), _c(.34, .38, .48)), (_c(.40, .40, .44), _c(.26, .28, .32)),
                  (_c(.22, .34, .20), _c(.10, .18, .10))),
    "ocean": ((_c(.30, .40, .34), _c(.24, .32, .30)), (_c(.3, .45, .3), _c(.2, .3, .2)),
              (_c(.3, .45, .3), _c(.2, .3, .2))),
    "forest": ((_c(.20, .32, .30), _c(.16, .26, .26)), (_c(.10, .30, .15), _c(.06, .20, .10)),
               (_c(.06, .22, .09), _c(.03, .12, .05))),
    "city": ((_c(.40, .44, .52), _c(.34, .38, .46)), (_c(.32, .34, .40), _c(.24, .26, .32)),
             (_c(.22, .22, .26), _c(.12, .12, .15))),
    "space": ((_c(0, 0, 0), _c(0, 0, 0)),) * 3,
    "islands": ((_c(.45, .38, .62), _c(.36, .32, .55)), (_c(.26, .56, .44), _c(.16, .36, .34)),
                (_c(.20, .46, .30), _c(.08, .24, .20))),
    "candy": ((_c(.98, .62, .80), _c(.90, .55, .75)), (_c(.55, .92, .72), _c(.40, .80, .62)),
              (_c(1.0, .80, .35), _c(.95, .55, .45))),
    "wasteland": ((_c(.42, .40, .38), _c(.36, .34, .33)), (_c(.42, .36, .28), _c(.30, .25, .20)),
                  (_c(.30, .25, .19), _c(.16, .13, .10))),
}
_GROUND_ARR = np.array([[[_GROUND[b][k][j] for j in range(2)] for k in range(3)]
                        for b in BIOME_ORDER], F32)  # (biomes, depth class, ridge/foot, rgb)
_SNOW = _c(.93, .95, 1.0)
_WIN_PAL_NIGHT = np.array([[0, 0, 0], [.02, .03, .05], [1.0, .78, .42], [.85, .9, 1.0],
                           [.2, 1.0, 1.0], [1.0, .25, .85]], F32)
_FIREWORK_COLS = np.array([[1, .35, .3], [1, .85, .3], [.4, 1, .5], [.45, .6, 1], [1, .4, 1],
                           [1, 1, 1]], F32)


class PlaneTexture:
    """A tileable uint8 texture with mip levels, sampled row by row in perspective.

    Each screen row looks at the plane (clouds above, water below) from its own
    distance, so each row picks the mip level that matches its footprint:
    no blocky texels overhead, no shimmering noise near the horizon.
    """

    def __init__(self, tex: np.ndarray, levels: int = 5) -> None:
        mips = [tex.astype(F32)]
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

    def sample(self, v: np.ndarray, u0: np.ndarray, foot: np.ndarray, cols: np.ndarray,
               du: np.ndarray | None = None) -> np.ndarray:
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
        return self.flat.take(u)


class Renderer:
    """Owns the textures, the buffers and the camera; `draw` makes one frame."""

    def __init__(self, width: int, height: int, seed: int) -> None:
        self.W, self.H = width, height
        self.s = height / REF_H  # output pixels per reference pixel
        self.seed = seed
        self.a = Assets(seed)
        H, W, s = height, width, self.s
        self.img = np.zeros((3, H, W), F32)
        self.tmp = np.zeros((3, H, W), F32)
        self.out = np.zeros((H, W, 3), np.uint8)
        self.planar8 = np.zeros((3, H, W), np.uint8)
        self.rows = np.arange(H, dtype=F32)
        self.cols = np.arange(W, dtype=F32)
        # Column maths that mixes in the camera position needs float64: after
        # a few days on air float32 would make the terrain shimmer.
        self.cols64 = np.arange(W, dtype=np.float64)
        self.cam_x = 0.0  # reference pixels travelled by the nearest layer
        # Wind integrated over time: drifts are rate * time, and a rate that
        # changes must not re-scale all the time that went before.
        self.gust = 0.0
        self.hue_turn = 0.0
        self.light = 0.5  # the frame's overall brightness, for the soundtrack
        yy, xx = np.mgrid[0:H, 0:W].astype(F32)
        r2 = ((xx - W / 2) / (W / 2)) ** 2 * 0.8 + ((yy - H / 2) / (H / 2)) ** 2 * 0.6
        self.vig_r2 = np.ascontiguousarray(np.broadcast_to(r2, (3, H, W))).astype(F32)
        # Sun glow, centred in a texture twice the frame: sliced, never recomputed.
        gy, gx = np.mgrid[0:2 * H, 0:2 * W].astype(F32)
        d = np.hypot(gx - W, gy - H) / H
        self.glow = (0.55 * np.exp(-d / 0.09) + 0.35 * np.exp(-(d / 0.45) ** 2)).astype(F32)
        # A compact glow for small lights (fires, bursts): ~0 at a quarter frame.
        self.glow_small = (0.6 * np.exp(-(d / 0.07) ** 2) + 0.4 * np.exp(-(d / 0.03) ** 2)).astype(F32)
        self.rainbow = self._rainbow()
        self.cloud_tex = PlaneTexture((self.a.cloud * 255).astype(np.uint8))
        self.water_tex = PlaneTexture((self.a.water * 255).astype(np.uint8))
        self.mist8 = (self.a.mist * 255).astype(np.uint8)
        self.win_codes = self.a.windows
        g = glow_kernel(max(1, int(round(2 * s))))
        self.kern_small = self._kernel_offsets(g)
        self.kern_big = self._kernel_offsets(glow_kernel(max(2, int(round(4 * s)))))
        sc = s
        self.birds = [bird_sprites(sc * k) for k in (0.6, 0.85, 1.2)]
        self.plane = [plane_sprite(sc * k) for k in (0.7, 1.1)]
        palettes = (((.9, .2, .2), (1, .85, .3)), ((.2, .5, .95), (1, 1, 1)),
                    ((.95, .55, .15), (.5, .2, .6)), ((.25, .75, .4), (.95, .9, .3)))
        self.balloons = [balloon_sprite(sc * k, p) for k in (0.7, 1.1) for p in palettes]
        self.dragons = [dragon_sprites(sc * k) for k in (0.8, 1.3)]
        self.planet = planet_sprite(int(110 * s), seed + 1, ring=True)
        self.planet2 = planet_sprite(int(46 * s), seed + 2, ring=False)
        self.rocks = [rock_sprite(max(5, int(k * s)), seed + 20 + k) for k in (7, 10, 14, 19, 26)]
        self.moon = moon_sprite(max(8, int(26 * s)), seed + 3)
        self.moon2 = moon_sprite(max(6, int(15 * s)), seed + 4)
        self.moon2[..., :3] *= _c(1.0, .72, .6)
        rng = np.random.default_rng(seed + 11)
        # Particle tables stay float64: they meet world time, which grows for days.
        self.snow = rng.random((1600, 4))  # x, y, depth, phase
        self.fly = rng.random((120, 5))  # fireflies / embers / bubbles
        self.car_lanes = rng.random((36, 4))
        self.spr_rank = rng.permutation(64) / 64.0
        self.box = {r: np.full(2 * r + 1, 1.0 / (2 * r + 1), F32) for r in range(2, 32)}
        # Firework sparks: directions on a sphere seen from the side fill a disc.
        self.spark_ang = rng.uniform(0, 2 * np.pi, 70)
        self.spark_speed = np.sqrt(1 - rng.uniform(0, 1, 70) ** 2)
        self.grain = rng.standard_normal((H + 64, W + 64)).astype(F32)

    # -- helpers -----------------------------------------------------------------
    def _kernel_offsets(self, k: np.ndarray):
        r = k.shape[0] // 2
        ys, xs = np.nonzero(k > 0.02)
        return (ys - r).astype(np.intp), (xs - r).astype(np.intp), k[ys, xs].astype(F32)

    def _rainbow(self) -> np.ndarray:
        H, W = self.H, self.W
        yy, xx = np.mgrid[0:H, 0:W].astype(F32)
        r = np.hypot(xx - W * 0.55, (yy - H * 1.05) * 1.0) / H
        t = (r - 0.78) / 0.07  # 0..1 across the bow, violet inside, red outside
        hue = np.clip(t, 0, 1)
        band = np.clip(1 - np.abs(t - 0.5) * 2, 0, 1) ** 0.7
        cols = np.stack([
            np.clip(1.5 - np.abs(hue - 1.0) * 3, 0, 1) + np.clip(1 - np.abs(hue - 0.0) * 4, 0, 0.5),
            np.clip(1.5 - np.abs(hue - 0.6) * 3.2, 0, 1),
            np.clip(1.5 - np.abs(hue - 0.15) * 3.2, 0, 1),
        ])
        fade = smoothstep(0.0, 0.35, (H * 0.72 - yy) / H)  # fades into the ground haze
        return (cols * band * fade * 0.35).astype(F32)

    def _blit(self, spr: np.ndarray, x: float, y: float, alpha: float, tint=None) -> None:
        """Alpha-composite an (h, w, 4) sprite centred at (x, y)."""
        if alpha <= 0.01:
            return
        h, w = spr.shape[:2]
        x0, y0 = int(round(x - w / 2)), int(round(y - h / 2))
        sx0, sy0 = max(0, -x0), max(0, -y0)
        x1, y1 = min(self.W, x0 + w), min(self.H, y0 + h)
        if x1 <= max(0, x0) or y1 <= max(0, y0):
            return
        sub = spr[sy0:sy0 + (y1 - max(0, y0)), sx0:sx0 + (x1 - max(0, x0))]
        a = sub[..., 3] * alpha
        region = self.img[:, max(0, y0):y1, max(0, x0):x1]
        rgb = sub[..., :3].transpose(2, 0, 1)
        if tint is not None:
            rgb = rgb * np.asarray(tint, F32)[:, None, None]
        region += (rgb - region) * a

    def _points(self, xs, ys, cols, kern) -> None:
        """Additive glowing points: colours (3, n) spread through a small kernel."""
        H, W = self.H, self.W
        ky, kx, kw = kern
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

    # -- the frame ----------------------------------------------------------------
    def draw(self, p: dict, t: float, dt: float) -> np.ndarray:
        H, W = self.H, self.W
        img = self.img
        biome = np.array([p["b_" + b] for b in BIOME_ORDER], F32)
        bw = {b: float(biome[i]) for i, b in enumerate(BIOME_ORDER)}

        # 1. camera: pan, slow zoom drift, bob, altitude
        self.cam_x += p["pan"] * 24.0 * dt * (1 + 0.15 * math.sin(t * 0.05))
        zoom = p["zoom"] * (1 + 0.035 * math.sin(t * 0.043) + 0.015 * math.sin(t * 0.11))
        bob = H * (0.004 + 0.02 * p["bob"]) * (math.sin(t * 0.9) + 0.5 * math.sin(t * 2.3 + 1)) * p["bob"]
        bob += H * 0.006 * math.sin(t * 0.21)
        lift = H * (0.22 * p["altitude"])
        space = bw["space"]
        horizon = H * LAYER_BASE[0] + lift + bob
        wind = p["wind"] * (0.8 + 0.2 * math.sin(t * 0.13) + 0.15 * math.sin(t * 0.41))
        self.gust += wind * dt
        self.hue_turn = (self.hue_turn + p["trippy"] * 0.05 * dt) % 1.0  # integrated: never jumps

        # 2. light and palette, all 1-D
        L = self._lighting(p, t, horizon)
        sky = L["sky_rows"]  # (3, H)
        np.copyto(img, sky[:, :, None])

        # In space there is no ground: the sky is the whole frame.
        sky_bottom = int(min(H, max(8, horizon + 2 + space * H)))
        # 3. space: nebula and stars
        neb = max(p["nebula"], space * 0.35) * (1 - L["day"] * (1 - space))
        if neb > 0.01:
            self._nebula(neb, sky_bottom)
        self._stars(p, t, L, horizon)
        # 4. sun, moons, planets, nova, aurora, rainbow
        self._celestial(p, t, L, horizon, sky_bottom)
        # 5. clouds
        if p["clouds"] > 0.01 and space < 0.98:
            self._clouds(p, t, L, horizon, wind)
        if p["searchlights"] > 0.01:
            self._searchlights(p, t, L, horizon)

        # 6. terrain, back to front, with what lives between the layers
        tops = self._terrain_tops(p, biome, zoom, lift + bob, t)
        covers = np.full((N_LAYERS + 1, W), float(H), F32)
        for i in range(N_LAYERS - 1, -1, -1):
            covers[i] = np.minimum(covers[i + 1], tops[i])
        water_row = horizon + space * H * 0.6 + 2
        for i in range(N_LAYERS):
            self._layer(i, tops[i], covers[i + 1], L, p, bw, zoom, lift + bob)
            if i == 0:
                # Lakes in green country, none in deserts and cities; the open sea anywhere.
                wet = min(1.0, 3 * bw["ocean"] + bw["grass"] + bw["forest"] + bw["mountains"]
                          + bw["islands"] + bw["candy"] + 0.3 * bw["wasteland"])
                if wet > 0.01:
                    self._water(p, t, L, water_row, covers[1], zoom, wet)
            if i == 1:
                if bw["islands"] > 0.01:
                    self._islands(p, t, L, bw["islands"], zoom)
                if p["smoke"] > 0.01:
                    self._smoke(p, t, L, tops[1], wind)
            if i == 2:
                self._fliers(p, t, L, wind)
        # 7. particles and weather in front of everything
        self._particles(p, t, L, wind)
        if p["fog"] > 0.05:
            self._mist(p, t, L, horizon, wind)
        if p["rain"] > 0.01:
            self._rain(p, t, L, wind)
        if p["snow"] > 0.01:
            self._snow(p, t, L, wind)
        if L["bolt"] is not None:
            self._bolt(*L["bolt"], horizon)
        # 8. grade, vignette, grain
        return self._grade(p, t)

    # -- lighting -------------------------------------------------------------------
    def _sun_pos(self, tod: float, horizon: float) -> tuple[float, float, float]:
        e = math.sin(2 * math.pi * (tod - 0.25))
        f = ((tod - 0.25) % 1.0) / 0.5  # 0 at rise, 1 at set
        x = self.W * (0.14 + 0.72 * min(max(f, -0.2), 1.2))
        y = horizon - e * horizon * 0.85
        return e, x, y

    def _lighting(self, p: dict, t: float, horizon: float) -> dict:
        H = self.H
        tod = p["tod"] % 1.0
        e, sx, sy = self._sun_pos(tod, horizon)
        em, mx, my = self._sun_pos((tod + 0.5) % 1.0, horizon)
        clouds, storm, space = p["clouds"], p["storm"], p["b_space"]
        day, twi, direct_sun, sun_warm = (float(v) for v in daylight(e))
        warm = p["warmth"]
        zen = lerp(_c(.04, .07, .16), _c(.16, .38, .78), day)
        hor = lerp(_c(.12, .17, .32), _c(.62, .78, .93), day)
        twi_h = lerp(_c(1.0, .48, .22), _c(1.0, .36, .38), max(0.0, -warm) * 0.5)
        hor = lerp(hor, twi_h, twi * 0.85)
        zen = lerp(zen, _c(.20, .18, .42), twi * 0.55)
        # Overcast skies go grey, storms go dark.
        grey_lvl = 0.08 + 0.55 * day + 0.12 * twi
        ov = clouds ** 1.5 * 0.85
        zen = lerp(zen, _c(.58, .61, .66) * grey_lvl, ov)
        hor = lerp(hor, _c(.66, .68, .72) * grey_lvl + twi_h * twi * 0.15, ov)
        dark = 1 - 0.45 * storm
        zen, hor = zen * dark, hor * dark
        # Lightning: a strike at most every ~second slot, flickering out over 0.4 s.
        flash, bolt = 0.0, None
        if storm > 0.05:
            slot = int(t * 1.3)
            if hash01(slot, self.seed) < storm * 0.32:
                dt0 = t - (slot + hash01(slot, 7) * 0.5) / 1.3
                if 0 <= dt0 < 0.45:
                    flash = storm * math.exp(-dt0 * 9) * (0.6 + 0.4 * (math.sin(dt0 * 60) > 0))
                    if hash01(slot, 3) < 0.7:
                        bolt = (slot, hash01(slot, 5), flash)
        zen = zen + _c(.45, .45, .6) * flash * 0.6
        hor = hor + _c(.6, .6, .75) * flash * 0.6
        # A lit city glows on the clouds at night, neon tints the glow.
        glow = p["b_city"] * p["lights"] * (1 - day) * (1 - space)
        city_glow = lerp(_c(.16, .10, .06), _c(.16, .05, .2), p["neon"]) * glow
        hor = hor + city_glow
        zen = zen + city_glow * 0.35
        zen = lerp(zen, _c(0, 0, .008), space)
        hor = lerp(hor, _c(.004, .004, .02), space)
        y = self.rows
        tt = np.clip(y / max(horizon, 1), 0, 1) ** 1.7
        rows = zen[:, None] + (hor - zen)[:, None] * tt[None, :]
        band = np.exp(-np.clip(horizon - y, 0, None) / (0.07 * H)) * twi * (1 - ov) * (1 - space)
        rows = rows + twi_h[:, None] * band[None, :] * 0.35
        # Sunlight and ambient light for the ground.
        direct = direct_sun * (1 - 0.7 * clouds) * (1 - 0.5 * storm)
        sun_col = lerp(_c(1.0, .5, .3), _c(1.0, .96, .9), sun_warm)
        moon_lit = float(smoothstep(-0.05, 0.2, em)) * (1 - day)
        ambient = ((zen * 0.25 + hor * 0.35) * (0.8 + 0.4 * day)
                   + _c(.09, .12, .22) * (0.45 + 0.55 * moon_lit) * (1 - day))
        ambient = ambient + _c(.5, .5, .6) * flash * 0.5
        # Snow on the ground throws light back up: snowy scenes are brighter.
        ambient = ambient * (1 + 0.5 * p["snowcover"] * (1 - space))
        light = sun_col * direct * 0.8 + ambient
        haze = lerp(hor, rows[:, int(min(H - 1, max(0, horizon)))], 0.5)
        self.light = float(np.clip((light.mean() * 0.7 + rows.mean() * 0.3) * 1.4, 0, 1))
        return dict(e=e, sx=sx, sy=sy, em=em, mx=mx, my=my, day=day, twi=twi, zen=zen, hor=hor,
                    sky_rows=rows.astype(F32), light=light.astype(F32), sun_col=sun_col,
                    haze=haze.astype(F32), flash=flash, bolt=bolt, direct=direct,
                    night=1 - day, moon_lit=moon_lit)

    # -- sky ------------------------------------------------------------------------
    def _nebula(self, w: float, rows: int) -> None:
        neb = self.a.nebula  # (REF_H, 1024, 3)
        ridx = (np.arange(rows) / self.s).astype(np.intp) % neb.shape[0]
        cidx = ((np.arange(self.W) + self.cam_x * 0.04 * self.s) / self.s).astype(np.intp) % 1024
        tex = neb[ridx][:, cidx]  # (rows, W, 3)
        for c in range(3):
            self.img[c, :rows] += tex[..., c] * (w * 0.9)

    def _stars(self, p: dict, t: float, L: dict, horizon: float) -> None:
        vis = (1 - L["day"]) * (1 - 0.92 * p["clouds"]) * (0.55 + 0.45 * p["stars"])
        vis = max(vis, p["b_space"] * (0.8 + 0.2 * p["stars"]))
        if vis < 0.02:
            return
        x, y, mag, ph = self.a.stars
        s = self.s
        sx = (x * s - (self.cam_x * 0.02 * s) % (2048 * s)) % (2048 * s)
        sy = y * s * (1 + 0.1 * p["b_space"])
        ok = (sx < self.W) & (sy < min(horizon + p["b_space"] * self.H, self.H - 1))
        sx, sy, mag, ph = sx[ok], sy[ok], mag[ok], ph[ok]
        b = mag * vis * (0.75 + 0.25 * np.sin(t * 3.0 + ph * 7.0))
        xi, yi = sx.astype(np.intp), sy.astype(np.intp)
        tint = (_c(.9, .95, 1.0), _c(1.0, .9, .8))
        for c in range(3):
            self.img[c, yi, xi] += b * tint[0][c]
        big = b > 0.7
        if big.any():
            xb, yb, bb = xi[big], yi[big], b[big] * 0.35
            for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                xx = np.clip(xb + dx, 0, self.W - 1)
                yy = np.clip(yb + dy, 0, self.H - 1)
                for c in range(3):
                    self.img[c, yy, xx] += bb * tint[1][c]

    def _add_glow(self, cx: float, cy: float, col: np.ndarray, strength: float, rows: int,
                  radius: float | None = None) -> None:
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
        tex = self.glow if radius is None else self.glow_small
        g = tex[oy + r0:oy + r1, ox + c0:ox + c1]
        for c in range(3):
            self.img[c, r0:r1, c0:c1] += g * F32(col[c] * strength)

    def _celestial(self, p: dict, t: float, L: dict, horizon: float, rows: int) -> None:
        s, space = self.s, p["b_space"]
        clear = 1 - 0.8 * p["clouds"]
        # Sun: glow and disc, dimmed by cloud.
        if L["e"] > -0.12:
            vis = float(smoothstep(-0.12, 0.02, L["e"])) * (1 - 0.6 * space)
            col = lerp(_c(1.0, .55, .25), _c(1.0, .92, .75), float(smoothstep(0, .5, L["e"])))
            self._add_glow(L["sx"], L["sy"], col, vis * (0.35 + 0.65 * clear) * 0.9, rows)
            r = 9 * s
            self._disc(L["sx"], L["sy"], r, col * 1.4 + 0.3, vis * clear)
        # Moons at night.
        if L["em"] > -0.1 and L["night"] > 0.05:
            vis = L["night"] * float(smoothstep(-0.1, 0.05, L["em"])) * (1 - 0.7 * p["clouds"])
            self._add_glow(L["mx"], L["my"], _c(.5, .6, .8), vis * 0.22, rows)
            self._blit(self.moon, L["mx"], L["my"], vis)
            if p["moon2"] > 0.01:
                self._blit(self.moon2, L["mx"] - 70 * s, L["my"] + 22 * s, vis * p["moon2"])
        if p["planets"] > 0.01:
            px = (self.W * 0.7 - self.cam_x * 0.015 * s) % (self.W * 2.2) - self.W * 0.3
            vis = p["planets"] * max(L["night"], space, 0.35)
            self._blit(self.planet, px, horizon * 0.42, vis)
            self._blit(self.planet2, px - self.W * 0.55, horizon * 0.22, vis)
        if p["nova"] > 0.01:
            pulse = 0.8 + 0.2 * math.sin(t * 1.7)
            nx, ny = self.W * 0.3, horizon * 0.35
            self._add_glow(nx, ny, _c(.8, .85, 1.0), p["nova"] * pulse * 1.2, rows)
            self._disc(nx, ny, 4 * s, _c(2, 2, 2), p["nova"])
            self._ray(nx, ny, p["nova"] * pulse)
        if p["aurora"] > 0.01 and L["night"] > 0.05:
            self._aurora(p["aurora"] * L["night"] * (1 - 0.8 * p["clouds"]), t, horizon)
        if p["rainbow"] > 0.01:
            rb = self.rainbow[:, :rows] * (p["rainbow"] * (0.3 + 0.7 * L["day"]))
            self.img[:, :rows] += rb

    def _disc(self, x: float, y: float, r: float, col: np.ndarray, a: float) -> None:
        if a < 0.01:
            return
        x0, x1 = int(max(0, x - r - 1)), int(min(self.W, x + r + 2))
        y0, y1 = int(max(0, y - r - 1)), int(min(self.H, y + r + 2))
        if x1 <= x0 or y1 <= y0:
            return
        yy, xx = np.ogrid[y0:y1, x0:x1]
        cov = np.clip(r - np.sqrt((xx - x) ** 2 + (yy - y) ** 2) + 0.5, 0, 1).astype(F32) * a
        reg = self.img[:, y0:y1, x0:x1]
        reg += (np.minimum(col, 1.6)[:, None, None] - reg) * cov

    def _ray(self, x: float, y: float, a: float) -> None:
        L = int(40 * self.s)
        d = np.arange(-L, L + 1)
        fall = (a * 0.6 * np.exp(-np.abs(d) / (L * 0.3))).astype(F32)
        xi, yi = int(x), int(y)
        xs = np.clip(xi + d, 0, self.W - 1)
        ys = np.clip(yi + d, 0, self.H - 1)
        for c in range(3):
            self.img[c, min(max(yi, 0), self.H - 1), xs] += fall
            self.img[c, ys, min(max(xi, 0), self.W - 1)] += fall

    def _aurora(self, a: float, t: float, horizon: float) -> None:
        H = self.H
        rows = int(min(H, horizon * 0.8))
        x = self.cols64 + self.cam_x * 0.03 * self.s
        c = (0.22 * H + 0.07 * H * np.sin(x * 0.006 / self.s + t * 0.15)
             + 0.03 * H * np.sin(x * 0.021 / self.s - t * 0.33))
        ray = 0.55 + 0.45 * np.sin(x * 0.09 / self.s + t * 0.8 + 3 * np.sin(x * 0.01 / self.s + t * 0.1))
        y = self.rows[:rows, None]
        d = c[None, :] - y  # >0 above the curtain's lower edge
        prof = np.where(d > 0, np.exp(-d / (0.11 * H)), np.exp(-(d / (0.012 * H)) ** 2)).astype(F32)
        prof *= (ray * a * 0.55)[None, :].astype(F32)
        top = np.clip(d / (0.15 * H), 0, 1).astype(F32)
        self.img[0, :rows] += prof * (0.1 + 0.5 * top)
        self.img[1, :rows] += prof * (0.9 - 0.6 * top)
        self.img[2, :rows] += prof * (0.45 + 0.2 * top)

    def _clouds(self, p: dict, t: float, L: dict, horizon: float, wind: float) -> None:
        H, W, s = self.H, self.W, self.s
        rows = int(min(H, horizon + 1))
        if rows < 4:
            return
        y = self.rows[:rows]
        ang = np.maximum((horizon - y) / H, 0.0)
        # Distance to the cloud deck along each row; the offset keeps the overhead
        # part from coming so close that its texels turn into blocks.
        z = 0.12 / (ang + 0.22)
        k = 5.0
        drift = (t * 4 + self.gust * 30 + self.cam_x * 0.3) % 1024.0  # texture width: wraps
        du = (z * k / s).astype(F32)
        v = z * k * REF_H + (t * 1.5) % 512.0
        dv = np.abs(np.gradient(v)) if rows > 1 else du
        u0 = drift + z * 13 - (W / 2) * du
        n = self.cloud_tex.sample(v, u0, np.maximum(du, dv * 0.7).astype(F32), self.cols, du)
        cover = p["clouds"]
        thr = 1.0 - cover * 1.05
        lv = np.arange(256, dtype=F32) / 255
        alpha = np.clip((lv - thr) * 3.2, 0, 1) ** 0.8 * (0.6 + 0.4 * cover)
        thick = np.clip((lv - thr) * 1.6, 0, 1)
        # Lit tops by the sun's colour, grey-blue bellies, darker in storms.
        lit = L["light"] * 1.1 + L["hor"] * 0.25 + L["twi"] * _c(.6, .3, .2) * 0.6
        shadow = lerp(L["zen"], L["hor"], 0.5) * 0.8 + _c(.05, .05, .07) * L["day"]
        shadow = shadow * (1 - 0.5 * p["storm"])
        lit = lit * (1 - 0.45 * p["storm"])
        col = lit[:, None] + (shadow - lit)[:, None] * thick[None, :]  # (3, 256)
        a_rows = smoothstep(0.0, 0.08, ang) * (1 - p["b_space"])  # haze near the horizon
        a = alpha.take(n) * a_rows[:, None].astype(F32)
        reg = self.img[:, :rows]
        for c in range(3):
            cc = col[c].astype(F32).take(n)
            reg[c] += (cc - reg[c]) * a

    def _searchlights(self, p: dict, t: float, L: dict, horizon: float) -> None:
        H, W = self.H, self.W
        rows = int(min(H, horizon + 4))
        a = p["searchlights"] * (0.25 + 0.75 * L["night"])
        for k in range(3):
            ox = W * (0.2 + 0.3 * k) - (self.cam_x * 0.3 * self.s) % (W * 0.3) + W * 0.15
            ang = 0.55 * math.sin(t * (0.23 + 0.07 * k) + k * 2.1)
            y = self.rows[:rows]
            dist = np.maximum(horizon + 10 - y, 1)
            xc = ox + dist * F32(math.tan(ang))
            half = dist * F32(0.05) + 2
            fall = np.exp(-dist / F32(H * 0.8)) * F32(a * 0.55)
            # A slanted beam: work in row bands, each only over its own columns.
            for b0 in range(0, rows, 48):
                b1 = min(rows, b0 + 48)
                lo = float(np.minimum(xc[b0:b1] - half[b0:b1], 1e9).min())
                hi = float((xc[b0:b1] + half[b0:b1]).max())
                x0, x1 = int(max(0, lo)), int(min(W, hi + 1))
                if x1 <= x0:
                    continue
                core = np.abs(self.cols[None, x0:x1] - xc[b0:b1, None])
                core /= half[b0:b1, None]
                np.subtract(1, core, out=core)
                np.clip(core, 0, 1, out=core)
                c2 = core * core
                c8 = c2 * c2
                c8 *= c8
                beam = (c2 * F32(0.7) + c8 * F32(0.5)) * fall[b0:b1, None]
                for c, v in enumerate((1.0, .95, .8)):
                    self.img[c, b0:b1, x0:x1] += beam * F32(v)

    # -- terrain ----------------------------------------------------------------------
    def _layer_cols(self, i: int, zoom: float) -> tuple[np.ndarray, float]:
        par = LAYER_PARALLAX[i]
        zi = 1 + (zoom - 1) * (0.3 + 0.7 * par)
        x = self.cam_x * par + i * 1777.0 + (self.cols64 - self.W / 2) / (self.s * zi)
        return x, zi

    def _terrain_tops(self, p, biome, zoom, shift, t) -> np.ndarray:
        H = self.H
        tops = np.empty((N_LAYERS, self.W), F32)
        active = [k for k in range(len(BIOME_ORDER)) if biome[k] > 1e-3]
        prof = self.a.profiles
        for i in range(N_LAYERS):
            x, zi = self._layer_cols(i, zoom)
            xf = np.floor(x)
            f = (x - xf).astype(F32)
            i0 = xf.astype(np.intp) % PROFILE_LEN
            i1 = (i0 + 1) % PROFILE_LEN
            h = np.zeros(self.W, F32)
            for k in active:
                pr = prof[k, i]
                h += biome[k] * (pr.take(i0) * (1 - f) + pr.take(i1) * f)
            # Higher cameras see flatter, lower ground; zoom magnifies the near layers.
            amp = H * zi * (1 - 0.35 * p["altitude"])
            tops[i] = H * LAYER_BASE[i] + shift * (0.4 + 0.6 * LAYER_PARALLAX[i]) - h * amp
        return tops

    def _layer_colour(self, i: int, L: dict, p: dict, bw: dict, shift: float, top_min: float) -> np.ndarray:
        """(3, H) colour of layer i per row: ground, lighting, snow, haze, valley mist."""
        H = self.H
        depth = i / (N_LAYERS - 1)  # 0 far .. 1 near
        k = min(2.0, depth * 2.0)
        k0, kf = int(min(1, k)), k - int(min(1, k))
        g = np.tensordot(np.array([bw[b] for b in BIOME_ORDER], F32), _GROUND_ARR, axes=1)
        ridge = lerp(g[k0, 0], g[k0 + 1, 0], kf)
        foot = lerp(g[k0, 1], g[k0 + 1, 1], kf)
        snow = p["snowcover"] * (1 - bw["ocean"] * 0.5) * (1 - bw["space"])
        ridge = lerp(ridge, _SNOW, snow)
        foot = lerp(foot, _SNOW * 0.9, snow * 0.95)
        base = H * LAYER_BASE[i] + shift
        y = self.rows
        tt = np.clip((y - top_min) / max(base - top_min, 4), 0, 1)
        col = ridge[:, None] + (foot - ridge)[:, None] * tt[None, :]
        lit = col * L["light"][:, None]
        # Aerial perspective and valley mist.
        fog = p["fog"]
        haze_amt = min(0.95, (0.5, 0.33, 0.2, 0.1, 0.03)[i] * (1 + 1.3 * fog) + fog * 0.2 * (1 - depth))
        # At night a city stands out as dark towers against its own glow.
        haze_amt *= 1 - 0.45 * bw["city"] * L["night"]
        lit = lit + (L["haze"][:, None] - lit) * haze_amt
        mist = (0.15 + 0.75 * fog) * (1 - depth * 0.7) * (1 - 0.7 * bw["city"])
        m = smoothstep(base - (0.05 + 0.08 * fog) * H, base + 0.02 * H, y) * mist
        lit = lit + (L["haze"][:, None] * 1.05 - lit) * m[None, :]
        snow_col = _SNOW * L["light"]
        snow_col = snow_col + (L["haze"] - snow_col) * haze_amt
        return lit.astype(F32), snow_col.astype(F32)

    def _layer(self, i, top, cover, L, p, bw, zoom, shift) -> None:
        H = self.H
        tmin = float(top.min())
        r0 = max(0, int(math.floor(tmin)))
        r1 = min(H, int(math.ceil(float(np.minimum(cover, H).max()))) + 1)
        if r0 >= r1:
            return
        col, snow_col = self._layer_colour(i, L, p, bw, shift, tmin)
        y = self.rows[r0:r1, None]
        a = np.clip(y + 1 - top[None, :], 0, 1)  # coverage: anti-aliased ridge line
        reg = self.img[:, r0:r1]
        # Slopes facing the sun are lit, the others in shade (fading with distance).
        r = min(31, max(2, int(6 * self.s)))
        smooth = np.convolve(np.pad(top, r, mode="edge"), self.box[r], mode="valid")
        slope = np.gradient(smooth) / max(self.s, 1e-3)
        side = math.copysign(1.0, self.W / 2 - L["sx"]) if L["e"] > -0.05 else 0.0
        k = 0.35 * L["direct"] * (0.3 + 0.7 * i / (N_LAYERS - 1)) * side
        # Only near the ridge: a 1-D profile says nothing about the faces below it.
        band = 0.07 * H
        near = np.clip(1 - (y - top[None, :]) / band, 0, 1)
        shade = 1 + near * (k * np.clip(-slope, -1.5, 1.5)).astype(F32)[None, :]
        for c in range(3):
            reg[c] += (col[c, r0:r1, None] * shade - reg[c]) * a
        mw = bw["mountains"] * (1 - bw["space"])
        if mw > 0.01 and i < 3:
            # Snow caps on the peaks, thicker on the higher ones, ragged at the edge.
            base = H * LAYER_BASE[i] + shift
            height = base - top
            line = (base - tmin) * (0.5 - 0.25 * p["snowcover"])
            x, _ = self._layer_cols(i, zoom)
            rag = 0.75 + 0.25 * np.sin(x * 0.31) * np.sin(x * 0.073 + 1.0)
            cap = np.clip(height - line, 0, None) * 0.7 * rag
            snow = np.clip((top + cap)[None, :] - y, 0, 1.5) / 1.5 * a * mw
            for c in range(3):
                reg[c] += (snow_col[c] - reg[c]) * snow
        if i >= 3:
            # Texture on the near ground so it reads as land, not a flat cut-out.
            x, _ = self._layer_cols(i, zoom)
            det = self.a.detail
            ridx = (self.rows[r0:r1] * (1.0 / self.s) * 0.7).astype(np.intp) % det.shape[0]
            cidx = x.astype(np.intp) % det.shape[1]
            d = det[ridx][:, cidx] * (a * (0.35 if i == 4 else 0.22))
            reg *= 1 + d
        if bw["city"] > 0.01 and i <= 3:
            self._windows(i, top, r0, r1, a, L, p, bw["city"], zoom, shift)

    def _windows(self, i, top, r0, r1, a, L, p, city, zoom, shift) -> None:
        """Lit windows and neon: sparse, so only the lit pixels are touched."""
        x, zi = self._layer_cols(i, zoom)
        base = self.H * LAYER_BASE[i] + shift * (0.4 + 0.6 * LAYER_PARALLAX[i])
        codes = self.win_codes[i]
        k = ((base - self.rows[r0:r1]) / (self.s * zi)).astype(np.intp)
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
        night = L["night"] * 0.85 + 0.15 * (1 - L["direct"])
        lights = p["lights"]
        pal = _WIN_PAL_NIGHT.copy()
        pal[2:4] *= lights * night * 0.9
        pal[4:6] *= lights * (0.25 + 0.75 * night) * (0.35 + 0.65 * p["neon"]) * 1.1
        haze = (0.5, 0.33, 0.2, 0.1, 0.03)[i]
        w = a[lo:hi].ravel().take(idx) * F32(city * (1 - haze * 0.6))
        kind = sub.ravel().take(idx)
        flat = idx + (r0 + lo) * self.W
        for c in range(3):
            plane = self.img[c].reshape(-1)
            plane[flat] += pal[:, c].take(kind) * w

    def _water(self, p, t, L, row, cover, zoom, wet: float) -> None:
        H, W, s = self.H, self.W, self.s
        r0 = int(max(0, math.ceil(row)))
        r1 = int(min(H, math.ceil(float(cover.max())) + 1))
        if r1 <= r0:
            return
        y = self.rows[r0:r1]
        d = (y - row + 1.5) / H  # depth below the horizon
        z = 0.05 / (d + 0.03)  # distance to the water along each row (never too close)
        du = (z * 5.0 / s).astype(F32)
        v = z * 5.0 * REF_H * 0.5 + (t * 2.0) % 256.0
        dv = np.abs(np.gradient(v)) if len(v) > 1 else du
        u0 = (self.cam_x * 0.6) % 512.0 + z * 5 - (W / 2) * du
        n = self.water_tex.sample(v, u0, np.maximum(du, dv * 0.5).astype(F32), self.cols,
                                  du).astype(F32) * (1 / 255)
        mirror = np.clip((2 * row - y).astype(np.intp), 0, H - 1)
        refl = L["sky_rows"][:, mirror] * 0.85
        deep = lerp(_c(.03, .12, .16), _c(.05, .2, .28), L["day"]) * (0.3 + 0.7 * L["light"].mean())
        fres = np.clip(1.2 - d * 4.5, 0.15, 1.0)
        col = deep[:, None] + (refl - deep[:, None]) * fres[None, :]
        ice = p["snowcover"] * 0.6
        col = col + (L["light"][:, None] * 0.8 - col) * ice
        wave = (0.78 + 0.45 * n)
        # Glitter path under the sun or the moon.
        gx, gcol = None, None
        if L["e"] > -0.05:
            gx, gcol = L["sx"], L["sun_col"] * float(smoothstep(-0.05, 0.1, L["e"])) * (1 - 0.8 * p["clouds"])
        elif L["em"] > 0:
            gx, gcol = L["mx"], _c(.6, .65, .75) * L["night"] * (1 - 0.8 * p["clouds"])
        reg = self.img[:, r0:r1]
        alpha = (np.clip(y + 1 - row, 0, 1) * wet)[:, None]
        if gx is not None:
            width = (0.04 + 0.5 * d) * W
            gl = np.exp(-((self.cols[None, :] - gx) / width[:, None]) ** 2).astype(F32)
            spark = np.clip((n - 0.62) * 4, 0, 1) * gl
        for c in range(3):
            cc = col[c][:, None] * wave
            if gx is not None:
                cc = cc + spark * gcol[c] * 1.6
            reg[c] += (cc - reg[c]) * alpha

    def _islands(self, p, t, L, w, zoom) -> None:
        H, W = self.H, self.W
        top, bot = self.a.islands
        par = 0.3
        x = self.cam_x * par + 333.0 + (self.cols64 - W / 2) / self.s + t * 3.0
        xi = np.floor(x).astype(np.intp) % PROFILE_LEN
        boby = 0.012 * np.sin(t * 0.4 + xi * 0.004)
        tp = (top.take(xi) + boby) * H
        bt = (bot.take(xi) + boby) * H
        mid = tp + (bt - tp) * 0.25
        tp = mid - (mid - tp) * w
        bt = mid + (bt - mid) * w
        if not (bt - tp > 0.5).any():
            return
        r0 = max(0, int(tp[bt - tp > 0.5].min()) - 1)
        r1 = min(H, int(bt.max()) + 2)
        y = self.rows[r0:r1, None]
        a = (np.clip(y + 1 - tp[None, :], 0, 1) * np.clip(bt[None, :] - y, 0, 1)).astype(F32)
        depth = np.clip((y - tp[None, :]) / np.maximum(bt - tp, 1)[None, :], 0, 1)
        grass = lerp(_c(.3, .7, .4), _c(.6, .45, .8), p["magic"] * 0.5) * L["light"]
        rock_top = _c(.46, .38, .34) * L["light"]
        rock_bot = _c(.16, .13, .16) * L["light"] + L["haze"] * 0.15
        haze = L["haze"] * 0.25
        reg = self.img[:, r0:r1]
        rim = (depth < 0.12).astype(F32)
        for c in range(3):
            cc = rock_top[c] + (rock_bot[c] - rock_top[c]) * depth
            cc = cc + (grass[c] - cc) * rim
            cc = cc * 0.75 + haze[c]
            reg[c] += (cc - reg[c]) * a

    def _smoke(self, p, t, L, ground, wind) -> None:
        H, W, s = self.H, self.W, self.s
        amt = p["smoke"]
        period = W * 0.9
        base_x = -(self.cam_x * LAYER_PARALLAX[1] * s) % period
        col = L["haze"] * 0.3 + _c(.07, .065, .06)
        th, tw = self.mist8.shape
        for k in range(-1, 3):
            cx = base_x + k * period + W * 0.2 * hash01(k + int(self.cam_x * LAYER_PARALLAX[1] * s // period), 9)
            if cx < -W * 0.3 or cx > W * 1.3:
                continue
            gy = float(ground[int(min(W - 1, max(0, cx)))])
            top = max(0.0, gy - H * 0.55)
            r0, r1 = int(top), int(min(H, gy))
            if r1 - r0 < 4:
                continue
            y = self.rows[r0:r1]
            hfrac = np.clip((gy - y) / (gy - top), 0, 1)  # 0 at the ground, 1 at the top
            lean = hfrac ** 1.5 * (40 + 120 * wind) * s
            width = (8 + 75 * hfrac) * s
            x0 = int(max(0, (cx + lean - width).min() - 1))
            x1 = int(min(W, (cx + lean + width).max() + 2))
            if x1 <= x0:
                continue
            xs = self.cols[x0:x1]
            dx = (xs[None, :] - (cx + lean)[:, None]) / width[:, None]
            v = ((y / s * 0.8 + (t * 22) % th).astype(np.intp) % th)[:, None]
            u = ((xs[None, :] / s * 0.7 - (t * 5) % tw + k * 300).astype(np.intp)) % tw
            n = self.mist8.ravel().take(v * tw + u).astype(F32) * (1 / 255)
            a = (np.clip(1 - dx * dx, 0, 1) * (0.35 + 1.0 * n) * (1 - hfrac[:, None]) ** 0.6
                 * amt).astype(F32)
            np.clip(a, 0, 0.95, out=a)
            reg = self.img[:, r0:r1, x0:x1]
            for c in range(3):
                reg[c] += (col[c] - reg[c]) * a
            if p["embers"] > 0.05:  # something burns under the smoke
                flick = 0.8 + 0.2 * math.sin(t * 7 + k * 3)
                self._add_glow(cx, gy, _c(1.0, .45, .12), p["embers"] * amt * 0.6 * flick, H,
                               radius=0.25 * H)

    # -- moving things ------------------------------------------------------------------
    def _slot_alpha(self, amount: float, n: int, k: int) -> float:
        """Slot k of n shows when amount*n passes its rank: things fade in one by one."""
        return float(np.clip(amount * n - self.spr_rank[k % 64] * n, 0, 1))

    def _fliers(self, p, t, L, wind) -> None:
        H, W, s = self.H, self.W, self.s
        dark = lerp(_c(.1, .1, .12), L["haze"] * 0.3, 0.3)
        # Birds: a few flocks crossing, flapping.
        if p["birds"] > 0.01:
            for f in range(3):
                fa = self._slot_alpha(p["birds"], 3, f)
                if fa <= 0:
                    continue
                span = W + 200 * s
                speed = (28 + 10 * f) * s
                fx = (t * speed + f * 311 * s) % span - 100 * s
                fy = H * (0.18 + 0.12 * f) + 8 * s * math.sin(t * 0.3 + f)
                for b in range(7):
                    row = (b + 1) // 2
                    side = 1 if b % 2 else -1
                    bx = fx - row * 11 * s
                    by = fy + side * row * 6 * s + 2 * s * math.sin(t * 1.3 + b)
                    frame = int((t * 7 + b * 0.37 + f) % 3)
                    spr = self.birds[min(2, f)][frame]
                    self._tint_last(spr, bx, by, fa, dark)
        if p["dragons"] > 0.01:
            for k in range(2):
                a = self._slot_alpha(p["dragons"], 2, k + 5)
                span = W + 300 * s
                dx = (t * (22 + 9 * k) * s + k * 500 * s) % span - 150 * s
                dy = H * (0.2 + 0.12 * k) + 20 * s * math.sin(t * 0.35 + k * 2)
                fr = int((t * 2.2 + k) % 4)
                spr = self.dragons[k][fr]
                self._tint_last(spr, dx, dy, a, lerp(dark, _c(.25, .05, .05), 0.4))
        if p["planes"] > 0.01:
            for k in range(3):
                a = self._slot_alpha(p["planes"], 3, k + 9)
                if a <= 0:
                    continue
                span = W + 400 * s
                px = (t * (45 + 15 * k) * s + k * 420 * s) % span - 200 * s
                py = H * (0.12 + 0.1 * k)
                spr = self.plane[0 if k else 1]
                trail = int(min(px, W))
                if trail > 0 and L["day"] > 0.1:
                    y0 = int(py + spr.shape[0] * 0.1)
                    if 0 <= y0 < H - 1:
                        x0 = max(0, int(px - 260 * s))
                        ramp = np.linspace(0, 0.5 * a * L["day"] * (1 - 0.5 * p["clouds"]), trail - x0, dtype=F32)
                        if len(ramp):
                            for c in range(3):
                                reg = self.img[c, y0:y0 + 2, x0:trail]
                                reg += (0.95 - reg) * ramp
                self._tint_last(spr, px, py, a, dark)
                if L["night"] > 0.3 and int(t * 2) % 2 == 0:
                    self._points(np.array([px - spr.shape[1] * 0.3]), np.array([py]),
                                 np.array([[1.0], [0.2], [0.2]], F32) * a, self.kern_small)
        if p["balloons"] > 0.01:
            for k in range(6):
                a = self._slot_alpha(p["balloons"], 6, k + 13)
                if a <= 0:
                    continue
                span = W + 120 * s
                bx = ((t * 6 + self.gust * 8) * s * (1 + 0.3 * k) + k * 137 * s) % span - 60 * s
                by = H * (0.15 + 0.1 * (k % 4)) + 10 * s * math.sin(t * 0.25 + k * 1.7)
                spr = self.balloons[(k * 3) % len(self.balloons)]
                self._blit(spr, bx, by, a, tint=L["light"] * 1.1 + L["flash"] * 0.3)
        if p["cars"] > 0.01:
            self._cars(p, t, L)
        if p["meteors"] > 0.01:
            for k in range(3):
                a = self._slot_alpha(p["meteors"], 3, k + 20)
                slot = int(t / 2.7 + k * 0.37)
                ph = (t / 2.7 + k * 0.37) - slot
                if a <= 0 or ph > 0.45:
                    continue
                x0 = W * hash01(slot, 21 + k)
                y0 = H * 0.3 * hash01(slot, 31 + k)
                n = 24
                along = np.linspace(0, 1, n, dtype=F32)
                head = ph / 0.45
                xs = x0 + (head - along * 0.25) * W * 0.35
                ys = y0 + (head - along * 0.25) * H * 0.18
                b = (1 - along) ** 2 * a * (1 - head) * 1.6 * max(L["night"], p["b_space"], 0.3)
                self._points(xs, ys, np.vstack([b, b * 0.95, b * 0.85]), self.kern_small)
        if p["asteroids"] > 0.01:
            for k in range(10):
                a = self._slot_alpha(p["asteroids"], 10, k + 30)
                if a <= 0:
                    continue
                span = W + 100 * s
                ax = (t * (15 + 9 * (k % 4)) * s + k * 97 * s - self.cam_x * 0.5 * s) % span - 50 * s
                ay = H * (0.1 + 0.6 * hash01(k, 44))
                rock = self.rocks[int(hash01(k, 45) * len(self.rocks))]
                self._blit(rock, ax, ay, a, tint=0.35 + 0.65 * np.minimum(L["light"], 1.2) + 0.25 * p["b_space"])
        if p["fireworks"] > 0.01:
            self._fireworks(p, t, L)

    def _tint_last(self, spr, x, y, a, col) -> None:
        """A silhouette sprite in a flat colour (birds, planes, dragons)."""
        if a <= 0.01:
            return
        h, w = spr.shape[:2]
        x0, y0 = int(round(x - w / 2)), int(round(y - h / 2))
        xa, ya = max(0, x0), max(0, y0)
        x1, y1 = min(self.W, x0 + w), min(self.H, y0 + h)
        if x1 <= xa or y1 <= ya:
            return
        al = spr[ya - y0:y1 - y0, xa - x0:x1 - x0, 3] * a
        reg = self.img[:, ya:y1, xa:x1]
        for c in range(3):
            reg[c] += (col[c] - reg[c]) * al

    def _cars(self, p, t, L) -> None:
        H, W, s = self.H, self.W, self.s
        lanes = self.car_lanes
        n = len(lanes)
        act = np.clip(p["cars"] * n - self.spr_rank[np.arange(n) % 64] * n, 0, 1)
        ok = act > 0
        if not ok.any():
            return
        ln = lanes[ok]
        a = act[ok]
        direction = np.where(ln[:, 0] < 0.5, 1.0, -1.0)
        # Traffic flows in a few skyways, each lane one way, nearer lanes faster.
        lane = (ln[:, 3] * 5).astype(int)
        direction = np.where(lane % 2 == 0, 1.0, -1.0)
        speed = (50 + 25 * lane + 40 * ln[:, 1]) * s * direction
        span = W + 80 * s
        x = (ln[:, 2] * span + t * speed - self.cam_x * 0.4 * s) % span - 40 * s
        y = H * (0.22 + 0.075 * lane) + 3 * s * (ln[:, 1] - 0.5)
        # A bright head and a fading trail behind it.
        n_tr = 12
        along = np.arange(n_tr, dtype=F32)
        xs = (x[:, None] - direction[:, None] * along[None, :] * 2.5 * s).ravel()
        ys = np.repeat(y, n_tr)
        fade = ((1 - along / n_tr) ** 1.6)[None, :] * a[:, None]
        neon = np.array([[1.0, .3, .9], [.3, 1, 1], [1, .95, .8], [1, .25, .2]], F32)
        kind = (ln[:, 1] * 4).astype(int) % 4
        col = neon[kind].T[:, :, None] * fade[None, :, :] * (0.6 + 0.9 * L["night"])
        self._points(xs, ys, col.reshape(3, -1), self.kern_small)

    def _fireworks(self, p, t, L) -> None:
        H, W, s = self.H, self.W, self.s
        for k in range(4):
            a = self._slot_alpha(p["fireworks"], 4, k + 40)
            if a <= 0:
                continue
            per = 2.6 + 0.4 * k
            slot = int(t / per + k * 0.31)
            ph = (t / per + k * 0.31 - slot) * per  # seconds since launch
            cx = W * (0.15 + 0.7 * hash01(slot, 50 + k))
            cy = H * (0.12 + 0.25 * hash01(slot, 60 + k))
            col = _FIREWORK_COLS[int(hash01(slot, 70 + k) * len(_FIREWORK_COLS))]
            bright = a * (0.5 + 0.5 * L["night"]) * 1.4
            if ph < 0.6:  # the rising shell
                yy = H * 0.8 + (cy - H * 0.8) * (ph / 0.6)
                self._points(np.array([cx]), np.array([yy]), (col[:, None] * bright * 0.6), self.kern_small)
                continue
            tb = ph - 0.6
            ang = self.spark_ang + hash01(slot, 80 + k) * 6.3
            spd = self.spark_speed * (70 + 30 * hash01(slot, 90 + k)) * s
            fade = max(0.0, 1 - tb / 1.8) ** 1.3 * bright
            # Each spark leaves a short trail: the same spark a moment earlier, dimmer.
            for lag, dim in ((0.0, 1.0), (0.06, 0.55), (0.12, 0.3), (0.2, 0.15)):
                tl = max(0.0, tb - lag)
                r = spd * (1 - math.exp(-tl * 2.4)) / 2.4 * 2.2
                xs = cx + np.cos(ang) * r
                ys = cy + np.sin(ang) * r + 14 * s * tl * tl
                sparkle = 0.6 + 0.4 * np.sin(ang * 7 + t * 30)
                self._points(xs, ys, col[:, None] * (fade * dim * sparkle)[None, :] * 1.5,
                             self.kern_small)
            if tb < 0.15:
                self._add_glow(cx, cy, col, (0.15 - tb) * 3 * a, self.H, radius=0.25 * H)

    def _particles(self, p, t, L, wind) -> None:
        H, W, s = self.H, self.W, self.s
        f = self.fly
        n = len(f)
        if p["fireflies"] > 0.01:
            k = int(min(n, p["fireflies"] * n))
            q = f[:k]
            x = (q[:, 0] * W + 30 * s * np.sin(t * 0.4 + q[:, 3] * 9) - self.cam_x * 0.8 * s) % W
            y = H * (0.45 + 0.5 * q[:, 1]) + 14 * s * np.sin(t * 0.55 + q[:, 4] * 7)
            blink = np.clip(np.sin(t * (1.2 + q[:, 2]) + q[:, 3] * 20) * 1.5 + 0.2, 0, 1)
            b = blink * (0.35 + 0.65 * L["night"]) * min(1.0, p["fireflies"] * 2)
            col = lerp(_c(.9, 1.0, .35), _c(.5, .8, 1.0), p["magic"])
            self._points(x, y, col[:, None] * b[None, :], self.kern_big if s > 1.5 else self.kern_small)
        if p["embers"] > 0.01:
            k = int(min(n, p["embers"] * n))
            q = f[::-1][:k]
            rise = (t * (20 + 30 * q[:, 2]) * s) % (H * 1.1)
            x = (q[:, 0] * W + wind * 60 * s * (rise / H) * 2 + 8 * s * np.sin(t * 2 + q[:, 3] * 9)
                 - self.cam_x * 0.6 * s) % W
            y = H * 1.02 - rise
            flick = 0.5 + 0.5 * np.sin(t * 9 + q[:, 4] * 30)
            b = flick * (1 - rise / (H * 1.1)) * 1.2
            self._points(x, y, np.vstack([b, b * 0.45, b * 0.12]), self.kern_small)
        if p["bubbles"] > 0.01:
            k = int(min(24, p["bubbles"] * 24))
            for j in range(k):
                q = f[j * 3]
                rise = (t * (12 + 15 * q[2]) * s + q[1] * H) % (H * 1.2)
                x = (q[0] * W + 20 * s * math.sin(t * 0.7 + q[3] * 9)) % W
                y = H * 1.1 - rise
                r = (4 + 7 * q[4]) * s
                self._ring(x, y, r, 0.45 * min(1.0, p["bubbles"] * 2))

    def _ring(self, x, y, r, a) -> None:
        x0, x1 = int(max(0, x - r - 2)), int(min(self.W, x + r + 3))
        y0, y1 = int(max(0, y - r - 2)), int(min(self.H, y + r + 3))
        if x1 <= x0 or y1 <= y0:
            return
        yy, xx = np.ogrid[y0:y1, x0:x1]
        d = np.sqrt((xx - x) ** 2 + (yy - y) ** 2)
        ring = (np.clip(1.2 - np.abs(d - r), 0, 1) * a + np.clip(1 - d / r, 0, 1) * 0.08).astype(F32)
        hl = np.clip(1.5 - np.hypot(xx - (x - r * 0.4), yy - (y - r * 0.4)) / (r * 0.2 + 0.5), 0, 1).astype(F32) * a
        reg = self.img[:, y0:y1, x0:x1]
        rgb = (_c(.8, .95, 1.0), _c(1, 1, 1))
        for c in range(3):
            reg[c] += ring * rgb[0][c] + hl * rgb[1][c]

    # -- weather ---------------------------------------------------------------------
    def _mist(self, p, t, L, horizon, wind) -> None:
        H, s = self.H, self.s
        r0 = int(max(0, horizon - 0.12 * H))
        th, tw = self.mist8.shape
        y = self.rows[r0:]
        v = ((y - r0) / s * 0.5).astype(np.intp) % th
        off = (t * 3 + self.gust * 12 + self.cam_x * 0.5) % tw
        u = (self.cols / s * 0.5 + off).astype(np.intp) % tw
        n = self.mist8[v][:, u].astype(F32) * (1 / 255)
        prof = smoothstep(r0, horizon + 0.08 * H, y).astype(F32)
        a = (n * 0.8 + 0.2) * prof[:, None] * (p["fog"] * 0.55)
        col = L["haze"] * 1.05
        reg = self.img[:, r0:]
        for c in range(3):
            reg[c] += (col[c] - reg[c]) * a

    def _rain(self, p, t, L, wind) -> None:
        s = self.s
        tex = self.a.rain
        amt = p["rain"]
        col = L["hor"] * 0.5 + L["light"] * 0.35 + 0.1 + L["flash"] * 0.5 + _c(.08, .03, .1) * p["neon"]
        scratch = self.tmp[0]
        for layer, (scale, speed, bright) in enumerate(((1.0, 900, 0.16), (1.9, 1300, 0.24))):
            fall = (t * speed / scale) % 256.0
            side = (self.gust * 140 / scale) % 256.0
            ridx = (self.rows / (s * scale) - fall + layer * 97).astype(np.intp) % 256
            cidx = (self.cols / (s * scale) + side + layer * 51).astype(np.intp) % 256
            codes = tex.take(ridx, axis=0).take(cidx, axis=1)
            thr = int(255 * min(1.0, amt * (0.75 + 0.25 * layer)))
            np.multiply(codes < thr, F32(bright), out=scratch)
            for c in range(3):
                self.img[c] += scratch * col[c]

    def _snow(self, p, t, L, wind) -> None:
        H, W, s = self.H, self.W, self.s
        q = self.snow
        k = int(len(q) * min(1.0, p["snow"]))
        q = q[:k]
        depth = q[:, 2]
        fall = (14 + 40 * depth) * s
        x = (q[:, 0] * W + (self.gust * (30 + 90 * depth) * s) % W + 10 * s * np.sin(t * 0.8 + q[:, 3] * 12)
             - self.cam_x * depth * 0.5 * s) % W
        y = (q[:, 1] * H + t * fall) % H
        col = L["light"] * 0.6 + L["hor"] * 0.3 + 0.25
        b = (0.35 + 0.65 * depth)
        xi, yi = x.astype(np.intp), y.astype(np.intp)
        for c in range(3):
            reg = self.img[c]
            reg[yi, xi] += (col[c] - reg[yi, xi]) * b
        big = depth > 0.7
        xb, yb = np.minimum(xi[big] + 1, W - 1), np.minimum(yi[big] + 1, H - 1)
        for xx, yy in ((xb, yi[big]), (xi[big], yb), (xb, yb)):
            for c in range(3):
                self.img[c, yy, xx] += (col[c] - self.img[c, yy, xx]) * 0.8

    def _bolt(self, slot: int, xr: float, flash: float, horizon: float) -> None:
        H, W = self.H, self.W
        rng = np.random.default_rng(slot * 7919 + self.seed)
        n = int(horizon * 0.9)
        steps = rng.normal(0, 1.4 * self.s, n).cumsum()
        xs = W * (0.1 + 0.8 * xr) + steps
        ys = np.arange(n, dtype=F32) + H * 0.05
        b = np.full(n, min(1.5, flash * 2.2), F32)
        self._points(xs, ys, np.vstack([b, b, b * 1.1]), self.kern_small)

    # -- grading ------------------------------------------------------------------------
    def _grade(self, p, t) -> np.ndarray:
        H, W = self.H, self.W
        warm = p["warmth"]
        tint = _c(p["tint_r"], p["tint_g"], p["tint_b"]) * _c(1 + .12 * warm, 1 + .02 * warm, 1 - .15 * warm)
        expo = 2 ** (p["exposure"] * 0.9)
        sat = p["saturation"]
        lum = _c(.299, .587, .114)
        m_sat = (1 - sat) * np.tile(lum, (3, 1)) + sat * np.eye(3, dtype=F32)
        con = p["contrast"]
        # Turn the colour wheel about the grey axis (Rodrigues' rotation).
        th = 2 * math.pi * (p["hue"] + self.hue_turn)
        kx = np.array([[0, -1, 1], [1, 0, -1], [-1, 1, 0]], F32) / math.sqrt(3)
        m_hue = math.cos(th) * np.eye(3) + (1 - math.cos(th)) / 3 * np.ones((3, 3)) + math.sin(th) * kx
        m = (np.diag(tint * expo) @ m_sat @ m_hue) * con
        m = m.astype(F32)
        off = F32(0.42 * (1 - con))
        img, tmp = self.img, self.tmp
        # Nine multiply-adds on whole planes: faster than BLAS here, and no threads.
        for c in range(3):
            np.multiply(img[0], m[c, 0], out=tmp[c])
            tmp[c] += img[1] * m[c, 1]
            tmp[c] += img[2] * m[c, 2]
        tmp += off
        v = p["vignette"] * 0.5
        if v > 0.01:
            np.multiply(self.vig_r2, -v, out=img)
            img += 1.0
            tmp *= img
        if p["grain"] > 0.01:
            g = self.grain
            oy = int(hash01(int(t * 1000), 1) * (g.shape[0] - H))
            ox = int(hash01(int(t * 1000), 2) * (g.shape[1] - W))
            gs = g[oy:oy + H, ox:ox + W] * (p["grain"] * 0.022)
            tmp += gs
        np.clip(tmp, 0.0, 1.0, out=tmp)
        tmp *= 255.0
        tmp += 0.5
        np.copyto(self.planar8, tmp, casting="unsafe")
        for c in range(3):
            self.out[:, :, c] = self.planar8[c]
        return self.out.copy()  # the caller may keep it while the next frame is drawn
