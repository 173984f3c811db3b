"""A world backend that raises (a CUDA out-of-memory error, a bug) never
freezes the picture: the last frame is held with a living motion, the backend
is retried with back-off, the sketch world covers after repeated failures,
and the backend takes back over when it renders again."""

from __future__ import annotations

import asyncio
import hashlib
import logging

import numpy as np
import torch
from PIL import Image

from streambot.app import Show, ShowOptions
from streambot.broadcast.clock import WorldRunner
from streambot.broadcast.pacer import FramePacer
from streambot.config import load_settings, resolve_world
from streambot.world.base import Direction, Frame, Pacing, World
from streambot.world.resilient import ResilientWorld
from streambot.world.sketch import SketchWorld

from .media import decode_frames

SIZE = (160, 90)


class FlakyWorld(World):
    """A moving gradient that fails, while `broken`, the way a GPU out of memory does."""

    name = "flaky"

    def __init__(self, error: Exception | None = None) -> None:
        super().__init__()
        self.broken = False
        self.error = error or torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.calls = 0
        self.failed_at: list[float] = []
        self.clock = None
        self._gen = 0
        self._i = 0

    def start(self, spec, size, fps, seed=0):
        self.size = size

    @property
    def frame_size(self):
        return self.size

    def render(self) -> Frame:
        self.calls += 1
        pending = self.take_pending()
        if pending is not None:
            self._gen = pending.generation
        if self.broken:
            if self.clock is not None:
                self.failed_at.append(self.clock.t)
            raise self.error
        self._i += 1
        w, h = self.size
        x = (np.arange(w)[None, :] + 2 * self._i) % 256
        img = np.repeat(np.broadcast_to(x, (h, w))[..., None], 3, axis=2).astype(np.uint8)
        img[..., 2] = 200
        self.last = img
        return Frame(img, self._i, self._gen)


class FakeClock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference per channel (0..255); pictures of other sizes are compared at a's."""
    if a.shape != b.shape:
        b = np.asarray(Image.fromarray(b).resize((a.shape[1], a.shape[0]), Image.Resampling.BILINEAR))
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_a_failing_world_holds_its_last_frame_alive(caplog):
    caplog.set_level(logging.DEBUG, logger="streambot")
    clock = FakeClock()
    backend = FlakyWorld()
    world = ResilientWorld(backend, None, clock=clock)
    world.start(resolve_world("meadow"), SIZE, 30)
    for _ in range(10):
        last_good = world.render().image
    backend.broken = True
    held = [world.render().image for _ in range(150)]  # five seconds at 30 fps, before any retry is due
    assert backend.calls == 11, "no retry before the back-off is over"
    steps = [diff(a, b) for a, b in zip([last_good] + held, held)]
    # never a still picture: every frame differs from the one before, and only a little (slow motion)
    assert min(steps) > 0.01, min(steps)
    assert max(steps) < 1.5, max(steps)
    # it is still that picture: close to the last good frame, never black
    assert max(diff(h, last_good) for h in held) < 25
    assert min(h.mean() for h in held) > 0.8 * last_good.mean()
    s = world.status()
    assert (s.state, s.failures) == ("holding", 1)
    assert s.error.startswith("OutOfMemoryError: CUDA out of memory")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0].getMessage() and errors[0].exc_info is None
    assert "holding the last frame" in errors[0].getMessage()


def test_fallback_after_repeated_failures_and_back_on_recovery(caplog):
    caplog.set_level(logging.INFO, logger="streambot")
    clock = FakeClock(0.0)
    backend = FlakyWorld(RuntimeError("the model's forward pass broke"))
    backend.clock = clock
    world = ResilientWorld(
        backend,
        lambda: SketchWorld(embedder=None, background=False),
        fallback_after=3,
        retry_min_s=1.0,
        retry_max_s=8.0,
        clock=clock,
        background=False,
    )
    world.start(resolve_world("meadow"), SIZE, 30)
    gen = world.steer(Direction("a calm lake", "a calm lake, oil painting"), 0.5)
    for _ in range(5):
        assert world.render().generation == gen
    backend.broken = True

    n = 0

    def run(until: float) -> list[Frame]:  # render at 30 fps of the fake clock
        nonlocal n
        frames = []
        while n / 30 < until:
            clock.t = n / 30
            frames.append(world.render())
            n += 1
        return frames

    held = run(2.99)  # failures at 0 (the first), 1, then the third at 3
    assert world.status().state == "holding" and world.status().failures == 2
    covered = run(6.0)
    assert world.status().state == "fallback" and world.status().failures == 3
    # exponential back-off between tries: 1, 2, then 4 s
    assert backend.failed_at == [0.0, 1.0, 3.0]
    # the sketch world is on air after a cross-fade, under the direction on air
    after = covered[40:]
    gradient = held[0].image
    assert all(diff(f.image, gradient) > 20 for f in after)
    assert all(f.generation == gen for f in after)
    assert min(diff(a.image, b.image) for a, b in zip(covered, covered[1:])) > 0.0
    # a steer now reaches the fallback world, with the wrapper's generation
    gen2 = world.steer(Direction("a dark stormy night", "a dark stormy night"), 0.5)
    later = run(6.99)
    assert later[-1].generation == gen2
    assert later[-1].image.mean() < after[0].image.mean() - 15, "the storm darkens the sketch world"
    # the backend comes back at its next try (7 s) and takes the picture back, faded in
    backend.broken = False
    back = run(9.0)
    assert world.status().state == "ok" and world.status().failures == 0
    assert backend.failed_at == [0.0, 1.0, 3.0]
    fade = [diff(a.image, b.image) for a, b in zip(back, back[1:])]
    assert max(fade) < 20, "a cross-fade, not a cut"
    assert np.array_equal(world.render().image, backend.last), "what the backend draws is what goes out"
    assert back[-1].generation == gen2
    text = caplog.text
    assert "the flaky world failed (RuntimeError: the model's forward pass broke); holding the last frame" in text
    assert "the fallback world takes over" in text and "it is back on air" in text


