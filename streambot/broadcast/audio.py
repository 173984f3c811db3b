"""The soundtrack: a calm procedural ambient score that follows the world's mood.

A slow chord progression of soft detuned voices (major when the world is
bright and warm, minor when it is dark or tense), a bed of wind and rain
noise whose levels follow the weather, all generated block by block with
continuous phase so there are no clicks. Mood changes glide over seconds.
Silence (`Silence`) is the fallback: the track is never missing.
"""
from __future__ import annotations

import numpy as np

from ..world.base import Ambience

# Semitone offsets from the root for each chord of the two progressions.
MAJOR = [(0, 4, 7, 11), (5, 9, 12, 16), (-3, 0, 4, 7), (7, 11, 14, 17)]  # Imaj7 IVmaj7 vi V
MINOR = [(0, 3, 7, 10), (-4, 0, 3, 7), (-7, -3, 0, 3), (-2, 2, 5, 9)]  # i VI iv VII
DETUNE = np.array([0.997, 1.0, 1.003])  # a slight chorus


def _shaped_noise(n: int, rng: np.random.Generator, lo: float, hi: float, rate: int) -> np.ndarray:
    """A seamless loop of noise band-limited to lo..hi Hz (made once, read cyclically)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    gain = np.exp(-0.5 * (np.log(np.maximum(freqs, 1.0) / np.sqrt(lo * hi)) / np.log(hi / lo)) ** 2)
    noise = np.fft.irfft(spec * gain, n)
    return (noise / (np.abs(noise).max() + 1e-9)).astype(np.float32)


class Soundtrack:
    def __init__(self, rate: int = 48_000, seed: int = 0, volume: float = 0.5) -> None:
        self.rate = rate
        self.volume = volume
        rng = np.random.default_rng(seed)
        self.root_hz = 110.0 * 2 ** (rng.integers(0, 5) / 12)  # A2 .. C#3
        self.chord_s = 8.0
        self._t = 0  # samples generated so far
        self._phase = np.zeros((2, 4, 3), np.float64)  # [major/minor][voice][detune]
        loop = rate * 6
        self._wind = np.stack([_shaped_noise(loop, rng, 80, 600, rate) for _ in range(2)])
        self._rain = np.stack([_shaped_noise(loop, rng, 2500, 9000, rate) for _ in range(2)])
        self._mood = np.array([0.5, 0.5, 0.2, 0.2, 0.0])  # smoothed ambience
        self._pan = np.array([0.3, 0.7, 0.45, 0.6])

    def render(self, n: int, ambience: Ambience | None = None) -> np.ndarray:
        """The next `n` stereo samples, float32, shape (2, n)."""
        a = ambience or Ambience()
        target = np.array([a.brightness, a.warmth, a.tension, a.wind, a.rain])
        # Glide towards the new mood with a ~3 s time constant.
        k = 1.0 - np.exp(-n / (3.0 * self.rate))
        start = self._mood.copy()
        self._mood += (target - self._mood) * k
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        mood = start[:, None] + (self._mood - start)[:, None] * ramp  # per-sample

        t = self._t + np.arange(n)
        chord_pos = t / (self.rate * self.chord_s)
        chord = np.floor(chord_pos).astype(int)
        frac = chord_pos - chord
        # Glide to the next chord over the last quarter of each one.
        xf = np.clip((frac - 0.75) / 0.25, 0.0, 1.0)
        minor_w = np.clip((mood[2] - 0.5 * mood[0] + 0.25), 0.0, 1.0)
        out = np.zeros((2, n), np.float32)
        for m, table in enumerate((MAJOR, MINOR)):
            weight = (1.0 - minor_w) if m == 0 else minor_w
            if float(weight.max()) < 1e-3:
                self._advance(m, table, chord, xf, n)
                continue
            out += self._voices(m, table, chord, xf, n) * weight
        # A slow swell so the pad breathes.
        swell = 0.75 + 0.25 * np.sin(2 * np.pi * t / (self.rate * 11.0))
        out *= (0.4 * swell).astype(np.float32)
        i = (self._t + np.arange(n)) % self._wind.shape[1]
        gust = 0.6 + 0.4 * np.sin(2 * np.pi * t / (self.rate * 7.3))
        out += self._wind[:, i] * (0.12 * mood[3] * gust).astype(np.float32)
        out += self._rain[:, i] * (0.08 * mood[4]).astype(np.float32)
        self._t += n
        return np.tanh(out * 1.2 * self.volume * 2).astype(np.float32)

    def _freqs(self, table, chord: np.ndarray, voice: int) -> np.ndarray:
        cur = np.array([c[voice] for c in table])[chord % len(table)]
        return self.root_hz * 2 ** (cur / 12)

    def _glide(self, table, chord: np.ndarray, xf: np.ndarray, voice: int) -> np.ndarray:
        """Per-sample frequency of `voice`, gliding to the next chord as xf goes 0 -> 1."""
        f_now, f_next = self._freqs(table, chord, voice), self._freqs(table, chord + 1, voice)
        return f_now * (f_next / f_now) ** xf

    def _voices(self, m: int, table, chord, xf, n) -> np.ndarray:
        """Four voices that glide (in pitch) from each chord to the next: one
        phase accumulator per voice, so the waveform never jumps."""
        out = np.zeros((2, n), np.float32)
        for v in range(4):
            f = self._glide(table, chord, xf, v)
            for d, detune in enumerate(DETUNE):
                ph = self._phase[m, v, d] + 2 * np.pi * np.cumsum(f * detune) / self.rate
                self._phase[m, v, d] = ph[-1] % (2 * np.pi)
                # Two soft harmonics: warmer than a sine, no harsh edges.
                s = np.sin(ph) + 0.25 * np.sin(2 * ph) + 0.08 * np.sin(3 * ph)
                out[0] += (s * (1 - self._pan[v])).astype(np.float32)
                out[1] += (s * self._pan[v]).astype(np.float32)
        return out / 6.0

    def _advance(self, m: int, table, chord, xf, n) -> None:
        """Keep a silent progression's phases moving, so it fades in cleanly."""
        for v in range(4):
            f = self._glide(table, chord, xf, v)
            self._phase[m, v] = (self._phase[m, v] + 2 * np.pi * np.sum(f) * DETUNE / self.rate) % (
                2 * np.pi
            )


class Silence:
    """The fallback track: digital silence, still a valid AAC stream."""

    def __init__(self, rate: int = 48_000) -> None:
        self.rate = rate

    def render(self, n: int, ambience: Ambience | None = None) -> np.ndarray:
        return np.zeros((2, n), np.float32)


def samples_for_tick(index: int, fps: int, rate: int) -> int:
    """Audio samples that belong with video frame `index` (exact over any run)."""
    return (index + 1) * rate // fps - index * rate // fps
