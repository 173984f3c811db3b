"""The sketch world's light and sky: everything above and behind the land.

`lighting` turns the time of day and the weather into the frame's palette,
all of it 1-D (a colour per row, a colour for the light on the ground); the
layers here draw with it, back to front: the sky gradient, nebula and stars
(`Sky`), the sun, moons, planets, nova, aurora and rainbow (`Celestial`),
the cloud deck (`Clouds`) and searchlight beams.
"""

from __future__ import annotations

import math
from typing import NamedTuple, overload

import numpy as np
from numpy.typing import NDArray

from .sketch_assets import REF_H, Assets, moon_sprite, planet_sprite
from .sketch_canvas import F32, Canvas, Field, PlaneTexture, View, hash01, lerp, rgb, smoothstep
from .sketch_scene import Biomes, Weather


@overload
def daylight(e: float) -> tuple[np.float64, np.float64, np.float64, np.float64]: ...
@overload
def daylight(e: Field) -> tuple[Field, Field, Field, Field]: ...
def daylight(e: float | Field) -> tuple[np.float64 | Field, ...]:
    """How the light depends on the sun's elevation e (-1..1): day, twilight, direct sun, sun colour."""
    return (
        smoothstep(-0.12, 0.3, e),
        np.exp(-(((e - 0.03) / 0.13) ** 2)),
        smoothstep(-0.03, 0.18, e),
        smoothstep(0.02, 0.4, e),
    )


class Body(NamedTuple):
    """The sun or the moon: elevation (-1..1, above the horizon when > 0) and where it stands."""

    elevation: float
    x: float
    y: float


class Bolt(NamedTuple):
    slot: int  # the lightning slot, seeds the bolt's path
    x: float  # 0..1 across the frame
    strength: float


class Lighting(NamedTuple):
    """The frame's light and palette."""

    sun: Body
    moon: Body
    day: float  # 0 night .. 1 day
    night: float
    twilight: float
    zenith: np.ndarray  # rgb overhead
    horizon: np.ndarray  # rgb at the horizon
    sky_rows: np.ndarray  # (3, H): the sky's colour per row
    colour: np.ndarray  # rgb of the light falling on the land: sun and ambient
    sun_colour: np.ndarray
    direct: float  # strength of direct sunlight
    haze: np.ndarray  # rgb of distance
    flash: float  # lightning
    bolt: Bolt | None
    brightness: float  # the frame's overall brightness, for the soundtrack


def _body(tod: float, horizon: float, W: int) -> Body:
    e = math.sin(2 * math.pi * (tod - 0.25))
    f = ((tod - 0.25) % 1.0) / 0.5  # 0 at rise, 1 at set
    x = W * (0.14 + 0.72 * min(max(f, -0.2), 1.2))
    y = horizon - e * horizon * 0.85
    return Body(e, x, y)


