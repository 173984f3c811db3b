"""Reading back what was streamed: decoded with PyAV, as a viewer's player would."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np


@dataclass
class Probe:
    video_codec: str | None
    audio_codec: str | None
    width: int
    height: int
    fps: float
    audio_rate: int
    audio_channels: int
    video_dts: list[float]
    keyframe_times: list[float]
    duration: float


def probe(path: Path) -> Probe:
    with av.open(str(path)) as c:
        v = c.streams.video[0] if c.streams.video else None
        a = c.streams.audio[0] if c.streams.audio else None
        dts, keys = [], []
        for packet in c.demux(v):
            if packet.dts is None:
                continue
            t = float(packet.dts * packet.time_base)
            dts.append(t)
            if packet.is_keyframe:
                keys.append(t)
        return Probe(
            video_codec=v.codec_context.name if v else None,
            audio_codec=a.codec_context.name if a else None,
            width=v.codec_context.width if v else 0,
            height=v.codec_context.height if v else 0,
            # From the timestamps themselves: FLV's millisecond clock makes the
            # container's own guess (from one 33 ms step) read 30.3.
            fps=(len(dts) - 1) / (dts[-1] - dts[0]) if len(dts) > 1 else 0.0,
            audio_rate=a.codec_context.sample_rate if a else 0,
            audio_channels=a.codec_context.channels if a else 0,
            video_dts=dts,
            keyframe_times=keys,
            duration=(dts[-1] - dts[0]) * len(dts) / (len(dts) - 1) if len(dts) > 1 else 0.0,
        )


def decode_frames(path: Path, step: int = 1, size: tuple[int, int] | None = (320, 180)):
    """(time, RGB array) of every `step`-th decoded frame, downscaled for speed."""
    out = []
    with av.open(str(path)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i % step:
                continue
            if size:
                frame = frame.reformat(width=size[0], height=size[1])
            out.append((float(frame.time or 0.0), frame.to_ndarray(format="rgb24")))
    return out


def audio_rms(path: Path) -> float:
    with av.open(str(path)) as c:
        chunks = [f.to_ndarray() for f in c.decode(audio=0)]
    x = np.concatenate([c.reshape(c.shape[0], -1) for c in chunks], axis=1) if chunks else np.zeros((1, 1))
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def frames_sent(cli_stderr: str) -> tuple[int, int]:
    """(frames sent, slots skipped) from `streambot run`'s last line. The show keeps the wall
    clock: a slot the machine could not meet is skipped and counted, never sent late."""
    found = re.search(r"stopped after (\d+) frames \(\d+ late, \d+ repeated, (\d+) skipped\)", cli_stderr)
    assert found, "streambot run did not say how many frames it sent"
    slots, skipped = int(found[1]), int(found[2])  # the clock's count takes in the slots it skipped
    return slots - skipped, skipped


def holes(dts: list[float], fps: int) -> int:
    """Slots missing between the frames received, from their timestamps (FLV: whole ms)."""
    slots = np.diff(np.asarray(dts)) * fps
    assert np.all(np.abs(slots - np.round(slots)) <= 0.031) and slots.min() >= 0.96, "frames off the 1/fps grid"
    return round(float(np.sum(np.round(slots) - 1)))
