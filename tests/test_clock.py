"""The frame clock keeps the output rate whatever the world's own speed."""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest

from streambot.broadcast.clock import Clock, WorldRunner
from streambot.priority import BACKGROUND
from streambot.world.base import Frame, World


class PacedWorld(World):
    """A world that takes `render_s` per frame: the input the clock must cope with."""

    name = "paced"

    def __init__(self, render_s: float) -> None:
        super().__init__()
        self.render_s = render_s
        self.index = 0

    def start(self, spec, size, fps, seed=0):
        self.size = size

    @property
    def frame_size(self):
        return self.size

    def render(self) -> Frame:
        time.sleep(self.render_s)
        self.index += 1
        img = np.full((self.size[1], self.size[0], 3), self.index % 256, np.uint8)
        return Frame(img, self.index, self._generation)


class HeldWorld(PacedWorld):
    """Renders its first frame, then holds every render until `release` is set:
    a world that has stopped keeping up, for as long as the test wants."""

    def __init__(self) -> None:
        super().__init__(0.0)
        self.release = threading.Event()

    def render(self) -> Frame:
        if self.index >= 1:
            self.release.wait()
        return super().render()


def _run(world: World, fps: int = 30, seconds: float = 2.0):
    world.start(None, (64, 36), fps)
    emitted = []
    runner = WorldRunner(world)
    clock = Clock(
        runner,
        fps,
        lambda i, f, rep: emitted.append((i, f.index, rep, time.monotonic())),
        max_frames=round(seconds * fps),
    )
    runner.start()
    clock.start()
    try:
        assert clock.wait(seconds + 60), "the clock never finished"
    finally:
        if isinstance(world, HeldWorld):
            world.release.set()
        runner.stop()
    return clock, runner, emitted


# How close to the wall clock these run, and how often a loaded machine makes
# them late, are figures of benchmarks/bench_clock.py; here only what must hold.


def test_a_slow_world_is_repeated_not_waited_for():
    # the world gives one frame and then nothing for as long as the clock runs
    clock, _, emitted = _run(HeldWorld())
    ticks = [e[0] for e in emitted]
    assert clock.stats.ticks == 60 and ticks[0] == 0 and ticks == sorted(set(ticks)) and ticks[-1] < 60
    assert all(e[1] == 1 for e in emitted), "the one frame there is, shown again"
    assert [e[2] for e in emitted] == [False] + [True] * (len(emitted) - 1)
    assert clock.stats.repeated == len(emitted) - 1


def test_a_fast_world_is_paced_by_the_clock():
    clock, runner, emitted = _run(PacedWorld(render_s=0.0))
    new = [e[1] for e in emitted if not e[2]]
    assert new == list(range(1, len(new) + 1)), "every frame once, in order, none lost"
    assert clock.stats.repeated == len(emitted) - len(new)
    # the world waits for the clock: a few frames ahead at most, not as many as it could render
    assert runner.rendered <= clock.stats.ticks + 4, (runner.rendered, clock.stats.ticks)
    # and the clock waits for its deadlines: 60 ticks at 30 fps never take less than 59/30 s
    assert emitted[-1][3] - emitted[0][3] >= 59 / 30 - 0.002


def test_steer_returns_while_a_frame_is_being_rendered():
    world = HeldWorld()
    world.start(None, (64, 36), 30)
    world.render()
    rendering = threading.Thread(target=world.render)  # held inside render() until released
    rendering.start()
    from streambot.world.base import Direction

    done = []
    steering = threading.Thread(target=lambda: done.append(world.steer(Direction("rain", "rain"), 1.0)))
    steering.start()
    steering.join(30)
    try:
        assert done, "steer() waited for the frame being rendered"
    finally:
        world.release.set()
        rendering.join(30)
    (gen,) = done
    assert world.render().generation == gen
    assert world.steered_at(gen) is not None


# -- on the wall clock, with an injected time source (no sleeps, no real-time bounds) --


class FakeTime:
    """A clock that moves only when something sleeps or works on it."""

    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        self.t += max(0.0, dt)


class StillWorld(PacedWorld):
    def __init__(self) -> None:
        super().__init__(0.0)


