"""Destinations: every RTMP/RTMPS URL or file gets the same packets, each in
its own process.

Why a process per destination: FFmpeg's RTMP connect and header write run
inside PyAV while holding the GIL, and an ingest server that accepts the TCP
connection but never answers the handshake would freeze every thread of the
broadcast with it. In a child process such a stall only delays that one
destination; the clock, the encoder and the other destinations never notice.

`Output` (in the broadcast process) copies packets into a bounded queue and a
feeder thread writes them down a pipe, dropping the oldest when a destination
falls too far behind. `_Muxer` (in the child) writes them with PyAV, starts
every (re)connection on a video keyframe with timestamps from zero, and
reconnects with exponential back-off.

A stalled destination (one that takes nothing: a handshake or a write that
has not returned for `stall_s`) is found by a monitor thread from the time
the child marks in shared memory around every blocking call, since FFmpeg's
RTMP writes have no timeout of their own; the child is killed and started
again with back-off. At start-up a destination that does not answer holds
up nothing when another one went live: it keeps trying in the background.

Twitch ends a broadcast after 48 hours; `planned_reconnect_s` reconnects a
network destination before that, on a video keyframe: the old connection is
closed properly and the new one opens on that same keyframe, so no packet is
lost and the picture stops only for the time the handshake takes.
"""

from __future__ import annotations

import io
import logging
import multiprocessing as mp
import os
import queue
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import av
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from ..children import become_child
from ..secrets import mask_url
from .encoder import StreamInfo

if TYPE_CHECKING:
    from .encoder import Packet

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


def _pack(packet: Packet, kind: int) -> bytes:
    tb = packet.time_base
    return _HEAD.pack(
        kind,
        1 if packet.is_keyframe else 0,
        _NONE if packet.pts is None else packet.pts,
        _NONE if packet.dts is None else packet.dts,
        packet.duration or 0,
        tb.numerator,
        tb.denominator,
    ) + bytes(packet)


# -- the child process -------------------------------------------------------------


class _Status:
    """Counters shared with the parent through shared memory."""

    # state, reconnects, bytes_sent, dropped, busy since (monotonic ms, 0: idle),
    # planned reconnects, the last planned reconnect's pause (ms)
    STATE, RECONNECTS, BYTES, DROPPED, BUSY, PLANNED, PLANNED_MS = range(7)

    def __init__(self, ctx: BaseContext) -> None:
        self.values = ctx.Array("q", 7, lock=False)
        self.error = ctx.Array("c", 240, lock=False)

    def set_state(self, state: str) -> None:
        self.values[0] = STATES.index(state)

    def set_error(self, text: str) -> None:
        raw = mask_url(text).encode("utf-8", "replace")[:239]
        self.error.value = raw

    def get(self, i: int) -> int:
        return int(self.values[i])

    @contextmanager
    def busy(self) -> Iterator[None]:
        """Around a call that may block on the network: the parent's monitor
        reads how long it has been going (CLOCK_MONOTONIC is the same in both)."""
        self.values[self.BUSY] = max(1, int(time.monotonic() * 1000))
        try:
            yield
        finally:
            self.values[self.BUSY] = 0

    def busy_for(self) -> float:
        since = self.get(self.BUSY)
        return time.monotonic() - since / 1000 if since else 0.0


