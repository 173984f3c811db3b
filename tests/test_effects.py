"""The band's reverb and echo: decay times by the ISO 3382 method (Schroeder's
backward integration), wet level, width, exact echoes, and output that does
not depend on how the stream is cut into blocks."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from streambot.broadcast.effects import Echo, Reverb, room_t60

RATE = 48_000


def in_blocks(effect, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    out, i, k = [], 0, 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        out.append(effect.process(x[i:i + n]))
        i, k = i + n, k + 1
    return np.concatenate(out, axis=-1)


def t30(ir: np.ndarray, band: tuple[float, float]) -> float:
    """Reverberation time from the -5..-35 dB span of the band's Schroeder decay curve (ISO 3382-1)."""
    sos = signal.butter(4, band, btype="bandpass", fs=RATE, output="sos")
    energy = signal.sosfilt(sos, ir.astype(np.float64)) ** 2
    edc = 10 * np.log10(np.cumsum(energy[::-1])[::-1] / energy.sum() + 1e-30)
    start, end = np.argmax(edc < -5), np.argmax(edc < -35)
    return 2.0 * (end - start) / RATE


@pytest.mark.parametrize("room", [0.35, 0.8, 0.92])
def test_the_reverb_decays_in_its_rooms_time_and_the_highs_die_first(room):
    x = np.zeros(3 * RATE + int(3 * room_t60(room) * RATE))
    x[0] = 1.0
    ir = in_blocks(Reverb(room), x, [4800])
    want = room_t60(room)
    assert 0.9 * want < t30(ir[0], (350.0, 1400.0)) < 1.1 * want
    assert 0.9 * want < t30(ir[1], (350.0, 1400.0)) < 1.1 * want
    assert t30(ir[0], (2800.0, 11200.0)) < 0.9 * t30(ir[0], (125.0, 500.0))
    # it dies away: 3 T60s after the impulse it is 180 dB down, nothing rings on
    tail = ir[:, -RATE // 2:]
    assert np.isfinite(ir).all() and np.abs(tail).max() < 1e-6


def test_the_reverb_is_wide_at_its_wet_level_and_ignores_block_sizes():
    x = np.random.default_rng(0).standard_normal(12 * RATE).astype(np.float32) * 0.1
    wet = in_blocks(Reverb(0.6), x, [4800])
    steady = wet[:, 6 * RATE:].astype(np.float64)
    gain_db = 10 * np.log10((steady ** 2).mean(axis=1) / 0.01)
    want_db = 10 * np.log10(0.86 * room_t60(0.6) ** 0.45)
    assert np.abs(gain_db - want_db).max() < 0.5, (gain_db, want_db)
    assert abs(np.corrcoef(steady)[0, 1]) < 0.1, "left and right are decorrelated"
    odd = in_blocks(Reverb(0.6), x, [1, 777, 5000, 13, 48_000])
    np.testing.assert_allclose(odd, wet, atol=1e-6)


def test_the_echo_repeats_exactly_each_delay_and_ignores_block_sizes():
    x = np.zeros(RATE, np.float32)
    x[100] = 1.0
    d = round(0.125 * RATE)
    y = in_blocks(Echo(0.125, 0.35), x, [4800])
    hits = np.flatnonzero(np.abs(y) > 1e-9)
    assert hits.tolist() == [100 + d * k for k in range(1, 8)]
    np.testing.assert_allclose(y[hits], 0.35 ** np.arange(7), rtol=1e-6)
    noise = np.random.default_rng(1).standard_normal(2 * RATE).astype(np.float32)
    whole = in_blocks(Echo(0.05, 0.5), noise, [4800])
    np.testing.assert_allclose(in_blocks(Echo(0.05, 0.5), noise, [1, 2399, 2400, 7000]), whole, atol=1e-6)
    with pytest.raises(ValueError, match="feedback"):
        Echo(0.1, 1.0)
