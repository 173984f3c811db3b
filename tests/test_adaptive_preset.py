"""The encoder's adaptive preset: when it steps (the governor, on a fake
timeline), that a step keeps one valid H.264 stream (real x264), and a real
short broadcast on an injected clock that lags, steps down, recovers and
steps back up, as the console's health panel reports it."""

from __future__ import annotations

import subprocess
import threading
from types import SimpleNamespace

import av
import numpy as np
import pytest

from streambot.broadcast.audio import Soundtrack
from streambot.broadcast.compositor import Compositor
from streambot.broadcast.encoder import Encoder, EncoderSettings, PresetGovernor
from streambot.broadcast.pipeline import open_broadcast
from streambot.config import StreamSettings, resolve_world
from streambot.console import views

from .media import probe

FPS = 30


def feed(gov: PresetGovernor, t: float, seconds: float, busy: float, rungs: list[int] | None = None):
    """`seconds` of ticks at `busy` (share of a period) against a two-rung
    ladder (as veryfast -> superfast): a step past either end is refused, as
    the encoder refuses it. Returns the new time and [(time, step)] taken."""
    rungs = rungs if rungs is not None else [0]
    steps = []
    for _ in range(round(seconds * FPS)):
        d = gov.observe(t, busy / FPS)
        if d and 0 <= rungs[0] - d <= 1:
            rungs[0] -= d
            gov.stepped(t, d)
            steps.append((round(t, 2), d))
        t += 1 / FPS
    return t, steps


def test_sustained_lag_steps_down_a_spike_does_not():
    gov, r = PresetGovernor(FPS), [0]
    t, steps = feed(gov, 0.0, 30, 0.4, r)
    assert steps == []
    t, steps = feed(gov, t, 1.5, 1.3, r)  # a 1.5 s spike: not sustained
    assert steps == []
    t, steps = feed(gov, t, 2.0, 0.4, r)
    t0 = t
    t, steps = feed(gov, t, 6.0, 1.1, r)  # sustained lag
    assert len(steps) >= 1 and steps[0][1] == -1
    # the smoothed load needs a moment to cross `high`, then 2 s of lag
    assert 2.0 <= steps[0][0] - t0 <= 3.5, steps


def test_recovery_steps_up_only_after_a_calm_stretch_with_hysteresis():
    gov, r = PresetGovernor(FPS), [0]
    t, steps = feed(gov, 0.0, 4.0, 1.2, r)
    assert [d for _, d in steps] == [-1]
    # between the thresholds: neither lagging nor calm, so it stays put
    t, steps = feed(gov, t, 60.0, 0.7, r)
    assert steps == []
    t0 = t
    t, steps = feed(gov, t, 30.0, 0.3, r)
    assert [d for _, d in steps] == [1]
    assert 10.0 <= steps[0][0] - t0 <= 12.5, steps


def test_a_step_up_that_fails_doubles_the_wait_for_the_next():
    gov, r = PresetGovernor(FPS), [0]
    t, _ = feed(gov, 0.0, 4.0, 1.2, r)  # down
    t, steps = feed(gov, t, 12.0, 0.3, r)  # up after 10 s of calm
    assert [d for _, d in steps] == [1]
    t, steps = feed(gov, t, 5.0, 1.2, r)  # the configured preset was too slow after all: down again
    assert [d for _, d in steps] == [-1]
    t0 = t
    t, steps = feed(gov, t, 40.0, 0.3, r)
    assert [d for _, d in steps] == [1]
    assert 20.0 <= steps[0][0] - t0 <= 22.5, steps  # waited twice as long


def test_the_ladder_keeps_the_stream_headers_of_the_configured_preset():
    enc = Encoder(EncoderSettings(size=(320, 180), fps=FPS, preset="veryfast"))
    try:
        assert enc.adaptive and enc.preset == "veryfast"
        assert enc._open("superfast").extradata == enc.stream_info.video_extradata
        # ultrafast drops CABAC: other headers, so the ladder must never use it
        assert enc._open("ultrafast").extradata != enc.stream_info.video_extradata
    finally:
        enc.close()


