"""Destinations that misbehave: one that accepts TCP and never reads (from
the start, or mid-stream) never slows the others or the clock; one that
falls behind loses its oldest packets and resumes on a keyframe; a planned
reconnect before Twitch's 48-hour limit loses no frame. Against a real nginx
RTMP server, read back with ffprobe as a viewer's player would."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time

import numpy as np
import pytest

from streambot.broadcast.audio import Soundtrack
from streambot.broadcast.compositor import Compositor
from streambot.broadcast.encoder import Encoder, EncoderSettings
from streambot.broadcast.outputs import Output, open_outputs
from streambot.broadcast.pipeline import Broadcast
from streambot.config import resolve_world
from streambot.world.sketch import SketchWorld

from .conftest import run_cli
from .media import frames_sent, holes, probe

pytestmark = pytest.mark.slow

FPS = 30
SIZE = (640, 360)


class Destination:
    """A TCP server on loopback: forwards to `upstream` (a real RTMP server)
    until frozen; frozen (or with no upstream at all) it accepts connections
    and never reads from them, as a hung ingest does."""

    def __init__(self, upstream: int | None = None) -> None:
        self.upstream = upstream
        self.frozen = threading.Event()
        if upstream is None:
            self.frozen.set()
        self.accepted = 0
        self._socks: list[socket.socket] = []
        self._closed = threading.Event()
        self.server = socket.socket()
        # A small receive window: a sender that is not read blocks within moments.
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, name: str) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{name}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            self._socks.append(client)
            if self.frozen.is_set():
                continue  # never read
            up = socket.create_connection(("127.0.0.1", self.upstream))
            self._socks.append(up)
            threading.Thread(target=self._pump, args=(client, up, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while True:
                if from_client and self.frozen.is_set():
                    self._closed.wait()  # stop reading: the sender's writes pile up and block
                    return
                data = src.recv(65536)
                if not data:
                    return
                dst.sendall(data)
        except OSError:
            return

    def thaw(self) -> None:
        """The server recovers: it drops the sessions it hung on and reads new ones again."""
        stale, self._socks = self._socks, []
        self.frozen.clear()
        for sock in stale:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # at once, whatever thread still holds it
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self._closed.set()
        self.server.close()
        self.thaw()


def until(pred, timeout: float, what: str) -> float:
    """Wait for `pred`; the seconds it took."""
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - t0


def ffprobe(path) -> dict:
    """The real ffprobe: video packets, the first one's flags, codecs."""
    r = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time,flags",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(r.stdout)


def recordings(server, name: str):
    return [p for p in server.recordings if p.name.startswith(f"{name}-") or p.name == f"{name}.flv"]


def test_a_silent_destination_at_start_keeps_nobody_off_air(rtmp_server, cli_env, tmp_path):
    """`streambot run` to nginx and to a server that accepts TCP and never
    answers: the show goes on air at once on nginx, whole, and keeps trying the other."""
    silent = Destination()
    config = tmp_path / "fast.toml"
    config.write_text("[stream]\nconnect_timeout_s = 3.0\nreconnect_max_s = 1.0\n")
    try:
        r = run_cli(
            [
                "run",
                "--config",
                str(config),
                "--output",
                rtmp_server.url("good"),
                "--output",
                silent.url("hung"),
                "--duration",
                "8",
                "--chat",
                "none",
                "--size",
                "640x360",
                "--no-console",
            ],
            cli_env,
        )
    finally:
        silent.close()
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert "not live yet (no answer to the RTMP handshake); it keeps trying" in r.stderr
    assert "stalled for" in r.stderr and "reconnecting" in r.stderr, "a stalled handshake is given up"
    rtmp_server.stop()
    (rec,) = recordings(rtmp_server, "good")
    p = probe(rec)
    sent, skipped = frames_sent(r.stderr)
    assert sent + skipped == 8 * FPS and skipped < 4 * FPS, (sent, skipped)
    assert len(p.video_dts) == sent, "every frame the show sent reached nginx"
    assert holes(p.video_dts, FPS) <= skipped, "no gap in the timestamps but a slot the show counted as skipped"