class ChunkyWorld(FlakyWorld):
    """A world that makes its frames a chunk at a time, as the video world does."""

    name = "chunky"

    def pacing(self) -> Pacing:
        return Pacing(source_fps=16, chunk_frames=12)


def test_a_chunked_world_keeps_its_pacing_and_its_fallback_moves_at_that_rate():
    backend = ChunkyWorld()
    seen = {}

    class Sketch(SketchWorld):
        def start(self, spec, size, fps, seed=0):
            seen["fps"] = fps
            super().start(spec, size, fps, seed=seed)

    world = ResilientWorld(
        backend,
        lambda: Sketch(embedder=None, background=False),
        fallback_after=1,
        clock=FakeClock(0.0),
        background=False,
    )
    world.start(resolve_world("meadow"), SIZE, 30)
    assert world.pacing() == backend.pacing()
    runner = WorldRunner(world, fps=30)
    assert isinstance(runner.frames, FramePacer), "the clock plays the chunks out evenly"
    backend.broken = True
    world.render()
    assert world.status().state == "fallback"
    assert seen["fps"] == 16, "the fallback's frames are played at the backend's rate, so it is made for that rate"


def test_a_show_whose_world_breaks_never_freezes(tmp_path, monkeypatch):
    """The real show, its world failing mid-broadcast: every picture the world
    hands the clock while its backend fails differs from the one before, the
    clock fills every slot of the show (sent or counted as skipped), the file
    holds every frame it sent, and the console's health says why.

    Read on the show's own counters, not the wall clock: on a loaded machine
    the world renders fewer pictures and the clock repeats or skips more, and
    neither is a frozen picture. (A clock repeat sends the last picture again
    without asking the world; a frozen world hands it a new frame that is the
    same picture.)"""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    settings = load_settings(
        None,
        {
            "stream": {"size": "320x180", "bitrate_kbps": 600},
            "voting": {"pool_embeddings": False},
            "world": {"fallback_after": 2, "sketch": {"embedder": None}},
        },
    )

    class BreaksAfter(FlakyWorld):
        def render(self):
            if self.calls >= 45:
                self.broken = True
            return super().render()

    backend = BreaksAfter()
    pictures: list[tuple[bool, bytes]] = []  # (the backend failing, the picture's digest), as the clock gets them
    render = ResilientWorld.render

    def watched(world: ResilientWorld) -> Frame:
        frame = render(world)
        pictures.append((backend.broken, hashlib.blake2b(frame.image.tobytes(), digest_size=16).digest()))
        return frame

    monkeypatch.setattr(ResilientWorld, "render", watched)
    out = tmp_path / "show.mkv"
    duration_s = 7.0
    show = Show(
        settings,
        resolve_world("meadow"),
        backend,
        ShowOptions(outputs=[str(out)], duration_s=duration_s, chat_source=None),
    )
    show.open()
    asyncio.run(show.run())
    status = show.world_status()
    assert status["state"] == "fallback" and status["failures"] >= 2, status
    # the console says so: its health panel and its metrics
    from streambot.console.metrics import Metrics
    from streambot.console.views import System, health

    assert health(show, System())["world"]["state"] == "fallback"
    assert b"streambot_world_failing 2.0" in Metrics(show).render()

    # the picture keeps changing while the backend fails: the held frame, then the sketch world
    failing = [digest for broken, digest in pictures if broken]
    assert len(failing) >= 10, f"the world rendered {len(failing)} pictures after its backend broke"
    still = sum(a == b for a, b in zip(failing, failing[1:]))
    assert still == 0, f"{still} of {len(failing)} pictures while the backend failed repeated the one before"

    # the clock keeps sending: every slot of the show went out or was counted as skipped
    h = show.health()
    assert h is not None
    assert h.ticks == round(duration_s * settings.stream.fps), h
    sent = h.ticks - h.skipped_frames
    assert len(decode_frames(out, size=(160, 90))) == sent, h
