"""The frame clock keeps the output rate whatever the world's own speed."""
from __future__ import annotations

import threading
import time

import numpy as np

from streambot.broadcast.clock import Clock, WorldRunner
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
    clock = Clock(runner, fps, lambda i, f, rep: emitted.append((i, f.index, rep, time.monotonic())),
                  max_frames=round(seconds * fps))
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
