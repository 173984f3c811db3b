"""The soundtrack's instruments: each renders one whole note as a mono buffer.

A note is rendered once, when it is triggered (oscillators, an envelope, a
tone filter), and then played back from its buffer; the band caches what it
rendered, so a looping pattern costs almost nothing after its first pass and
the block-by-block work is only mixing. Oscillators are band-limited
(PolyBLEP) so bright waves do not alias; filters are scipy's second-order
sections. Drums are one-shots made once per band.

Every buffer starts and ends at zero (an attack of at least 2 ms, a release
that reaches silence), so a note can never click, wherever it starts or stops.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import signal

TAU = 2 * np.pi


def hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


@functools.lru_cache(maxsize=256)
def _sos(kind: str, cutoff: float | tuple[float, float], rate: int, order: int = 2) -> np.ndarray:
    nyq = rate / 2
    if isinstance(cutoff, tuple):
        wn = (max(20.0, cutoff[0]) / nyq, min(cutoff[1], 0.45 * rate) / nyq)
    else:
        wn = min(max(20.0, cutoff), 0.45 * rate) / nyq
    return signal.butter(order, wn, btype=kind, output="sos")


def lowpass(x: np.ndarray, cutoff: float, rate: int, order: int = 2) -> np.ndarray:
    return signal.sosfilt(_sos("lowpass", round(cutoff, 1), rate, order), x)


def highpass(x: np.ndarray, cutoff: float, rate: int, order: int = 2) -> np.ndarray:
    return signal.sosfilt(_sos("highpass", round(cutoff, 1), rate, order), x)


def bandpass(x: np.ndarray, lo: float, hi: float, rate: int, order: int = 2) -> np.ndarray:
    return signal.sosfilt(_sos("bandpass", (round(lo, 1), round(hi, 1)), rate, order), x)


# -- oscillators --------------------------------------------------------------------------
# Waves are read from single-cycle tables built once per pitch from their
# spectrum (harmonics up to 20 kHz only, so bright waves do not alias): a
# lookup is far cheaper than evaluating sines for every sample of a long note.

TABLE = 4096


@functools.lru_cache(maxsize=512)
def wavetable(shape: str, freq: float, rate: int) -> np.ndarray:
    """One cycle of `shape` (sine, saw, pulse30, soft) band-limited for `freq`."""
    top = max(1, min(TABLE // 2 - 1, int(min(20_000.0, 0.45 * rate) / max(freq, 1.0))))
    k = np.arange(1, top + 1)
    spec = np.zeros(TABLE // 2 + 1, complex)
    if shape == "sine":
        spec[1] = 1.0
    elif shape == "soft":  # two quiet harmonics: warmer than a sine, no edge
        spec[1:4] = (1.0, 0.25, 0.08)
    elif shape == "saw":
        spec[1:top + 1] = 1.0 / k
    elif shape == "pulse30":
        spec[1:top + 1] = np.sin(np.pi * k * 0.3) / k
    else:
        raise ValueError(f"no wave named {shape!r}")
    cycle = np.fft.irfft(-1j * spec, TABLE)  # sines, in phase at zero
    return cycle / np.abs(cycle).max()


def phase(freq: float, n: int, rate: int, vibrato: tuple[float, float, float] = (0.0, 0.0, 0.0),
          start: float = 0.0) -> np.ndarray:
    """Phase in cycles (0..1) of `n` samples; vibrato = (rate Hz, depth as a
    fraction of the pitch, delay s), faded in after its delay."""
    v_rate, depth, delay = vibrato
    if not depth:
        return (start + np.arange(n) * (freq / rate)) % 1.0
    t = np.arange(n) / rate
    dt = (freq / rate) * (1.0 + depth * np.clip((t - delay) / 0.4, 0.0, 1.0) * np.sin(TAU * v_rate * t))
    return (start + np.cumsum(dt)) % 1.0


def wave(shape: str, freq: float, ph: np.ndarray, rate: int) -> np.ndarray:
    semitone = round(12 * np.log2(max(freq, 1.0) / 440.0))  # one table serves a semitone
    table = wavetable(shape, 440.0 * 2 ** ((semitone + 0.5) / 12), rate)
    return table[(ph * TABLE).astype(np.intp)]


def osc(shape: str, freq: float, n: int, rate: int, vibrato: tuple[float, float, float] = (0.0, 0.0, 0.0),
        start: float = 0.0) -> np.ndarray:
    return wave(shape, freq, phase(freq, n, rate, vibrato, start), rate)


# -- envelopes -------------------------------------------------------------------------------

def adsr(gate: int, rate: int, attack: float, decay: float, sustain: float, release: float) -> np.ndarray:
    """Attack, decay to sustain while the key is held (`gate` samples), then a
    release that falls 60 dB and a last 3 ms taper to exactly zero."""
    a = max(int(max(attack, 0.002) * rate), 1)
    r = int(release * rate)
    env = np.empty(gate + r)
    held = env[:gate]
    ka = min(a, gate)
    held[:ka] = np.arange(1, ka + 1) / a
    if gate > a:
        held[a:] = sustain + (1.0 - sustain) * np.exp(-np.arange(gate - a) / (max(decay, 1e-3) * rate))
    level = float(held[-1]) if gate else 0.0
    env[gate:] = level * np.exp(-np.arange(r) * (6.9 / max(r, 1)))
    _taper(env, rate)
    return env


def strike(n: int, rate: int, decay: float, attack: float = 0.002) -> np.ndarray:
    """A struck or plucked body: a short attack and an exponential decay."""
    env = np.exp(-np.arange(n) / (decay * rate))
    a = min(n, max(1, int(attack * rate)))
    env[:a] *= np.arange(1, a + 1) / a
    _taper(env, rate)
    return env


def _taper(env: np.ndarray, rate: int) -> None:
    k = min(len(env), int(0.003 * rate))
    if k:
        env[-k:] *= np.linspace(1.0, 0.0, k)


# -- the instruments -------------------------------------------------------------------------

Render = Callable[[float, int, int], np.ndarray]  # (frequency, gate samples, rate) -> mono


@dataclass(frozen=True)
class Instrument:
    name: str
    render: Render
    gain: float = 1.0  # evens out the instruments' loudness


def _pad(f: float, gate: int, rate: int) -> np.ndarray:
    """Soft detuned voices with a slow swell: the calm pad."""
    env = adsr(gate, rate, 1.2, 1.5, 0.8, 2.0)
    n = len(env)
    out = sum(osc("soft", f * det, n, rate, start=k / 3) for k, det in enumerate((0.997, 1.0, 1.003)))
    return out * env / 3


def _strings(f: float, gate: int, rate: int) -> np.ndarray:
    env = adsr(gate, rate, 0.5, 1.0, 0.9, 1.2)
    n = len(env)
    out = sum(osc("saw", f * det, n, rate, (5.1 + k * 0.4, 0.002, 0.3), start=k * 0.31)
              for k, det in enumerate((0.994, 1.0, 1.006)))
    return lowpass(out / 3, min(2600.0, 9 * f), rate) * env


def _brass(f: float, gate: int, rate: int) -> np.ndarray:
    """Two saws whose tone opens as the note swells: a brass-like pad or horn."""
    env = adsr(gate, rate, 0.08, 0.4, 0.8, 0.3)
    n = len(env)
    out = osc("saw", f * 0.997, n, rate, (5.2, 0.003, 0.35)) + osc("saw", f * 1.003, n, rate, start=0.4)
    dark, bright = lowpass(out, 2.5 * f, rate), lowpass(out, min(7 * f, 5000.0), rate)
    t = np.arange(n) / rate
    swell = np.minimum(t / 0.15, 1.0) * (0.55 + 0.45 * np.exp(-np.maximum(t - 0.15, 0) / 0.5))
    return (dark + swell * (bright - dark)) * env * 0.5


def _bass_saw(f: float, gate: int, rate: int) -> np.ndarray:
    """Saw plus a sine an octave down, a plucked filter: synthwave and rock bass."""
    env = adsr(gate, rate, 0.003, 0.25, 0.75, 0.06)
    n = len(env)
    x = 0.6 * osc("saw", f, n, rate) + 0.7 * osc("sine", f / 2, n, rate)
    dark, bright = lowpass(x, 260.0, rate), lowpass(x, 2200.0, rate)
    fenv = np.exp(-np.arange(n) / (0.09 * rate))
    return (dark + fenv * (bright - dark)) * env


def _bass_round(f: float, gate: int, rate: int) -> np.ndarray:
    """A round, tuba-like bass: short and bouncy."""
    env = adsr(gate, rate, 0.004, 0.22, 0.45, 0.07)
    return osc("soft", f, len(env), rate) * env


def _arp(f: float, gate: int, rate: int) -> np.ndarray:
    env = adsr(gate, rate, 0.002, 0.14, 0.35, 0.09)
    n = len(env)
    x = osc("pulse30", f, n, rate)
    dark, bright = lowpass(x, 700.0, rate), lowpass(x, 5200.0, rate)
    fenv = np.exp(-np.arange(n) / (0.07 * rate))
    return (dark + fenv * (bright - dark)) * env


def _lead(f: float, gate: int, rate: int) -> np.ndarray:
    """A hollow lead with a quick vibrato: the bouncy cartoon melody."""
    env = adsr(gate, rate, 0.008, 0.12, 0.7, 0.08)
    n = len(env)
    ph = phase(f, n, rate, (6.0, 0.004, 0.12))
    square = wave("saw", f, ph, rate) - wave("saw", f, (ph + 0.5) % 1.0, rate)
    return lowpass(square, 4200.0, rate) * env * 0.45


def _lead_saw(f: float, gate: int, rate: int) -> np.ndarray:
    env = adsr(gate, rate, 0.01, 0.2, 0.8, 0.15)
    n = len(env)
    out = osc("saw", f * 0.996, n, rate, (5.5, 0.004, 0.25)) + osc("saw", f * 1.004, n, rate, start=0.3)
    return lowpass(out * 0.5, 3600.0, rate) * env * 0.8


def _mallet(f: float, gate: int, rate: int) -> np.ndarray:
    """A toy mallet: the fundamental rings, the bright partial dies fast."""
    n = int(0.7 * rate)
    s = np.arange(n)
    ph = phase(f, n, rate)
    x = wave("sine", f, ph, rate) * np.exp(-s / (0.35 * rate))
    x += 0.4 * wave("sine", 4 * f, (4 * ph) % 1.0, rate) * np.exp(-s / (0.05 * rate))
    return x * strike(n, rate, 10.0, 0.001)


def _pluck(f: float, gate: int, rate: int) -> np.ndarray:
    """A harp-like pluck: harmonics that fade faster the higher they are."""
    n = int(1.6 * rate)
    s = np.arange(n)
    ph = phase(f, n, rate)
    x = np.zeros(n)
    for k in range(1, 6):
        if k * f > 0.4 * rate:
            break
        x += wave("sine", k * f, (k * ph) % 1.0, rate) * np.exp(-s * k / (0.7 * rate)) / k ** 1.3
    return x * strike(n, rate, 10.0, 0.002) * 0.8


def _flute(f: float, gate: int, rate: int) -> np.ndarray:
    env = adsr(gate, rate, 0.07, 0.3, 0.85, 0.18)
    n = len(env)
    breath = bandpass(_noise(n, 7), 1.5 * f, 3.5 * f, rate)
    return (osc("soft", f, n, rate, (4.8, 0.005, 0.2)) + 0.6 * breath) * env * 0.8


def _drone(f: float, gate: int, rate: int) -> np.ndarray:
    """Root, a beating twin, the fifth and a dark saw: slow and wide."""
    env = adsr(gate, rate, 3.0, 2.0, 1.0, 3.5)
    n = len(env)
    x = (osc("sine", f, n, rate) + 0.8 * osc("sine", f * 1.0021, n, rate) + 0.35 * osc("sine", f * 1.5, n, rate)
         + lowpass(0.4 * osc("saw", f, n, rate), 500.0, rate))
    return x * env * (0.8 + 0.2 * np.sin(TAU * 0.07 / rate * np.arange(n))) * 0.45


def _bell(f: float, gate: int, rate: int) -> np.ndarray:
    """A frequency-modulated bell: bright at the strike, pure as it rings."""
    n = int(3.5 * rate)
    s = np.arange(n)
    index = 2.2 * np.exp(-s / (0.6 * rate))
    mod = osc("sine", f * 3.5, n, rate)
    return np.sin(TAU * phase(f, n, rate) + index * mod) * strike(n, rate, 1.6) * 0.7


def _power(f: float, gate: int, rate: int) -> np.ndarray:
    """A driven power chord (root, fifth, octave below): arena guitars."""
    env = adsr(gate, rate, 0.004, 0.35, 0.7, 0.12)
    n = len(env)
    x = sum(osc("saw", f * mult, n, rate, start=0.2 * i) for i, mult in enumerate((1.0, 1.498, 0.5)))
    return lowpass(np.tanh(2.5 * x), 2800.0, rate) * env * 0.5


INSTRUMENTS: dict[str, Instrument] = {i.name: i for i in (
    Instrument("pad", _pad, 0.9),
    Instrument("strings", _strings, 1.1),
    Instrument("brass", _brass, 1.2),
    Instrument("bass_saw", _bass_saw, 0.9),
    Instrument("bass_round", _bass_round, 0.9),
    Instrument("arp", _arp, 0.8),
    Instrument("lead", _lead, 0.7),
    Instrument("lead_saw", _lead_saw, 0.8),
    Instrument("mallet", _mallet, 0.9),
    Instrument("pluck", _pluck, 1.0),
    Instrument("flute", _flute, 0.9),
    Instrument("drone", _drone, 1.0),
    Instrument("bell", _bell, 0.5),
    Instrument("power", _power, 0.8),
)}


# -- drums -------------------------------------------------------------------------------------

def _noise(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n)


def drum_kit(rate: int) -> dict[str, np.ndarray]:
    """Every drum as a one-shot, made once."""
    def secs(s: float) -> tuple[int, np.ndarray]:
        n = int(s * rate)
        return n, np.arange(n) / rate

    kit: dict[str, np.ndarray] = {}
    n, t = secs(0.45)  # kick: a sine whose pitch drops fast, and a click
    f = 45 + 110 * np.exp(-t / 0.035)
    kit["kick"] = (np.sin(TAU * np.cumsum(f) / rate) * np.exp(-t / 0.16)
                   + 0.25 * lowpass(_noise(n, 1), 3000, rate) * np.exp(-t / 0.004))
    n, t = secs(0.9)  # a long, round electronic kick
    f = 42 + 85 * np.exp(-t / 0.045)
    kit["kick808"] = np.tanh(1.6 * np.sin(TAU * np.cumsum(f) / rate) * np.exp(-t / 0.4))
    n, t = secs(0.35)
    kit["snare"] = (0.55 * np.sin(TAU * 185 * t) * np.exp(-t / 0.05)
                    + bandpass(_noise(n, 2), 1500, 9000, rate) * np.exp(-t / 0.12) * 1.4)
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
    x = sum(a * np.sin(TAU * f0 * m * t) * np.exp(-t / d) for a, m, d in
            ((1.0, 1.0, 0.9), (0.5, 1.504, 0.6), (0.3, 1.98, 0.4), (0.15, 2.44, 0.3)))
    kit["timpani"] = (x + 0.3 * lowpass(_noise(n, 6), 400, rate) * np.exp(-t / 0.05)) * np.minimum(t / 0.004, 1)
    n, t = secs(2.5)
    kit["crash"] = highpass(_noise(n, 8), 3500, rate) * np.exp(-t / 1.0) * 0.6
    n, t = secs(0.15)
    kit["wood"] = np.sin(TAU * 1150 * t) * np.exp(-t / 0.03) + 0.5 * np.sin(TAU * 2650 * t) * np.exp(-t / 0.012)
    for name, x in kit.items():
        x = np.asarray(x, np.float64)
        x[: int(0.0005 * rate)] *= np.linspace(0, 1, int(0.0005 * rate))  # no step at the start
        _taper(x, rate)
        kit[name] = (x / (np.abs(x).max() + 1e-9)).astype(np.float32)
    return kit