def lighting(
    c: Canvas,
    t: float,
    horizon: float,
    tod: float,
    weather: Weather,
    warmth: float,
    biomes: Biomes,
    city_lights: float,
    neon: float,
    seed: int,
) -> Lighting:
    H = c.H
    tod = tod % 1.0
    sun = _body(tod, horizon, c.W)
    moon = _body((tod + 0.5) % 1.0, horizon, c.W)
    clouds, storm, space = weather.clouds, weather.storm, biomes.space
    day, twi, direct_sun, sun_warm = (float(v) for v in daylight(sun.elevation))
    warm = warmth
    zen = lerp(rgb(0.04, 0.07, 0.16), rgb(0.16, 0.38, 0.78), day)
    hor = lerp(rgb(0.12, 0.17, 0.32), rgb(0.62, 0.78, 0.93), day)
    twi_h = lerp(rgb(1.0, 0.48, 0.22), rgb(1.0, 0.36, 0.38), max(0.0, -warm) * 0.5)
    hor = lerp(hor, twi_h, twi * 0.85)
    zen = lerp(zen, rgb(0.20, 0.18, 0.42), twi * 0.55)
    # Overcast skies go grey, storms go dark.
    grey_lvl = 0.08 + 0.55 * day + 0.12 * twi
    ov = clouds**1.5 * 0.85
    zen = lerp(zen, rgb(0.58, 0.61, 0.66) * grey_lvl, ov)
    hor = lerp(hor, rgb(0.66, 0.68, 0.72) * grey_lvl + twi_h * twi * 0.15, ov)
    dark = 1 - 0.45 * storm
    zen, hor = zen * dark, hor * dark
    # Lightning: a strike at most every ~second slot, flickering out over 0.4 s.
    flash, bolt = 0.0, None
    if storm > 0.05:
        slot = int(t * 1.3)
        if hash01(slot, seed) < storm * 0.32:
            dt0 = t - (slot + hash01(slot, 7) * 0.5) / 1.3
            if 0 <= dt0 < 0.45:
                flash = storm * math.exp(-dt0 * 9) * (0.6 + 0.4 * (math.sin(dt0 * 60) > 0))
                if hash01(slot, 3) < 0.7:
                    bolt = Bolt(slot, hash01(slot, 5), flash)
    zen = zen + rgb(0.45, 0.45, 0.6) * flash * 0.6
    hor = hor + rgb(0.6, 0.6, 0.75) * flash * 0.6
    # A lit city glows on the clouds at night, neon tints the glow.
    glow = biomes.city * city_lights * (1 - day) * (1 - space)
    city_glow = lerp(rgb(0.16, 0.10, 0.06), rgb(0.16, 0.05, 0.2), neon) * glow
    hor = hor + city_glow
    zen = zen + city_glow * 0.35
    zen = lerp(zen, rgb(0, 0, 0.008), space)
    hor = lerp(hor, rgb(0.004, 0.004, 0.02), space)
    y = c.rows
    tt = np.clip(y / max(horizon, 1), 0, 1) ** 1.7
    rows = zen[:, None] + (hor - zen)[:, None] * tt[None, :]
    band = np.exp(-np.clip(horizon - y, 0, None) / (0.07 * H)) * twi * (1 - ov) * (1 - space)
    rows = rows + twi_h[:, None] * band[None, :] * 0.35
    # Sunlight and ambient light for the ground.
    direct = direct_sun * (1 - 0.7 * clouds) * (1 - 0.5 * storm)
    sun_col = lerp(rgb(1.0, 0.5, 0.3), rgb(1.0, 0.96, 0.9), sun_warm)
    moon_lit = float(smoothstep(-0.05, 0.2, moon.elevation)) * (1 - day)
    ambient = (zen * 0.25 + hor * 0.35) * (0.8 + 0.4 * day) + rgb(0.09, 0.12, 0.22) * (0.45 + 0.55 * moon_lit) * (
        1 - day
    )
    ambient = ambient + rgb(0.5, 0.5, 0.6) * flash * 0.5
    # Snow on the ground throws light back up: snowy scenes are brighter.
    ambient = ambient * (1 + 0.5 * weather.snowcover * (1 - space))
    light = sun_col * direct * 0.8 + ambient
    haze = lerp(hor, rows[:, int(min(H - 1, max(0, horizon)))], 0.5)
    brightness = float(np.clip((light.mean() * 0.7 + rows.mean() * 0.3) * 1.4, 0, 1))
    return Lighting(
        sun=sun,
        moon=moon,
        day=day,
        night=1 - day,
        twilight=twi,
        zenith=zen,
        horizon=hor,
        sky_rows=rows.astype(F32),
        colour=light.astype(F32),
        sun_colour=sun_col,
        direct=direct,
        haze=haze.astype(F32),
        flash=flash,
        bolt=bolt,
        brightness=brightness,
    )


