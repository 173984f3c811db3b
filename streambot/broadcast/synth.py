"""The soundtrack's instruments: a note is a tone under an envelope.

A note's *tone* is everything but its envelope: oscillators, filters, and
modulations timed from the moment the key went down. It does not depend on
how long the key is held, so the band keeps one `Tone` per instrument and
pitch, renders it in quarter-second chunks only as far as a playing note
has reached, and every later note of that pitch, whatever its length or
the tempo, reads the same samples. The *envelope* (attack, decay, sustain
while held, release) is computed for each block from the note's gate. A
held eight-second chord thus costs a quarter second of rendering when it
starts and the rest spread over its eight seconds, once per pitch.

Oscillators read single-cycle band-limited tables (harmonics up to 20 kHz
only, so bright waves do not alias) with a 32-bit fixed-point phase that
wraps by itself: a multiply, a shift and a lookup per sample. Filters are
scipy's second-order sections with their state carried from chunk to chunk.
Drums are one-shots made once.

Every note starts and ends at zero (an attack of at least 2 ms, a release
that reaches silence, a last 3 ms taper), so a note can never click,
wherever it starts or stops.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
from numpy.typing import NDArray
from scipy import signal

TAU = 2 * np.pi
# Samples in either float precision: filters run in float64, wavetables and envelopes are float32.
Signal: TypeAlias = NDArray[np.floating[Any]]
Pass = Literal["lowpass", "highpass", "bandpass"]  # the Butterworth shapes the instruments use

CHUNK = 12_000  # samples a tone grows by at a time: a quarter second at 48 kHz


def hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


@functools.lru_cache(maxsize=256)
def _sos(kind: Pass, cutoff: float | tuple[float, float], rate: int, order: int = 2) -> NDArray[np.float64]:
    nyq = rate / 2
    wn: float | tuple[float, float]
    if isinstance(cutoff, tuple):
        wn = (max(20.0, cutoff[0]) / nyq, min(cutoff[1], 0.45 * rate) / nyq)
    else:
        wn = min(max(20.0, cutoff), 0.45 * rate) / nyq
    return signal.butter(order, wn, btype=kind, output="sos")


def lowpass(x: Signal, cutoff: float, rate: int, order: int = 2) -> Signal:
    return signal.sosfilt(_sos("lowpass", round(cutoff, 1), rate, order), x)


def highpass(x: Signal, cutoff: float, rate: int, order: int = 2) -> Signal:
    return signal.sosfilt(_sos("highpass", round(cutoff, 1), rate, order), x)


def bandpass(x: Signal, lo: float, hi: float, rate: int, order: int = 2) -> Signal:
    return signal.sosfilt(_sos("bandpass", (round(lo, 1), round(hi, 1)), rate, order), x)


class Filter:
    """A Butterworth filter whose state runs on from one chunk to the next.

    A single second-order section runs through `lfilter` (the same recursion,
    half the cost of `sosfilt`); more sections stay cascaded, for precision."""

    def __init__(self, kind: Pass, cutoff: float | tuple[float, float], rate: int, order: int = 2) -> None:
        key = (round(cutoff[0], 1), round(cutoff[1], 1)) if isinstance(cutoff, tuple) else round(cutoff, 1)
        self._sos = _sos(kind, key, rate, order)
        self._zi = np.zeros((self._sos.shape[0], 2))
        self._biquad = (self._sos[0, :3], self._sos[0, 3:]) if len(self._sos) == 1 else None

    def __call__(self, x: Signal) -> Signal:
        y: Signal
        if self._biquad is not None:
            y, self._zi[0] = signal.lfilter(*self._biquad, x, zi=self._zi[0])
            return y
        y, self._zi = signal.sosfilt(self._sos, x, zi=self._zi)
        return y


# -- oscillators --------------------------------------------------------------------------

TABLE_BITS = 12
TABLE = 1 << TABLE_BITS
_SHIFT = np.uint32(32 - TABLE_BITS)  # the top bits of the phase index the table
_CYCLE = 2.0**32  # one cycle of the fixed-point phase


@functools.lru_cache(maxsize=512)
def wavetable(shape: str, freq: float, rate: int) -> Signal:
    """One cycle of `shape` (sine, saw, pulse30, soft) band-limited for `freq`."""
    top = max(1, min(TABLE // 2 - 1, int(min(20_000.0, 0.45 * rate) / max(freq, 1.0))))
    k = np.arange(1, top + 1)
    spec = np.zeros(TABLE // 2 + 1, complex)
    if shape == "sine":
        spec[1] = 1.0
    elif shape == "soft":  # two quiet harmonics: warmer than a sine, no edge
        spec[1:4] = (1.0, 0.25, 0.08)
    elif shape == "saw":
        spec[1 : top + 1] = 1.0 / k
    elif shape == "pulse30":
        spec[1 : top + 1] = np.sin(np.pi * k * 0.3) / k
    else:
        raise ValueError(f"no wave named {shape!r}")
    cycle = np.fft.irfft(-1j * spec, TABLE)  # sines, in phase at zero
    return (cycle / float(np.abs(cycle).max())).astype(np.float32)


def table_for(shape: str, freq: float, rate: int) -> Signal:
    semitone = round(12 * np.log2(max(freq, 1.0) / 440.0))  # one table serves a semitone
    return wavetable(shape, 440.0 * 2 ** ((semitone + 0.5) / 12), rate)


class Osc:
    """A wavetable oscillator, rendered chunk after chunk from the note's start.

    vibrato = (rate Hz, depth as a fraction of the pitch, delay s), faded in
    over 0.4 s after its delay; `start` is the phase at the first sample, in cycles."""

    def __init__(
        self,
        shape: str,
        freq: float,
        rate: int,
        vibrato: tuple[float, float, float] = (0.0, 0.0, 0.0),
        start: float = 0.0,
    ) -> None:
        self.rate = rate
        self.table = table_for(shape, freq, rate)
        self._step = freq / rate * _CYCLE
        self._inc = np.uint32(round(self._step) % 2**32)
        self._start = np.uint32(round(start % 1.0 * _CYCLE) % 2**32)
        self.vibrato = vibrato
        self._reached = int(self._start)  # the phase at the next sample, with vibrato

    def phase(self, i0: int, k: int) -> NDArray[np.uint32]:
        """Fixed-point phases (uint32, a cycle is 2**32) of samples i0..i0+k."""
        v_rate, depth, delay = self.vibrato
        if not depth:
            return np.arange(i0, i0 + k, dtype=np.uint32) * self._inc + self._start
        t = np.arange(i0, i0 + k) / self.rate
        inc = (self._step * (1.0 + depth * np.clip((t - delay) / 0.4, 0.0, 1.0) * np.sin(TAU * v_rate * t))).astype(
            np.int64
        )
        ph = np.cumsum(inc) - inc + self._reached  # the first sample is where the last chunk left off
        self._reached = int(ph[-1] + inc[-1]) & 0xFFFFFFFF
        return (ph & 0xFFFFFFFF).astype(np.uint32)

    def read(self, ph: NDArray[np.uint32], table: Signal | None = None) -> Signal:
        out: Signal = (self.table if table is None else table)[ph >> _SHIFT]
        return out

    def __call__(self, i0: int, k: int) -> Signal:
        return self.read(self.phase(i0, k))


# -- envelopes -------------------------------------------------------------------------------

_SERIES = 48_000  # the longest run of an exponential kept ready


@functools.lru_cache(maxsize=128)
def _falling(tau: float) -> Signal:
    return np.exp(-np.arange(_SERIES) / tau).astype(np.float32)


def _exp_run(start: int, k: int, tau: float) -> Signal:
    """exp(-(start + j) / tau) for j < k: a slice of a kept series times a constant,
    far cheaper per block than evaluating exp for every sample."""
    if k > _SERIES:
        return np.exp(-(start + np.arange(k)) / tau)
    return _falling(tau)[:k] * np.float32(math.exp(-start / tau))


@dataclass(frozen=True)
class ADSR:
    """Attack, decay to sustain while the key is held, then a release that falls
    60 dB and a last 3 ms taper to exactly zero. Times in seconds."""

    attack: float
    decay: float
    sustain: float
    release: float

    def length(self, gate: int, rate: int) -> int:
        return gate + int(self.release * rate)

    def values(self, i0: int, k: int, gate: int, rate: int) -> Signal:
        """Samples i0..i0+k of the envelope of a key held `gate` samples."""
        a, d, r = _times(self, rate)
        s = self.sustain
        end = gate + r
        i1 = i0 + k
        if a <= i0 and i1 <= gate:  # the usual block of a held note: all decay or sustain
            if i0 - a > 40 * d:
                return np.full(k, s, np.float32)
            out = _exp_run(i0 - a, k, d)
            out *= np.float32(1 - s)
            out += np.float32(s)
            return out
        out = np.zeros(k, np.float32)
        lo, hi = i0, min(i1, a, gate)  # the attack
        if hi > lo:
            out[: hi - lo] = np.arange(lo + 1, hi + 1) / a
        lo, hi = max(i0, a), min(i1, gate)  # the decay, then the sustain
        if hi > lo:
            out[lo - i0 : hi - i0] = s if lo - a > 40 * d else s + (1 - s) * _exp_run(lo - a, hi - lo, d)
        lo, hi = max(i0, gate), min(i1, end)  # the release, from where the key let go
        if hi > lo:
            level = gate / a if gate <= a else s + (1 - s) * math.exp(-(gate - 1 - a) / d)
            out[lo - i0 : hi - i0] = level * _exp_run(lo - gate, hi - lo, max(r, 1) / 6.9)
        _taper(out, i0, end, rate)
        return out


@functools.lru_cache(maxsize=64)
def _times(env: ADSR, rate: int) -> tuple[int, float, int]:
    """An envelope's attack (at least 2 ms) and release in samples, its decay's time constant."""
    return max(int(max(env.attack, 0.002) * rate), 1), max(env.decay, 1e-3) * rate, int(env.release * rate)


def strike(i0: int, k: int, n: int, rate: int, decay: float, attack: float = 0.002) -> Signal:
    """Samples i0..i0+k of a struck or plucked body `n` long: a short attack, an exponential decay."""
    s = np.arange(i0, i0 + k)
    env = np.exp(-s / (decay * rate))
    a = min(n, max(1, int(attack * rate)))
    if i0 < a:
        m = min(k, a - i0)
        env[:m] *= (s[:m] + 1) / a
    _taper(env, i0, n, rate)
    return env


def _taper(env: Signal, i0: int, end: int, rate: int) -> None:
    """The last 3 ms before `end` fall linearly to zero (env holds samples from i0)."""
    kt = min(end, int(0.003 * rate))
    lo, hi = max(i0, end - kt), min(i0 + len(env), end)
    if kt > 1 and hi > lo:
        env[lo - i0 : hi - i0] *= 1 - (np.arange(lo, hi) - (end - kt)) / (kt - 1)


# -- the instruments -------------------------------------------------------------------------

Render = Callable[[int, int], Signal]  # (first sample, count) -> the tone's next samples, in order


@dataclass(frozen=True)
class Instrument:
    name: str
    tone: Callable[[float, int], Render]  # (frequency, rate) -> its renderer
    envelope: ADSR | None  # None: a one-shot whose tone strikes and dies by itself
    seconds: float = 0.0  # a one-shot's length
    gain: float = 1.0  # evens out the instruments' loudness

    def length(self, gate: int, rate: int) -> int:
        """Samples a note held `gate` samples sounds for."""
        return self.envelope.length(gate, rate) if self.envelope else int(self.seconds * rate)


class Tone:
    """One instrument at one pitch before its envelope, rendered as far as asked."""

    def __init__(self, instrument: Instrument, freq: float, rate: int) -> None:
        self._render = instrument.tone(freq, rate)
        self.gain = instrument.gain
        self.limit = int(instrument.seconds * rate) if instrument.envelope is None else None
        self._buf = np.zeros(0, np.float32)
        self.ready = 0  # samples rendered

    @property
    def nbytes(self) -> int:
        return self._buf.nbytes

    def ensure(self, end: int) -> int:
        """Render up to sample `end` (a chunk at least); returns the samples rendered."""
        if self.limit is not None:
            end = min(end, self.limit)
        if end <= self.ready:
            return 0
        end = max(end, self.ready + CHUNK)
        if self.limit is not None:
            end = min(end, self.limit)
        if end > len(self._buf):
            grown = np.empty(max(end, len(self._buf) * 3 // 2), np.float32)
            grown[: self.ready] = self._buf[: self.ready]
            self._buf = grown
        k = end - self.ready
        self._buf[self.ready : end] = self._render(self.ready, k) * self.gain
        self.ready = end
        return k

    def read(self, i0: int, k: int) -> Signal:
        self.ensure(i0 + k)
        return self._buf[i0 : i0 + k]

    def whole(self) -> Signal | None:
        """A one-shot's samples once all are rendered (they never change after)."""
        return self._buf[: self.limit] if self.limit is not None and self.ready == self.limit else None