def test_a_destination_that_stops_reading_never_slows_the_others(rtmp_server):
    """Mid-stream, one destination stops reading: it is found stalled and
    reconnected, while nginx gets every frame on time and the clock never waits."""
    proxy = Destination(upstream=rtmp_server.port)
    world = SketchWorld(embedder=None)
    world.start(resolve_world("meadow"), SIZE, FPS)
    encoder = Encoder(EncoderSettings(size=SIZE, fps=FPS, bitrate_kbps=1500))
    good = Output(rtmp_server.url("good"), encoder.stream_info, connect_timeout_s=2.0, reconnect_max_s=1.0)
    bad = Output(proxy.url("bad"), encoder.stream_info, connect_timeout_s=2.0, reconnect_max_s=1.0)
    open_outputs([good, bad])
    b = Broadcast(world, encoder, [good, bad], Compositor(SIZE), Soundtrack(), fps=FPS)
    b.start()
    stopped = False
    try:
        until(lambda: bad.bytes_sent > 300_000, 30, "the proxied destination streams")
        proxy.frozen.set()
        detected = until(lambda: bad.state != "live", 15, "the stall is found")  # the send buffer fills, then stall_s
        until(lambda: bad.reconnects >= 1, 15, "the stalled destination is started again")
        sent = good.bytes_sent
        until(lambda: good.bytes_sent > sent + 200_000, 10, "nginx keeps receiving")
        proxy.thaw()
        until(lambda: bad.state == "live", 60, "the destination comes back")
        closing = threading.Thread(target=b.stop)
        t = time.monotonic()
        closing.start()
        closing.join(60)  # a wait, not a bound: how long closing takes is printed below
        assert not closing.is_alive(), "closing waits for a destination"
        stopped = True
        print(f"stall found in {detected:.1f} s (stall_s {bad.stall_s:.0f}); closed in {time.monotonic() - t:.2f} s")
    finally:
        if not stopped:
            b.stop()
        world.close()
        proxy.close()
    skipped = b.clock.stats.skipped  # slots the machine could not meet: skipped and counted, never sent late
    sent = b.clock.stats.ticks - skipped
    assert good.packets_dropped == 0
    # (that a hand-over never waits for a stalled destination is shown without a clock below)
    rtmp_server.stop()
    (rec,) = recordings(rtmp_server, "good")
    p = probe(rec)
    assert len(p.video_dts) == sent, (len(p.video_dts), sent)
    assert holes(p.video_dts, FPS) <= skipped, "no gap in the timestamps but a counted skip"
    assert len(recordings(rtmp_server, "bad")) >= 2


def test_a_planned_reconnect_loses_no_frame(rtmp_server, tmp_path):
    """Twitch ends a broadcast after 48 hours; streambot reconnects before
    that (here every 3 s): each new connection begins where the last ended."""
    world = SketchWorld(embedder=None)
    world.start(resolve_world("meadow"), SIZE, FPS)
    encoder = Encoder(EncoderSettings(size=SIZE, fps=FPS, bitrate_kbps=1200))
    rtmp = Output(rtmp_server.url("long"), encoder.stream_info, planned_reconnect_s=3.0)
    open_outputs([rtmp])
    b = Broadcast(world, encoder, [rtmp], Compositor(SIZE), Soundtrack(), fps=FPS, max_frames=10 * FPS)
    b.start()
    try:
        assert b.wait(60)
    finally:
        b.stop()
        world.close()
    skipped = b.clock.stats.skipped  # slots the machine could not meet: skipped and counted, never sent late
    assert rtmp.planned_reconnects >= 2 and rtmp.reconnects == 0
    assert rtmp.planned_pause_ms > 0
    print(f"planned reconnect: the stream paused {rtmp.planned_pause_ms:.0f} ms")
    rtmp_server.stop()
    recs = recordings(rtmp_server, "long")
    assert len(recs) == rtmp.planned_reconnects + 1
    counts = []
    for rec in recs:
        info = ffprobe(rec)
        assert info["streams"][0]["codec_name"] == "h264"
        packets = info["packets"]
        assert packets[0]["flags"].startswith("K"), "each connection opens on a keyframe"
        times = np.array(sorted(float(pk["pts_time"]) for pk in packets))
        assert times[0] < 0.05 + skipped / FPS, "from its own time zero"
        assert holes(list(times), FPS) <= skipped, "whole: no gap but a counted skip"
        counts.append(len(packets))
    assert sum(counts) == 10 * FPS - skipped, counts  # not one frame lost between connections
    # what a viewer's player reads: nginx's HLS playlist goes on across the reconnects, whole
    playlist = (rtmp_server.hls_dir / "long.m3u8").read_text()
    durations = [float(d) for d in re.findall(r"#EXTINF:([\d.]+)", playlist)]
    assert playlist.count("#EXT-X-DISCONTINUITY") == len(recs), playlist  # one where each connection begins
    assert sum(durations) == pytest.approx(10.0, abs=0.5), playlist
    segments = re.findall(r"^(long-\d+\.ts)$", playlist, re.M)
    assert sum(len(ffprobe(rtmp_server.hls_dir / seg)["packets"]) for seg in segments) == 10 * FPS