class Sky:
    """The gradient, the nebula and the stars."""

    def __init__(self, c: Canvas, assets: Assets) -> None:
        self.c = c
        self.nebula_tex = assets.nebula  # (REF_H, 1024, 3)
        self.star_table = assets.stars  # x, y (reference pixels), brightness, twinkle phase

    def draw(
        self,
        light: Lighting,
        view: View,
        t: float,
        sky_bottom: int,
        *,
        nebula: float,
        stars: float,
        clouds: float,
        space: float,
    ) -> None:
        self.c.fill_rows(light.sky_rows)
        neb = max(nebula, space * 0.35) * (1 - light.day * (1 - space))
        if neb > 0.01:
            self._nebula(neb, sky_bottom, view.travel)
        self._stars(light, view.horizon, view.travel, t, stars, clouds, space)

    def _nebula(self, w: float, rows: int, travel: float) -> None:
        c, neb = self.c, self.nebula_tex
        ridx = (np.arange(rows) / c.s).astype(np.intp) % neb.shape[0]
        cidx = ((np.arange(c.W) + travel * 0.04 * c.s) / c.s).astype(np.intp) % 1024
        tex = neb[ridx][:, cidx]  # (rows, W, 3)
        for k in range(3):
            c.img[k, :rows] += tex[..., k] * (w * 0.9)

    def _stars(
        self, light: Lighting, horizon: float, travel: float, t: float, stars: float, clouds: float, space: float
    ) -> None:
        c = self.c
        vis = (1 - light.day) * (1 - 0.92 * clouds) * (0.55 + 0.45 * stars)
        vis = max(vis, space * (0.8 + 0.2 * stars))
        if vis < 0.02:
            return
        x, y, mag, ph = self.star_table
        s = c.s
        sx = (x * s - (travel * 0.02 * s) % (2048 * s)) % (2048 * s)
        sy = y * s * (1 + 0.1 * space)
        ok = (sx < c.W) & (sy < min(horizon + space * c.H, c.H - 1))
        sx, sy, mag, ph = sx[ok], sy[ok], mag[ok], ph[ok]
        b = mag * vis * (0.75 + 0.25 * np.sin(t * 3.0 + ph * 7.0))
        xi, yi = sx.astype(np.intp), sy.astype(np.intp)
        tint = (rgb(0.9, 0.95, 1.0), rgb(1.0, 0.9, 0.8))
        for k in range(3):
            c.img[k, yi, xi] += b * tint[0][k]
        big = b > 0.7
        if big.any():
            xb, yb, bb = xi[big], yi[big], b[big] * 0.35
            for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                xx = np.clip(xb + dx, 0, c.W - 1)
                yy = np.clip(yb + dy, 0, c.H - 1)
                for k in range(3):
                    c.img[k, yy, xx] += bb * tint[1][k]


