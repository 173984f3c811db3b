"""The sketch world's moving things: what flies between the layers, and particles.

`Things` draws birds, dragons, planes, balloons, flying cars, meteors,
asteroids and fireworks behind the two nearest layers of land; `Particles`
draws fireflies, embers and bubbles in front of everything. A kind's amount
(0..1) fades its slots in one by one in a fixed random order, so "a few
birds" and "many birds" are the same birds, more of them.

Per-thing tables (lanes, phases, spark directions) are float64: they meet
world time, which grows for days.
"""

from __future__ import annotations

import math

import numpy as np

from .sketch_assets import balloon_sprite, bird_sprites, dragon_sprites, plane_sprite, rock_sprite
from .sketch_canvas import F32, Canvas, View, hash01, lerp, rgb
from .sketch_scene import Movers
from .sketch_sky import Lighting

_FIREWORK_COLS = np.array([[1, 0.35, 0.3], [1, 0.85, 0.3], [0.4, 1, 0.5], [0.45, 0.6, 1], [1, 0.4, 1], [1, 1, 1]], F32)
_NEON = np.array([[1.0, 0.3, 0.9], [0.3, 1, 1], [1, 0.95, 0.8], [1, 0.25, 0.2]], F32)
_BALLOON_PALETTES = (
    ((0.9, 0.2, 0.2), (1, 0.85, 0.3)),
    ((0.2, 0.5, 0.95), (1, 1, 1)),
    ((0.95, 0.55, 0.15), (0.5, 0.2, 0.6)),
    ((0.25, 0.75, 0.4), (0.95, 0.9, 0.3)),
)