def _pad(f: float, rate: int) -> Render:
    """Soft detuned voices: the calm pad (its slow swell is its envelope)."""
    oscs = [Osc("soft", f * det, rate, start=k / 3) for k, det in enumerate((0.997, 1.0, 1.003))]
    return lambda i0, k: (oscs[0](i0, k) + oscs[1](i0, k) + oscs[2](i0, k)) * np.float32(1 / 3)


def _strings(f: float, rate: int) -> Render:
    oscs = [
        Osc("saw", f * det, rate, (5.1 + k * 0.4, 0.002, 0.3), start=k * 0.31)
        for k, det in enumerate((0.994, 1.0, 1.006))
    ]
    tone = Filter("lowpass", min(2600.0, 9 * f), rate)
    return lambda i0, k: tone((oscs[0](i0, k) + oscs[1](i0, k) + oscs[2](i0, k)) / 3)


def _opening(dark: Filter, bright: Filter, x: Signal, amount: Signal | None) -> Signal:
    """A tone between a dark and a bright filtering of x; None: the dark one alone,
    once the opening has closed (the bright filter is never needed again)."""
    d = dark(x)
    return d if amount is None else d + amount * (bright(x) - d)


def _brass(f: float, rate: int) -> Render:
    """Two saws whose tone opens as the note swells: a brass-like pad or horn."""
    a, b = Osc("saw", f * 0.997, rate, (5.2, 0.003, 0.35)), Osc("saw", f * 1.003, rate, start=0.4)
    dark, bright = Filter("lowpass", 2.5 * f, rate), Filter("lowpass", min(7 * f, 5000.0), rate)

    def render(i0: int, k: int) -> Signal:
        t = np.arange(i0, i0 + k) / rate
        swell = np.minimum(t / 0.15, 1.0) * (0.55 + 0.45 * np.exp(-np.maximum(t - 0.15, 0) / 0.5))
        return _opening(dark, bright, a(i0, k) + b(i0, k), swell) * 0.5

    return render


