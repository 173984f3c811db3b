"""The band's studio effects: a reverb and a tempo echo, streamed block by block.

Both are written here on numpy and scipy (BSD) rather than taken from an
audio-plugin library: the maintained Python one with these effects is built
on JUCE and GPLv3, which an MIT project cannot ship. They are small
recursive networks whose every delay is longer than the stretch of samples
processed at once, so each block runs as a few array operations with no
per-sample Python loop, and the output does not depend on how the stream is
cut into blocks.

`Reverb` is a feedback delay network (Jot's design): eight delay lines of
33 to 67 ms, mixed through an orthogonal (Hadamard) matrix, each with the
gain that makes the tail fall 60 dB in the room's T60 and a two-tap
low-pass that makes the highs die sooner, as in a real room. Mono in,
stereo out: the two outputs read the lines with orthogonal signs, so they are
decorrelated and the reverb is wide without a second network. Its decay
times and wet level follow the Freeverb-style room of the same size.

`Echo` is a feedback delay: each repeat is the last one, `feedback` quieter.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import hadamard

# Prime lengths (at 48 kHz) from 33 to 67 ms: no two lines share a period,
# so their echoes do not pile up into a pitch; the shortest sets how much one
# pass may process (a 100 ms block in three).
_DELAYS_48K = (1601, 1777, 1973, 2161, 2381, 2633, 2903, 3203)
_LINES = len(_DELAYS_48K)
# The low-pass in each line, two taps (now, the sample before): unity at DC,
# 0.5 at Nyquist, so the highs die sooner than the lows.
_DAMPING = (0.75, 0.25)
# Signs of the input into each line and of each line in the left output:
# chosen so both outputs carry the same energy (within 0.2 dB) from the first echo on.
_FEED = (1, 1, 1, 1, -1, 1, 1, -1)
_LEFT = (-1, -1, 1, 1, 1, 1, 1, -1)


def room_t60(room: float) -> float:
    """T60 in seconds of a room size 0..1: 1.0 s at 0.35, 2.7 s at 0.8, 5 s at 0.92."""
    return 0.09375 / -math.log10(0.7 + 0.28 * min(max(room, 0.0), 1.0))


class Reverb:
    """A room's late reverberation: mono in, stereo out, block by block.

    The wet level grows with the room (a hall sounds fuller than a booth):
    white noise comes out with 0.86 * T60**0.45 times its power per channel."""

    def __init__(self, room: float, rate: int = 48_000) -> None:
        self.rate = rate
        self.t60 = room_t60(room)
        self.delays = np.array([round(d * rate / 48_000) for d in _DELAYS_48K])
        # Per-line gain so every path loses 60 dB in T60 seconds, whatever its length.
        gain = 10.0 ** (-3.0 * self.delays / (rate * self.t60))
        hadamard_mix = hadamard(_LINES) / math.sqrt(_LINES)
        feed, left = np.array(_FEED, float), np.array(_LEFT, float)
        right = left * np.resize([1.0, -1.0], _LINES)  # orthogonal to the left taps
        # The tail's energy per unit of input, averaged over frequency (the lines
        # taken as uncorrelated), sets the output taps for the wanted wet level.
        w = np.linspace(0, np.pi, 512)
        lp2 = np.abs(_DAMPING[0] + _DAMPING[1] * np.exp(-1j * w)) ** 2
        tail = _LINES * float(np.mean(1.0 / (1.0 - float(np.mean(gain**2)) * lp2)))
        out = np.stack([left, right]) * math.sqrt(0.86 * self.t60**0.45 / tail)
        # A pass: the stereo output reads the lines; what the lines take in is
        # the lines mixed, damped and decayed (`_now` on each line's sample and
        # the input, `_before` on the sample before it: the low-pass's second tap).
        self._out = out.astype(np.float32)
        self._now = np.zeros((_LINES, _LINES + 1), np.float32)
        self._now[:, :_LINES] = hadamard_mix * (gain * _DAMPING[0])
        self._now[:, _LINES] = feed
        self._before = (hadamard_mix * (gain * _DAMPING[1])).astype(np.float32)
        # Each line's input is written where it will come out (delay samples on),
        # so one pass reads every line's output as one slice: columns are time.
        self._chunk = int(self.delays.min())  # a pass reads only what earlier passes wrote
        longest = int(self.delays.max())
        self._keep = longest + 2  # the sample before now, now, and what is written ahead
        self._buf = np.zeros((_LINES + 1, self._keep + 8 * self._chunk), np.float32)  # the lines, then the input
        self._w = 1  # now

    def process(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """`x` mono, shape (n,); returns the wet signal, shape (2, n), float32."""
        n = len(x)
        out = np.empty((2, n), np.float32)
        buf = self._buf
        i = 0
        while i < n:
            k = min(self._chunk, n - i)
            w = self._w
            if w + k + self._keep > buf.shape[1]:  # move the present and what is ahead back to the front
                buf[:, : self._keep] = buf[:, w - 1 : w - 1 + self._keep]
                w = 1
            buf[_LINES, w : w + k] = x[i : i + k]
            out[:, i : i + k] = self._out @ buf[:_LINES, w : w + k]
            y = self._now @ buf[:, w : w + k]
            y += self._before @ buf[:_LINES, w - 1 : w - 1 + k]
            for j, at in enumerate(self.delays + w):  # each line's input, where it will come out
                buf[j, at : at + k] = y[j]
            self._w = w + k
            i += k
        return out


class Echo:
    """A feedback delay: y[t] = x[t - d] + feedback * y[t - d]."""

    def __init__(self, delay_s: float, feedback: float, rate: int = 48_000) -> None:
        if not 0 <= feedback < 1:
            raise ValueError("an echo's feedback must be at least 0 and below 1")
        self.delay = max(1, round(delay_s * rate))
        self.feedback = feedback
        self._line = np.zeros(self.delay, np.float32)  # what will come out, the oldest first
        self._r = 0

    def process(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """`x` mono, shape (n,); returns the echoes alone, shape (n,), float32."""
        n = len(x)
        out = np.empty(n, np.float32)
        i = 0
        while i < n:  # a pass at most one delay long, so it reads only what is written
            k = min(self.delay - self._r, n - i)
            y = self._line[self._r : self._r + k].copy()
            out[i : i + k] = y
            self._line[self._r : self._r + k] = x[i : i + k] + self.feedback * y
            self._r = (self._r + k) % self.delay
            i += k
        return out
