"""The one interface every world backend implements.

A world is prepared once from a preset (`start`), then asked for frames one
after another (`render`, always from the same thread), while `steer` may be
called from any thread at any time: it returns at once, and the change shows
in the frames rendered over the following `transition_s` seconds.

Every frame carries the *generation* of the direction it was rendered under,
so the broadcast can measure prompt-to-pixel latency on what actually went out.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from ..worldspec import WorldSpec


@dataclass(frozen=True)
class Direction:
    """One instruction from the director to the world."""

    text: str  # what the audience (or the story) asked for, as said
    styled: str  # the same wrapped in the preset's style: what a model is prompted with
    source: str = "story"  # "audience" | "story" | "console"
    user: str | None = None


@dataclass(frozen=True)
class Ambience:
    """The world's mood, for the soundtrack: each in 0..1."""

    brightness: float = 0.5
    warmth: float = 0.5
    tension: float = 0.2
    wind: float = 0.2
    rain: float = 0.0

    @classmethod
    def of_picture(cls, image: np.ndarray | None) -> Ambience:
        """A model world's mood read from its last picture: light, colour and busyness."""
        if image is None:
            return cls()
        small = image[::16, ::16].astype(np.float32) / 255.0
        r, g, b = small[..., 0].mean(), small[..., 1].mean(), small[..., 2].mean()
        brightness = float(0.299 * r + 0.587 * g + 0.114 * b)
        warmth = float(np.clip(0.5 + (r - b), 0.0, 1.0))
        tension = float(np.clip(small.std() * 2, 0.0, 1.0))
        return cls(brightness=brightness, warmth=warmth, tension=tension)


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # H x W x 3, uint8, RGB
    index: int  # the world's own frame counter
    generation: int  # the steer generation this frame was rendered under


@dataclass(frozen=True)
class Pacing:
    """How a world that renders in bursts (a chunk of frames at a time) wants them played
    out: the broadcast spreads them evenly at `source_fps` (see broadcast/pacer.py)."""

    source_fps: float  # the frame rate the world's motion is made for
    chunk_frames: int  # frames that arrive together
    blend: bool = True  # between two frames, cross-fade (True) or show the nearest (False)


@dataclass
class _Steer:
    generation: int
    direction: Direction
    transition_s: float
    at: float  # time.monotonic() of the steer call


class World(ABC):
    """Base class: keeps the steer hand-off thread-safe so backends need not."""

    name: str = "world"
    gpu: bool = False  # a GPU world: its time on air is counted and limited by [budget]

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self._pending: _Steer | None = None
        self._steered_at: dict[int, float] = {}
        self.direction: Direction | None = None

    # -- called by the app / director (any thread) ---------------------------
    def steer(self, direction: Direction, transition_s: float = 1.5) -> int:
        """Hand the world a new direction; returns its generation at once."""
        with self._lock:
            self._generation += 1
            gen = self._generation
            self._pending = _Steer(gen, direction, max(0.0, transition_s), time.monotonic())
            self._steered_at[gen] = self._pending.at
            # Keep the map small: only recent generations are ever looked up.
            for old in [g for g in self._steered_at if g < gen - 64]:
                del self._steered_at[old]
        return gen

    def steered_at(self, generation: int) -> float | None:
        """When the steer call of `generation` was made (monotonic), if recent."""
        with self._lock:
            return self._steered_at.get(generation)

    def take_pending(self) -> _Steer | None:
        """For backends, in the render thread: the newest steer not yet applied."""
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    # -- the backend's part --------------------------------------------------
    @abstractmethod
    def start(self, spec: WorldSpec, size: tuple[int, int], fps: float, seed: int = 0) -> None:
        """Prepare the world (load models, build scenery). `size` is (width, height)."""

    @abstractmethod
    def render(self) -> Frame:
        """Render the next frame. Called from one thread only."""

    @property
    @abstractmethod
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frames `render` returns."""

    def change_world(self, spec: WorldSpec, transition_s: float = 3.0) -> int:
        """Move to another world (preset) without a cut. By default: a steer
        toward its description in its style; backends may do more."""
        text = spec.description
        return self.steer(Direction(text, f"{text}, {spec.style}", "console"), transition_s)

    def ambience(self) -> Ambience:
        return Ambience()

    def pacing(self) -> Pacing | None:
        """None: one frame per render, each shown once. Chunked worlds say how to pace them."""
        return None

    def close(self) -> None:  # noqa: B027  (a world with nothing to release need not override it)
        """Release resources. Safe to call twice."""


class WorldError(Exception):
    """A world could not start; the message is one sentence for the user."""