def _fake_run(sink_cost, frames: int, fps: int = 30):
    """Run the clock for `frames` slots; `sink_cost(index)` is how long (fake
    seconds) the sink takes for that tick."""
    ft = FakeTime()
    world = StillWorld()
    world.start(None, (16, 16), fps)
    runner = WorldRunner(world)
    calls = []

    def sink(index, frame, repeated):
        calls.append((index, ft.now()))
        ft.t += sink_cost(index)

    clock = Clock(runner, fps, sink, max_frames=frames, now=ft.now, sleep=ft.sleep)
    runner.start()
    clock.start()
    assert clock.wait(30)
    runner.stop()
    return clock, calls, ft


def test_a_slow_sink_is_skipped_never_sent_late():
    """A sink that takes 1.6 periods: the clock never falls behind the wall clock.
    Every tick goes out inside its own slot; the slots that passed meanwhile
    are skipped and counted; the presentation time is the slot index."""
    fps = 30
    period = 1 / fps
    clock, calls, ft = _fake_run(lambda i: 1.6 * period, frames=900)  # 30 s
    t0 = clock.stats.started
    s = clock.stats
    assert s.ticks == 900 and s.sent == len(calls) and s.sent + s.skipped == 900
    assert 0.55 * 900 < s.sent < 0.7 * 900, s.sent  # one tick in 1.6 periods, rounded up to whole slots
    for index, at in calls:
        assert t0 + index * period - 1e-9 <= at < t0 + (index + 1) * period, (index, at - t0)
    indices = [i for i, _ in calls]
    assert indices == sorted(set(indices)) and indices[0] == 0
    # The stream's timestamps keep up with the wall clock: 30 s of slots in 30 s (+ one tick).
    assert ft.now() - t0 == pytest.approx(30.0, abs=2 * period)


def test_a_fast_sink_sends_every_tick_on_time():
    clock, calls, _ = _fake_run(lambda i: 0.004, frames=300)
    s = clock.stats
    assert (s.sent, s.skipped, s.late) == (300, 0, 0)
    t0 = s.started
    assert [i for i, _ in calls] == list(range(300))
    assert all(at == pytest.approx(t0 + i / 30, abs=1e-9) for i, at in calls)


def test_one_long_stall_skips_the_slots_it_covered_and_then_runs_on():
    # tick 30 takes 0.5 s (say a disk stall): its own slot and the next 14 pass.
    clock, calls, _ = _fake_run(lambda i: 0.5 if i == 30 else 0.001, frames=120)
    s = clock.stats
    assert s.skipped == 14 and s.sent == 106
    indices = [i for i, _ in calls]
    assert indices[30:32] == [30, 45], indices[28:34]
    assert indices[31:] == list(range(45, 120))


def test_late_within_its_slot_is_counted_late_not_skipped():
    # every tick takes 0.7 periods, every tenth 1.2: the next one starts 0.2 periods
    # late (on time) or, after a slow one, late but within its slot.
    period = 1 / 30
    clock, calls, _ = _fake_run(lambda i: 1.7 * period if i % 10 == 0 else 0.2 * period, frames=300)
    s = clock.stats
    assert s.skipped == 0 and s.sent == 300
    assert s.late == 30  # the tick after each slow one is 0.7 periods behind its deadline


class PriorityWorld(PacedWorld):
    """Records the scheduling priority of the thread that renders it."""

    def __init__(self) -> None:
        super().__init__(0.0)
        self.niceness: int | None = None
        self.rendered = threading.Event()

    def render(self) -> Frame:
        self.niceness = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        self.rendered.set()
        return super().render()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are Linux's")
def test_the_world_renders_below_the_clock_priority():
    """On a busy machine the clock's ticks win the CPU; a late render only repeats a frame."""
    world = PriorityWorld()
    world.start(None, (16, 16), 30)
    ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    runner = WorldRunner(world)
    runner.start()
    try:
        assert world.rendered.wait(10)
    finally:
        runner.stop()
    process = os.getpriority(os.PRIO_PROCESS, os.getpid())
    assert world.niceness is not None and world.niceness >= min(19, process + BACKGROUND)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == ours  # the caller's thread is untouched
