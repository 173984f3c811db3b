"""One encode for every destination, and its adaptive x264 preset.

`Encoder` turns RGB frames and PCM audio into H.264 + AAC packets once, with
Twitch's ingest rules (CBR, a keyframe every `keyframe_s` of presentation
time exactly, no scene-cut keyframes, yuv420p, AAC-LC 48 kHz stereo). The
packets go to every `broadcast.outputs.Output`.

When encoding cannot keep up, the preset steps down towards faster ones and
back up when the machine recovers (`PresetGovernor` decides when, from how
busy each tick is; OBS leaves that to the streamer). A step swaps in another
x264 instance at the next keyframe, so the stream stays one H.264 stream:
only presets whose stream headers (SPS/PPS) are byte-identical to the
configured one's are used, with the few header-bearing options (reference
frames, weighted prediction) pinned to the configured preset's values. From
`veryfast` that ladder is veryfast -> superfast; `ultrafast` drops CABAC and
would need a new sequence header mid-stream, which not every muxer or player
follows.
"""

from __future__ import annotations

import io
import logging
import math
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import av
import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from av.stream import Stream

    Packet = av.Packet[Stream]  # a packet of either stream, as the outputs receive it

log = logging.getLogger(__name__)

AUDIO_RATE = 48_000
# x264's presets, fastest first, and the two options of each that reach the
# stream headers (x264's own preset table: --ref and --weightp).
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")
_HEADER_OPTIONS = {
    "ultrafast": (1, 0),
    "superfast": (1, 1),
    "veryfast": (1, 1),
    "faster": (2, 1),
    "fast": (2, 2),
    "medium": (3, 2),
}


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
    adaptive: bool = True  # step the x264 preset down when encoding lags, back up when it recovers


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


