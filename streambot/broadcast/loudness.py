"""Loudness as streams expect it: measured per EBU R128, levelled, peak-limited.

`LoudnessMeter` follows ITU-R BS.1770-4 and EBU Tech 3341 at 48 kHz:
K-weighting (the standard's two biquads), 100 ms hops, momentary (400 ms),
short-term (3 s) and gated integrated loudness, the last kept as a histogram
of 0.1 LU bins (as libebur128 does) so an all-day show costs constant memory.
The tests hold it against FFmpeg's `ebur128` filter.

`Leveller` is a slow gain (a dB or so per second at most) that brings the
programme to its target loudness, so every world, and the streamer's own
music whatever its mastering, goes out equally loud while a quiet passage
of the story still sounds quieter for a while. `PeakLimiter` is pedalboard's
lookahead brick-wall limiter (JUCE), the last stage before the encoder.
"""
from __future__ import annotations

import math

import numpy as np
import pedalboard
from scipy import signal

RATE = 48_000
HOP = RATE // 10  # 100 ms

# ITU-R BS.1770-4, Annex 1: the pre-filter (a high shelf) and the RLB high-pass at 48 kHz.
K_WEIGHTING = np.array([
    [1.53512485958697, -2.69169618940638, 1.19839281085285, 1.0, -1.69065929318241, 0.73248077421585],
    [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621],
])

WARM_UP_S = 3.0  # programme heard before the leveller moves
_BINS = np.arange(-70.0, 10.0, 0.1)  # lower edges of the integrated-loudness histogram


def lufs(power: float) -> float:
    """Loudness of a K-weighted mean square summed over channels."""
    return -0.691 + 10 * math.log10(power) if power > 0 else -math.inf


class KFilter:
    """K-weighting of a stereo stream, block by block."""

    def __init__(self) -> None:
        self._zi = np.zeros((2, 2, 2))  # sections x channels x state

    def power(self, x: np.ndarray) -> np.ndarray:
        """Per-sample K-weighted power summed over the two channels."""
        y, self._zi = signal.sosfilt(K_WEIGHTING, x, axis=-1, zi=self._zi)
        return np.einsum("cn,cn->n", y, y)


class LoudnessMeter:
    """Momentary, short-term and integrated loudness (LUFS) of what it is fed."""

    def __init__(self, rate: int = RATE) -> None:
        if rate != RATE:
            raise ValueError("the loudness meter works at 48 kHz")
        self._k = KFilter()
        self._acc = 0.0
        self._fill = 0
        self._hops: list[float] = []  # the last 30 hops' mean power
        self._count = np.zeros(len(_BINS), np.int64)  # 400 ms blocks per loudness bin
        self._sum = np.zeros(len(_BINS))  # their summed power

    def add(self, x: np.ndarray) -> float:
        """Measure a block; returns its K-weighted mean power."""
        p = self._k.power(x)
        i, n = 0, len(p)
        while i < n:
            k = min(HOP - self._fill, n - i)
            self._acc += float(p[i:i + k].sum())
            self._fill += k
            i += k
            if self._fill == HOP:
                self._hop(self._acc / HOP)
                self._acc, self._fill = 0.0, 0
        return float(p.mean()) if n else 0.0

    def _hop(self, power: float) -> None:
        self._hops = self._hops[-29:] + [power]
        if len(self._hops) >= 4:  # a 400 ms block every 100 ms (75 % overlap)
            block = sum(self._hops[-4:]) / 4
            loud = lufs(block)
            if loud > -70.0:
                b = min(int((loud + 70.0) * 10), len(_BINS) - 1)
                self._count[b] += 1
                self._sum[b] += block

    @property
    def momentary(self) -> float:
        h = self._hops
        return lufs(sum(h[-4:]) / 4) if len(h) >= 4 else -math.inf

    @property
    def short_term(self) -> float:
        h = self._hops
        return lufs(sum(h) / len(h)) if len(h) >= 4 else -math.inf

    @property
    def integrated(self) -> float:
        """Gated: blocks above -70 LUFS, then those within 10 LU of their mean."""
        count, total = self._count.copy(), self._sum.copy()
        if not count.any():
            return -math.inf
        relative = lufs(total.sum() / count.sum()) - 10.0
        keep = _BINS + 0.1 > relative
        kept = count[keep].sum()
        return lufs(total[keep].sum() / kept) if kept else -math.inf


class Leveller:
    """A slow gain towards a target loudness, applied as a per-sample ramp.

    It learns from what went out (`measure`, the meter's K-weighted power of
    each block after the limiter) divided by the gain it had applied: that is
    the programme's own loudness, with whatever the limiter took off dense,
    peaky music, and it does not depend on the gain itself, so the gain cannot
    chase its own tail. A gated average over `tau_s` (a plain mean while it
    warms up), a slew of `slew_db_s` at most."""

    def __init__(self, target_lufs: float, rate: int = RATE, *, tau_s: float = 10.0, slew_db_s: float = 1.0,
                 max_boost_db: float = 10.0, max_cut_db: float = 24.0) -> None:
        self.target = target_lufs
        self.rate = rate
        self.tau_s = tau_s
        self.slew_db_s = slew_db_s
        self.limits = (-max_cut_db, max_boost_db)
        self._power: float | None = None
        self._heard = 0.0  # seconds of programme measured: the gain waits for a fair estimate
        self._gain2 = 1.0  # the mean squared gain of the last block
        self.active = True
        self.gain_db = 0.0

    def process(self, x: np.ndarray, active: bool = True) -> np.ndarray:
        n = x.shape[1]
        self.active = active
        want = self.gain_db if self._heard < WARM_UP_S else 0.0
        if active and self._power is not None and self._heard >= WARM_UP_S:
            want = min(max(self.target - lufs(self._power), self.limits[0]), self.limits[1])
        step = self.slew_db_s * n / self.rate
        old = self.gain_db
        self.gain_db = old + min(max(want - old, -step), step)
        g0, g1 = 10 ** (old / 20), 10 ** (self.gain_db / 20)
        self._gain2 = (g0 * g0 + g0 * g1 + g1 * g1) / 3  # the mean of a linear ramp, squared
        if g0 == g1:
            return x * np.float32(g0) if g0 != 1.0 else x
        return x * np.linspace(g0, g1, n + 1, dtype=np.float32)[1:]

    def measure(self, power: float, n: int) -> None:
        """The K-weighted mean power of the block `process` returned, as it went out."""
        power /= self._gain2
        dur = n / self.rate
        # Only what is clearly programme counts: fades and silences would pull the gain up.
        if not self.active or lufs(power) <= self.target - 25:
            return
        self._heard += dur
        if self._power is None:
            self._power = power
        else:  # a plain mean while it warms up, then a moving one
            k = max(1 - math.exp(-dur / self.tau_s), dur / self._heard)
            self._power += (power - self._power) * k


class PeakLimiter:
    """pedalboard's lookahead brick-wall limiter, one block in, the same block
    length out (the first block is padded while the lookahead fills)."""

    def __init__(self, ceiling_db: float, rate: int = RATE, *, true_peak: bool = False) -> None:
        self.rate = rate
        self._limiter = pedalboard.BrickwallLimiter(ceiling_db=ceiling_db, release_ms=120.0, lookahead_ms=5.0,
                                                    true_peak=true_peak)

    def process(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[1]
        y = self._limiter.process(np.ascontiguousarray(x, np.float32), self.rate, buffer_size=max(n, 1),
                                  reset=False)
        if y.shape[1] < n:
            y = np.concatenate([np.zeros((2, n - y.shape[1]), np.float32), y], axis=1)
        return y