def _closing(i0: int, k: int, tau: float) -> Signal | None:
    """exp(-t / tau) over samples i0..i0+k, or None once it is below 1e-9."""
    return None if i0 > 21 * tau else np.exp(-np.arange(i0, i0 + k) / tau)


def _bass_saw(f: float, rate: int) -> Render:
    """Saw plus a sine an octave down, a plucked filter: synthwave and rock bass."""
    saw, sub = Osc("saw", f, rate), Osc("sine", f / 2, rate)
    dark, bright = Filter("lowpass", 260.0, rate), Filter("lowpass", 2200.0, rate)
    return lambda i0, k: _opening(dark, bright, 0.6 * saw(i0, k) + 0.7 * sub(i0, k), _closing(i0, k, 0.09 * rate))


def _bass_round(f: float, rate: int) -> Render:
    """A round, tuba-like bass: short and bouncy."""
    return Osc("soft", f, rate)


def _arp(f: float, rate: int) -> Render:
    pulse = Osc("pulse30", f, rate)
    dark, bright = Filter("lowpass", 700.0, rate), Filter("lowpass", 5200.0, rate)
    return lambda i0, k: _opening(dark, bright, pulse(i0, k), _closing(i0, k, 0.07 * rate))


def _lead(f: float, rate: int) -> Render:
    """A hollow lead with a quick vibrato: the bouncy cartoon melody."""
    saw = Osc("saw", f, rate, (6.0, 0.004, 0.12))
    tone = Filter("lowpass", 4200.0, rate)

    def render(i0: int, k: int) -> Signal:
        ph = saw.phase(i0, k)
        return tone(saw.read(ph) - saw.read(ph + np.uint32(1 << 31))) * 0.45  # a square: two saws half a cycle apart

    return render


