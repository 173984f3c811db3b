"""Sound for the voice tests, made here: speech by espeak-ng (the Debian
package), noise, silence and music from numpy, and a file writer (PyAV)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from streambot.audience.voice import SAMPLE_RATE, decode

ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.skipif(ESPEAK is None, reason="espeak-ng is not installed (apt-get install espeak-ng)")
DATA = Path(__file__).parent / "data"


def commands_table() -> list[tuple[str, str | None, str | int | None]]:
    """tests/data/voice_commands.tsv: what is said, the command, its argument."""
    rows = []
    for line in (DATA / "voice_commands.tsv").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        said, command, argument = line.split("\t")
        if command == "-":
            rows.append((said, None, None))
        else:
            rows.append((said, command, int(argument) if command == "vote" else argument))
    return rows


def speak_file(text: str, path: Path, *, speed: int = 150) -> Path:
    subprocess.run(
        [ESPEAK, "-v", "en-us", "-s", str(speed), "-w", str(path), text], check=True, capture_output=True, timeout=120
    )
    return path


def speak(text: str, tmp: Path, *, speed: int = 150) -> np.ndarray:
    """16 kHz mono float32 speech."""
    return decode(speak_file(text, tmp / "said.wav", speed=speed))


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.float32)


def noise(seconds: float, level: float = 0.1, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * SAMPLE_RATE)) * level).astype(np.float32)


def music(seconds: float, seed: int = 2) -> np.ndarray:
    """Chords on a beat with a hi-hat: tonal, rhythmic, not speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    out = np.zeros_like(t)
    beat = 0.5
    roots = [220.0, 261.6, 196.0, 174.6]
    for i, start in enumerate(np.arange(0, seconds, beat)):
        m = (t >= start) & (t < start + beat)
        env = np.exp(-3 * (t[m] - start))
        root = roots[(i // 4) % 4]
        for ratio in (1.0, 1.25, 1.5, 2.0):
            out[m] += 0.08 * env * np.sin(2 * np.pi * root * ratio * t[m])
        hat = m & (t < start + 0.03)
        out[hat] += rng.standard_normal(hat.sum()) * 0.05
    return out.astype(np.float32)


def write_audio(audio: np.ndarray, path: Path, codec: str = "libopus", rate: int = 48_000) -> Path:
    """Encode 16 kHz mono float32 into a file (ogg/opus as Discord voice messages are, wav, webm...)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=rate)
        for f in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path