class FakeTime:
    def __init__(self) -> None:
        self.t = 500.0

    def now(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        self.t += max(0.0, dt)


def test_a_lagging_broadcast_skips_steps_down_recovers_and_steps_back_up(tmp_path, caplog):
    """A real pipeline (sketch world, compositor, x264, a file output) on an
    injected clock: for 6 s each tick costs 1.3 frame periods (the machine
    cannot keep up), then 0.2. The clock skips and counts, the encoder steps
    to superfast and back to veryfast, keyframes stay exactly every 2 s of
    presentation time, and the console's health shows it all."""
    from streambot.world.sketch import SketchWorld

    caplog.set_level("INFO")
    ft = FakeTime()
    size = (320, 180)
    world = SketchWorld(embedder=None, background=False)
    world.start(resolve_world("meadow"), size, FPS)
    stream = StreamSettings(size="320x180", bitrate_kbps=800)
    path = tmp_path / "lag.flv"
    b = open_broadcast(
        world,
        stream,
        [str(path)],
        Compositor(size),
        Soundtrack(),
        max_frames=24 * FPS,
        now=ft.now,
        sleep=ft.sleep,
        encode_ahead=0,  # each tick whole on the clock's thread: the fake clock steps through them
    )
    # what the console's health panel reads of a show (streambot.surface.ShowSurface), for this bare broadcast
    show = SimpleNamespace(
        health=b.health,
        settings=SimpleNamespace(stream=stream),
        adapter_states=dict,
        audio_status=b.audio_status,
        world_status=dict,
        budget_status=lambda: None,
    )
    seen = {}

    def lag(index, video):
        lagging = index < 6 * FPS
        ft.t += (1.3 if lagging else 0.2) / FPS
        if index == 3 * FPS:
            ft.t += 2.0  # and once a long stall (a swap storm, say): 60 slots pass
        h = views.health(show, views.System())
        if lagging and h["encoder"]["preset"] != "veryfast":
            seen.setdefault("down", (index, h))
        if not lagging and "down" in seen and h["encoder"]["preset"] == "veryfast":
            seen.setdefault("up", (index, h))

    b.frame_observer = lag
    b.start()
    try:
        assert b.wait(900)  # a hang guard, not a time bound: the clock is fake
    finally:
        h = b.health()
        b.stop()
        world.close()
    assert h.ticks == 24 * FPS
    assert h.skipped_frames > FPS and h.skipped_frames + b.clock.stats.sent == h.ticks
    down_at, panel = seen["down"]
    assert panel["encoder"] == {
        "preset": "superfast",
        "configured": "veryfast",
        "changes": 1,
        "busy": panel["encoder"]["busy"],
        "lag_frames": 0,
    }
    assert panel["skipped_frames"] > 0 and panel["encoder"]["busy"] > 0.85
    assert down_at < 6 * FPS
    up_at, panel = seen["up"]
    assert up_at > 16 * FPS and panel["encoder"]["changes"] == 2  # 10 s of calm first
    assert (h.encoder_preset, h.encoder_preset_changes) == ("veryfast", 2)
    assert any("veryfast -> superfast (encoding lagged)" in r.getMessage() for r in caplog.records)
    # What a viewer's player gets: one valid stream, a keyframe on the first
    # frame at or past every 2 s of presentation time though frames were
    # skipped (the cadence never drifts), timestamps on the wall clock.
    p = probe(path)
    firsts = [min(t for t in p.video_dts if t >= 2.0 * k - 0.001) for k in range(12)]
    assert p.keyframe_times == pytest.approx(firsts, abs=0.001)
    steps = np.diff(p.video_dts)
    assert steps.min() >= 0.032 and steps.max() > 0.06  # gaps where slots were skipped
    assert p.video_dts[-1] == pytest.approx(24.0 - 1 / FPS, abs=0.04)
    # The sound never skips: every slot has its samples (silence across the long stall).
    with av.open(str(path)) as c:
        samples = sum(f.samples for f in c.decode(audio=0))
    assert samples == pytest.approx(24.0 * 48_000, abs=2048)
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], capture_output=True, text=True
    )
    assert decoded.returncode == 0 and decoded.stderr == "", decoded.stderr[:500]


def test_an_encoder_thread_that_falls_behind_steps_the_preset_down(tmp_path):
    """With the encoder on its own thread (as `run` has it), the governor reads how
    long each frame waited and took: an encoder slower than the frame rate for a
    few seconds skips slots as encoding lag and steps x264 down a preset."""
    from streambot.world.sketch import SketchWorld

    size = (320, 180)
    world = SketchWorld(embedder=None, background=False)
    world.start(resolve_world("meadow"), size, FPS)
    stream = StreamSettings(size="320x180", bitrate_kbps=800)
    b = open_broadcast(
        world, stream, [str(tmp_path / "slow.flv")], Compositor(size), Soundtrack(), max_frames=8 * FPS, encode_ahead=4
    )
    slow = threading.Event()  # never set: each wait is 1.3 frame periods of work the encoder thread does

    def heavy(index, video):
        if b.encoder.preset == "veryfast":
            slow.wait(1.3 / FPS)

    b.frame_observer = heavy
    b.start()
    try:
        assert b.wait(60)  # a hang guard: eight seconds of slots
    finally:
        b.stop()
        world.close()
    h = b.health()
    assert h.encode_lag_frames > 0 and h.skipped_frames >= h.encode_lag_frames
    assert (h.encoder_preset, h.encoder_preset_changes) == ("superfast", 1)
