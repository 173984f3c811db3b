"""Small pieces of sound both sides of the soundtrack's process use: the rate
and block, what the process is given (`SoundtrackSettings`), a block's linear
fade, and the weather beds.

Nothing here imports scipy: the broadcast's process fills its gaps with these
beds (`audio_feed.AudioFeed`) while the soundtrack itself (`audio.Soundtrack`)
is made in a process of its own.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from ..world.base import Ambience

if TYPE_CHECKING:
    from ..config import MusicSettings

RATE = 48_000
BLOCK = RATE // 10  # 100 ms, the loudness meter's hop


@dataclass(frozen=True)
class SoundtrackSettings:
    """What the child needs to build the soundtrack (`audio.Soundtrack`'s arguments)."""

    music: MusicSettings
    seed: int = 0
    music_dir: Path | None = None  # the streamer's folder of music (checked at start-up)
    crossfade_s: float = 4.0
    loudness_lufs: float = -15.0
    true_peak_dbtp: float = -1.0
    volume: float = 1.0
    music_on: bool = True
    block: int = BLOCK


@functools.lru_cache(maxsize=8)
def ramp_to_one(n: int) -> NDArray[np.float32]:
    """(1..n) / n, float32: a block's linear fade, kept per block length (read-only)."""
    ramp = np.arange(1, n + 1, dtype=np.float32) / np.float32(n)
    ramp.flags.writeable = False
    return ramp


def _shaped_noise(n: int, rng: np.random.Generator, lo: float, hi: float, rate: int) -> NDArray[np.float32]:
    """A seamless loop of noise band-limited to lo..hi Hz (made once, read cyclically)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    gain = np.exp(-0.5 * (np.log(np.maximum(freqs, 1.0) / np.sqrt(lo * hi)) / np.log(hi / lo)) ** 2)
    noise = np.fft.irfft(spec * gain, n)
    return (noise / (float(np.abs(noise).max()) + 1e-9)).astype(np.float32)


class Beds:
    """Wind and rain: loops of shaped noise whose levels glide after the world's
    ambience (a ~3 s time constant), with slow gusts. `loop`: samples in each
    loop (6 s by default; a gap filler takes a shorter one, which costs a
    quarter of the time to make)."""

    def __init__(self, rate: int = RATE, seed: int = 0, loop: int | None = None) -> None:
        self.rate = rate
        rng = np.random.default_rng(seed + 1)
        loop = loop or rate * 6
        self._wind = np.stack([_shaped_noise(loop, rng, 80, 600, rate) for _ in range(2)])
        self._rain = np.stack([_shaped_noise(loop, rng, 2500, 9000, rate) for _ in range(2)])
        self._level = np.array([0.2, 0.0])  # wind, rain
        self._t = 0  # position in the loops
        self._clock = 0  # samples so far, for the gusts

    def render(self, n: int, ambience: Ambience) -> NDArray[np.float32]:
        target = np.array([ambience.wind, ambience.rain])
        start = self._level.copy()
        self._level += (target - self._level) * (1.0 - math.exp(-n / (3.0 * self.rate)))
        if max(start.max(), self._level.max()) <= 1e-4:
            out = np.zeros((2, n), np.float32)
        else:
            ramp = ramp_to_one(n)
            gusts = [0.6 + 0.4 * math.sin(t * 2 * math.pi / (self.rate * 7.3)) for t in (self._clock, self._clock + n)]
            g0, g1 = 0.16 * start[0] * gusts[0], 0.16 * self._level[0] * gusts[1]  # slow: a line per block
            i = (
                np.arange(self._t, self._t + n) % self._wind.shape[1]
                if self._t + n > self._wind.shape[1]
                else slice(self._t, self._t + n)
            )
            out = self._wind[:, i] * (ramp * np.float32(g1 - g0) + np.float32(g0))
            r0, r1 = 0.11 * start[1], 0.11 * self._level[1]
            if max(r0, r1) > 0:
                out += self._rain[:, i] * (ramp * np.float32(r1 - r0) + np.float32(r0))
        self._t = (self._t + n) % self._wind.shape[1]
        self._clock += n
        return out
