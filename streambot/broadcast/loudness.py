"""Loudness as streams expect it: measured per EBU R128, levelled, peak-limited.

`LoudnessMeter` follows ITU-R BS.1770-4 and EBU Tech 3341 at 48 kHz:
K-weighting (the standard's two biquads), 100 ms hops, momentary (400 ms),
short-term (3 s) and gated integrated loudness, the last kept as a histogram
of 0.1 LU bins (as libebur128 does) so an all-day show costs constant memory.
The tests hold it against FFmpeg's `ebur128` filter.

`Leveller` is a slow gain (a dB or so per second at most) that brings the
programme to its target loudness, so every world, and the streamer's own
music whatever its mastering, goes out equally loud while a quiet passage
of the story still sounds quieter for a while. `TruePeakLimiter`, the last
stage before the encoder, holds the true peak (BS.1770-4 Annex 2: the peak
between samples, found by 4x oversampling) under a ceiling: it looks 5 ms
ahead, so the gain is already down when a peak arrives and nothing overshoots.
It is written here on numpy and scipy (BSD) because the maintained limiters
in Python audio libraries are built on JUCE and GPLv3, which an MIT project
cannot ship.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray
from scipy import ndimage, signal

from .sound import ramp_to_one

RATE = 48_000
HOP = RATE // 10  # 100 ms

# ITU-R BS.1770-4, Annex 1: the pre-filter (a high shelf) and the RLB high-pass at 48 kHz.
K_WEIGHTING = np.array(
    [
        [1.53512485958697, -2.69169618940638, 1.19839281085285, 1.0, -1.69065929318241, 0.73248077421585],
        [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621],
    ]
)

WARM_UP_S = 3.0  # programme heard before the leveller moves
_BINS = np.arange(-70.0, 10.0, 0.1)  # lower edges of the integrated-loudness histogram


def lufs(power: float) -> float:
    """Loudness of a K-weighted mean square summed over channels."""
    return -0.691 + 10 * math.log10(power) if power > 0 else -math.inf


class KFilter:
    """K-weighting of a stereo stream, block by block: the two biquads as one
    fourth-order filter (float64 keeps it exact), half the cost of two sections."""

    _B, _A = signal.sos2tf(K_WEIGHTING)

    def __init__(self) -> None:
        self._zi = np.zeros((2, 4))  # channels x state

    def power(self, x: NDArray[np.float32]) -> NDArray[np.float64]:
        """Per-sample K-weighted power summed over the two channels."""
        y: NDArray[np.float64]
        y, self._zi = signal.lfilter(self._B, self._A, np.asarray(x, np.float64), axis=-1, zi=self._zi)
        power: NDArray[np.float64] = np.einsum("cn,cn->n", y, y)
        return power


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

    def add(self, x: NDArray[np.float32]) -> float:
        """Measure a block; returns its K-weighted mean power."""
        p = self._k.power(x)
        i, n = 0, len(p)
        while i < n:
            k = min(HOP - self._fill, n - i)
            self._acc += float(p[i : i + k].sum())
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

    def __init__(
        self,
        target_lufs: float,
        rate: int = RATE,
        *,
        tau_s: float = 10.0,
        slew_db_s: float = 1.0,
        max_boost_db: float = 10.0,
        max_cut_db: float = 24.0,
    ) -> None:
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

    def process(self, x: NDArray[np.float32], active: bool = True) -> NDArray[np.float32]:
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
        ramp = ramp_to_one(n) * np.float32(g1 - g0)
        ramp += np.float32(g0)
        return x * ramp

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


# ITU-R BS.1770-4, Annex 2: the 48-tap interpolation filter of the true-peak
# meter as its four phases; phase p, applied to x[n-11..n] (the oldest sample
# first), is the signal at n - 5.875 + p/4.
TRUE_PEAK_PHASES = (
    np.array(
        [
            [
                0.0017089843750,
                0.0109863281250,
                -0.0196533203125,
                0.0332031250000,
                -0.0594482421875,
                0.1373291015625,
                0.9721679687500,
                -0.1022949218750,
                0.0476074218750,
                -0.0266113281250,
                0.0148925781250,
                -0.0083007812500,
            ],
            [
                -0.0291748046875,
                0.0292968750000,
                -0.0517578125000,
                0.0891113281250,
                -0.1665039062500,
                0.4650878906250,
                0.7797851562500,
                -0.2003173828125,
                0.1015625000000,
                -0.0582275390625,
                0.0330810546875,
                -0.0189208984375,
            ],
            [
                -0.0189208984375,
                0.0330810546875,
                -0.0582275390625,
                0.1015625000000,
                -0.2003173828125,
                0.7797851562500,
                0.4650878906250,
                -0.1665039062500,
                0.0891113281250,
                -0.0517578125000,
                0.0292968750000,
                -0.0291748046875,
            ],
            [
                -0.0083007812500,
                0.0148925781250,
                -0.0266113281250,
                0.0476074218750,
                -0.1022949218750,
                0.9721679687500,
                0.1373291015625,
                -0.0594482421875,
                0.0332031250000,
                -0.0196533203125,
                0.0109863281250,
                0.0017089843750,
            ],
        ]
    )[:, ::-1]
    .T.astype(np.float32)
    .copy()
)  # (12 taps, oldest first) x (4 phases)
_SPAN = 6  # samples each side of a point that its interpolation reads
# No interpolated point exceeds the largest sample it reads times this sum of
# the largest phase's |taps|: only windows with a sample above ceiling / it
# need interpolating.
_TAP_SUM = float(np.abs(TRUE_PEAK_PHASES).sum(axis=0).max())
_PHASES_BY_ROW = np.ascontiguousarray(TRUE_PEAK_PHASES.T)  # (4, 12): a matrix product's fast layout


class TruePeakLimiter:
    """A look-ahead brick-wall limiter on the true peak; stereo-linked.

    For each sample, the cut it needs (1 - ceiling / peak, linear) is that of
    the largest of the sample and the interpolated points within half a
    sample of it. The cut is the most any sample in the next `lookahead`
    needs (held), let go with an exponential `release`, then averaged over the
    lookahead: that average ramps in before a peak and is, at the peak, at
    least what the peak needs, because every value averaged saw it. The
    signal goes out `delay` samples late, so every gain meets its own sample.
    """

    def __init__(
        self, ceiling_db: float, rate: int = RATE, *, lookahead_s: float = 0.005, release_s: float = 0.12
    ) -> None:
        self.rate = rate
        self.ceiling = 10 ** (ceiling_db / 20)
        self._look = 2 * max(1, round(lookahead_s * rate / 2))  # even: the hold window is centred
        self._fall = math.exp(-1 / (release_s * rate))  # per sample, on the cut
        self._decay: dict[int, NDArray[np.float32]] = {}  # fall ** k per block length
        self.delay = self._look + _SPAN + 1
        self._x = np.zeros((2, _SPAN + self.delay), np.float32)  # input not yet out, and context
        self._env = np.zeros(self._look - 1)  # the last cuts, for the average
        self._level = 0.0  # the last cut, where the release goes on from

    def process(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """A stereo block in, as many samples out, `delay` samples behind."""
        n = x.shape[1]
        if n > self.rate:  # the release's running maximum is scaled per block: keep blocks short
            return np.concatenate([self.process(x[:, i : i + self.rate]) for i in range(0, n, self.rate)], axis=1)
        xx = np.concatenate([self._x, np.asarray(x, np.float32)], axis=1)
        self._x = xx[:, n:]
        out = xx[:, _SPAN : _SPAN + n]
        resting = self._level == 0.0 and not self._env.any()
        # 1. the true peak of each sample from the first going out to the last the lookahead sees
        m = n + self._look + 1
        sample = np.abs(xx).max(axis=0)
        loud = sample > self.ceiling / _TAP_SUM
        if resting and not loud.any():
            return out.copy()
        # windows xx[r:r + 12] holding a loud sample (the mask spread over 2, 4, 8, then 12 samples)
        spread = loud[:-1] | loud[1:]
        spread = spread[:-2] | spread[2:]
        spread = spread[:-4] | spread[4:]
        rows = np.flatnonzero(spread[:-4] | spread[4:])
        between = np.zeros(m + 1, np.float32)  # the largest interpolated point in (r + 5, r + 6)
        if len(rows) > m // 4:  # most windows: interpolate them all, as 12 shifted copies of the block
            shifted = np.ascontiguousarray(sliding_window_view(xx, m + 1, axis=1))  # (2, 12, m + 1)
            points = _PHASES_BY_ROW @ shifted  # (2, 4, m + 1): channel, phase, window
            between = np.abs(points, out=points).reshape(4 * len(xx), -1).max(axis=0)
        elif len(rows):
            windows = np.take(xx, rows[:, None] + np.arange(2 * _SPAN), axis=1).reshape(-1, 2 * _SPAN)
            between[rows] = np.abs(_PHASES_BY_ROW @ windows.T).max(axis=0).reshape(2, -1).max(axis=0)
        peak = np.maximum(sample[_SPAN : _SPAN + m], np.maximum(between[:-1], between[1:]))
        over = peak > self.ceiling
        if resting and not over.any():
            return out.copy()
        need = 1.0 - self.ceiling / np.maximum(peak, self.ceiling)  # 0 where nothing is over
        # 2. held over the lookahead, released exponentially
        half = self._look // 2
        decay = self._decay.get(n)
        if decay is None:
            decay = self._decay[n] = self._fall ** np.arange(n)
        if over.any():
            held = ndimage.maximum_filter1d(need, self._look + 1)[half : half + n]
            env = decay * np.maximum(self._level * self._fall, np.maximum.accumulate(held / decay))
        else:  # nothing new to catch: the last cut goes on letting go
            env = decay * (self._level * self._fall)
        # 3. averaged over the lookahead: the ramp
        run = np.concatenate([self._env, env])
        total = np.concatenate([[0.0], np.cumsum(run)])
        cut: NDArray[np.float64] = (total[self._look :] - total[: -self._look]) / self._look
        self._env = run[-(self._look - 1) :]
        if env[-1] < 1e-7 and self._env.max() < 1e-7:  # let go: back to passing samples through
            self._env[:] = 0.0
            self._level = 0.0
        else:
            self._level = float(env[-1])
        return out * (1.0 - cut).astype(np.float32)
