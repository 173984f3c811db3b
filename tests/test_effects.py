"""The band's reverb and echo: decay times by the ISO 3382 method (Schroeder's
backward integration), wet level, width, exact echoes, and output that does
not depend on how the stream is cut into blocks. And the sound chain runs
without the GPLv3 plugin library these effects replace."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import signal

from streambot.broadcast.effects import Echo, Reverb, room_t60
from streambot.config import list_presets

from .conftest import ROOT

RATE = 48_000


def in_blocks(effect, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    out, i, k = [], 0, 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        out.append(effect.process(x[i : i + n]))
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
    tail = ir[:, -RATE // 2 :]
    assert np.isfinite(ir).all() and np.abs(tail).max() < 1e-6


def test_the_reverb_is_wide_at_its_wet_level_and_ignores_block_sizes():
    x = np.random.default_rng(0).standard_normal(12 * RATE).astype(np.float32) * 0.1
    wet = in_blocks(Reverb(0.6), x, [4800])
    steady = wet[:, 6 * RATE :].astype(np.float64)
    gain_db = 10 * np.log10((steady**2).mean(axis=1) / 0.01)
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


def test_the_show_and_every_worlds_sound_run_without_the_gpl_plugin_library():
    """streambot is MIT: with pedalboard (GPLv3) made unimportable, the show's
    modules load and every preset's sound chain plays."""
    code = "\n".join(
        [
            "import sys",
            "sys.modules['pedalboard'] = None  # any import of it now raises ImportError",
            "import numpy as np",
            "import streambot.app, streambot.cli",
            "from streambot.broadcast.audio import Soundtrack",
            "from streambot.config import list_presets, music_of",
            "from streambot.world.base import Ambience",
            "for spec in list_presets():",
            "    track = Soundtrack(music_of(spec), seed=0)",
            "    x = np.concatenate([track.render(4800, Ambience(wind=0.0)) for _ in range(30)], axis=1)",
            "    assert np.abs(x[:, -48_000:]).max() > 0.05, spec.name",
            "print('played', len(list_presets()))",
        ]
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ["played", str(len(list_presets()))]
