"""One encode, fanned out to every destination.

`Encoder` turns RGB frames and PCM audio into H.264 + AAC packets once, with
Twitch's ingest rules (CBR, keyframe every `keyframe_s` exactly, no scene-cut
keyframes, yuv420p, AAC-LC 48 kHz stereo). Each `Output` (an RTMP/RTMPS URL or
a file) muxes copies of those packets in its own thread behind a bounded
queue, so a slow or broken destination never stalls the encode or the others;
network outputs reconnect with exponential back-off and resume on a keyframe.
"""
from __future__ import annotations

import io
import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlparse

import av
import numpy as np
from tenacity import Retrying, retry_if_exception_type, wait_exponential

from ..secrets import mask_url

log = logging.getLogger(__name__)

AUDIO_RATE = 48_000
FILE_FORMATS = {".flv": "flv", ".mp4": "mp4", ".mkv": "matroska"}


class OutputError(Exception):
    """A destination could not be used; the message is one sentence."""


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
        self._master = av.open(io.BytesIO(), mode="w", format="flv")
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
        self._audio_pts = 0
        self.frames_encoded = 0
        self.bytes_out = 0

    @property
    def templates(self) -> tuple[av.stream.Stream, av.stream.Stream]:
        return self.video_stream, self.audio_stream

    def encode_video(self, image: np.ndarray, index: int) -> list[av.Packet]:
        """`image`: HxWx3 RGB uint8 of any size; scaled to the output size here."""
        w, h = self.settings.size
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        if (frame.width, frame.height) != (w, h):
            frame = frame.reformat(width=w, height=h, format="yuv420p", interpolation="BILINEAR")
        else:
            frame = frame.reformat(format="yuv420p")
        frame.pts = index
        frame.time_base = Fraction(1, self.settings.fps)
        packets = self.video_stream.encode(frame)
        self.frames_encoded += 1
        return packets

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


def _copy_packet(p: av.Packet, kind: str) -> "_Pkt":
    return _Pkt(bytes(p), p.pts, p.dts, p.duration, p.time_base, p.is_keyframe, kind)


@dataclass(frozen=True)
class _Pkt:
    """An immutable copy of an encoded packet, safe to share between threads."""

    data: bytes
    pts: int | None
    dts: int | None
    duration: int | None
    time_base: Fraction
    keyframe: bool
    kind: str  # "video" | "audio"

    def seconds(self) -> float:
        return float((self.dts if self.dts is not None else self.pts or 0) * self.time_base)


def describe(target: str) -> str:
    return mask_url(target)


def _is_network(target: str) -> bool:
    return target.startswith(("rtmp://", "rtmps://"))


def check_reachable(target: str, timeout: float) -> None:
    """Raise OutputError with one sentence if an RTMP host does not answer."""
    u = urlparse(target)
    host = u.hostname
    port = u.port or (443 if u.scheme == "rtmps" else 1935)
    if not host:
        raise OutputError(f"{describe(target)} has no host name.")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.gaierror:
        raise OutputError(f"RTMP host {host} cannot be resolved ({describe(target)}).") from None
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise OutputError(
            f"RTMP server {host}:{port} is unreachable ({reason}); is it running and is the URL right?"
        ) from None


def validate_target(target: str) -> None:
    if _is_network(target):
        u = urlparse(target)
        if not u.hostname or not u.path.strip("/"):
            raise OutputError(
                f"{describe(target)} is not a full RTMP URL (rtmp://host/app/stream_key)."
            )
        return
    if "://" in target:
        raise OutputError(f"{describe(target)}: only rtmp://, rtmps:// or a file path can be an output.")
    suffix = Path(target).suffix.lower()
    if suffix not in FILE_FORMATS:
        raise OutputError(f"{target}: a file output must end in .flv, .mp4 or .mkv.")
    parent = Path(target).resolve().parent
    if not parent.is_dir():
        raise OutputError(f"{target}: the folder {parent} does not exist.")