class SlowReader:
    """The far end of a named pipe that an output writes its FLV into: reads
    while `reading` is set and stops (the writer's pipe fills, then blocks)
    while it is clear, as a destination that falls behind does."""

    def __init__(self, path) -> None:
        self.data = bytearray()
        self.reading = threading.Event()
        self.reading.set()
        self._thread = threading.Thread(target=self._run, args=(path,), daemon=True)
        self._thread.start()

    def _run(self, path) -> None:
        with open(path, "rb", buffering=0) as f:
            while self.reading.wait():
                chunk = f.read(65536)
                if not chunk:
                    return
                self.data += chunk

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()


def test_packets_dropped_for_a_slow_destination_resume_on_a_keyframe(tmp_path):
    """A destination that stops reading while connected: the broadcast's
    hand-over never waits, the oldest packets go, and what reaches the
    destination after the gap begins on a keyframe (no smeared picture)."""
    import io
    import os

    import av

    fifo = tmp_path / "slow.flv"
    os.mkfifo(fifo)
    reader = SlowReader(fifo)
    encoder = Encoder(EncoderSettings(size=(160, 90), fps=FPS, bitrate_kbps=300, keyframe_s=1.0))
    out = Output(str(fifo), encoder.stream_info, connect_timeout_s=60.0)  # never taken for stalled here
    rng = np.random.default_rng(0)
    index = 0

    def send_frames(n: int) -> None:
        """n ticks of the broadcast: a frame of noise and its 1/30 s of sound."""
        nonlocal index
        for _ in range(n):
            image = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
            for packet in encoder.encode_video(image, index):
                out.send(packet, "video")
            for packet in encoder.encode_audio(np.zeros((2, 48000 // FPS), np.float32)):
                out.send(packet, "audio")
            index += 1

    try:
        out.open()
        send_frames(3 * FPS)
        until(lambda: len(reader.data) > 50_000, 30, "the destination reads")
        reader.reading.clear()  # it falls behind: nothing more is read
        stalled_at = index

        def behind() -> None:
            while out.packets_dropped == 0 and index < stalled_at + 20_000:
                send_frames(1)

        sender = threading.Thread(target=behind, daemon=True)
        sender.start()
        sender.join(120)
        assert not sender.is_alive(), "a send waited for the stalled destination"
        assert out.packets_dropped > 0, "the queue never filled"
        send_frames(FPS // 3)  # the drop lands inside a keyframe interval
        reader.reading.set()  # it catches up
        send_frames(3 * FPS)
    finally:
        out.close()
    assert reader.join(30), "the destination never saw the end of the stream"
    with av.open(io.BytesIO(bytes(reader.data)), format="flv") as c:
        packets = [
            (round(float(p.pts * p.time_base) * FPS), p.is_keyframe) for p in c.demux(video=0) if p.pts is not None
        ]
    ticks = [t for t, _ in packets]
    gaps = [i for i in range(1, len(ticks)) if ticks[i] != ticks[i - 1] + 1]
    assert packets[0][1] and len(gaps) == 1, gaps  # whole before the drop, whole after it
    (after,) = gaps
    assert packets[after][1], "after the dropped packets the destination resumes on a keyframe"
    assert ticks[0] == 0 and ticks[-1] == index - 1, (ticks[0], ticks[-1], index)  # and goes on to the end
