"""Procedural assets of the sketch world, built once at start from the seed.

Everything here is tileable so the world can scroll for ever: 1-D terrain
profiles per biome and parallax layer, 2-D noise planes for clouds and water,
a nebula, city-window patterns and small RGBA sprites for the moving things.
Sizes are in reference pixels (a 360-pixel-high frame); the renderer scales.

Building `Assets` takes about a second of numpy in many small steps, and its
result depends only on the seed, this module's code and numpy's random
streams: `Assets.load` reads it from the cache (streambot/cache.py), keyed by
exactly those, and builds it only when they change.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from .. import cache

log = logging.getLogger(__name__)

ScalarT = TypeVar("ScalarT", bound=np.generic)

REF_H = 360  # assets are authored for a frame this high
PROFILE_LEN = 8192  # columns of every terrain profile (tileable)
CITY_TILE = 2048  # period of the city skyline and its windows
N_LAYERS = 5
# Ground line (fraction of the frame height) and parallax of each layer, far -> near.
LAYER_BASE = (0.64, 0.70, 0.78, 0.87, 0.97)
LAYER_PARALLAX = (0.10, 0.22, 0.40, 0.65, 1.0)


def spectral_noise(
    rng: np.random.Generator, shape: tuple[int, ...], feature: float, beta: float = 2.0
) -> NDArray[np.float32]:
    """Periodic fractal noise by shaping white noise in Fourier space.

    `feature` is the largest feature size in samples; smaller scales fall off
    with a power law of exponent `beta`. Result: zero mean, unit std, float32.
    """
    white = rng.standard_normal(shape)
    spec = np.fft.rfftn(white)
    freqs = [np.fft.fftfreq(n) for n in shape[:-1]] + [np.fft.rfftfreq(shape[-1])]
    grids = np.meshgrid(*freqs, indexing="ij")
    f = np.sqrt(sum(g * g for g in grids))
    f0 = 1.0 / feature
    amp = np.where(f < f0, (f / f0) ** 2, (np.maximum(f, 1e-9) / f0) ** (-beta / 2))
    amp.flat[0] = 0.0
    out = np.fft.irfftn(spec * amp, s=shape, axes=tuple(range(len(shape))))
    out = (out - out.mean()) / (out.std() + 1e-9)
    noise: NDArray[np.float32] = out.astype(np.float32)
    return noise


def _norm01(a: NDArray[np.float32]) -> NDArray[np.float32]:
    lo, hi = np.percentile(a, 1), np.percentile(a, 99)
    scaled: NDArray[np.float32] = np.clip((a - lo) / (hi - lo + 1e-9), 0, 1).astype(np.float32)
    return scaled


def _tile_to(a: NDArray[ScalarT], n: int) -> NDArray[ScalarT]:
    reps = -(-n // len(a))
    tiled: NDArray[ScalarT] = np.tile(a, reps)[:n]
    return tiled


# -- terrain profiles ---------------------------------------------------------
# Heights are fractions of the frame height above the layer's ground line;
# negative pushes the layer below the frame (space, open sea).


def _hills(rng: np.random.Generator, layer: int, amp: float, feature: float) -> NDArray[np.float32]:
    n = spectral_noise(rng, (PROFILE_LEN,), feature, beta=3.2)
    return (amp * (0.45 + 0.3 * n)).astype(np.float32)


def _ridged(rng: np.random.Generator, feature: float, amp: float) -> NDArray[np.float32]:
    """Mountains: broad massifs with sharp ridges and a little rocky detail."""
    base = _norm01(spectral_noise(rng, (PROFILE_LEN,), feature, beta=3.6))
    ridge = (1.0 - np.abs(spectral_noise(rng, (PROFILE_LEN,), feature * 0.5, beta=3.2)) / 2.5) ** 2
    detail = spectral_noise(rng, (PROFILE_LEN,), feature / 10, beta=2.0)
    total = 0.6 * base + 0.4 * ridge + 0.03 * detail
    return (amp * _norm01(total) ** 1.3).astype(np.float32)


def _trees(
    rng: np.random.Generator,
    base: NDArray[np.float32],
    density: float,
    height: float,
    width: float,
    conifer: float = 1.0,
) -> NDArray[np.float32]:
    """Tree silhouettes standing on a profile: pointed firs or round crowns."""
    out = base.copy()
    x = np.arange(PROFILE_LEN, dtype=np.float32)
    pos = 0.0
    while pos < PROFILE_LEN:
        pos += rng.exponential(1.0 / density)
        c = pos % PROFILE_LEN
        h = height * rng.uniform(0.6, 1.3)
        w = width * rng.uniform(0.7, 1.3)
        lo, hi = int(c - w) - 1, int(c + w) + 2
        idx = np.arange(lo, hi) % PROFILE_LEN
        d = np.abs(x[idx] - c)
        d = np.minimum(d, PROFILE_LEN - d)
        if rng.random() < conifer:
            # Jagged fir: a triangle with a few branch notches.
            shape = h * np.clip(1.0 - d / w, 0, 1) * (1.0 - 0.12 * (np.sin(d * 2.3) > 0.6))
        else:
            shape = h * 0.85 * np.sqrt(np.clip(1.0 - (d / w) ** 2, 0, 1)) + h * 0.15 * (d < w * 0.15)
        out[idx] = np.maximum(out[idx], base[idx] + shape)
    return out


def _skyline(
    rng: np.random.Generator, floor: float, tall: float, wmin: float, wmax: float
) -> tuple[NDArray[np.float32], NDArray[np.int32]]:
    """A city profile (heights) and the building id of each column, period CITY_TILE."""
    h = np.zeros(CITY_TILE, np.float32)
    bid = np.zeros(CITY_TILE, np.int32)
    x, k = 0, 1
    while x < CITY_TILE:
        w = int(rng.uniform(wmin, wmax))
        gap = int(rng.integers(0, 3))
        hh = floor + tall * min(rng.lognormal(-0.5, 0.45), 1.3)
        end = min(x + w, CITY_TILE)
        h[x:end] = hh
        bid[x:end] = k
        if rng.random() < 0.25 and w > 6:  # a spire or antenna
            m = x + w // 2
            h[m : m + 1] = hh + tall * rng.uniform(0.08, 0.25)
        if rng.random() < 0.3 and w > 10:  # a setback roof
            inset = w // 4
            h[x + inset : end - inset] = hh + tall * rng.uniform(0.05, 0.15)
        x = end + gap
        k += 1
    return h, bid


def _dunes(rng: np.random.Generator, feature: float, amp: float) -> NDArray[np.float32]:
    n = spectral_noise(rng, (PROFILE_LEN,), feature, beta=3.5)
    phase = np.cumsum(0.5 + 0.5 * _norm01(n)) * (2 * np.pi / feature) * 1.5
    # Asymmetric crests: a gentle windward slope and a steep slip face.
    saw = (phase / (2 * np.pi)) % 1.0
    crest = np.where(saw < 0.8, saw / 0.8, (1.0 - saw) / 0.2)
    env = 0.55 + 0.45 * _norm01(spectral_noise(rng, (PROFILE_LEN,), feature * 4, beta=3))
    return (amp * (0.15 + 0.85 * crest**1.5 * env)).astype(np.float32)


def _mesas(rng: np.random.Generator, feature: float, amp: float) -> NDArray[np.float32]:
    """Flat-topped buttes with sloping talus sides over low rolling sand."""
    n = _norm01(spectral_noise(rng, (PROFILE_LEN,), feature, beta=3.0))
    steps = np.round(np.clip((n - 0.55) * 6, 0, 1) * 2) / 2
    # Erode the cliffs into slopes: a running mean over a few pixels, wrapped.
    k = 9
    pad = np.r_[steps[-k:], steps, steps[:k]]
    slope = np.convolve(pad, np.ones(2 * k + 1) / (2 * k + 1), mode="same")[k:-k]
    cliff = np.maximum(steps * 0.85, slope)
    mesas: NDArray[np.float32] = (amp * (0.08 + 0.8 * cliff + 0.06 * n)).astype(np.float32)
    return mesas


def _gumdrops(rng: np.random.Generator, amp: float, size: float) -> NDArray[np.float32]:
    out = np.zeros(PROFILE_LEN, np.float32)
    x = np.arange(PROFILE_LEN, dtype=np.float32)
    pos = 0.0
    while pos < PROFILE_LEN:
        r = size * rng.uniform(0.6, 1.4)
        pos += r * rng.uniform(0.8, 1.6)
        c = pos % PROFILE_LEN
        idx = np.arange(int(c - r) - 1, int(c + r) + 2) % PROFILE_LEN
        d = np.abs(x[idx] - c)
        d = np.minimum(d, PROFILE_LEN - d)
        bump = amp * rng.uniform(0.6, 1.1) * np.sqrt(np.clip(1 - (d / r) ** 2, 0, 1))
        out[idx] = np.maximum(out[idx], bump)
    return out


def _wasteland(rng: np.random.Generator, layer: int, amp: float) -> NDArray[np.float32]:
    base = _hills(rng, layer, amp * 0.7, 500 - 60 * layer)
    # Craters and broken stumps: sharp dips and thin spikes.
    x = np.arange(PROFILE_LEN)
    for _ in range(PROFILE_LEN // 300):
        c, r = rng.uniform(0, PROFILE_LEN), rng.uniform(8, 30)  # shell craters
        d = np.minimum(np.abs(x - c), PROFILE_LEN - np.abs(x - c))
        base -= amp * 0.35 * np.clip(1 - (d / r) ** 2, 0, 1)
    if layer >= 2:
        for _ in range(PROFILE_LEN // 160):  # broken stumps and posts
            c = int(rng.uniform(0, PROFILE_LEN))
            w = int(rng.integers(1, 3))
            base[c : c + w] += amp * rng.uniform(0.2, 0.6)
    return base.astype(np.float32)


_CACHE_NAME = "sketch-assets"
_FORMAT = 1  # how `arrays` lays the assets out

BIOME_ORDER = ("grass", "desert", "mountains", "ocean", "forest", "city", "space", "islands", "candy", "wasteland")


class Assets:
    """Every precomputed texture and profile, from one seed."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.profiles = self._profiles(rng)  # (biomes, layers, PROFILE_LEN)
        self.windows = self._windows(rng)  # per layer: (rows, CITY_TILE) uint8 codes
        self.islands = self._islands(rng)  # (top, bottom) fractions of H, PROFILE_LEN
        self.cloud = _norm01(spectral_noise(rng, (512, 1024), 220, beta=3.1))
        self.cloud_hi = _norm01(spectral_noise(rng, (128, 1024), 300, beta=2.2))
        self.water = _norm01(
            spectral_noise(rng, (256, 512), 24, beta=1.6) + 0.5 * spectral_noise(rng, (256, 512), 80, beta=2.5)
        )
        self.mist = _norm01(spectral_noise(rng, (128, 1024), 200, beta=2.8))
        self.nebula = self._nebula(rng)
        self.stars = self._stars(rng)
        self.rain = self._rain(rng)
        self.detail = _norm01(spectral_noise(rng, (256, 1024), 6, beta=1.2)) - 0.5

    @classmethod
    def load(cls, seed: int) -> Assets:
        """This seed's assets, from the cache when it holds them for this code, else built and cached."""
        # numpy's version: its random streams and FFTs make the pictures (NEP 19 lets a stream change).
        k = cache.key(_CACHE_NAME, _FORMAT, seed, cache.source_of(sys.modules[__name__]), np.__version__)
        arrays = cache.load(_CACHE_NAME, k)
        if arrays is not None:
            try:
                return cls.from_arrays(arrays)
            except (KeyError, ValueError) as e:  # a file of the right key but not of this layout
                log.warning("the cached sketch assets do not fit (%s); building them", e)
        t0 = time.perf_counter()
        built = cls(seed)
        cache.store(_CACHE_NAME, k, built.arrays())
        log.info(
            "built the sketch world's assets in %.2f s and cached them in %s", time.perf_counter() - t0, cache.folder()
        )
        return built

    def arrays(self) -> dict[str, np.ndarray]:
        """Every asset as a named array, for the cache (`from_arrays` reads them back)."""
        out = {
            name: getattr(self, name)
            for name in ("profiles", "cloud", "cloud_hi", "water", "mist", "nebula", "rain", "detail", "_city_ids")
        }
        out |= {f"windows{i}": w for i, w in enumerate(self.windows)}
        out |= {f"islands{i}": a for i, a in enumerate(self.islands)}
        out |= {f"stars{i}": a for i, a in enumerate(self.stars)}
        return out

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> Assets:
        self = cls.__new__(cls)
        self.profiles, self._city_ids = a["profiles"], a["_city_ids"]
        self.windows = [a[f"windows{i}"] for i in range(N_LAYERS)]
        self.islands = (a["islands0"], a["islands1"])
        self.cloud, self.cloud_hi, self.water, self.mist = a["cloud"], a["cloud_hi"], a["water"], a["mist"]
        self.nebula, self.rain, self.detail = a["nebula"], a["rain"], a["detail"]
        self.stars = (a["stars0"], a["stars1"], a["stars2"], a["stars3"])
        if self.profiles.shape != (len(BIOME_ORDER), N_LAYERS, PROFILE_LEN):
            raise ValueError(f"terrain profiles of shape {self.profiles.shape}")
        return self

    # -- terrain ---------------------------------------------------------------
    def _profiles(self, rng: np.random.Generator) -> NDArray[np.float32]:
        prof = np.zeros((len(BIOME_ORDER), N_LAYERS, PROFILE_LEN), np.float32)
        city_ids = np.zeros((N_LAYERS, PROFILE_LEN), np.int32)
        for i in range(N_LAYERS):
            far = i == 0
            # grass: distant blue mountains, then rolling hills
            prof[0, i] = (
                _ridged(rng, 700, 0.24) + 0.02
                if far
                else _hills(rng, i, (0.16, 0.14, 0.11, 0.08)[i - 1], 700 - 100 * i)
            )
            if i == 4:
                prof[0, i] = _trees(rng, prof[0, i], 0.004, 0.05, 10, conifer=0.2)
            # desert: mesas far, dunes near
            prof[1, i] = _mesas(rng, 500, 0.14) if i < 2 else _dunes(rng, 420 - 60 * i, (0.12, 0.10, 0.08)[i - 2])
            # mountains: tall ridges, lower and rockier nearer
            prof[2, i] = _ridged(rng, 900 - 140 * i, (0.42, 0.36, 0.26, 0.16, 0.09)[i])
            if i >= 3:
                prof[2, i] = _trees(rng, prof[2, i], 0.02, 0.05, 5)
            # ocean: a low distant coast, then open water
            prof[3, i] = _hills(rng, i, 0.05, 600) - 0.03 if far else -0.6
            # forest: hills wearing firs, bigger trees nearer
            base = _hills(rng, i, (0.12, 0.12, 0.1, 0.08, 0.06)[i], 600)
            prof[4, i] = _trees(
                rng, base, (0.12, 0.1, 0.07, 0.05, 0.035)[i], (0.03, 0.045, 0.06, 0.09, 0.14)[i], (3, 4, 6, 9, 13)[i]
            )
            # city: towers far, low rooftops near
            h, bid = _skyline(
                rng,
                (0.06, 0.05, 0.04, 0.03, 0.02)[i],
                (0.28, 0.22, 0.16, 0.11, 0.07)[i],
                (8, 10, 14, 20, 30)[i],
                (20, 26, 34, 50, 70)[i],
            )
            prof[5, i] = _tile_to(h, PROFILE_LEN)
            city_ids[i] = _tile_to(bid, PROFILE_LEN)
            # space: nothing (sinks out of frame)
            prof[6, i] = -0.8
            # islands (fantasy): mossy hills with round trees and tall peaks far
            base = _ridged(rng, 500, 0.32) if far else _hills(rng, i, 0.1, 500)
            prof[7, i] = _trees(
                rng,
                base,
                (0.02, 0.05, 0.04, 0.03, 0.02)[i],
                (0.03, 0.04, 0.06, 0.08, 0.12)[i],
                (4, 6, 8, 12, 16)[i],
                conifer=0.3,
            )
            # candy: gumdrop hills
            prof[8, i] = _gumdrops(rng, (0.2, 0.15, 0.12, 0.09, 0.07)[i], (90, 70, 55, 45, 40)[i])
            # wasteland: torn ground, craters, broken stumps
            prof[9, i] = _wasteland(rng, i, (0.08, 0.08, 0.07, 0.06, 0.05)[i])
        self._city_ids = city_ids
        return prof

    def _windows(self, rng: np.random.Generator) -> list[NDArray[np.uint8]]:
        """Lit-window codes per city layer, rows counted up from the ground line.

        0 wall, 1 dark window, 2 warm, 3 cool white, 4 cyan neon, 5 magenta neon.
        """
        out = []
        cells = ((2, 3), (3, 4), (3, 5), (4, 6), (6, 8))
        for i in range(N_LAYERS):
            cw, ch = cells[i]
            heights = self.profiles[5, i, :CITY_TILE]
            ids = self._city_ids[i, :CITY_TILE]
            rows = int(REF_H * 0.62)
            y = np.arange(rows)[:, None]
            x = np.arange(CITY_TILE)[None, :]
            # Window grid aligned to each building's left edge.
            starts = np.r_[0, np.nonzero(np.diff(ids))[0] + 1]
            left = np.zeros(CITY_TILE, np.int32)
            left[starts] = starts
            left = np.maximum.accumulate(left)
            col = x - left[None, :]
            is_win = ((col % cw) < max(1, cw - 1)) & ((y % ch) < max(1, ch - 1)) & (col >= 1)
            roof = heights[None, :] * REF_H - 2
            is_win &= y < roof - 1
            is_win &= y > 1
            bh = rng.random((ids.max() + 2, rows // ch + 2))
            per_cell = bh[ids[None, :], y // ch]
            lit_kind = rng.random(ids.max() + 2)  # each building has its own light style
            code = np.ones((rows, CITY_TILE), np.uint8)
            kind = lit_kind[ids][None, :]
            lit = (0.16, 0.2, 0.22, 0.24, 0.26)[i]
            code = np.where(
                per_cell < lit, np.where(kind < 0.55, 2, np.where(kind < 0.8, 3, np.where(kind < 0.9, 4, 5))), 1
            )
            code = np.where(is_win, code, 0).astype(np.uint8)
            # Neon sign bands on some buildings.
            for b in np.nonzero(rng.random(ids.max() + 1) < 0.12)[0]:
                cols = np.nonzero(ids == b)[0]
                if len(cols) < 6:
                    continue
                top = int(heights[cols[0]] * REF_H)
                yy = int(rng.uniform(0.3, 0.85) * top)
                code[max(0, yy - 1) : yy + 1, cols[1] : cols[-1]] = 4 + (b % 2)
            # Vertical neon signs hanging on building faces.
            for b in np.nonzero(rng.random(ids.max() + 1) < 0.18)[0]:
                cols = np.nonzero(ids == b)[0]
                if len(cols) < 4:
                    continue
                top = int(heights[cols[0]] * REF_H)
                length = int(rng.uniform(0.25, 0.6) * top)
                y0 = int(rng.uniform(0.15, 0.4) * top)
                x0 = cols[int(rng.integers(0, len(cols) - 2))]
                wdt = 1 + (i >= 3)
                code[y0 : min(rows, y0 + length), x0 : x0 + wdt] = 4 + int(rng.random() < 0.5)
            out.append(code)
        return out

    def _islands(self, rng: np.random.Generator) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Floating islands: (top, bottom) per column, in fractions of H (top == bottom: none)."""
        top = np.zeros(PROFILE_LEN, np.float32)
        bot = np.zeros(PROFILE_LEN, np.float32)
        x = np.arange(PROFILE_LEN, dtype=np.float32)
        pos = 0.0
        while pos < PROFILE_LEN:
            pos += rng.uniform(120, 380)
            c = pos % PROFILE_LEN
            r = rng.uniform(12, 60)
            y = rng.uniform(0.18, 0.42)
            idx = np.arange(int(c - r) - 1, int(c + r) + 2) % PROFILE_LEN
            d = np.abs(x[idx] - c) / r
            inside = d < 1
            rough = 0.006 * np.sin(x[idx] * 0.9) + 0.004 * np.sin(x[idx] * 2.3)
            t = y - (0.012 + 0.02 * np.sqrt(np.clip(1 - d**2, 0, 1))) + rough
            dd = np.clip(d, 0, 1)
            # Rounded shoulders, a rocky hanging tip, a jagged underside.
            jag = 0.012 * np.abs(np.sin(x[idx] * 0.45) + np.sin(x[idx] * 1.7 + c))
            depth = (r / REF_H) * (0.45 * np.sqrt(1 - dd**2) + 1.1 * (1 - dd) ** 3) + jag * (1 - dd)
            b = y + depth
            top[idx] = np.where(inside, t, top[idx])
            bot[idx] = np.where(inside, b, bot[idx])
        return top, bot

    # -- sky -------------------------------------------------------------------
    def _nebula(self, rng: np.random.Generator) -> NDArray[np.float32]:
        """Gas clouds with bright filaments, dark dust lanes and warm cores."""
        h, w = REF_H, 1024
        blobs = _norm01(spectral_noise(rng, (h, w), 420, beta=3.2))
        fil = 1.0 - np.abs(spectral_noise(rng, (h, w), 160, beta=2.8)) / 2.5
        fil = np.clip(fil, 0, 1) ** 8
        hue = _norm01(spectral_noise(rng, (h, w), 300, beta=3.0))[..., None]
        dust = np.clip(_norm01(spectral_noise(rng, (h, w), 90, beta=2.6)) - 0.45, 0, 1) * 1.6
        dens = np.clip(blobs * 1.7 - 0.6, 0, 1) ** 1.4
        lum = dens * (0.35 + 0.9 * fil) * (1 - 0.75 * dust)
        col = (
            lum[..., None] * (np.array([0.7, 0.16, 0.75]) * hue + np.array([0.08, 0.42, 0.9]) * (1 - hue))
            + (dens**3 * fil)[..., None] * np.array([1.0, 0.6, 0.4]) * 0.8
        )
        nebula: NDArray[np.float32] = np.clip(col, 0, 1).astype(np.float32)
        return nebula

    def _stars(
        self, rng: np.random.Generator
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Stars on a 2048 x 0.75H band: x, y (ref px), brightness, twinkle phase."""
        n = 1400
        x = rng.uniform(0, 2048, n)
        y = rng.uniform(0, 1, n) ** 1.3 * REF_H * 0.95
        mag = (rng.pareto(2.5, n) * 0.25 + 0.15).clip(0, 1.4)
        phase = rng.uniform(0, 2 * np.pi, n)
        return x, y, mag, phase

    def _rain(self, rng: np.random.Generator) -> NDArray[np.uint8]:
        """A tileable 256x256 field of slanted streaks; value = the streak's rank
        (0..254, drawn while rank < amount), 255 = no streak."""
        t = np.full((256, 256), 255, np.uint8)
        for _ in range(1100):
            x0, y0 = rng.integers(0, 256, 2)
            length = int(rng.integers(6, 16))
            rank = int(rng.integers(0, 255))
            ys = (y0 + np.arange(length)) % 256
            xs = (x0 + (np.arange(length) * 0.18).astype(int)) % 256
            t[ys, xs] = np.minimum(t[ys, xs], rank)
        return t


# -- sprites (RGBA float32) ------------------------------------------------------


def _canvas(h: int, w: int) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.zeros((h, w, 4), np.float32), yy, xx


def bird_sprites(scale: float) -> list[NDArray[np.float32]]:
    """Three wing positions of a bird silhouette (alpha only matters)."""
    w, h = max(5, int(14 * scale)), max(4, int(8 * scale))
    out = []
    for lift in (-0.45, 0.0, 0.45):
        img, yy, xx = _canvas(h, w)
        cx, cy = (w - 1) / 2, h * 0.55
        dx = np.abs(xx - cx) / (w / 2)
        wing_y = cy - lift * h * 0.9 * dx - 0.35 * h * dx * (1 - dx) * (1 if lift <= 0 else -0.3)
        a = np.clip(1.2 - np.abs(yy - wing_y) / max(0.8, 0.9 * scale), 0, 1) * (dx < 1)
        body = np.clip(1.5 - np.hypot((xx - cx) / 1.6, (yy - cy) / 1.0) / max(1.0, scale), 0, 1)
        img[..., 3] = np.maximum(a, body)
        out.append(img)
    return out


def plane_sprite(scale: float) -> NDArray[np.float32]:
    w, h = max(12, int(34 * scale)), max(6, int(14 * scale))
    img, yy, xx = _canvas(h, w)
    cy = h * 0.55
    fus = (np.abs(yy - cy) < h * 0.11 + (xx > w * 0.8) * h * 0.05) & (xx > w * 0.08) & (xx < w * 0.97)
    wing = (np.abs(xx - w * 0.5) < w * 0.07 + (cy - yy) * 0.0) & (yy > cy - h * 0.45) & (yy < cy + h * 0.45)
    wing &= np.abs(xx - w * 0.5 - (yy - cy) * 0.4) < w * 0.06
    tail = (xx < w * 0.18) & (yy > cy - h * 0.42) & (yy < cy) & (xx > w * 0.06)
    img[..., 3] = (fus | wing | tail).astype(np.float32)
    img[..., :3] = 0.22
    return img


def balloon_sprite(scale: float, colours: tuple[tuple[float, float, float], ...]) -> NDArray[np.float32]:
    w, h = max(10, int(30 * scale)), max(14, int(44 * scale))
    img, yy, xx = _canvas(h, w)
    cx, cy, r = (w - 1) / 2, h * 0.36, w * 0.46
    env = ((xx - cx) / r) ** 2 + ((yy - cy) / (r * 1.05)) ** 2
    taper = (yy > cy) & (np.abs(xx - cx) < r * (1 - (yy - cy) / (h * 0.42)))
    shape = (env < 1) | (taper & (yy < h * 0.74))
    stripe = ((np.arctan2(xx - cx, r * 1.2) * 6 / np.pi) % len(colours)).astype(int)
    col = np.array(colours, np.float32)[stripe]
    shade = np.clip(1.05 - 0.6 * (xx - cx + r * 0.4) / (2 * r), 0.4, 1.1)[..., None]
    img[..., :3] = col * shade
    img[..., 3] = shape.astype(np.float32)
    basket = (np.abs(xx - cx) < w * 0.1) & (yy > h * 0.84) & (yy < h * 0.97)
    ropes = (yy > h * 0.72) & (yy <= h * 0.84) & (np.abs(np.abs(xx - cx) - w * 0.09) < 0.6)
    img[basket | ropes, :3] = (0.35, 0.22, 0.12)
    img[basket | ropes, 3] = 1.0
    return img


def dragon_sprites(scale: float) -> list[NDArray[np.float32]]:
    w, h = max(20, int(64 * scale)), max(12, int(34 * scale))
    out = []
    for lift in (-0.8, -0.2, 0.5, 0.0):
        img, yy, xx = _canvas(h, w)
        cy = h * 0.55
        body = np.abs(yy - cy - 1.5 * np.sin(xx / w * 6.0)) < (h * 0.07) * (0.4 + (xx / w))
        body &= (xx > w * 0.02) & (xx < w * 0.84)
        head = np.hypot(xx - w * 0.88, yy - cy + h * 0.04) < h * 0.09
        cx = w * 0.55
        dx = (xx - cx) / (w * 0.32)
        tip_y = cy - lift * h * 0.5
        wing = (np.abs(dx) < 1) & (yy > np.minimum(tip_y, cy) - 1) & (yy < np.maximum(tip_y, cy) + 1)
        wing &= np.abs(yy - (cy + (tip_y - cy) * (1 - np.abs(dx) ** 0.7))) < h * 0.22 * (1 - np.abs(dx))
        img[..., 3] = (body | head | wing).astype(np.float32)
        img[..., :3] = 0.08
        out.append(img)
    return out


def planet_sprite(size: int, seed: int, ring: bool) -> NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    w = int(size * (2.3 if ring else 1.0))
    h = int(size * (1.3 if ring else 1.0))
    img, yy, xx = _canvas(h, w)
    cx, cy, r = (w - 1) / 2, (h - 1) / 2, size / 2 - 1
    d = np.hypot(xx - cx, yy - cy) / r
    bands = spectral_noise(rng, (256,), 30, beta=2.0)
    band = bands[np.clip(((yy - cy) / r * 100 + 128).astype(int), 0, 255)]
    base = np.array(
        rng.choice([(0.85, 0.65, 0.45), (0.45, 0.6, 0.85), (0.75, 0.45, 0.7), (0.55, 0.8, 0.7)]), np.float32
    )
    col = base * (0.8 + 0.18 * band[..., None])
    # Light from the upper left, a soft terminator.
    nz = np.sqrt(np.clip(1 - d**2, 0, 1))
    light = np.clip(((-(xx - cx) * 0.6 - (yy - cy) * 0.4) / r + nz * 0.7), 0.03, 1.2)
    disc = np.clip((1 - d) * r, 0, 1)
    img[..., :3] = col * light[..., None]
    img[..., 3] = disc
    if ring:
        ex, ey = (xx - cx) / (r * 2.1), (yy - cy) / (r * 0.42)
        re = np.hypot(ex, ey)
        ring_a = np.clip((re - 0.62) * 30, 0, 1) * np.clip((0.98 - re) * 30, 0, 1)
        ring_a *= 0.6 + 0.3 * np.sin(re * 60)
        behind = (yy < cy) & (d < 1)
        ring_a = np.where(behind, 0, ring_a)
        lit = 1.0 + 0.4 * np.clip(-(xx - cx) / (r * 2), -1, 1)[..., None]  # lit from the left
        ring_col = np.array([0.85, 0.8, 0.7], np.float32) * lit
        a = img[..., 3:4]
        img[..., :3] = img[..., :3] * (1 - ring_a[..., None]) + ring_col * ring_a[..., None]
        img[..., 3] = np.maximum(a[..., 0], ring_a)
    return img


def moon_sprite(size: int, seed: int) -> NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    img, yy, xx = _canvas(size, size)
    c, r = (size - 1) / 2, size / 2 - 1
    d = np.hypot(xx - c, yy - c) / r
    craters = 0.06 * spectral_noise(rng, (size, size), size / 3, beta=2.0)
    img[..., :3] = np.array([0.93, 0.92, 0.86]) * (0.9 + craters[..., None] - 0.15 * d[..., None] ** 2)
    img[..., 3] = np.clip((1 - d) * r, 0, 1)
    return img


def rock_sprite(size: int, seed: int) -> NDArray[np.float32]:
    """A tumbling-rock silhouette: a lumpy outline, lit from the upper left."""
    rng = np.random.default_rng(seed)
    img, yy, xx = _canvas(size, size)
    c = (size - 1) / 2
    ang = np.arctan2(yy - c, xx - c)
    lump = 1.0 + sum(rng.uniform(0.05, 0.14) * np.sin(k * ang + rng.uniform(0, 6.3)) for k in (2, 3, 5))
    r = np.hypot(xx - c, yy - c) / (size / 2 - 1) / lump * 1.1
    nz = np.sqrt(np.clip(1 - r**2, 0, 1))
    light = np.clip((-(xx - c) * 0.6 - (yy - c) * 0.5) / size * 1.6 + nz * 0.6, 0.05, 1.1)
    spots = 0.85 + 0.15 * spectral_noise(rng, (size, size), max(2.0, size / 3), beta=2.0)
    img[..., :3] = np.array([0.45, 0.40, 0.36]) * (light * spots)[..., None]
    img[..., 3] = np.clip((1 - r) * size * 0.5, 0, 1)
    return img


def glow_kernel(radius: int) -> NDArray[np.float32]:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1].astype(np.float32)
    d = np.hypot(xx, yy) / (radius + 0.5)
    kernel: NDArray[np.float32] = (np.clip(1 - d, 0, 1) ** 2).astype(np.float32)
    return kernel
