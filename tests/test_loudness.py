"""Every preset at streaming loudness, judged by FFmpeg's EBU R128 meter.

Each preset's soundtrack (its music, the sketch world's weather for that
world, the story's beats changing the mood every few seconds) goes through
the real chain and the broadcast's own AAC encoder into a Matroska file,
faster than real time; `ffmpeg -af ebur128=peak=true` then measures the
decoded recording: integrated loudness -16..-14 LUFS, true peak <= -1 dBTP.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from streambot.broadcast.audio import BLOCK, Soundtrack
from streambot.broadcast.encoder import Encoder, EncoderSettings
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


def ebur128(path: Path) -> dict[str, float]:
    """FFmpeg's EBU R128 summary of a file: integrated loudness and true peak."""
    r = subprocess.run(["ffmpeg", "-nostats", "-hide_banner", "-i", str(path), "-filter_complex",
                        "ebur128=peak=true", "-f", "null", "-"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-800:]
    summary = r.stderr[r.stderr.rindex("Summary:"):]
    return {"integrated": float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1)),
            "true_peak": float(re.search(r"Peak:\s+(-?[\d.]+|-inf) dBFS", summary).group(1))}


@pytest.mark.parametrize("preset", [s.name for s in list_presets()])
def test_every_preset_goes_out_at_streaming_loudness(preset, tmp_path):
    path = tmp_path / f"{preset}.mkv"
    track = record(preset, path)
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        assert (a.codec_context.name, a.codec_context.sample_rate, a.codec_context.channels) == ("aac", 48_000, 2)
        assert c.duration / av.time_base == pytest.approx(SECONDS, abs=0.2)
    measured = ebur128(path)
    assert -16.0 <= measured["integrated"] <= -14.0, measured
    assert measured["true_peak"] <= -1.0, measured
    # our own meter (before the codec) agrees with FFmpeg's on the decoded recording
    assert track.meter.integrated == pytest.approx(measured["integrated"], abs=0.5)
    assert track.status()["problem"] is None