class _Muxer:
    def __init__(
        self, target: str, info: StreamInfo, status: _Status, timeout: float, planned_reconnect_s: float | None = None
    ) -> None:
        self.target = target
        self.info = info
        self.status = status
        self.timeout = timeout
        self.network = _is_network(target)
        self.planned_reconnect_s = planned_reconnect_s if self.network else None
        self.connected_at = 0.0
        # Stream templates from the encoder's own FLV header; FLV does not carry
        # the picture size or the real AAC rate, so those are set explicitly.
        self._templates = av.open(io.BytesIO(info.header), "r", format="flv")
        self.container: av.container.OutputContainer | None = None
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
        if self.network:
            _bound_send_buffers()
        self.container, self.streams = c, {0: v, 1: a}
        self.need_keyframe = True
        self.connected_at = time.monotonic()
        self.status.set_state("live")

    def reconnect_due(self, message: bytes) -> bool:
        """A planned reconnect is due, and this packet is a video keyframe to begin on."""
        if self.planned_reconnect_s is None or self.container is None:
            return False
        kind, key = message[0], message[1]
        return kind == 0 and key == 1 and time.monotonic() - self.connected_at >= self.planned_reconnect_s

    def planned_reconnect(self) -> None:
        """Close properly (trailer, unpublish) and connect again at once; the
        keyframe that made it due is the new connection's first packet."""
        t = time.monotonic()
        with self.status.busy():
            self.close()
            self.connect()
        self.status.values[_Status.PLANNED] += 1
        self.status.values[_Status.PLANNED_MS] = round((time.monotonic() - t) * 1000)

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
        p = av.Packet(message[_HEAD.size :])
        p.pts = None if pts == _NONE else pts - shift
        p.dts = None if dts == _NONE else dts - shift
        if duration:
            p.duration = duration
        p.time_base = tb
        p.is_keyframe = bool(key)
        p.stream = self.streams[kind]
        assert self.container is not None  # connected before the first packet, again after each failure
        self.container.mux(p)
        self.status.values[2] += len(message) - _HEAD.size

    def close(self) -> None:
        c, self.container = self.container, None
        if c is not None:
            try:
                c.close()
            except Exception:
                pass


SEND_BUFFER = 256 * 1024  # Linux doubles it: ~0.7 s of a 6000 kbit/s stream, several round trips to any ingest


def _bound_send_buffers() -> None:
    """Bound the kernel's send buffer of this process's TCP connection.

    FFmpeg gives its RTMP socket no write timeout and PyAV passes it no socket
    options; left to autotune, the buffer grows to megabytes, which hides a
    destination that stopped reading for tens of seconds (the writes still
    "succeed"). Bounded, a write blocks within a second of the stall, and the
    monitor sees it. Only this process's own sockets are touched (Linux's /proc)."""
    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            if s.type == socket.SOCK_STREAM and s.family in (socket.AF_INET, socket.AF_INET6):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        except OSError:
            pass
        finally:
            s.close()  # the duplicate only