def _lead_saw(f: float, rate: int) -> Render:
    a, b = Osc("saw", f * 0.996, rate, (5.5, 0.004, 0.25)), Osc("saw", f * 1.004, rate, start=0.3)
    tone = Filter("lowpass", 3600.0, rate)
    return lambda i0, k: tone((a(i0, k) + b(i0, k)) * 0.5) * 0.8


def _mallet(f: float, rate: int) -> Render:
    """A toy mallet: the fundamental rings, the bright partial dies fast."""
    n = int(0.7 * rate)
    o = Osc("sine", f, rate)
    high = table_for("sine", 4 * f, rate)

    def render(i0: int, k: int) -> Signal:
        ph, s = o.phase(i0, k), np.arange(i0, i0 + k)
        x = o.read(ph) * np.exp(-s / (0.35 * rate)) + 0.4 * o.read(ph * np.uint32(4), high) * np.exp(-s / (0.05 * rate))
        return x * strike(i0, k, n, rate, 10.0, 0.001)

    return render


def _pluck(f: float, rate: int) -> Render:
    """A harp-like pluck: harmonics that fade faster the higher they are."""
    n = int(1.6 * rate)
    o = Osc("sine", f, rate)
    harmonics = [(h, table_for("sine", h * f, rate)) for h in range(1, 6) if h * f <= 0.4 * rate]

    def render(i0: int, k: int) -> Signal:
        ph, s = o.phase(i0, k), np.arange(i0, i0 + k)
        x = np.zeros(k)
        for h, table in harmonics:
            x += o.read(ph * np.uint32(h), table) * np.exp(-s * h / (0.7 * rate)) / h**1.3
        return x * strike(i0, k, n, rate, 10.0, 0.002) * 0.8

    return render