class Things:
    """Everything that crosses the sky."""

    def __init__(
        self,
        c: Canvas,
        seed: int,
        rank: np.ndarray,
        car_lanes: np.ndarray,
        spark_ang: np.ndarray,
        spark_speed: np.ndarray,
    ) -> None:
        s = c.s
        self.c = c
        self.rank = rank  # (64,) the order in which slots appear, 0..1
        self.car_lanes = car_lanes  # (36, 4): -, speed and colour, place in the lane, skyway
        self.spark_ang = spark_ang  # (70,) firework sparks: directions on a sphere seen from the side
        self.spark_speed = spark_speed
        self.birds = [bird_sprites(s * k) for k in (0.6, 0.85, 1.2)]
        self.plane = [plane_sprite(s * k) for k in (0.7, 1.1)]
        self.balloons = [balloon_sprite(s * k, p) for k in (0.7, 1.1) for p in _BALLOON_PALETTES]
        self.dragons = [dragon_sprites(s * k) for k in (0.8, 1.3)]
        self.rocks = [rock_sprite(max(5, int(k * s)), seed + 20 + k) for k in (7, 10, 14, 19, 26)]

    def slot_alpha(self, amount: float, n: int, k: int) -> float:
        """Slot k of n shows when amount*n passes its rank: things fade in one by one."""
        return float(np.clip(amount * n - self.rank[k % 64] * n, 0, 1))

    def draw(self, movers: Movers, light: Lighting, view: View, t: float, *, clouds: float, space: float) -> None:
        dark = lerp(rgb(0.1, 0.1, 0.12), light.haze * 0.3, 0.3)
        if movers.birds > 0.01:
            self._birds(movers.birds, t, dark)
        if movers.dragons > 0.01:
            self._dragons(movers.dragons, t, dark)
        if movers.planes > 0.01:
            self._planes(movers.planes, light, t, dark, clouds)
        if movers.balloons > 0.01:
            self._balloons(movers.balloons, light, view, t)
        if movers.cars > 0.01:
            self._cars(movers.cars, light, view, t)
        if movers.meteors > 0.01:
            self._meteors(movers.meteors, light, t, space)
        if movers.asteroids > 0.01:
            self._asteroids(movers.asteroids, light, view, t, space)
        if movers.fireworks > 0.01:
            self._fireworks(movers.fireworks, light, t)

    def _birds(self, amount: float, t: float, dark: np.ndarray) -> None:
        """A few flocks crossing, flapping."""
        c = self.c
        H, W, s = c.H, c.W, c.s
        for f in range(3):
            fa = self.slot_alpha(amount, 3, f)
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
                c.silhouette(spr, bx, by, fa, dark)

    def _dragons(self, amount: float, t: float, dark: np.ndarray) -> None:
        c = self.c
        H, W, s = c.H, c.W, c.s
        for k in range(2):
            a = self.slot_alpha(amount, 2, k + 5)
            span = W + 300 * s
            dx = (t * (22 + 9 * k) * s + k * 500 * s) % span - 150 * s
            dy = H * (0.2 + 0.12 * k) + 20 * s * math.sin(t * 0.35 + k * 2)
            fr = int((t * 2.2 + k) % 4)
            spr = self.dragons[k][fr]
            c.silhouette(spr, dx, dy, a, lerp(dark, rgb(0.25, 0.05, 0.05), 0.4))

    def _planes(self, amount: float, light: Lighting, t: float, dark: np.ndarray, clouds: float) -> None:
        """Planes with contrails by day and a blinking light by night."""
        c = self.c
        H, W, s = c.H, c.W, c.s
        for k in range(3):
            a = self.slot_alpha(amount, 3, k + 9)
            if a <= 0:
                continue
            span = W + 400 * s
            px = (t * (45 + 15 * k) * s + k * 420 * s) % span - 200 * s
            py = H * (0.12 + 0.1 * k)
            spr = self.plane[0 if k else 1]
            trail = int(min(px, W))
            if trail > 0 and light.day > 0.1:
                y0 = int(py + spr.shape[0] * 0.1)
                if 0 <= y0 < H - 1:
                    x0 = max(0, int(px - 260 * s))
                    ramp = np.linspace(0, 0.5 * a * light.day * (1 - 0.5 * clouds), trail - x0, dtype=F32)
                    if len(ramp):
                        for ch in range(3):
                            reg = c.img[ch, y0 : y0 + 2, x0:trail]
                            reg += (0.95 - reg) * ramp
            c.silhouette(spr, px, py, a, dark)
            if light.night > 0.3 and int(t * 2) % 2 == 0:
                c.points(np.array([px - spr.shape[1] * 0.3]), np.array([py]), np.array([[1.0], [0.2], [0.2]], F32) * a)

    def _balloons(self, amount: float, light: Lighting, view: View, t: float) -> None:
        c = self.c
        H, W, s = c.H, c.W, c.s
        for k in range(6):
            a = self.slot_alpha(amount, 6, k + 13)
            if a <= 0:
                continue
            span = W + 120 * s
            bx = ((t * 6 + view.gust * 8) * s * (1 + 0.3 * k) + k * 137 * s) % span - 60 * s
            by = H * (0.15 + 0.1 * (k % 4)) + 10 * s * math.sin(t * 0.25 + k * 1.7)
            spr = self.balloons[(k * 3) % len(self.balloons)]
            c.blit(spr, bx, by, a, tint=light.colour * 1.1 + light.flash * 0.3)

    def _cars(self, amount: float, light: Lighting, view: View, t: float) -> None:
        c = self.c
        H, W, s = c.H, c.W, c.s
        lanes = self.car_lanes
        n = len(lanes)
        act = np.clip(amount * n - self.rank[np.arange(n) % 64] * n, 0, 1)
        ok = act > 0
        if not ok.any():
            return
        ln = lanes[ok]
        a = act[ok]
        # Traffic flows in a few skyways, each lane one way, nearer lanes faster.
        lane = (ln[:, 3] * 5).astype(int)
        direction = np.where(lane % 2 == 0, 1.0, -1.0)
        speed = (50 + 25 * lane + 40 * ln[:, 1]) * s * direction
        span = W + 80 * s
        x = (ln[:, 2] * span + t * speed - view.travel * 0.4 * s) % span - 40 * s
        y = H * (0.22 + 0.075 * lane) + 3 * s * (ln[:, 1] - 0.5)
        # A bright head and a fading trail behind it.
        n_tr = 12
        along = np.arange(n_tr, dtype=F32)
        xs = (x[:, None] - direction[:, None] * along[None, :] * 2.5 * s).ravel()
        ys = np.repeat(y, n_tr)
        fade = ((1 - along / n_tr) ** 1.6)[None, :] * a[:, None]
        kind = (ln[:, 1] * 4).astype(int) % 4
        col = _NEON[kind].T[:, :, None] * fade[None, :, :] * (0.6 + 0.9 * light.night)
        c.points(xs, ys, col.reshape(3, -1))

    def _meteors(self, amount: float, light: Lighting, t: float, space: float) -> None:
        c = self.c
        H, W = c.H, c.W
        for k in range(3):
            a = self.slot_alpha(amount, 3, k + 20)
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
            b = (1 - along) ** 2 * a * (1 - head) * 1.6 * max(light.night, space, 0.3)
            c.points(xs, ys, np.vstack([b, b * 0.95, b * 0.85]))

    def _asteroids(self, amount: float, light: Lighting, view: View, t: float, space: float) -> None:
        c = self.c
        H, W, s = c.H, c.W, c.s
        for k in range(10):
            a = self.slot_alpha(amount, 10, k + 30)
            if a <= 0:
                continue
            span = W + 100 * s
            ax = (t * (15 + 9 * (k % 4)) * s + k * 97 * s - view.travel * 0.5 * s) % span - 50 * s
            ay = H * (0.1 + 0.6 * hash01(k, 44))
            rock = self.rocks[int(hash01(k, 45) * len(self.rocks))]
            c.blit(rock, ax, ay, a, tint=0.35 + 0.65 * np.minimum(light.colour, 1.2) + 0.25 * space)

    def _fireworks(self, amount: float, light: Lighting, t: float) -> None:
        c = self.c
        H, W, s = c.H, c.W, c.s
        for k in range(4):
            a = self.slot_alpha(amount, 4, k + 40)
            if a <= 0:
                continue
            per = 2.6 + 0.4 * k
            slot = int(t / per + k * 0.31)
            ph = (t / per + k * 0.31 - slot) * per  # seconds since launch
            cx = W * (0.15 + 0.7 * hash01(slot, 50 + k))
            cy = H * (0.12 + 0.25 * hash01(slot, 60 + k))
            col = _FIREWORK_COLS[int(hash01(slot, 70 + k) * len(_FIREWORK_COLS))]
            bright = a * (0.5 + 0.5 * light.night) * 1.4
            if ph < 0.6:  # the rising shell
                yy = H * 0.8 + (cy - H * 0.8) * (ph / 0.6)
                c.points(np.array([cx]), np.array([yy]), (col[:, None] * bright * 0.6))
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
                c.points(xs, ys, col[:, None] * (fade * dim * sparkle)[None, :] * 1.5)
            if tb < 0.15:
                c.glow(cx, cy, col, (0.15 - tb) * 3 * a, H, radius=0.25 * H)