def _child_main(
    conn: Connection,
    status: _Status,
    target: str,
    info: StreamInfo,
    timeout: float,
    reconnect_max_s: float,
    planned_reconnect_s: float | None = None,
) -> None:
    """The destination's process: receive packets, mux them, reconnect on failure."""
    become_child()  # Ctrl-C is the broadcast's to act on (after the trailer); gone with the show
    logging.basicConfig(level=logging.WARNING)
    av.logging.set_level(av.logging.PANIC)
    muxer = _Muxer(target, info, status, timeout, planned_reconnect_s)
    retry_on = retry_if_exception_type((OutputError, OSError, av.error.FFmpegError))
    backoff = wait_exponential(multiplier=0.5, max=reconnect_max_s)
    try:
        with status.busy():
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
            if muxer.reconnect_due(message):
                muxer.planned_reconnect()
            with status.busy():
                muxer.write(message)
        except (av.error.FFmpegError, OSError, OutputError) as e:
            if not muxer.network:
                status.set_error(str(e))
                status.set_state("failed")
                break
            status.set_error(str(e))
            status.set_state("reconnecting")
            muxer.close()

            def drain(_: RetryCallState) -> None:  # what arrives while we are away is stale
                while conn.poll(0):
                    if not conn.recv_bytes():
                        raise EOFError
                    status.values[3] += 1

            try:
                for attempt in Retrying(before_sleep=drain, retry=retry_on, wait=backoff, reraise=True):
                    with attempt, status.busy():
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

    def __init__(
        self,
        target: str,
        info: StreamInfo,
        *,
        connect_timeout_s: float = 5.0,
        reconnect_max_s: float = 30.0,
        planned_reconnect_s: float | None = None,
    ) -> None:
        validate_target(target)
        self.target = target
        self.name = mask_url(target)
        self.network = _is_network(target)
        self.info = info
        self.connect_timeout_s = connect_timeout_s
        self.reconnect_max_s = reconnect_max_s
        self.planned_reconnect_s = planned_reconnect_s if self.network else None
        # A handshake or a write that has not returned in this long is a stalled destination.
        self.stall_s = 2 * connect_timeout_s
        self._ctx = mp.get_context("spawn")
        self._status = _Status(self._ctx)
        # Seconds of video and its audio; beyond that, oldest first goes.
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=int(info.fps * self.QUEUE_SECONDS * 3))
        self._closed = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()  # the child process: replaced by the feeder, killed by the monitor
        self._resync = False
        self._restarts = 0
        self._restarts_in_a_row = 0
        self._next_restart = 0.0
        self._restart_wait = wait_exponential(multiplier=0.5, max=reconnect_max_s)
        self._dropped_here = 0
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None
        self._feeder: threading.Thread | None = None
        self._monitor: threading.Thread | None = None
        self._spawned_at = 0.0

    # -- figures the console shows --------------------------------------------------
    @property
    def state(self) -> str:
        return STATES[self._status.get(_Status.STATE)]

    @property
    def reconnects(self) -> int:
        return self._status.get(_Status.RECONNECTS) + self._restarts

    @property
    def planned_reconnects(self) -> int:
        return self._status.get(_Status.PLANNED)

    @property
    def planned_pause_ms(self) -> int:
        """How long the last planned reconnect kept the destination waiting."""
        return self._status.get(_Status.PLANNED_MS)

    @property
    def bytes_sent(self) -> int:
        return self._status.get(_Status.BYTES)

    @property
    def packets_dropped(self) -> int:
        return self._status.get(_Status.DROPPED) + self._dropped_here

    @property
    def last_error(self) -> str | None:
        return self._status.error.value.decode("utf-8", "replace") or None

    @property
    def stalled(self) -> bool:
        return self._status.busy_for() > self.stall_s

    # -- lifecycle ----------------------------------------------------------------------
    def open(self) -> None:
        """Connect now; a destination that cannot be reached is a user error."""
        open_outputs([self])

    def start(self) -> None:
        """Start connecting (in the child process) without waiting for it."""
        if self.network:
            check_reachable(self.target, self.connect_timeout_s)
        with self._lock:
            self._spawn()

    def settled(self) -> bool:
        """Live, failed, gone, or its handshake is overdue: nothing more to wait for at start-up."""
        state = self.state
        if state != "idle" and state != "connecting":
            return True
        assert self._proc is not None  # start() spawned it
        return not self._proc.is_alive() or self._status.busy_for() > self.connect_timeout_s

    def reason(self) -> str:
        return self.last_error or ("no answer to the RTMP handshake" if self.network else "its writer did not start")

    def run(self) -> None:
        """Feed the destination from now on (live or still trying)."""
        self._feeder = threading.Thread(target=self._feed, name=f"output {self.name}", daemon=True)
        self._feeder.start()
        self._monitor = threading.Thread(target=self._watch, name=f"output monitor {self.name}", daemon=True)
        self._monitor.start()

    def _spawn(self) -> None:
        self._status.set_state("idle")
        self._status.values[_Status.BUSY] = 0
        recv, self._conn = self._ctx.Pipe(duplex=False)
        self._proc = self._ctx.Process(
            target=_child_main,
            name="streambot output",
            args=(
                recv,
                self._status,
                self.target,
                self.info,
                self.connect_timeout_s,
                self.reconnect_max_s,
                self.planned_reconnect_s,
            ),
            daemon=True,
        )
        self._proc.start()
        recv.close()
        self._spawned_at = time.monotonic()

    def _kill(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()

    def send(self, packet: Packet, kind: str) -> None:
        if self._closed.is_set():
            return
        self._put(_pack(packet, 0 if kind == "video" else 1))

    def _put(self, item: bytes | None) -> None:
        """Never waits: when the destination is behind, the oldest packet goes."""
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
                item = b"\x00tick"  # wake to restart a child that is gone
            if item is None:
                self._send_raw(b"")
                return
            self._restart_if_gone()
            if item == b"\x00tick":
                continue
            if self._resync:
                # After a drop, skip to the next keyframe so the picture never smears.
                if not (item[0] == 0 and item[1] == 1):
                    self._dropped_here += 1
                    continue
                self._resync = False
            if not self._send_raw(item):
                self._dropped_here += 1
                self._resync = True

    def _send_raw(self, item: bytes) -> bool:
        assert self._conn is not None  # spawned by start() before the feeder runs
        try:
            self._conn.send_bytes(item)
            return True
        # The child is gone (it is started again), or close() closed the pipe
        # under a write blocked on a stalled child (TypeError: the handle is None).
        except (OSError, ValueError, TypeError):
            return False

    def _restart_if_gone(self) -> None:
        """Start the child again when it died, failed, or was killed as stalled (with back-off)."""
        state = self.state
        if state == "live":
            self._restarts_in_a_row = 0
            return
        if not self.network or self._closed.is_set():
            return
        with self._lock:
            assert self._proc is not None  # spawned by start() before the feeder runs
            if self._proc.is_alive() and state != "failed":
                return
            now = time.monotonic()
            if now < self._next_restart:
                return
            log.warning("output %s: restarting its process (%s)", self.name, self.last_error or state)
            self._kill()
            self._restarts += 1
            self._restarts_in_a_row += 1
            retry = RetryCallState(Retrying(), None, (), {})  # a state for the wait alone: it reads attempt_number only
            retry.attempt_number = self._restarts_in_a_row
            self._next_restart = now + float(self._restart_wait(retry))
            self._resync = True
            self._spawn()

    def _watch(self) -> None:
        """Kill a child stalled in a handshake or a write: FFmpeg would wait for ever."""
        while not self._done.wait(0.2):
            with self._lock:
                busy = self._status.busy_for()
                if busy <= self.stall_s or self._proc is None or not self._proc.is_alive():
                    continue
                self._status.set_error(f"stalled: no progress for {busy:.0f} s")
                log.warning("output %s: stalled for %.0f s (the server takes nothing); reconnecting", self.name, busy)
                self._proc.kill()  # the feeder, blocked on its pipe, wakes and starts it again
                self._proc.join(5)
                self._status.values[_Status.BUSY] = 0
                self._status.set_state("reconnecting")

    def close(self, timeout: float = 15.0) -> None:
        """Send what is queued, write the trailer, hang up. Safe to call twice.

        A destination that is not live (or stalls while closing) is not waited for."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            if self._feeder is None:
                return
            if self.state != "live" or self.stalled:
                with self._lock:
                    self._kill()  # nothing worth a trailer is on its way
            self._put(None)
            self._feeder.join(timeout)
            if self._proc is not None:
                self._proc.join(timeout)
                if self._proc.is_alive():
                    log.warning("output %s: did not close in %.0f s; stopped", self.name, timeout)
        finally:
            self._done.set()
            if self._monitor is not None:
                self._monitor.join(2)
            with self._lock:
                self._kill()
            if self.state != "failed":
                self._status.set_state("closed")


def open_outputs(outputs: list[Output]) -> None:
    """Connect every destination at once and wait until each is live or settled.

    When none goes live, the first one's reason stops the start (a wrong URL or
    key is the user's to fix). When some do, the others (a file excepted) keep
    trying in the background and the show goes on: one bad destination never
    keeps the rest off air."""
    start_outputs(outputs)
    try:
        await_outputs(outputs)
    except BaseException:
        close_outputs(outputs)
        raise


def start_outputs(outputs: list[Output]) -> None:
    """Start every destination's process connecting, without waiting for any
    (`await_outputs` waits); when one cannot start, those started are closed."""
    started: list[Output] = []
    try:
        for out in outputs:
            out.start()
            started.append(out)
    except BaseException:
        close_outputs(started)
        raise


def close_outputs(outputs: list[Output]) -> None:
    """End outputs that never went on air (a start that stopped half-way)."""
    for o in outputs:
        o._closed.set()
        o._done.set()
        o._kill()


def await_outputs(outputs: list[Output]) -> None:
    """Wait until every started output is live or settled, as `open_outputs` describes.
    When that stops the start, the outputs are left to whoever started them to close."""
    deadline = time.monotonic() + max(o.connect_timeout_s for o in outputs) + 10
    while not all(o.settled() for o in outputs) and time.monotonic() < deadline:
        time.sleep(0.02)
    live = [o for o in outputs if o.state == "live"]
    stuck = [o for o in outputs if o.state != "live"]
    refused = [o for o in stuck if not o.network] or (stuck if not live else [])
    if refused:
        o = refused[0]
        raise OutputError(f"Could not start streaming to {o.name}: {o.reason()}.")
    for o in outputs:
        o.run()
        if o.state == "live":
            log.info("output %s: live", o.name)
        else:
            log.warning("output %s: not live yet (%s); it keeps trying while the others stream", o.name, o.reason())