class Celestial:
    """Sun, moons, planets, a nova, the aurora and the rainbow."""

    def __init__(self, c: Canvas, seed: int) -> None:
        s = c.s
        self.c = c
        self.planet = planet_sprite(int(110 * s), seed + 1, ring=True)
        self.planet2 = planet_sprite(int(46 * s), seed + 2, ring=False)
        self.moon = moon_sprite(max(8, int(26 * s)), seed + 3)
        self.moon2 = moon_sprite(max(6, int(15 * s)), seed + 4)
        self.moon2[..., :3] *= rgb(1.0, 0.72, 0.6)
        self.rainbow = self._rainbow_field()

    def _rainbow_field(self) -> np.ndarray:
        H, W = self.c.H, self.c.W
        yy, xx = np.mgrid[0:H, 0:W].astype(F32)
        r = np.hypot(xx - W * 0.55, (yy - H * 1.05) * 1.0) / H
        t = (r - 0.78) / 0.07  # 0..1 across the bow, violet inside, red outside
        hue = np.clip(t, 0, 1)
        band = np.clip(1 - np.abs(t - 0.5) * 2, 0, 1) ** 0.7
        cols = np.stack(
            [
                np.clip(1.5 - np.abs(hue - 1.0) * 3, 0, 1) + np.clip(1 - np.abs(hue - 0.0) * 4, 0, 0.5),
                np.clip(1.5 - np.abs(hue - 0.6) * 3.2, 0, 1),
                np.clip(1.5 - np.abs(hue - 0.15) * 3.2, 0, 1),
            ]
        )
        fade = smoothstep(0.0, 0.35, (H * 0.72 - yy) / H)  # fades into the ground haze
        bow: NDArray[np.float32] = (cols * band * fade * 0.35).astype(F32)
        return bow

    def draw(
        self,
        light: Lighting,
        view: View,
        t: float,
        rows: int,
        *,
        moon2: float,
        planets: float,
        nova: float,
        aurora: float,
        rainbow: float,
        clouds: float,
        space: float,
    ) -> None:
        """Over the sky's rows [0, rows)."""
        c, s, horizon = self.c, self.c.s, view.horizon
        clear = 1 - 0.8 * clouds
        sun, moon = light.sun, light.moon
        # Sun: glow and disc, dimmed by cloud.
        if sun.elevation > -0.12:
            vis = float(smoothstep(-0.12, 0.02, sun.elevation)) * (1 - 0.6 * space)
            col = lerp(rgb(1.0, 0.55, 0.25), rgb(1.0, 0.92, 0.75), float(smoothstep(0, 0.5, sun.elevation)))
            c.glow(sun.x, sun.y, col, vis * (0.35 + 0.65 * clear) * 0.9, rows)
            r = 9 * s
            self._disc(sun.x, sun.y, r, col * 1.4 + 0.3, vis * clear)
        # Moons at night.
        if moon.elevation > -0.1 and light.night > 0.05:
            vis = light.night * float(smoothstep(-0.1, 0.05, moon.elevation)) * (1 - 0.7 * clouds)
            c.glow(moon.x, moon.y, rgb(0.5, 0.6, 0.8), vis * 0.22, rows)
            c.blit(self.moon, moon.x, moon.y, vis)
            if moon2 > 0.01:
                c.blit(self.moon2, moon.x - 70 * s, moon.y + 22 * s, vis * moon2)
        if planets > 0.01:
            px = (c.W * 0.7 - view.travel * 0.015 * s) % (c.W * 2.2) - c.W * 0.3
            vis = planets * max(light.night, space, 0.35)
            c.blit(self.planet, px, horizon * 0.42, vis)
            c.blit(self.planet2, px - c.W * 0.55, horizon * 0.22, vis)
        if nova > 0.01:
            pulse = 0.8 + 0.2 * math.sin(t * 1.7)
            nx, ny = c.W * 0.3, horizon * 0.35
            c.glow(nx, ny, rgb(0.8, 0.85, 1.0), nova * pulse * 1.2, rows)
            self._disc(nx, ny, 4 * s, rgb(2, 2, 2), nova)
            self._ray(nx, ny, nova * pulse)
        if aurora > 0.01 and light.night > 0.05:
            self._aurora(aurora * light.night * (1 - 0.8 * clouds), t, horizon, view.travel)
        if rainbow > 0.01:
            rb = self.rainbow[:, :rows] * (rainbow * (0.3 + 0.7 * light.day))
            c.img[:, :rows] += rb

    def _disc(self, x: float, y: float, r: float, col: np.ndarray, a: float) -> None:
        if a < 0.01:
            return
        c = self.c
        x0, x1 = int(max(0, x - r - 1)), int(min(c.W, x + r + 2))
        y0, y1 = int(max(0, y - r - 1)), int(min(c.H, y + r + 2))
        if x1 <= x0 or y1 <= y0:
            return
        yy, xx = np.ogrid[y0:y1, x0:x1]
        cov = np.clip(r - np.sqrt((xx - x) ** 2 + (yy - y) ** 2) + 0.5, 0, 1).astype(F32) * a
        reg = c.img[:, y0:y1, x0:x1]
        reg += (np.minimum(col, 1.6)[:, None, None] - reg) * cov

    def _ray(self, x: float, y: float, a: float) -> None:
        c = self.c
        n = int(40 * c.s)
        d = np.arange(-n, n + 1)
        fall = (a * 0.6 * np.exp(-np.abs(d) / (n * 0.3))).astype(F32)
        xi, yi = int(x), int(y)
        xs = np.clip(xi + d, 0, c.W - 1)
        ys = np.clip(yi + d, 0, c.H - 1)
        for k in range(3):
            c.img[k, min(max(yi, 0), c.H - 1), xs] += fall
            c.img[k, ys, min(max(xi, 0), c.W - 1)] += fall

    def _aurora(self, a: float, t: float, horizon: float, travel: float) -> None:
        c = self.c
        H, s = c.H, c.s
        rows = int(min(H, horizon * 0.8))
        x = c.cols64 + travel * 0.03 * s
        curtain = 0.22 * H + 0.07 * H * np.sin(x * 0.006 / s + t * 0.15) + 0.03 * H * np.sin(x * 0.021 / s - t * 0.33)
        ray = 0.55 + 0.45 * np.sin(x * 0.09 / s + t * 0.8 + 3 * np.sin(x * 0.01 / s + t * 0.1))
        y = c.rows[:rows, None]
        d = curtain[None, :] - y  # >0 above the curtain's lower edge
        prof = np.where(d > 0, np.exp(-d / (0.11 * H)), np.exp(-((d / (0.012 * H)) ** 2))).astype(F32)
        prof *= (ray * a * 0.55)[None, :].astype(F32)
        top = np.clip(d / (0.15 * H), 0, 1).astype(F32)
        c.img[0, :rows] += prof * (0.1 + 0.5 * top)
        c.img[1, :rows] += prof * (0.9 - 0.6 * top)
        c.img[2, :rows] += prof * (0.45 + 0.2 * top)


