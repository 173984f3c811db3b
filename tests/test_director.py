"""The director: the story's own beats when nobody prompts, the pause that
holds them, and where the story stands after a restart. Time is a virtual
clock handed to the director; the world is the real sketch world, whose
frames show which direction it was given."""

from __future__ import annotations

import logging
import time

import pytest

from streambot.director import Director
from streambot.world.sketch import SketchWorld
from streambot.worldspec import WorldSpec

SPEC = WorldSpec(
    "lagoon",
    "Lagoon",
    "A tropical lagoon.",
    "bright, cinematic",
    ("waves roll over the reef", "a storm gathers over the volcano", "the sun sets behind the island"),
)
OTHER = WorldSpec("hangar", "Hangar", "An old hangar.", "soft daylight", ("fog on the glass", "sprinklers start"))


class VirtualClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def world():
    w = SketchWorld(embedder=None, background=False)
    w.start(SPEC, (160, 90), 30, seed=1)
    yield w
    w.close()


def director(world, clock, **kw) -> Director:
    return Director(world, SPEC, beat_interval_s=20.0, transition_s=1.0, clock=clock, **kw)


def on_air_now(world, d: Director) -> str:
    """What the world is rendering now: its next frame carries the generation of the direction on air."""
    assert world.render().generation == d.on_air.generation
    return d.on_air.direction.text


def test_the_story_moves_on_by_itself_on_the_beat(world):
    clock = VirtualClock()
    d = director(world, clock)
    first = d.begin()
    assert on_air_now(world, d) == "waves roll over the reef" and first.direction.source == "story"
    assert first.direction.styled == "waves roll over the reef, bright, cinematic"
    told = []
    for t, beat in (
        (19.9, None),
        (20.0, "a storm gathers over the volcano"),
        (39.9, None),
        (40.0, "the sun sets behind the island"),
        (60.0, "waves roll over the reef"),
    ):
        clock.t = 1000.0 + t
        entry = d.tick()
        if beat is None:
            assert entry is None, t
            continue
        assert entry is not None and entry.direction.text == beat and entry.since == clock.t
        assert entry.direction.source == "story" and entry.direction.user is None
        assert on_air_now(world, d) == beat
        told.append(beat)
    assert d.beat == 0 and len(told) == 3  # round the preset's beats and back to the first


def test_a_prompt_on_air_puts_the_next_beat_off_by_a_full_interval(world):
    clock = VirtualClock()
    d = director(world, clock)
    d.begin()
    clock.t += 15
    d.submit("a dragon circles the old lighthouse", user="ann")
    assert on_air_now(world, d) == "a dragon circles the old lighthouse"
    assert d.on_air.direction.styled == "a dragon circles the old lighthouse, bright, cinematic"
    clock.t += 19.9
    assert d.tick() is None, "the viewer's prompt keeps the air for the whole interval"
    clock.t += 0.1
    assert d.tick().direction.text == "a storm gathers over the volcano"  # the story goes on where it was


def test_a_paused_story_holds_what_is_on_air_and_prompts_still_go_through(world):
    clock = VirtualClock()
    d = director(world, clock)
    d.begin()
    d.story_paused = True
    clock.t += 500
    assert d.tick() is None and on_air_now(world, d) == "waves roll over the reef"
    d.submit("a whale swims through the clouds", source="console", user="streamer")
    clock.t += 500
    assert d.tick() is None and on_air_now(world, d) == "a whale swims through the clouds"
    d.story_paused = False
    # the prompt has been on air longer than an interval: the story takes over at the next look
    assert d.tick().direction.text == "a storm gathers over the volcano"
    clock.t += 19.9
    assert d.tick() is None


def test_a_resumed_story_goes_on_from_its_saved_beat(world):
    clock = VirtualClock()
    d = director(world, clock)
    entry = d.resume("a neon dragon over the rooftops", source="console", user="streamer", beat=1)
    assert entry.direction.source == "console" and entry.direction.user == "streamer"
    assert on_air_now(world, d) == "a neon dragon over the rooftops" and d.beat == 1
    clock.t += 20
    assert d.tick().direction.text == "the sun sets behind the island"
    again = director(world, clock)
    again.resume("waves roll over the reef", beat=7)  # a saved beat from a longer story: wrapped, not an error
    assert again.beat == 7 % len(SPEC.beats)


def test_another_world_starts_its_own_story_in_its_own_style(world):
    clock = VirtualClock()
    d = director(world, clock)
    d.begin()
    clock.t += 20
    d.tick()
    d.set_world(OTHER)
    assert d.beat == 0
    clock.t += 20
    entry = d.tick()
    assert entry.direction.text == "sprinklers start" and entry.direction.styled == "sprinklers start, soft daylight"


def test_every_direction_is_published_once_and_a_failing_listener_stops_nothing(world, caplog):
    clock = VirtualClock()
    d = director(world, clock)
    heard = []

    def broken(entry):
        raise RuntimeError("the overlay fell over")

    d.listeners += [broken, heard.append]
    with caplog.at_level(logging.ERROR, logger="streambot.director"):
        d.begin()
        d.submit("a castle made of candy", user="bob")
        clock.t += 20
        d.tick()
    assert [e.direction.text for e in heard] == [
        "waves roll over the reef",
        "a castle made of candy",
        "a storm gathers over the volcano",
    ]
    assert heard == d.history and caplog.text.count("on-air listener failed") == 3


def test_a_paused_story_and_its_beat_survive_a_restart(tmp_path, monkeypatch):
    """The show pauses its story at its second beat and stops; the next start
    on the same timeline holds the same beat, still paused."""
    from streambot.app import Show, ShowOptions, build_world
    from streambot.config import load_settings, resolve_world

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    settings = load_settings(
        None,
        {
            "stream": {"size": "320x180", "fps": 15, "bitrate_kbps": 300},
            "world": {"preset": "cyberpunk", "sketch": {"embedder": None}},
            "voting": {"pool_embeddings": False, "timeline": str(tmp_path / "timeline.sqlite3")},
            "moderation": {"classifier": False, "semantic": False},  # no models to load: not what is tested
        },
    )
    spec = resolve_world("cyberpunk")

    def show(name: str) -> Show:
        s = Show(
            settings,
            spec,
            build_world(settings),
            ShowOptions(outputs=[str(tmp_path / f"{name}.flv")], chat_source=None, console=None),
        )
        s.open()
        return s

    first = show("first")
    try:
        # the beat moves on at a time handed in, not by waiting for it
        first.director.tick(time.monotonic() + settings.director.beat_interval_s)
        beat = first.director.on_air.direction.text
        assert first.director.beat == 1 and beat == spec.beats[1]
        first.pause_story(True, actor="console:admin")
    finally:
        first.close()
    second = show("second")
    try:
        assert second.director.story_paused and second.director.beat == 1
        assert second.director.on_air.direction.text == beat
        assert second.director.tick(time.monotonic() + 10_000) is None, "still paused"
    finally:
        second.close()
