"""The sketch world's scene, as the renderer reads it: named, typed groups.

The world eases a flat vector of parameters (`sketch_concepts.PARAMS`: the
names, defaults and bounds); once a frame that vector becomes a `Scene`, and
each layer of the picture is handed only the groups or values it draws from.
Every value is a plain Python float: a numpy float64 scalar would promote the
renderer's float32 maths to float64, slower and not the same pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import itemgetter
from typing import NamedTuple, TypeVar

import numpy as np


class Weather(NamedTuple):
    clouds: float  # cover: 0 clear .. 1 overcast
    fog: float
    rain: float
    snow: float  # falling
    snowcover: float  # lying on the ground
    storm: float  # darker skies, lightning
    wind: float


class Mood(NamedTuple):
    """Colour grading, and the warmth of the twilight."""

    exposure: float  # stops, -1 .. 1
    warmth: float  # -1 cool .. 1 warm
    saturation: float
    contrast: float
    tint_r: float
    tint_g: float
    tint_b: float
    grain: float
    vignette: float
    hue: float  # turn of the colour wheel, in turns
    trippy: float  # how fast the colour wheel keeps turning


class Biomes(NamedTuple):
    """Weights of the landscapes, summing to one; the order of `sketch_assets.BIOME_ORDER`."""

    grass: float
    desert: float
    mountains: float
    ocean: float
    forest: float
    city: float
    space: float
    islands: float
    candy: float
    wasteland: float

    def weights(self) -> np.ndarray:
        return np.array(self, np.float32)


class Features(NamedTuple):
    """Things in the sky and on the ground that stay in place."""

    stars: float
    moon2: float  # a second, reddish moon
    nebula: float
    planets: float
    aurora: float
    rainbow: float
    nova: float
    lights: float  # a city's lit windows
    neon: float
    smoke: float
    searchlights: float
    magic: float  # fairy colours: fireflies, island grass


class Movers(NamedTuple):
    """Kinds of moving things: 0 none .. 1 all of their slots."""

    birds: float
    planes: float
    cars: float
    balloons: float
    fireflies: float
    embers: float
    fireworks: float
    meteors: float
    dragons: float
    bubbles: float
    asteroids: float


class Camera(NamedTuple):
    pan: float  # travel speed (negative: backwards)
    zoom: float
    bob: float  # sway of a camera that flies
    altitude: float


Group = Weather | Mood | Biomes | Features | Movers | Camera  # the parts of a scene after `tod`


class Scene(NamedTuple):
    tod: float  # time of day in days: 0 midnight, .25 sunrise, .5 noon, .75 sunset; not wrapped
    weather: Weather
    mood: Mood
    biomes: Biomes
    features: Features
    movers: Movers
    camera: Camera

    @classmethod
    def from_params(cls, p: Mapping[str, float]) -> Scene:
        """From the flat parameters by name (`b_` names the biome weights)."""
        return cls(
            float(p["tod"]),
            _take(Weather, p),
            _take(Mood, p),
            _take(Biomes, p),
            _take(Features, p),
            _take(Movers, p),
            _take(Camera, p),
        )


def _flat_names(group: type[Group]) -> tuple[str, ...]:
    return tuple("b_" + n for n in group._fields) if group is Biomes else group._fields


# Each group of a scene after `tod`, and how to take its values from the flat parameters.
_GROUPS = {g: itemgetter(*_flat_names(g)) for g in (Weather, Mood, Biomes, Features, Movers, Camera)}

GroupT = TypeVar("GroupT", Weather, Mood, Biomes, Features, Movers, Camera)


def _take(group: type[GroupT], p: Mapping[str, float]) -> GroupT:
    return group._make(map(float, _GROUPS[group](p)))


def param_names() -> set[str]:
    """The flat names a scene is made from."""
    return {"tod"}.union(*(_flat_names(g) for g in _GROUPS))
