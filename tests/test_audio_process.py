"""The soundtrack in a process of its own: the broadcast's process relays its
blocks and never imports scipy; what goes on air is the world's music at
streaming loudness (FFmpeg's EBU R128 meter on the recording, as in
test_loudness.py); the show's requests reach the child; and a child killed
mid-broadcast leaves the weather playing, joined without a click, a problem
in the status, and a child started again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import av
import numpy as np
import pytest

from benchmarks.ffmpeg_loudness import ebur128
from streambot.broadcast.audio_feed import AudioFeed, SoundtrackProcess, SoundtrackSettings
from streambot.broadcast.compositor import Compositor
from streambot.broadcast.pipeline import open_broadcast
from streambot.config import MusicSettings, StreamSettings, music_of, resolve_world
from streambot.world.base import Ambience
from streambot.world.sketch import SketchWorld

from .conftest import ROOT

RATE = 48_000
FPS = 30
SIZE = (160, 96)
STILL = Ambience(wind=0.0, rain=0.0)


def test_the_broadcasts_process_never_imports_scipy():
    code = (
        "import streambot.app, streambot.cli, streambot.console, streambot.world.sketch, sys; "
        "found = sorted(m for m in sys.modules if m.startswith('scipy')); "
        "assert not found, found[:5]"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-800:]


def test_the_soundtrack_process_starts_on_the_standard_library_alone():
    """The child is spawned beside the first seconds on air: at the show's priority it
    imports its own module and the standard library; numpy, the settings' models and
    scipy come on its build thread, 10 nice steps below the show (a test above hears
    the music it then makes)."""
    code = (
        "import sys, streambot.broadcast.soundtrack_child; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'pydantic', 'scipy', 'av', 'PIL'}))"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-800:]
    assert r.stdout.strip() == "[]", r.stdout


def decoded_audio(path) -> np.ndarray:
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        assert (a.codec_context.name, a.codec_context.sample_rate, a.codec_context.channels) == ("aac", RATE, 2)
        chunks = [f.to_ndarray().reshape(2, -1) for f in c.decode(audio=0)]
    return np.concatenate(chunks, axis=1)


def on_air(path, preset: str, seconds: float, during=None):
    """The preset's world and its soundtrack's process, broadcast in real time to
    `path`; `during(broadcast, track)` is called on every wake of the wait."""
    spec = resolve_world(preset)
    world = SketchWorld(embedder=None)
    world.start(spec, SIZE, FPS, seed=0)
    track = SoundtrackProcess(SoundtrackSettings(music_of(spec), seed=0), hang_s=5.0)
    track.start()
    try:
        assert track.ready.wait(120), "the soundtrack's process did not start"
        track.set_story(spec.beats[0])
        stream = StreamSettings(size=f"{SIZE[0]}x{SIZE[1]}", fps=FPS, bitrate_kbps=300)
        b = open_broadcast(world, stream, [str(path)], Compositor(SIZE), track, max_frames=round(seconds * FPS))
        b.start()
        while not b.wait(0.02):
            if during is not None:
                during(b, track)
        status = b.audio_status()
        health = b.health()
        b.stop()
        assert b.clock.error is None
        return status, health, track
    finally:
        track.close()
        world.close()


def test_the_worlds_sound_goes_on_air_from_its_own_process_at_streaming_loudness(tmp_path):
    path = tmp_path / "cyberpunk.mkv"
    status, health, track = on_air(path, "cyberpunk", 20.0)
    assert track.pid is None, "closed with the broadcast"
    assert status["source"] == "generated" and status["style"] == "synthwave", status
    assert status["problem"] is None and status["restarts"] == 0, status
    x = decoded_audio(path)
    assert x.shape[1] / RATE == pytest.approx(20.0, abs=0.2)
    measured = ebur128(path)
    assert -16.0 <= measured.integrated_lufs <= -14.0, measured
    assert measured.true_peak_dbtp <= -1.0, measured
    # the meter in the child (before the codec) agrees with FFmpeg's on the recording
    assert status["integrated_lufs"] == pytest.approx(measured.integrated_lufs, abs=1.0), status


def _take(track: SoundtrackProcess, seconds: float, ambience: Ambience) -> np.ndarray:
    """The child's next blocks, as the feed's thread takes them (render waits a
    little and gives None while none is there)."""
    blocks, tries = [], 0
    while len(blocks) < round(seconds * RATE / 4800):
        block = track.render(4800, ambience)
        tries += 1
        assert tries < 4000, "the child stopped giving blocks"
        if block is not None:
            blocks.append(block)
    return np.concatenate(blocks, axis=1)


def _max_step(x: np.ndarray, before: np.ndarray | None = None) -> float:
    if before is not None:
        x = np.concatenate([before[:, -1:], x], axis=1)
    return float(np.abs(np.diff(x, axis=1)).max())


def test_a_world_switch_and_the_music_switch_reach_the_childs_music():
    track = SoundtrackProcess(SoundtrackSettings(MusicSettings(style="pad", instruments=["chords"]), seed=3))
    track.start()
    try:
        before = _take(track, 10.0, STILL)
        assert track.status()["style"] == "pad"
        track.set_world_music(MusicSettings(style="drone", instruments=["chords"]))
        switch = _take(track, 4.0, STILL)
        after = _take(track, 10.0, STILL)
        assert track.status()["style"] == "drone", track.status()
        assert _max_step(switch, before) <= 1.2 * max(_max_step(before), _max_step(after))
        track.set_music(False)
        assert track.music_on is False
        fade = _take(track, 2.5, STILL)
        gone = _take(track, 1.0, STILL)
        assert np.abs(gone).max() == 0.0, "music off and no weather: silence"
        assert _max_step(fade, after) <= 1.2 * _max_step(after)
        track.set_music(True)
        back = _take(track, 3.0, STILL)
        assert np.sqrt(np.mean(back[:, -RATE:] ** 2)) > 0.02
        assert track.status()["music_on"] is True and track.status()["problem"] is None
    finally:
        track.close()


def test_a_killed_soundtrack_process_leaves_the_weather_on_air_and_starts_again(tmp_path):
    path = tmp_path / "meadow.mkv"
    seen: dict[str, float | str] = {}

    def kill_at_6s(b, track):
        t = b.clock.stats.ticks / FPS
        status = b.audio_status()
        if "killed" not in seen and t >= 6.0:
            seen["killed"] = t
            os.kill(track.pid, signal.SIGKILL)
        elif "killed" in seen and "problem" not in seen and status["problem"]:
            seen["problem"], seen["problem_at"] = status["problem"], t

    status, health, track = on_air(path, "meadow", 18.0, during=kill_at_6s)
    assert "process stopped" in str(seen.get("problem")), seen
    assert seen["problem_at"] - seen["killed"] < 1.0, seen
    # the broadcast never stopped: every slot went out or was counted, and the sound is whole
    assert health.ticks == 18 * FPS and health.skipped_frames < 2 * FPS, health
    x = decoded_audio(path)
    assert x.shape[1] / RATE == pytest.approx(18.0, abs=0.2)
    assert status["restarts"] == 1, status
    kill = int(seen["killed"] * RATE)
    # the weather fills the gap: never silence (the world's wind)
    quarters = [float(np.sqrt(np.mean(x[:, i : i + RATE // 4] ** 2))) for i in range(kill, len(x[0]) - RATE, RATE // 4)]
    assert min(quarters) > 1e-3, quarters


def test_the_weather_joins_a_killed_childs_music_and_its_return_without_a_click():
    """The feed's own samples, as the clock takes them (1600 a tick, 30 ticks a
    second on the wall clock): where the killed child's last block ends and
    where the restarted child's first begins, the step is no larger than the
    music's own."""
    track = SoundtrackProcess(SoundtrackSettings(MusicSettings(style="pad", instruments=["chords"]), seed=3))
    track.start()
    feed = AudioFeed(track, lambda: Ambience(wind=0.6))
    try:
        assert track.ready.wait(120), "the soundtrack's process did not start"
        feed.start()
        ticks: list[tuple[np.ndarray, int]] = []  # (samples, the feed's gaps so far)
        tick = threading.Event()  # never set: its timed wait is the clock's pace
        start = time.monotonic()
        down, back = False, None  # the child's problem was seen; the tick its music came back at
        for i in range(30 * 120):
            tick.wait(max(0.0, start + i / 30 - time.monotonic()))
            if i == 30 * 4:
                os.kill(track.pid, signal.SIGKILL)
            ticks.append((feed.read(1600), feed.late))
            problem = track.status()["problem"]
            down = down or bool(problem)
            if back is None and down and problem is None:
                back = i
            if back is not None and i > back + 30 * 3:
                break
        assert back is not None, "the child was not started again"
        assert track.status()["restarts"] == 1 and track.status()["source"] == "generated", track.status()
    finally:
        feed.close()
        track.close()
    x = np.concatenate([t for t, _ in ticks], axis=1)
    late = np.array([n for _, n in ticks])
    gaps = np.flatnonzero(np.diff(late) > 0) + 1  # the ticks that needed the weather
    assert len(gaps) > 10, "the feed should have run dry after the kill"
    first, last = gaps[0], gaps[-1] + 1
    assert first >= 30 * 4 and last < len(ticks), (first, last)
    music = _max_step(x[:, 1600 * 30 : 1600 * 30 * 4])
    for join in (first, last):  # the first sample of the weather, then the first of the music again
        at = join * 1600
        step = _max_step(x[:, at - 1 : at + 240])
        assert step <= music, (join, step, music)
