"""Destinations: every RTMP/RTMPS URL or file gets the same packets, each in
its own process.

Why a process per destination: FFmpeg's RTMP connect and header write run
inside PyAV while holding the GIL, and an ingest server that accepts the TCP
connection but never answers the handshake would freeze every thread of the
broadcast with it. In a child process such a stall only delays that one
destination; the clock, the encoder and the other destinations never notice,
and a watchdog restarts a child that hangs.

`Output` (in the broadcast process) copies packets into a bounded queue and a
feeder thread writes them down a pipe, dropping the oldest when a destination
falls too far behind. `_Muxer` (in the child) writes them with PyAV, starts
every (re)connection on a video keyframe with timestamps from zero, and
reconnects with exponential back-off.
"""
from __future__ import annotations

import io
import logging
import multiprocessing as mp
import queue
import signal
import socket
import struct
import threading
import time
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlparse

import av
from tenacity import Retrying, retry_if_exception_type, wait_exponential

from ..secrets import mask_url
from .encoder import StreamInfo

log = logging.getLogger(__name__)

FILE_FORMATS = {".flv": "flv", ".mp4": "mp4", ".mkv": "matroska"}
STATES = ["idle", "connecting", "live", "reconnecting", "failed", "closed"]
# kind, keyframe, pts, dts, duration, time_base num/den (None timestamps as INT64_MIN)
_HEAD = struct.Struct("<BBqqqii")
_NONE = -(2**63)


class OutputError(Exception):
    """A destination could not be used; the message is one sentence."""


def _is_network(target: str) -> bool:
    return target.startswith(("rtmp://", "rtmps://"))


def validate_target(target: str) -> None:
    if _is_network(target):
        u = urlparse(target)
        if not u.hostname or not u.path.strip("/"):
            raise OutputError(f"{mask_url(target)} is not a full RTMP URL (rtmp://host/app/stream_key).")
        return
    if "://" in target:
        raise OutputError(f"{mask_url(target)}: only rtmp://, rtmps:// or a file path can be an output.")
    if Path(target).suffix.lower() not in FILE_FORMATS:
        raise OutputError(f"{target}: a file output must end in .flv, .mp4 or .mkv.")
    parent = Path(target).resolve().parent
    if not parent.is_dir():
        raise OutputError(f"{target}: the folder {parent} does not exist.")


def check_reachable(target: str, timeout: float) -> None:
    """Raise OutputError with one sentence if an RTMP host does not answer."""
    u = urlparse(target)
    host = u.hostname
    port = u.port or (443 if u.scheme == "rtmps" else 1935)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.gaierror:
        raise OutputError(f"RTMP host {host} cannot be resolved ({mask_url(target)}).") from None
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise OutputError(
            f"RTMP server {host}:{port} is unreachable ({reason}); is it running and is the URL right?"
        ) from None


def _pack(packet: av.Packet, kind: int) -> bytes:
    tb = packet.time_base
    return _HEAD.pack(
        kind, 1 if packet.is_keyframe else 0,
        _NONE if packet.pts is None else packet.pts,
        _NONE if packet.dts is None else packet.dts,
        packet.duration or 0, tb.numerator, tb.denominator,
    ) + bytes(packet)


# -- the child process -------------------------------------------------------------

class _Status:
    """Counters shared with the parent through shared memory."""

    def __init__(self, ctx) -> None:
        self.values = ctx.Array("q", 4, lock=False)  # state, reconnects, bytes_sent, dropped
        self.error = ctx.Array("c", 240, lock=False)

    def set_state(self, state: str) -> None:
        self.values[0] = STATES.index(state)

    def set_error(self, text: str) -> None:
        raw = mask_url(text).encode("utf-8", "replace")[:239]
        self.error.value = raw


