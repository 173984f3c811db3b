"""One encode for every destination.

`Encoder` turns RGB frames and PCM audio into H.264 + AAC packets once, with
Twitch's ingest rules (CBR, keyframe every `keyframe_s` exactly, no scene-cut
keyframes, yuv420p, AAC-LC 48 kHz stereo). The packets go to every
`broadcast.outputs.Output`.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

AUDIO_RATE = 48_000


@dataclass(frozen=True)
class StreamInfo:
    """The encoded streams' parameters: the FLV header the encoder wrote
    (it carries the SPS/PPS and AudioSpecificConfig) plus what FLV leaves out."""

    header: bytes
    video_extradata: bytes  # as the encoder made it (Annex B for x264): muxers convert from it
    width: int
    height: int
    fps: int
    audio_rate: int


@dataclass(frozen=True)
class EncoderSettings:
    size: tuple[int, int] = (1280, 720)
    fps: int = 30
    bitrate_kbps: int = 4500
    audio_bitrate_kbps: int = 160
    keyframe_s: float = 2.0
    preset: str = "veryfast"
    codec: str = "auto"  # auto | libx264 | h264_nvenc
    threads: int = 0  # 0: let x264 decide


def pick_codec(wanted: str) -> str:
    if wanted != "auto":
        return wanted
    # NVENC only helps where a GPU and driver are really there: try to open it.
    if "h264_nvenc" in av.codecs_available:
        try:
            ctx = av.CodecContext.create("h264_nvenc", "w")
            ctx.width, ctx.height, ctx.pix_fmt = 256, 256, "yuv420p"
            ctx.time_base = Fraction(1, 30)
            ctx.open()
            return "h264_nvenc"
        except Exception:
            pass
    return "libx264"


class Encoder:
    """H.264 + AAC encoder whose packets are handed to every Output."""

    def __init__(self, settings: EncoderSettings) -> None:
        self.settings = settings
        w, h = settings.size
        fps = settings.fps
        self.gop = max(1, round(settings.keyframe_s * fps))
        self.codec_name = pick_codec(settings.codec)
        # A master container in memory owns the codec contexts; outputs copy its
        # stream parameters (SPS/PPS, AudioSpecificConfig) as templates.
        self._header = io.BytesIO()
        self._master = av.open(self._header, mode="w", format="flv")
        v = self._master.add_stream(self.codec_name, rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.time_base = Fraction(1, fps)
        cc = v.codec_context
        cc.time_base = Fraction(1, fps)
        cc.framerate = Fraction(fps, 1)
        cc.gop_size = self.gop
        cc.bit_rate = settings.bitrate_kbps * 1000
        kbps = settings.bitrate_kbps
        if self.codec_name == "libx264":
            cc.options = {
                "preset": settings.preset,
                "tune": "zerolatency",  # no lookahead or B-frame delay: prompt-to-pixel counts
                "maxrate": f"{kbps}k",
                "minrate": f"{kbps}k",
                "bufsize": f"{2 * kbps}k",
                "threads": str(settings.threads),
                "x264-params": (
                    f"keyint={self.gop}:min-keyint={self.gop}:scenecut=0:"
                    "nal-hrd=cbr:force-cfr=1:open-gop=0"
                ),
            }
        else:
            cc.options = {
                "preset": "p4", "tune": "ll", "rc": "cbr", "maxrate": f"{kbps}k",
                "bufsize": f"{2 * kbps}k", "forced-idr": "1", "no-scenecut": "1",
            }
        a = self._master.add_stream("aac", rate=AUDIO_RATE)
        a.layout = "stereo"
        a.codec_context.bit_rate = settings.audio_bitrate_kbps * 1000
        self._master.start_encoding()  # opens both encoders; extradata now known
        self.video_stream, self.audio_stream = v, a
        # What an output needs to describe these streams, picklable for its process.
        self.stream_info = StreamInfo(
            header=self._header.getvalue(), video_extradata=cc.extradata or b"", width=w, height=h, fps=fps, audio_rate=AUDIO_RATE,
        )
        self._audio_pts = 0

    def to_frame(self, image: np.ndarray) -> av.VideoFrame:
        """RGB HxWx3 uint8 of any size -> a yuv420p frame of the output size, in
        one swscale pass (the world may render smaller than the stream)."""
        w, h = self.settings.size
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        if (frame.width, frame.height) != (w, h):
            return frame.reformat(width=w, height=h, format="yuv420p", interpolation="BILINEAR")
        return frame.reformat(format="yuv420p")

    def encode_frame(self, frame: av.VideoFrame, index: int) -> list[av.Packet]:
        """Encode a frame from `to_frame` (overlays drawn on it) as tick `index`."""
        frame.pts = index
        frame.time_base = Fraction(1, self.settings.fps)
        return self.video_stream.encode(frame)

    def encode_video(self, image: np.ndarray, index: int) -> list[av.Packet]:
        return self.encode_frame(self.to_frame(image), index)

    def encode_audio(self, samples: np.ndarray) -> list[av.Packet]:
        """`samples`: float32 array of shape (2, n), values in -1..1."""
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.float32), format="fltp", layout="stereo"
        )
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._audio_pts
        frame.time_base = Fraction(1, AUDIO_RATE)
        self._audio_pts += samples.shape[1]
        return self.audio_stream.encode(frame)

    def flush(self) -> list[av.Packet]:
        packets = self.video_stream.encode(None) + self.audio_stream.encode(None)
        return packets

    def close(self) -> None:
        try:
            self._master.close()
        except Exception:
            pass