def _flute(f: float, rate: int) -> Render:
    o = Osc("soft", f, rate, (4.8, 0.005, 0.2))
    breath, noise = Filter("bandpass", (1.5 * f, 3.5 * f), rate), np.random.default_rng(7)
    return lambda i0, k: (o(i0, k) + 0.6 * breath(noise.standard_normal(k))) * 0.8


def _drone(f: float, rate: int) -> Render:
    """Root, a beating twin, the fifth and a dark saw: slow and wide."""
    root, twin, fifth, saw = (
        Osc("sine", f, rate),
        Osc("sine", f * 1.0021, rate),
        Osc("sine", f * 1.5, rate),
        Osc("saw", f, rate),
    )
    dark = Filter("lowpass", 500.0, rate)

    def render(i0: int, k: int) -> Signal:
        x: Signal = root(i0, k) + 0.8 * twin(i0, k) + 0.35 * fifth(i0, k) + dark(0.4 * saw(i0, k))
        swell: Signal = 0.8 + 0.2 * np.sin(TAU * 0.07 / rate * np.arange(i0, i0 + k))
        return x * swell * 0.45

    return render


def _bell(f: float, rate: int) -> Render:
    """A frequency-modulated bell: bright at the strike, pure as it rings."""
    n = int(3.5 * rate)
    mod = Osc("sine", f * 3.5, rate)

    def render(i0: int, k: int) -> Signal:
        s = np.arange(i0, i0 + k)
        index = 2.2 * np.exp(-s / (0.6 * rate))
        return np.sin(TAU * (f / rate) * s + index * mod(i0, k)) * strike(i0, k, n, rate, 1.6) * 0.7

    return render


def _power(f: float, rate: int) -> Render:
    """A driven power chord (root, fifth, octave below): arena guitars."""
    oscs = [Osc("saw", f * mult, rate, start=0.2 * i) for i, mult in enumerate((1.0, 1.498, 0.5))]
    tone = Filter("lowpass", 2800.0, rate)
    return lambda i0, k: tone(np.tanh(2.5 * (oscs[0](i0, k) + oscs[1](i0, k) + oscs[2](i0, k)))) * 0.5


INSTRUMENTS: dict[str, Instrument] = {
    i.name: i
    for i in (
        Instrument("pad", _pad, ADSR(1.2, 1.5, 0.8, 2.0), gain=0.9),
        Instrument("strings", _strings, ADSR(0.5, 1.0, 0.9, 1.2), gain=1.1),
        Instrument("brass", _brass, ADSR(0.08, 0.4, 0.8, 0.3), gain=1.2),
        Instrument("bass_saw", _bass_saw, ADSR(0.003, 0.25, 0.75, 0.06), gain=0.9),
        Instrument("bass_round", _bass_round, ADSR(0.004, 0.22, 0.45, 0.07), gain=0.9),
        Instrument("arp", _arp, ADSR(0.002, 0.14, 0.35, 0.09), gain=0.8),
        Instrument("lead", _lead, ADSR(0.008, 0.12, 0.7, 0.08), gain=0.7),
        Instrument("lead_saw", _lead_saw, ADSR(0.01, 0.2, 0.8, 0.15), gain=0.8),
        Instrument("mallet", _mallet, None, 0.7, gain=0.9),
        Instrument("pluck", _pluck, None, 1.6, gain=1.0),
        Instrument("flute", _flute, ADSR(0.07, 0.3, 0.85, 0.18), gain=0.9),
        Instrument("drone", _drone, ADSR(3.0, 2.0, 1.0, 3.5), gain=1.0),
        Instrument("bell", _bell, None, 3.5, gain=0.5),
        Instrument("power", _power, ADSR(0.004, 0.35, 0.7, 0.12), gain=0.8),
    )
}