class Clouds:
    """The cloud deck, seen in perspective over the horizon."""

    def __init__(self, c: Canvas, assets: Assets) -> None:
        self.c = c
        self.tex = PlaneTexture((assets.cloud * 255).astype(np.uint8))

    def draw(self, light: Lighting, view: View, t: float, *, cover: float, storm: float, space: float) -> None:
        c = self.c
        H, W, s = c.H, c.W, c.s
        horizon = view.horizon
        rows = int(min(H, horizon + 1))
        if rows < 4:
            return
        y = c.rows[:rows]
        ang = np.maximum((horizon - y) / H, 0.0)
        # Distance to the cloud deck along each row; the offset keeps the overhead
        # part from coming so close that its texels turn into blocks.
        z = 0.12 / (ang + 0.22)
        k = 5.0
        drift = (t * 4 + view.gust * 30 + view.travel * 0.3) % 1024.0  # texture width: wraps
        du = (z * k / s).astype(F32)
        v = z * k * REF_H + (t * 1.5) % 512.0
        dv = np.abs(np.gradient(v)) if rows > 1 else du
        u0 = drift + z * 13 - (W / 2) * du
        n = self.tex.sample(v, u0, np.maximum(du, dv * 0.7).astype(F32), c.cols, du)
        thr = 1.0 - cover * 1.05
        lv = np.arange(256, dtype=F32) / 255
        alpha = np.clip((lv - thr) * 3.2, 0, 1) ** 0.8 * (0.6 + 0.4 * cover)
        thick = np.clip((lv - thr) * 1.6, 0, 1)
        # Lit tops by the sun's colour, grey-blue bellies, darker in storms.
        lit = light.colour * 1.1 + light.horizon * 0.25 + light.twilight * rgb(0.6, 0.3, 0.2) * 0.6
        shadow = lerp(light.zenith, light.horizon, 0.5) * 0.8 + rgb(0.05, 0.05, 0.07) * light.day
        shadow = shadow * (1 - 0.5 * storm)
        lit = lit * (1 - 0.45 * storm)
        col = lit[:, None] + (shadow - lit)[:, None] * thick[None, :]  # (3, 256)
        a_rows = smoothstep(0.0, 0.08, ang) * (1 - space)  # haze near the horizon
        a = alpha.take(n) * a_rows[:, None].astype(F32)
        reg = c.img[:, :rows]
        for k in range(3):
            cc = col[k].astype(F32).take(n)
            reg[k] += (cc - reg[k]) * a


def searchlights(c: Canvas, light: Lighting, view: View, t: float, amount: float) -> None:
    """Three beams sweeping up from behind the land."""
    H, W = c.H, c.W
    horizon = view.horizon
    rows = int(min(H, horizon + 4))
    a = amount * (0.25 + 0.75 * light.night)
    for k in range(3):
        ox = W * (0.2 + 0.3 * k) - (view.travel * 0.3 * c.s) % (W * 0.3) + W * 0.15
        ang = 0.55 * math.sin(t * (0.23 + 0.07 * k) + k * 2.1)
        y = c.rows[:rows]
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
            core = np.abs(c.cols[None, x0:x1] - xc[b0:b1, None])
            core /= half[b0:b1, None]
            np.subtract(1, core, out=core)
            np.clip(core, 0, 1, out=core)
            c2 = core * core
            c8 = c2 * c2
            c8 *= c8
            beam = (c2 * F32(0.7) + c8 * F32(0.5)) * fall[b0:b1, None]
            for ch, v in enumerate((1.0, 0.95, 0.8)):
                c.img[ch, b0:b1, x0:x1] += beam * F32(v)