class Particles:
    """Fireflies, embers and bubbles, in front of the land."""

    def __init__(self, c: Canvas, table: np.ndarray) -> None:
        self.c = c
        self.table = table  # (120, 5) in 0..1: place, height, speed, two phases

    def draw(
        self, light: Lighting, view: View, t: float, *, fireflies: float, embers: float, bubbles: float, magic: float
    ) -> None:
        c = self.c
        H, W, s = c.H, c.W, c.s
        f = self.table
        n = len(f)
        if fireflies > 0.01:
            k = int(min(n, fireflies * n))
            q = f[:k]
            x = (q[:, 0] * W + 30 * s * np.sin(t * 0.4 + q[:, 3] * 9) - view.travel * 0.8 * s) % W
            y = H * (0.45 + 0.5 * q[:, 1]) + 14 * s * np.sin(t * 0.55 + q[:, 4] * 7)
            blink = np.clip(np.sin(t * (1.2 + q[:, 2]) + q[:, 3] * 20) * 1.5 + 0.2, 0, 1)
            b = blink * (0.35 + 0.65 * light.night) * min(1.0, fireflies * 2)
            col = lerp(rgb(0.9, 1.0, 0.35), rgb(0.5, 0.8, 1.0), magic)
            c.points(x, y, col[:, None] * b[None, :], big=s > 1.5)
        if embers > 0.01:
            k = int(min(n, embers * n))
            q = f[::-1][:k]
            rise = (t * (20 + 30 * q[:, 2]) * s) % (H * 1.1)
            x = (
                q[:, 0] * W
                + view.wind * 60 * s * (rise / H) * 2
                + 8 * s * np.sin(t * 2 + q[:, 3] * 9)
                - view.travel * 0.6 * s
            ) % W
            y = H * 1.02 - rise
            flick = 0.5 + 0.5 * np.sin(t * 9 + q[:, 4] * 30)
            b = flick * (1 - rise / (H * 1.1)) * 1.2
            c.points(x, y, np.vstack([b, b * 0.45, b * 0.12]))
        if bubbles > 0.01:
            k = int(min(24, bubbles * 24))
            for j in range(k):
                q = f[j * 3]
                rise = (t * (12 + 15 * q[2]) * s + q[1] * H) % (H * 1.2)
                x = (q[0] * W + 20 * s * math.sin(t * 0.7 + q[3] * 9)) % W
                y = H * 1.1 - rise
                r = (4 + 7 * q[4]) * s
                self._ring(x, y, r, 0.45 * min(1.0, bubbles * 2))

    def _ring(self, x: float, y: float, r: float, a: float) -> None:
        """A soap bubble: a bright rim, a faint fill and a highlight."""
        c = self.c
        x0, x1 = int(max(0, x - r - 2)), int(min(c.W, x + r + 3))
        y0, y1 = int(max(0, y - r - 2)), int(min(c.H, y + r + 3))
        if x1 <= x0 or y1 <= y0:
            return
        yy, xx = np.ogrid[y0:y1, x0:x1]
        d = np.sqrt((xx - x) ** 2 + (yy - y) ** 2)
        ring = (np.clip(1.2 - np.abs(d - r), 0, 1) * a + np.clip(1 - d / r, 0, 1) * 0.08).astype(F32)
        hl = np.clip(1.5 - np.hypot(xx - (x - r * 0.4), yy - (y - r * 0.4)) / (r * 0.2 + 0.5), 0, 1).astype(F32) * a
        reg = c.img[:, y0:y1, x0:x1]
        cols = (rgb(0.8, 0.95, 1.0), rgb(1, 1, 1))
        for ch in range(3):
            reg[ch] += ring * cols[0][ch] + hl * cols[1][ch]