def _x264_options(settings: EncoderSettings, gop: int, preset: str, pins: str = "") -> dict[str, str]:
    kbps = settings.bitrate_kbps
    return {
        "preset": preset,
        "tune": "zerolatency",  # no lookahead or B-frame delay: prompt-to-pixel counts
        "maxrate": f"{kbps}k",
        "minrate": f"{kbps}k",
        "bufsize": f"{2 * kbps}k",
        "threads": str(settings.threads),
        # Keyframes are also forced on the presentation clock (see encode_frame);
        # keyint stays as x264's own bound.
        "x264-params": (f"keyint={gop}:min-keyint={gop}:scenecut=0:nal-hrd=cbr:force-cfr=1:open-gop=0{pins}"),
    }


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
        assert isinstance(v, av.VideoStream)  # an H.264 encoder's stream
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.time_base = Fraction(1, fps)
        cc = v.codec_context
        cc.time_base = Fraction(1, fps)
        cc.framerate = Fraction(fps, 1)
        cc.gop_size = self.gop
        cc.bit_rate = settings.bitrate_kbps * 1000
        kbps = settings.bitrate_kbps
        if self.codec_name == "libx264":
            cc.options = _x264_options(settings, self.gop, settings.preset)
        else:
            cc.options = {
                "preset": "p4",
                "tune": "ll",
                "rc": "cbr",
                "maxrate": f"{kbps}k",
                "bufsize": f"{2 * kbps}k",
                "forced-idr": "1",
                "no-scenecut": "1",
            }
        a = self._master.add_stream("aac", rate=AUDIO_RATE)
        a.layout = "stereo"
        a.codec_context.bit_rate = settings.audio_bitrate_kbps * 1000
        self._master.start_encoding()  # opens both encoders; extradata now known
        self.video_stream, self.audio_stream = v, a
        # What an output needs to describe these streams, picklable for its process.
        self.stream_info = StreamInfo(
            header=self._header.getvalue(),
            video_extradata=cc.extradata or b"",
            width=w,
            height=h,
            fps=fps,
            audio_rate=AUDIO_RATE,
        )
        self._audio_pts = 0
        self._next_key = 0  # the tick index of the next keyframe
        # The adaptive preset: the x264 instance in use, and the ladder it steps on.
        self._video = cc
        self.preset = settings.preset if self.codec_name == "libx264" else self.codec_name
        self._ladder = (
            [p for p in PRESETS[: PRESETS.index(settings.preset) + 1]]
            if self.codec_name == "libx264" and settings.adaptive and settings.preset in PRESETS
            else []
        )
        self._unusable: set[str] = set()
        self._switch = threading.Lock()
        self._preparing = False
        self._ready: tuple[str, av.VideoCodecContext] | None = None
        self.preset_changes = 0
        self.preset_reason = ""

    # -- video ------------------------------------------------------------------------
    def to_frame(self, image: NDArray[np.uint8]) -> av.VideoFrame:
        """RGB HxWx3 uint8 of any size -> a yuv420p frame of the output size, in
        one swscale pass (the world may render smaller than the stream)."""
        w, h = self.settings.size
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        if (frame.width, frame.height) != (w, h):
            return frame.reformat(width=w, height=h, format="yuv420p", interpolation="BILINEAR")
        return frame.reformat(format="yuv420p")

    def encode_frame(self, frame: av.VideoFrame, index: int) -> list[Packet]:
        """Encode a frame from `to_frame` (overlays drawn on it) as tick `index`.

        Ticks may be skipped, so keyframes follow the tick index, not x264's
        frame count: the first frame at or past each `keyframe_s` boundary is
        forced to be one (the cadence never drifts; next to a skipped slot one
        interval is a frame longer), and a new preset takes over only there.
        """
        frame.pts = index
        frame.time_base = Fraction(1, self.settings.fps)
        packets: list[Packet] = []
        if index >= self._next_key:
            self._next_key = (index // self.gop + 1) * self.gop
            frame.pict_type = av.video.frame.PictureType.I
            packets += self._take_ready()
        return packets + self._video.encode(frame)

    def encode_video(self, image: NDArray[np.uint8], index: int) -> list[Packet]:
        return self.encode_frame(self.to_frame(image), index)

    # -- the adaptive preset ------------------------------------------------------------
    @property
    def configured_preset(self) -> str:
        return self.settings.preset if self.codec_name == "libx264" else self.codec_name

    @property
    def adaptive(self) -> bool:
        return len(self._ladder) > 1

    def step(self, direction: int, reason: str = "") -> bool:
        """Ask for the next faster (-1) or slower (+1) preset on the ladder; it
        is prepared off this thread and takes over at the next keyframe.
        False when there is nowhere to go or a step is already under way."""
        with self._switch:
            if self._preparing or self._ready is not None or self.preset not in self._ladder:
                return False
            target = self._neighbour(self.preset, direction)
            if target is None:
                return False
            self._preparing = True
        threading.Thread(
            target=self._prepare, args=(target, direction, reason), name="encoder preset", daemon=True
        ).start()
        return True

    def _neighbour(self, preset: str, direction: int) -> str | None:
        i = self._ladder.index(preset) + direction
        while 0 <= i < len(self._ladder):
            if self._ladder[i] not in self._unusable:
                return self._ladder[i]
            i += direction
        return None

    def _prepare(self, target: str, direction: int, reason: str) -> None:
        preset: str | None = target
        ctx = None
        try:
            while preset is not None:
                ctx = self._open(preset)
                if ctx.extradata == self.stream_info.video_extradata:
                    break
                # Other stream headers: the outputs could not follow it mid-stream.
                self._unusable.add(preset)
                ctx = None
                preset = self._neighbour(preset, direction)
        except Exception:
            log.exception("encoder: could not open x264 with preset %s", preset)
            ctx = None
        with self._switch:
            self._preparing = False
            if ctx is not None and preset is not None:  # a context is only kept with its preset
                self._ready = (preset, ctx)
                self.preset_reason = reason

    def _open(self, preset: str) -> av.VideoCodecContext:
        s = self.settings
        ref, weightp = _HEADER_OPTIONS[s.preset]
        cc = av.CodecContext.create("libx264", "w")
        cc.width, cc.height = s.size
        cc.pix_fmt = "yuv420p"
        cc.time_base = Fraction(1, s.fps)
        cc.framerate = Fraction(s.fps, 1)
        cc.gop_size = self.gop
        cc.bit_rate = s.bitrate_kbps * 1000
        cc.flags |= av.codec.context.Flags.global_header  # as in the FLV master: headers out of band
        cc.options = _x264_options(s, self.gop, preset, f":ref={ref}:weightp={weightp}")
        cc.open()
        return cc

    def _take_ready(self) -> list[Packet]:
        """At a keyframe: swap in a prepared preset; what the old one still
        holds goes out first."""
        with self._switch:
            ready, self._ready = self._ready, None
        if ready is None:
            return []
        preset, ctx = ready
        tail = self._video.encode(None)
        self._video = ctx  # the old instance is freed with its last reference
        log.warning(
            "encoder: x264 preset %s -> %s%s",
            self.preset,
            preset,
            f" ({self.preset_reason})" if self.preset_reason else "",
        )
        self.preset = preset
        self.preset_changes += 1
        return tail

    # -- audio, end -------------------------------------------------------------------------
    def encode_audio(self, samples: NDArray[np.float32]) -> list[Packet]:
        """`samples`: float32 array of shape (2, n), values in -1..1."""
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.float32), format="fltp", layout="stereo"
        )
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._audio_pts
        frame.time_base = Fraction(1, AUDIO_RATE)
        self._audio_pts += samples.shape[1]
        return self.audio_stream.encode(frame)

    def flush(self) -> list[tuple[str, Packet]]:
        """What the encoders still hold, as (kind, packet)."""
        return [("video", p) for p in self._video.encode(None)] + [("audio", p) for p in self.audio_stream.encode(None)]

    def close(self) -> None:
        with self._switch:
            self._ready = None
        self._video = self.video_stream.codec_context
        try:
            self._master.close()
        except Exception:
            pass


