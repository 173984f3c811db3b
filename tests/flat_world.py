"""A world that lives outside streambot's package: one flat colour. The
registry test adds it by name, as a new backend would be added, and runs the
real command line with it."""

from __future__ import annotations

import numpy as np

from streambot.world.base import Frame, World
from streambot.worldspec import WorldSpec

COLOUR = (40, 90, 200)  # RGB


class FlatWorld(World):
    name = "flat"

    def __init__(self) -> None:
        super().__init__()
        self._size = (0, 0)
        self._index = 0

    def start(self, spec: WorldSpec, size: tuple[int, int], fps: float, seed: int = 0) -> None:
        self._size = size

    def render(self) -> Frame:
        w, h = self._size
        self._index += 1
        return Frame(np.full((h, w, 3), COLOUR, np.uint8), self._index, 0)

    @property
    def frame_size(self) -> tuple[int, int]:
        return self._size


def create_world(table: dict) -> FlatWorld:
    return FlatWorld()