class Output:
    """One destination: its own thread, a bounded queue, reconnects by itself."""

    QUEUE_SECONDS = 4.0

    def __init__(
        self,
        target: str,
        templates: tuple[av.stream.Stream, av.stream.Stream],
        *,
        fps: int,
        connect_timeout_s: float = 5.0,
        reconnect_max_s: float = 30.0,
    ) -> None:
        validate_target(target)
        self.target = target
        self.name = describe(target)
        self.network = _is_network(target)
        self._templates = templates
        self._connect_timeout_s = connect_timeout_s
        self._reconnect_max_s = reconnect_max_s
        # Room for QUEUE_SECONDS of video plus its audio; beyond that we drop
        # oldest-first rather than block the encoder (a live stream can't wait).
        self._queue: queue.Queue[_Pkt | None] = queue.Queue(maxsize=int(fps * self.QUEUE_SECONDS * 3))
        self._container = None
        self._streams: dict[str, av.stream.Stream] = {}
        self._offset: dict[str, float] = {}
        self._need_keyframe = True
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self.state = "idle"
        self.reconnects = 0
        self.packets_dropped = 0
        self.bytes_sent = 0
        self.last_error: str | None = None

    # -- lifecycle ------------------------------------------------------------
    def open(self) -> None:
        """Connect once, now; a failure here is reported to the user and fatal."""
        if self.network:
            check_reachable(self.target, self._connect_timeout_s)
        self._connect()
        self._thread = threading.Thread(target=self._run, name=f"output {self.name}", daemon=True)
        self._thread.start()

    def _connect(self) -> None:
        self.state = "connecting"
        fmt = "flv" if self.network else FILE_FORMATS[Path(self.target).suffix.lower()]
        timeout = self._connect_timeout_s
        try:
            options = {"rw_timeout": str(int(timeout * 1_000_000))} if self.network else {}
            c = av.open(self.target, mode="w", format=fmt, options=options, timeout=timeout)
        except av.error.FFmpegError as e:
            self.state = "failed"
            raise OutputError(f"Could not open {self.name}: {e.strerror or e}.") from None
        self._streams = {
            "video": c.add_stream_from_template(self._templates[0]),
            "audio": c.add_stream_from_template(self._templates[1]),
        }
        self._container = c
        self._need_keyframe = True
        self._offset = {}
        self.state = "live"
        log.info("output %s: connected", self.name)

    def send(self, packet: av.Packet, kind: str) -> None:
        if self._closed.is_set():
            return
        item = _copy_packet(packet, kind)
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.packets_dropped += 1
                    self._need_keyframe = True
                except queue.Empty:
                    pass

    def close(self, timeout: float = 10.0) -> None:
        """Drain what is queued, write the trailer, hang up. Safe to call twice."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        if self._thread is not None:
            self._thread.join(timeout)
        self._close_container()
        self.state = "closed"

    # -- the thread -------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._write(item)
            except (av.error.FFmpegError, OSError) as e:
                if not self.network or self._closed.is_set():
                    self.last_error = str(e)
                    self.state = "failed"
                    log.error("output %s failed: %s", self.name, mask_url(str(e)))
                    return
                self._reconnect(e)

    def _write(self, p: _Pkt) -> None:
        if self._container is None:
            raise OSError("not connected")
        if self._need_keyframe:
            # A (re)connected stream must begin on a video keyframe.
            if not (p.kind == "video" and p.keyframe):
                return
            self._need_keyframe = False
            start = p.seconds()
            self._offset = {"video": start, "audio": start}
        if p.kind == "audio" and p.seconds() < self._offset["audio"]:
            return
        pkt = av.Packet(p.data)
        shift = round(self._offset[p.kind] / p.time_base)
        pkt.pts = None if p.pts is None else p.pts - shift
        pkt.dts = None if p.dts is None else p.dts - shift
        if p.duration:
            pkt.duration = p.duration
        pkt.time_base = p.time_base
        pkt.is_keyframe = p.keyframe
        pkt.stream = self._streams[p.kind]
        self._container.mux(pkt)
        self.bytes_sent += len(p.data)

    def _reconnect(self, error: Exception) -> None:
        self.last_error = mask_url(str(error))
        log.warning("output %s dropped (%s); reconnecting", self.name, self.last_error)
        self._close_container()
        self.state = "reconnecting"
        retrying = Retrying(
            retry=retry_if_exception_type((OutputError, OSError, av.error.FFmpegError)),
            wait=wait_exponential(multiplier=0.5, max=self._reconnect_max_s),
            stop=lambda rs: self._closed.is_set(),
            reraise=False,
            before_sleep=lambda rs: log.info(
                "output %s: attempt %d failed, retrying", self.name, rs.attempt_number
            ),
        )
        try:
            for attempt in retrying:
                with attempt:
                    check_reachable(self.target, self._connect_timeout_s)
                    self._connect()
        except Exception:
            return
        if self.state == "live":
            self.reconnects += 1
            # Whatever queued while we were away is stale: start fresh.
            self._drain_stale()

    def _drain_stale(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is None:
                self._queue.put(None)
                return
            self.packets_dropped += 1

    def _close_container(self) -> None:
        c, self._container = self._container, None
        if c is not None:
            try:
                c.close()
            except Exception as e:
                log.debug("output %s: close: %s", self.name, mask_url(str(e)))


__all__ = [
    "Encoder", "EncoderSettings", "Output", "OutputError", "check_reachable",
    "validate_target", "AUDIO_RATE",
]