class _Muxer:
    def __init__(self, target: str, info: StreamInfo, status: _Status, timeout: float) -> None:
        self.target = target
        self.info = info
        self.status = status
        self.timeout = timeout
        self.network = _is_network(target)
        # Stream templates from the encoder's own FLV header; FLV does not carry
        # the picture size or the real AAC rate, so those are set explicitly.
        self._templates = av.open(io.BytesIO(info.header), "r", format="flv")
        self.container = None
        self.streams: dict[int, av.stream.Stream] = {}
        self.offset = 0.0
        self.need_keyframe = True

    def connect(self) -> None:
        self.status.set_state("connecting")
        if self.network:
            check_reachable(self.target, self.timeout)
        fmt = "flv" if self.network else FILE_FORMATS[Path(self.target).suffix.lower()]
        c = av.open(self.target, mode="w", format=fmt, timeout=self.timeout)
        v = c.add_stream_from_template(self._templates.streams.video[0])
        v.codec_context.width, v.codec_context.height = self.info.width, self.info.height
        v.codec_context.pix_fmt = "yuv420p"
        # The FLV header holds avcC; the packets are Annex B. With the encoder's
        # own extradata every muxer converts the packets as it should.
        v.codec_context.extradata = self.info.video_extradata
        v.time_base = Fraction(1, 1000)
        a = c.add_stream_from_template(self._templates.streams.audio[0])
        a.codec_context.sample_rate = self.info.audio_rate
        a.codec_context.layout = "stereo"
        c.start_encoding()  # the RTMP handshake and header happen here
        self.container, self.streams = c, {0: v, 1: a}
        self.need_keyframe = True
        self.status.set_state("live")

    def write(self, message: bytes) -> None:
        kind, key, pts, dts, duration, num, den = _HEAD.unpack_from(message)
        tb = Fraction(num, den)
        t = float((dts if dts != _NONE else pts) * tb)
        if self.need_keyframe:
            # Every (re)connection begins on a video keyframe at time zero.
            if not (kind == 0 and key):
                return
            self.need_keyframe = False
            self.offset = t
        if t < self.offset:
            return
        shift = round(self.offset / tb)
        p = av.Packet(message[_HEAD.size:])
        p.pts = None if pts == _NONE else pts - shift
        p.dts = None if dts == _NONE else dts - shift
        if duration:
            p.duration = duration
        p.time_base = tb
        p.is_keyframe = bool(key)
        p.stream = self.streams[kind]
        self.container.mux(p)
        self.status.values[2] += len(message) - _HEAD.size

    def close(self) -> None:
        c, self.container = self.container, None
        if c is not None:
            try:
                c.close()
            except Exception:
                pass


def _child_main(conn, status: _Status, target: str, info: StreamInfo, timeout: float,
                reconnect_max_s: float) -> None:
    """The destination's process: receive packets, mux them, reconnect on failure."""
    # Ctrl-C in a terminal reaches the whole process group: the broadcast decides
    # when this process stops (after the trailer), not the keyboard.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING)
    av.logging.set_level(av.logging.PANIC)
    muxer = _Muxer(target, info, status, timeout)
    retry = dict(
        retry=retry_if_exception_type((OutputError, OSError, av.error.FFmpegError)),
        wait=wait_exponential(multiplier=0.5, max=reconnect_max_s),
        reraise=True,
    )
    try:
        muxer.connect()
    except Exception as e:
        status.set_error(str(e))
        status.set_state("failed")
        return
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            break
        if not message:  # the parent's "close": write the trailer and go
            break
        try:
            muxer.write(message)
        except (av.error.FFmpegError, OSError) as e:
            if not muxer.network:
                status.set_error(str(e))
                status.set_state("failed")
                break
            status.set_error(str(e))
            status.set_state("reconnecting")
            muxer.close()

            def drain(_):  # what arrives while we are away is stale
                while conn.poll(0):
                    if not conn.recv_bytes():
                        raise EOFError
                    status.values[3] += 1

            try:
                for attempt in Retrying(before_sleep=drain, **retry):
                    with attempt:
                        muxer.connect()
            except EOFError:
                break
            status.values[1] += 1
    muxer.close()
    if status.values[0] != STATES.index("failed"):
        status.set_state("closed")


# -- the broadcast side --------------------------------------------------------------

