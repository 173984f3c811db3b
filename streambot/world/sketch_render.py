"""Draws one frame of the sketch world from its `Scene`: the recipe.

`Renderer.draw` reads top to bottom, back to front: the camera moves, the
light is worked out, then the sky, the sun and moons, the clouds, five
parallax layers of land with water, floating islands, smoke and the things
that fly between them, the particles and the weather in front, and the
colour grade. Each step is a layer of its own, handed the scene values it
draws from:

- `sketch_canvas`: the float picture and its primitives, the camera's motion, the grade;
- `sketch_sky`: the lighting, the sky, the sun and moons, the clouds, searchlights;
- `sketch_land`: the terrain layers, water, floating islands, smoke;
- `sketch_things`: what flies, and the particles;
- `sketch_weather`: mist, rain, snow, lightning.

Per frame the work is slicing, gathering and blending precomputed textures;
everything that depends only on the parameters is computed on 1-D arrays
(per row or per column) before it touches pixels.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .sketch_assets import BIOME_ORDER, N_LAYERS, Assets
from .sketch_canvas import Canvas, Grade, Motion
from .sketch_land import Islands, Smoke, Terrain, Water
from .sketch_scene import Biomes, Scene
from .sketch_sky import Celestial, Clouds, Sky, lighting, searchlights
from .sketch_things import Particles, Things
from .sketch_weather import Mist, Rain, Snowfall, lightning_bolt

if Biomes._fields != BIOME_ORDER:
    raise ImportError("sketch_scene.Biomes must list the biomes in sketch_assets.BIOME_ORDER")


class Tables(NamedTuple):
    """Random tables of the moving things, drawn from the seed in this order."""

    flakes: np.ndarray  # snow
    particles: np.ndarray  # fireflies, embers, bubbles
    car_lanes: np.ndarray
    rank: np.ndarray  # the order in which slots of a kind of thing appear
    spark_ang: np.ndarray  # firework sparks: directions on a sphere seen from the side fill a disc
    spark_speed: np.ndarray
    grain: np.ndarray  # film grain, larger than the frame

    @classmethod
    def from_seed(cls, seed: int, width: int, height: int) -> Tables:
        rng = np.random.default_rng(seed + 11)
        # Float64: these meet world time, which grows for days.
        flakes = rng.random((1600, 4))
        particles = rng.random((120, 5))
        car_lanes = rng.random((36, 4))
        rank = rng.permutation(64) / 64.0
        spark_ang = rng.uniform(0, 2 * np.pi, 70)
        spark_speed = np.sqrt(1 - rng.uniform(0, 1, 70) ** 2)
        grain = rng.standard_normal((height + 64, width + 64)).astype(np.float32)
        return cls(flakes, particles, car_lanes, rank, spark_ang, spark_speed, grain)


class Renderer:
    """Owns the canvas, the layers and the camera's motion; `draw` makes one frame."""

    def __init__(self, width: int, height: int, seed: int) -> None:
        self.seed = seed
        self.canvas = c = Canvas(width, height)
        self.motion = Motion()
        self.light = 0.5  # the last frame's overall brightness, for the soundtrack
        assets = Assets.load(seed)
        tables = Tables.from_seed(seed, width, height)
        mist8 = (assets.mist * 255).astype(np.uint8)
        self.sky = Sky(c, assets)
        self.celestial = Celestial(c, seed)
        self.clouds = Clouds(c, assets)
        self.terrain = Terrain(c, assets)
        self.water = Water(c, assets)
        self.islands = Islands(c, assets)
        self.smoke = Smoke(c, mist8)
        self.things = Things(c, seed, tables.rank, tables.car_lanes, tables.spark_ang, tables.spark_speed)
        self.particles = Particles(c, tables.particles)
        self.mist = Mist(c, mist8)
        self.rain = Rain(c, assets.rain)
        self.snowfall = Snowfall(c, tables.flakes)
        self.grade = Grade(c, tables.grain)

    def draw(self, scene: Scene, t: float, dt: float) -> np.ndarray:
        """The frame at world time t (seconds), dt after the last: (H, W, 3) uint8 RGB."""
        c, H = self.canvas, self.canvas.H
        weather, mood, features, movers = scene.weather, scene.mood, scene.features, scene.movers
        land = scene.biomes
        space = land.space

        # 1. camera: travel, zoom drift, bob, altitude, gusting wind
        view = self.motion.advance(scene.camera, weather.wind, mood.trippy, t, dt, H)

        # 2. light and palette, all 1-D
        light = lighting(
            c,
            t,
            view.horizon,
            scene.tod,
            weather,
            mood.warmth,
            land,
            city_lights=features.lights,
            neon=features.neon,
            seed=self.seed,
        )
        self.light = light.brightness
        # In space there is no ground: the sky is the whole frame.
        sky_bottom = int(min(H, max(8, view.horizon + 2 + space * H)))

        # 3. sky: gradient, nebula, stars
        self.sky.draw(
            light, view, t, sky_bottom, nebula=features.nebula, stars=features.stars, clouds=weather.clouds, space=space
        )

        # 4. sun, moons, planets, nova, aurora, rainbow
        self.celestial.draw(
            light,
            view,
            t,
            sky_bottom,
            moon2=features.moon2,
            planets=features.planets,
            nova=features.nova,
            aurora=features.aurora,
            rainbow=features.rainbow,
            clouds=weather.clouds,
            space=space,
        )

        # 5. clouds and searchlights
        if weather.clouds > 0.01 and space < 0.98:
            self.clouds.draw(light, view, t, cover=weather.clouds, storm=weather.storm, space=space)
        if features.searchlights > 0.01:
            searchlights(c, light, view, t, features.searchlights)

        # 6. land, back to front, with what lives between its layers
        ground = self.terrain.ground(view, land, scene.camera.altitude)
        water_row = view.horizon + space * H * 0.6 + 2
        for i in range(N_LAYERS):
            self.terrain.draw_layer(
                i,
                ground,
                light,
                view,
                land,
                snowcover=weather.snowcover,
                fog=weather.fog,
                city_lights=features.lights,
                neon=features.neon,
            )
            if i == 0:
                # Lakes in green country, none in deserts and cities; the open sea anywhere.
                wet = min(
                    1.0,
                    3 * land.ocean
                    + land.grass
                    + land.forest
                    + land.mountains
                    + land.islands
                    + land.candy
                    + 0.3 * land.wasteland,
                )
                if wet > 0.01:
                    self.water.draw(
                        light,
                        view,
                        t,
                        water_row,
                        ground.covers[1],
                        wet,
                        snowcover=weather.snowcover,
                        clouds=weather.clouds,
                    )
            if i == 1:
                if land.islands > 0.01:
                    self.islands.draw(light, view, t, land.islands, magic=features.magic)
                if features.smoke > 0.01:
                    self.smoke.draw(light, view, t, ground.tops[1], amount=features.smoke, embers=movers.embers)
            if i == 2:
                self.things.draw(movers, light, view, t, clouds=weather.clouds, space=space)

        # 7. particles and weather in front of everything
        self.particles.draw(
            light,
            view,
            t,
            fireflies=movers.fireflies,
            embers=movers.embers,
            bubbles=movers.bubbles,
            magic=features.magic,
        )
        if weather.fog > 0.05:
            self.mist.draw(light, view, t, weather.fog)
        if weather.rain > 0.01:
            self.rain.draw(light, view, t, weather.rain, neon=features.neon)
        if weather.snow > 0.01:
            self.snowfall.draw(light, view, t, weather.snow)
        if light.bolt is not None:
            lightning_bolt(c, light.bolt, view.horizon, self.seed)

        # 8. grade, vignette, grain
        return self.grade(mood, self.motion.hue_turn, t)
