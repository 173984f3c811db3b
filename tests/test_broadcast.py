"""The broadcast spine, end to end: the real CLI streaming the sketch world to a
real nginx RTMP server, read back as a viewer's player would read it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import av
import numpy as np
import pytest

from streambot.broadcast.audio import Soundtrack
from streambot.broadcast.compositor import Compositor
from streambot.broadcast.pipeline import open_broadcast
from streambot.config import StreamSettings, resolve_world
from streambot.world.base import Direction

from .conftest import ROOT, run_cli
from .media import audio_rms, decode_frames, frames_sent, holes, probe


@pytest.mark.slow
def test_twenty_seconds_over_rtmp_arrive_whole(rtmp_server, cli_env):
    """20 s through the real CLI to nginx: H.264 + AAC, 1280x720 at 30 fps, a
    keyframe every 2 s, the expected duration, and every frame the show sent
    arrives on the 1/30 s grid. The show keeps the wall clock: a slot the
    machine could not meet is skipped and counted, never sent late, so the
    only holes in the timestamps are exactly the slots it says it skipped."""
    url = rtmp_server.url("spine")
    r = run_cli(["run", "--output", url, "--duration", "20", "--chat", "none"], cli_env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    sent, skipped = frames_sent(r.stderr)
    assert sent + skipped == 600 and skipped < 300, (sent, skipped)  # 20 s of slots; most of them met
    rtmp_server.stop()  # finalises the recording
    (rec,) = rtmp_server.recordings
    p = probe(rec)
    assert p.video_codec == "h264" and p.audio_codec == "aac"
    assert (p.width, p.height) == (1280, 720)
    assert np.median(np.diff(p.video_dts)) == pytest.approx(1 / 30, abs=0.0011)  # 30 fps, skipped slots aside
    assert (p.audio_rate, p.audio_channels) == (48000, 2)
    assert len(p.video_dts) == sent  # nothing the show sent was lost on the way
    assert holes(p.video_dts, 30) <= skipped  # no gap in the timestamps but a counted skip
    assert p.duration == pytest.approx(20.0, abs=0.05)
    # Keyframes are forced on presentation time: the first frame at or past each 2 s mark.
    assert len(p.keyframe_times) == 10
    marks = np.arange(10) * 2.0
    late_by = np.asarray(p.keyframe_times) - marks
    assert np.all(late_by >= -0.002) and np.all(late_by <= (skipped + 1.1) / 30), late_by
    assert audio_rms(rec) > 0.005, "the soundtrack should be audible, not silence"
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(rec), "-f", "null", "-"], capture_output=True, text=True
    )
    assert decoded.returncode == 0 and decoded.stderr == "", decoded.stderr[:500]


def _broadcast_to_file(path, preset="meadow", seconds=9.0, steer_at=3.0, prompt=None, size=(640, 360)):
    from streambot.world.sketch import SketchWorld

    fps = 30
    world = SketchWorld()
    world.start(resolve_world(preset), size, fps, seed=3)
    stream = StreamSettings(size=f"{size[0]}x{size[1]}", fps=fps, bitrate_kbps=3000)
    b = open_broadcast(world, stream, [str(path)], Compositor(size), Soundtrack(), max_frames=round(seconds * fps))
    b.start()
    steered = False
    while not b.wait(0.01):
        if prompt and not steered and b.clock.stats.ticks >= steer_at * fps:
            world.steer(Direction(prompt, prompt, "audience"), transition_s=1.5)
            steered = True
    health = b.health()
    b.stop()
    world.close()
    return health


def test_a_prompt_changes_the_picture_without_a_hard_cut(tmp_path):
    path = tmp_path / "steer.mkv"
    health = _broadcast_to_file(path, prompt="a dark thunderstorm at night with heavy rain")
    frames = decode_frames(path)
    times = np.array([t for t, _ in frames])
    lum = np.array([f.mean() for _, f in frames])
    before = lum[(times > 1.5) & (times < 3.0)].mean()
    after = lum[times > 6.0].mean()
    assert before - after > 25, (before, after)  # a storm at night is much darker than the morning
    diffs = np.array([np.abs(a[1].astype(np.int16) - b[1].astype(np.int16)).mean() for a, b in zip(frames, frames[1:])])
    idle = np.median(diffs[(times[1:] > 0.5) & (times[1:] < 3.0)])
    total = np.abs(frames[-1][1].astype(np.int16) - frames[int(2.5 * 30)][1].astype(np.int16)).mean()
    # A hard cut would show the whole before/after difference in one step. A
    # 1.5 s morph spreads it over ~45 frames, so no step may exceed a quarter
    # of it (rain streaks and lightning add some frame-to-frame noise).
    worst = diffs[(times[1:] > 3.0) & (times[1:] < 6.0)].max()
    assert worst < total / 4, (worst, total, idle)
    # measured from the steer to the encoder (its size is `streambot bench`'s figure, not a bound here)
    assert health.prompt_to_pixel_ms_p50 is not None


def test_left_alone_the_world_keeps_moving(tmp_path):
    path = tmp_path / "idle.mkv"
    _broadcast_to_file(path, seconds=6.0)
    frames = decode_frames(path)
    first, last = frames[5][1].astype(np.int16), frames[-1][1].astype(np.int16)
    assert np.abs(first - last).mean() > 2.0, "the camera and sky should have moved"


def until(pred, timeout: float, what: str):
    """Wait for a condition (looked at every tenth of a second), not for a time."""
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)
    return value


def test_ctrl_c_closes_a_playable_file(tmp_path, cli_env):
    out = tmp_path / "show.mp4"
    token = "ctrl-c-test-admin-token-0123456789abcdef"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streambot.cli",
            "run",
            "--output",
            str(out),
            "--chat",
            "none",
            "--size",
            "640x360",
            "--console",
            "127.0.0.1:0",
        ],
        cwd=ROOT,
        env={**cli_env, "STREAMBOT_ADMIN_TOKEN": token},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        url = until(
            lambda: (
                next(
                    (
                        m.group(1)
                        for line in list(lines)
                        if (m := re.search(r"Console: (http://127\.0\.0\.1:\d+/)", line))
                    ),
                    None,
                )
                or proc.poll() is not None
                and "exited"
            ),
            120,
            "the console's address",
        )
        assert url != "exited", "".join(lines)[-2000:]

        def ticks() -> int:
            req = urllib.request.Request(url + "api/health", headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())["ticks"]

        until(lambda: ticks() >= 100, 120, "100 frames on air")  # over 3 s of the show, at 30 fps
    finally:
        # As a terminal's Ctrl-C does: to the whole process group (outputs, overlay drawing).
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
        reader.join(10)
    err = "".join(lines)
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    p = probe(out)  # an MP4 without its trailer (moov) would not open at all
    assert p.video_codec == "h264" and p.duration > 3.0


def test_a_stream_key_is_used_but_never_shown(rtmp_server, cli_env, tmp_path):
    key = "live_987654321_SeCrEtStreamKey"
    cli_env["STREAMBOT_STREAM_KEY"] = key
    url = f"rtmp://127.0.0.1:{rtmp_server.port}/live/{{stream_key}}"
    r = run_cli(
        ["run", "--output", url, "--duration", "3", "--chat", "none", "--size", "640x360", "--log-level", "debug"],
        cli_env,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rtmp_server.stop()
    assert any(key in p.name for p in rtmp_server.recordings), "nginx names the recording after the key"
    logs = r.stdout + r.stderr + "".join(p.read_text() for p in (tmp_path / "state").rglob("*.log"))
    assert key not in logs
    assert "********" in logs


def test_an_output_reconnects_after_the_server_drops(rtmp_server, tmp_path):
    """nginx goes away mid-stream and comes back: the stream resumes on its own."""
    from streambot.world.sketch import SketchWorld

    fps, size = 30, (640, 360)
    world = SketchWorld()
    world.start(resolve_world("meadow"), size, fps)
    stream = StreamSettings(size="640x360", fps=fps, bitrate_kbps=1500, reconnect_max_s=1.0)
    b = open_broadcast(world, stream, [rtmp_server.url("again")], Compositor(size), Soundtrack())
    (out,) = b.outputs
    b.start()

    def ticks() -> int:
        return b.clock.stats.ticks

    try:
        until(lambda: ticks() >= 3 * fps and out.bytes_sent > 0, 60, "three seconds on air")
        rtmp_server.stop()
        until(lambda: out.state != "live", 30, "the drop is noticed")
        away = ticks()
        # the clock goes on while nobody takes the stream: a second of frames before the server is back
        until(lambda: ticks() >= away + fps, 30, "the clock keeps going while the server is away")
        rtmp_server.start()
        until(lambda: out.reconnects >= 1 and out.state == "live", 30, "the output reconnects")
        sent = out.bytes_sent
        until(lambda: out.bytes_sent > sent + 100_000, 30, "the stream goes on after the reconnect")
        until(lambda: ticks() >= away + 3 * fps, 30, "a few more seconds on air")
    finally:
        b.stop()
        world.close()
    rtmp_server.stop()
    assert len(rtmp_server.recordings) == 2
    second = probe(rtmp_server.recordings[-1])
    assert second.video_codec == "h264" and second.duration > 2
    assert second.keyframe_times[0] == pytest.approx(second.video_dts[0], abs=0.001)


def test_an_encoder_stall_is_absorbed_or_skipped_on_the_wall_clock(tmp_path):
    """The encoder runs behind the clock on a thread of its own (as in OBS). A stall
    shorter than its queue of 4 frames costs nothing: the slots wait and are all
    encoded. A stall of 30 slots costs the slots the queue cannot hold, skipped and
    counted as encoding lag while the clock keeps time; the file stays on the wall
    clock with every sample of sound, and the holes are exactly the skipped slots."""
    from streambot.world.sketch import SketchWorld

    fps, seconds, size = 30, 6.0, (320, 180)
    world = SketchWorld(embedder=None, background=False)
    world.start(resolve_world("meadow"), size, fps)
    stream = StreamSettings(size="320x180", fps=fps, bitrate_kbps=800)
    path = tmp_path / "stall.flv"
    b = open_broadcast(
        world, stream, [str(path)], Compositor(size), Soundtrack(), max_frames=round(seconds * fps), encode_ahead=4
    )
    released = threading.Event()
    seen: dict[str, int] = {}

    def stall(slots: int, key: str) -> None:
        """Hold the encoder (its thread calls this) until the clock has handed over `slots` more."""
        start = b.clock.stats.sent
        lag = b.encode_lag_frames
        while b.clock.stats.sent < start + slots and not released.wait(0.002):
            pass
        seen[key] = b.encode_lag_frames - lag

    def observer(index: int, video) -> None:
        if index >= 60 and "long" not in seen:
            stall(30, "long")
        elif index >= 120 and "short" not in seen:
            stall(2, "short")

    b.frame_observer = observer
    b.start()
    try:
        assert b.wait(60)  # a hang guard: six seconds of slots
    finally:
        released.set()
        b.stop()
        world.close()
    h = b.health()
    assert seen["short"] == 0, "a stall shorter than the queue skipped slots"
    assert 26 <= seen["long"] <= 32, seen  # 30 handed over, at most 4 of them queued
    assert h.encode_lag_frames >= seen["long"]
    assert h.skipped_frames == b.clock.stats.skipped + h.encode_lag_frames
    assert b.frames_out + h.skipped_frames == h.ticks == round(seconds * fps)
    p = probe(path)
    assert len(p.video_dts) == b.frames_out
    assert holes(p.video_dts, fps) == h.skipped_frames
    assert p.video_dts[-1] <= seconds - 1 / fps + 0.001  # the last slot's time: on the wall clock
    with av.open(str(path)) as c:
        samples = sum(f.samples for f in c.decode(audio=0))
    assert samples == pytest.approx(seconds * 48_000, abs=2048)  # the sound never skips