# -- drums -------------------------------------------------------------------------------------


def _noise(n: int, seed: int) -> Signal:
    return np.random.default_rng(seed).standard_normal(n)


@functools.lru_cache(maxsize=2)
def drum_kit(rate: int) -> dict[str, Signal]:
    """Every drum as a one-shot, made once per process (read-only: bands share it)."""

    def secs(s: float) -> tuple[int, Signal]:
        n = int(s * rate)
        return n, np.arange(n) / rate

    kit: dict[str, Signal] = {}
    n, t = secs(0.45)  # kick: a sine whose pitch drops fast, and a click
    f = 45 + 110 * np.exp(-t / 0.035)
    kit["kick"] = np.sin(TAU * np.cumsum(f) / rate) * np.exp(-t / 0.16) + 0.25 * lowpass(
        _noise(n, 1), 3000, rate
    ) * np.exp(-t / 0.004)
    n, t = secs(0.9)  # a long, round electronic kick
    f = 42 + 85 * np.exp(-t / 0.045)
    kit["kick808"] = np.tanh(1.6 * np.sin(TAU * np.cumsum(f) / rate) * np.exp(-t / 0.4))
    n, t = secs(0.35)
    kit["snare"] = (
        0.55 * np.sin(TAU * 185 * t) * np.exp(-t / 0.05)
        + bandpass(_noise(n, 2), 1500, 9000, rate) * np.exp(-t / 0.12) * 1.4
    )
    n, t = secs(0.4)
    bursts = sum(np.exp(-np.maximum(t - d, 0) / 0.006) * (t >= d) for d in (0.0, 0.011, 0.022))
    kit["clap"] = bandpass(_noise(n, 3), 900, 5500, rate) * (bursts + 0.6 * np.exp(-t / 0.14)) * 1.3
    n, t = secs(0.12)
    kit["hat"] = highpass(_noise(n, 4), 7000, rate) * np.exp(-t / 0.03) * 0.9
    n, t = secs(0.6)
    kit["open_hat"] = highpass(_noise(n, 5), 6500, rate) * np.exp(-t / 0.2) * 0.7
    n, t = secs(0.7)
    f = 92 + 45 * np.exp(-t / 0.07)
    kit["tom"] = np.sin(TAU * np.cumsum(f) / rate) * np.exp(-t / 0.25)
    n, t = secs(2.2)  # timpani: a soft strike, slightly inharmonic partials, a long ring
    f0 = 87.3
    x = sum(
        a * np.sin(TAU * f0 * m * t) * np.exp(-t / d)
        for a, m, d in ((1.0, 1.0, 0.9), (0.5, 1.504, 0.6), (0.3, 1.98, 0.4), (0.15, 2.44, 0.3))
    )
    kit["timpani"] = (x + 0.3 * lowpass(_noise(n, 6), 400, rate) * np.exp(-t / 0.05)) * np.minimum(t / 0.004, 1)
    n, t = secs(2.5)
    kit["crash"] = highpass(_noise(n, 8), 3500, rate) * np.exp(-t / 1.0) * 0.6
    n, t = secs(0.15)
    kit["wood"] = np.sin(TAU * 1150 * t) * np.exp(-t / 0.03) + 0.5 * np.sin(TAU * 2650 * t) * np.exp(-t / 0.012)
    for name, x in kit.items():
        x = np.asarray(x, np.float64)
        x[: int(0.0005 * rate)] *= np.linspace(0, 1, int(0.0005 * rate))  # no step at the start
        _taper(x, 0, len(x), rate)
        kit[name] = (x / (np.abs(x).max() + 1e-9)).astype(np.float32)
        kit[name].flags.writeable = False
    return kit
