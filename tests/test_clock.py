"""The frame clock keeps the output rate whatever the world's own speed."""
from __future__ import annotations

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


def _run(render_s: float, fps: int = 30, seconds: float = 2.0):
    world = PacedWorld(render_s)
    world.start(None, (64, 36), fps)
    emitted = []
    runner = WorldRunner(world)
    clock = Clock(runner, fps, lambda i, f, rep: emitted.append((i, f.index, rep, time.monotonic())),
                  max_frames=round(seconds * fps))
    runner.start()
    clock.start()
    assert clock.wait(seconds + 5)
    runner.stop()
    return clock, emitted


def test_a_slow_world_is_repeated_not_waited_for():
    clock, emitted = _run(render_s=0.1)  # a 10 fps world under a 30 fps clock
    assert [e[0] for e in emitted] == list(range(60))
    wall = emitted[-1][3] - emitted[0][3]
    assert abs(wall - 59 / 30) < 0.15, wall
    assert 30 <= clock.stats.repeated <= 50, clock.stats.repeated
    assert clock.stats.late <= 3


def test_a_fast_world_is_paced_by_the_clock():
    clock, emitted = _run(render_s=0.0)
    assert clock.stats.repeated == 0
    shown = [e[1] for e in emitted]
    assert shown == sorted(shown) and len(set(shown)) == len(shown), "every frame once, in order"
    gaps = np.diff([e[3] for e in emitted])
    assert 1 / 30 * 0.5 < np.median(gaps) < 1 / 30 * 1.5


def test_steer_returns_at_once_and_tags_later_frames():
    world = PacedWorld(0.0)
    world.start(None, (64, 36), 30)
    from streambot.world.base import Direction

    t = time.perf_counter()
    gen = world.steer(Direction("rain", "rain"), 1.0)
    assert time.perf_counter() - t < 0.01
    assert world.render().generation == gen
    assert world.steered_at(gen) is not None