class Output:
    """One destination, fed from the broadcast, muxed in its own process."""

    QUEUE_SECONDS = 4.0

    def __init__(self, target: str, info: StreamInfo, *, connect_timeout_s: float = 5.0,
                 reconnect_max_s: float = 30.0) -> None:
        validate_target(target)
        self.target = target
        self.name = mask_url(target)
        self.network = _is_network(target)
        self.info = info
        self.connect_timeout_s = connect_timeout_s
        self.reconnect_max_s = reconnect_max_s
        self._ctx = mp.get_context("spawn")
        self._status = _Status(self._ctx)
        # Seconds of video and its audio; beyond that, oldest first goes.
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=int(info.fps * self.QUEUE_SECONDS * 3))
        self._closed = threading.Event()
        self._resync = False
        self._restarts = 0
        self._dropped_here = 0
        self._proc = None
        self._conn = None
        self._feeder: threading.Thread | None = None
        self._connecting_since = 0.0

    # -- figures the console shows --------------------------------------------------
    @property
    def state(self) -> str:
        return STATES[self._status.values[0]]

    @property
    def reconnects(self) -> int:
        return self._status.values[1] + self._restarts

    @property
    def bytes_sent(self) -> int:
        return self._status.values[2]

    @property
    def packets_dropped(self) -> int:
        return self._status.values[3] + self._dropped_here

    @property
    def last_error(self) -> str | None:
        return self._status.error.value.decode("utf-8", "replace") or None

    # -- lifecycle ----------------------------------------------------------------------
    def open(self) -> None:
        """Connect now; a destination that cannot be reached is a user error."""
        if self.network:
            check_reachable(self.target, self.connect_timeout_s)
        self._spawn()
        deadline = time.monotonic() + self.connect_timeout_s + 10
        while self.state in ("idle", "connecting") and time.monotonic() < deadline:
            if not self._proc.is_alive():
                break
            time.sleep(0.02)
        if self.state != "live":
            reason = self.last_error or (
                "no answer to the RTMP handshake" if self.network else "its writer did not start")
            self._kill()
            raise OutputError(f"Could not start streaming to {self.name}: {reason}.")
        self._feeder = threading.Thread(target=self._feed, name=f"output {self.name}", daemon=True)
        self._feeder.start()
        log.info("output %s: live", self.name)

    def _spawn(self) -> None:
        self._status.set_state("idle")
        recv, self._conn = self._ctx.Pipe(duplex=False)
        self._proc = self._ctx.Process(
            target=_child_main, name="streambot output",
            args=(recv, self._status, self.target, self.info, self.connect_timeout_s, self.reconnect_max_s),
            daemon=True,
        )
        self._proc.start()
        recv.close()
        self._connecting_since = time.monotonic()

    def _kill(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()

    def send(self, packet: av.Packet, kind: str) -> None:
        if self._closed.is_set():
            return
        item = _pack(packet, 0 if kind == "video" else 1)
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self._dropped_here += 1
                    self._resync = True
                except queue.Empty:
                    pass

    def _feed(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                item = b"\x00tick"  # wake to run the watchdog
            if item is None:
                self._send_raw(b"")
                return
            self._watchdog()
            if item == b"\x00tick":
                continue
            if self._resync:
                # After a drop, skip to the next keyframe so the picture never smears.
                if not (item[0] == 0 and item[1] == 1):
                    self._dropped_here += 1
                    continue
                self._resync = False
            self._send_raw(item)

    def _send_raw(self, item: bytes) -> None:
        try:
            self._conn.send_bytes(item)
        except (OSError, ValueError):
            pass  # the child is gone; the watchdog restarts it

    def _watchdog(self) -> None:
        """Restart a child that died, failed, or hangs in a handshake."""
        state = self.state
        if state == "live":
            self._connecting_since = time.monotonic()
            return
        stuck = time.monotonic() - self._connecting_since > self.connect_timeout_s * 3 + self.reconnect_max_s
        dead = not self._proc.is_alive() or state == "failed"
        if not self.network or self._closed.is_set() or not (dead or stuck):
            return
        log.warning("output %s: restarting its process (%s)", self.name, self.last_error or state)
        self._kill()
        self._restarts += 1
        self._resync = True
        self._spawn()

    def close(self, timeout: float = 15.0) -> None:
        """Send what is queued, write the trailer, hang up. Safe to call twice."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        if self._feeder is not None:
            self._feeder.join(timeout)
        if self._proc is not None:
            self._proc.join(timeout)
            if self._proc.is_alive():
                log.warning("output %s: did not close in %.0f s; stopped", self.name, timeout)
        self._kill()
        if self.state != "failed":
            self._status.set_state("closed")