class PresetGovernor:
    """When the encoder should step its preset down or up, from the frames encoded.

    `busy` is the share of a frame period one frame took from its slot's
    hand-over to its packets (its wait in the encoder's queue, picture,
    overlay, encode, audio; with the encoder on the clock's thread, the
    tick), smoothed over about `tau_s`. Encoding lags when it stays
    at or above `high` for `down_after_s`: step down. It has recovered when
    it stays at or below `low` for `up_after_s`: step up. The gap between the
    two thresholds is the hysteresis (a step up costs about 1.5x, which from
    `low` stays under `high`); a step up that is followed by a step down within
    `probation_s` doubles the wait before the next one (up to `max_up_after_s`),
    and one that holds through it halves the wait again, so a machine at the
    edge settles instead of flapping.
    """

    def __init__(
        self,
        fps: float,
        *,
        high: float = 0.85,
        low: float = 0.5,
        tau_s: float = 1.0,
        down_after_s: float = 2.0,
        up_after_s: float = 10.0,
        max_up_after_s: float = 300.0,
        settle_s: float = 4.0,
        probation_s: float = 60.0,
    ) -> None:
        self.period = 1.0 / fps
        self.high, self.low, self.tau_s = high, low, tau_s
        self.down_after_s, self.base_up_after_s = down_after_s, up_after_s
        self.up_after_s, self.max_up_after_s = up_after_s, max_up_after_s
        self.settle_s, self.probation_s = settle_s, probation_s
        self.busy = 0.0
        self._last: float | None = None
        self._lag_since: float | None = None
        self._calm_since: float | None = None
        self._changed_at = -math.inf
        self._last_up: float | None = None

    def observe(self, now: float, busy_s: float, skipped: int = 0) -> int:
        """One tick: -1 to step down, +1 to step up, 0 to stay."""
        # Skipped slots were busy through and through.
        x = busy_s / self.period + skipped
        dt = self.period if self._last is None else max(0.0, now - self._last)
        self._last = now
        self.busy += (x - self.busy) * (1.0 - math.exp(-dt / self.tau_s))
        lagging, calm = self.busy >= self.high, self.busy <= self.low
        self._lag_since = (self._lag_since if self._lag_since is not None else now) if lagging else None
        self._calm_since = (self._calm_since if self._calm_since is not None else now) if calm else None
        if self._last_up is not None and now - self._last_up >= self.probation_s:
            self.up_after_s = max(self.base_up_after_s, self.up_after_s / 2)  # the step up held
            self._last_up = None
        if now - self._changed_at < self.settle_s:
            return 0  # the last step has not taken over yet (it waits for a keyframe)
        if self._lag_since is not None and now - self._lag_since >= self.down_after_s:
            return -1
        if self._calm_since is not None and now - self._calm_since >= self.up_after_s:
            return 1
        return 0

    def stepped(self, now: float, direction: int) -> None:
        """The encoder took the step `observe` asked for."""
        if direction < 0 and self._last_up is not None:
            self.up_after_s = min(self.max_up_after_s, self.up_after_s * 2)  # the step up failed
        self._last_up = now if direction > 0 else None
        self._changed_at = now
        self._lag_since = self._calm_since = None
