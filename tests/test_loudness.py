"""Every preset at streaming loudness, judged by FFmpeg's EBU R128 meter.

Each preset's soundtrack (its music, the sketch world's weather for that
world, the story's beats changing the mood every few seconds) goes through
the real chain and the broadcast's own AAC encoder into a Matroska file,
faster than real time; `ffmpeg -af ebur128=peak=true` then measures the
decoded recording: integrated loudness -16..-14 LUFS, true peak <= -1 dBTP.
The true-peak limiter on its own is measured the same way, on WAV files.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from scipy import signal
from scipy.io import wavfile

from benchmarks.ffmpeg_loudness import ebur128
from streambot.broadcast.audio import Soundtrack
from streambot.broadcast.encoder import Encoder, EncoderSettings
from streambot.broadcast.loudness import TruePeakLimiter
from streambot.broadcast.sound import BLOCK
from streambot.config import list_presets, music_of, resolve_world
from streambot.world.sketch import SketchWorld

SECONDS = 25.0
FPS = 30


def record(preset: str, path: Path, seconds: float = SECONDS) -> Soundtrack:
    """The preset's soundtrack, encoded as the broadcast encodes it, one video tick of samples at a time."""
    spec = resolve_world(preset)
    world = SketchWorld(embedder=None)
    world.start(spec, (160, 96), FPS, seed=0)
    for _ in range(3):
        world.render()
    track = Soundtrack(music_of(spec), seed=0)
    encoder = Encoder(EncoderSettings(size=(160, 96), fps=FPS, bitrate_kbps=300))
    try:
        with av.open(str(path), "w", format="matroska") as out:
            stream = out.add_stream_from_template(encoder.audio_stream)
            pending = None
            for i in range(round(seconds * 48_000 / BLOCK)):
                if i % 60 == 0:  # the story moves on every 6 s
                    track.set_story(spec.beats[(i // 60) % len(spec.beats)])
                block = track.render(BLOCK, world.ambience())
                pending = block if pending is None else np.concatenate([pending, block], axis=1)
                while pending.shape[1] >= 1600:  # 48000 / 30: one video frame's worth
                    for p in encoder.encode_audio(pending[:, :1600]):
                        p.stream = stream
                        out.mux(p)
                    pending = pending[:, 1600:]
            for p in encoder.audio_stream.encode(None):
                p.stream = stream
                out.mux(p)
    finally:
        encoder.close()
        world.close()
    return track


@pytest.mark.parametrize("preset", [s.name for s in list_presets()])
def test_every_preset_goes_out_at_streaming_loudness(preset, tmp_path):
    path = tmp_path / f"{preset}.mkv"
    track = record(preset, path)
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        assert (a.codec_context.name, a.codec_context.sample_rate, a.codec_context.channels) == ("aac", 48_000, 2)
        assert c.duration / av.time_base == pytest.approx(SECONDS, abs=0.2)
    measured = ebur128(path)
    assert -16.0 <= measured.integrated_lufs <= -14.0, measured
    assert measured.true_peak_dbtp <= -1.0, measured
    # our own meter (before the codec) agrees with FFmpeg's on the decoded recording
    assert track.meter.integrated == pytest.approx(measured.integrated_lufs, abs=0.5)
    assert track.status()["problem"] is None


# -- the true-peak limiter ----------------------------------------------------------------------

RATE = 48_000


def limit(x: np.ndarray, sizes: list[int], ceiling_db: float = -3.0) -> tuple[np.ndarray, TruePeakLimiter]:
    limiter = TruePeakLimiter(ceiling_db)
    out, i, k = [], 0, 0
    while i < x.shape[1]:
        out.append(limiter.process(x[:, i : i + sizes[k % len(sizes)]]))
        i, k = i + sizes[k % len(sizes)], k + 1
    return np.concatenate(out, axis=1), limiter


def true_peak(x: np.ndarray, path: Path) -> float:
    wavfile.write(path, RATE, np.ascontiguousarray(x.T, np.float32))
    return ebur128(path).true_peak_dbtp


def test_the_limiter_holds_the_peaks_between_samples_under_its_ceiling(tmp_path):
    """A sine at a quarter of the rate, 45 degrees out: every sample sits 3 dB
    under the wave's crest, which only a true-peak meter sees. Then a burst of
    band-limited noise 12 dB over the ceiling, out of silence."""
    t = np.arange(RATE)
    quiet = np.zeros((2, RATE // 2), np.float32)
    crest = np.sin(np.pi / 2 * t + np.pi / 4).astype(np.float32) * 10 ** (-1 / 20)
    burst = signal.sosfilt(
        signal.butter(8, 16_000, fs=RATE, output="sos"), np.random.default_rng(0).standard_normal((2, RATE))
    )
    burst = (burst / np.abs(burst).max() * 10 ** (9 / 20)).astype(np.float32)
    for name, x in (
        ("crest", np.concatenate([quiet, np.stack([crest, crest]), quiet], axis=1)),
        ("burst", np.concatenate([quiet, burst, quiet], axis=1)),
    ):
        assert true_peak(x, tmp_path / f"{name}-in.wav") > -1.5, "the input is over the ceiling"
        y, _ = limit(x, [4800])
        assert np.abs(y).max() <= 10 ** (-3 / 20) + 1e-6, name
        assert true_peak(y, tmp_path / f"{name}-out.wav") <= -3.0 + 0.15, name


def test_the_limiter_looks_ahead_leaves_quiet_audio_alone_and_lets_go():
    t = np.arange(4 * RATE) / RATE
    tone = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    x = np.stack([tone, tone])
    x[:, 2 * RATE : 2 * RATE + 2400] += 2.0  # a 50 ms step far over the ceiling, under the tone
    y, limiter = limit(x, [4800])
    d = limiter.delay
    ceiling = 10 ** (-3 / 20)
    assert np.abs(y).max() <= ceiling + 1e-6, "no overshoot at the step"
    gain = y[0, d:] / np.where(np.abs(x[0, :-d]) > 1e-3, x[0, :-d], np.nan)
    onset = 2 * RATE
    # untouched, to the bit, until the lookahead (5 ms) before the step
    np.testing.assert_array_equal(y[:, d : d + onset - 241], x[:, : onset - 241])
    assert np.nanmax(gain[onset - 240 : onset]) < 1.0, "the gain ramps down before the step"
    assert np.nanmin(gain[onset + 2400 + RATE :]) > 10 ** (-0.1 / 20), "let go within a second"
    # the same however the stream is cut into blocks
    z, _ = limit(x, [1, 333, 1600, 4800, 2 * RATE + 7])
    np.testing.assert_allclose(z, y, atol=1e-6)
