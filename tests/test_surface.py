"""The flow one way: one on-air event with one owner, state pushed to whoever
listens, and a console that reaches the show only through `ShowSurface`.

A real show (the sketch world at 320x180, streaming to a file) is opened for
each test that needs one; the timeline is read back from its SQLite file."""

from __future__ import annotations

import ast
import asyncio
import math
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from streambot.app import Show, ShowOptions, build_world
from streambot.audience.events import Audience
from streambot.config import load_settings, resolve_world
from streambot.console import Tokens, create_app
from streambot.onair import Latest, OnAir, ShowState, TimelineEntry, WorldInfo
from streambot.surface import ShowSurface

from .conftest import on_air

CONSOLE = Path(__file__).resolve().parent.parent / "streambot" / "console"
TOKENS = Tokens.generate()


def settings_for(tmp: Path):
    return load_settings(
        None,
        {
            "stream": {"size": "320x180", "fps": 15, "bitrate_kbps": 300},
            "world": {"sketch": {"embedder": None}},
            "voting": {
                "pool_embeddings": False,
                "round_s": 10,
                "stream_delay_s": 0,
                "grace_s": 0,
                "timeline": str(tmp / "timeline.sqlite3"),
            },
            "moderation": {"classifier": False, "semantic": False},  # no models to load: not what is tested
        },
    )


def new_show(tmp_path, monkeypatch) -> Show:
    """A show on the sketch world writing a file, its state folders in `tmp_path` (not opened)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    settings = settings_for(tmp_path)
    return Show(
        settings,
        resolve_world(settings.world.preset),
        build_world(settings),
        ShowOptions(outputs=[str(tmp_path / "out.flv")], chat_source=None, console=None),
    )


@pytest.fixture
def show(tmp_path, monkeypatch):
    s = new_show(tmp_path, monkeypatch)
    s.open()
    yield s
    s.close()


def rows(show: Show, sql: str) -> list[dict]:
    assert show.store is not None
    show.store.flush()
    return [dict(r) for r in show.store._query(sql)]


def a_round_with_a_vote(audience: Audience, idea: str) -> None:
    audience.chat("twitch", "ann", f"!p {idea}")
    audience.screen_now()  # what the voting task's worker does: the safety screen numbers it
    reply = audience.chat("twitch", "bob", "!vote 1")
    assert reply.kind == "voted", reply


# -- one event, one owner ------------------------------------------------------------------------


def test_a_winner_a_forced_prompt_and_the_kill_switch_are_each_one_record(show):
    audience = show.audience
    assert audience is not None and show.director is not None
    heard: list[OnAir] = []
    show.director.subscribe(heard.append)
    before = len(rows(show, "SELECT id FROM on_air"))  # the story's first beat

    # a round's winner, as the voting task hands it over
    a_round_with_a_vote(audience, "a lighthouse in the fog")
    winner = audience.tick(time.monotonic() + 11)
    assert winner is not None and winner.text == "a lighthouse in the fog"
    show.on_winner(winner)
    # the streamer forces a prompt, then pulls the kill switch
    assert show.force("a red balloon", actor="console:alice")
    show.kill_switch(True, actor="console:alice")

    assert [(e.text, e.round, e.actor) for e in heard] == [
        ("a lighthouse in the fog", winner.round, None),
        ("a red balloon", None, "console:alice"),
    ]
    on_air = rows(show, "SELECT text, source, user FROM on_air ORDER BY id")[before:]
    assert on_air == [
        {"text": "a lighthouse in the fog", "source": "audience", "user": "ann"},
        {"text": "a red balloon", "source": "console", "user": "console:alice"},
    ]
    aired = rows(show, "SELECT number, aired FROM rounds WHERE winner IS NOT NULL")
    assert len(aired) == 1 and aired[0]["number"] == winner.round and aired[0]["aired"] is not None
    actions = rows(show, "SELECT actor, action, detail FROM actions WHERE actor = 'console:alice' ORDER BY id")
    assert actions == [
        {"actor": "console:alice", "action": "force", "detail": "a red balloon"},
        {"actor": "console:alice", "action": "kill switch on", "detail": ""},
    ]
    assert audience.snapshot().locked and show.state().off_air  # the switch still stops prompts
    assert audience.now_text().startswith("Now: a red balloon.")  # `!now` follows the same event
    saved = show.store.load_state("world") if show.store is not None else None
    assert saved is not None and saved["text"] == "a red balloon" and saved["off_air"] is True


def test_the_console_mode_switch_puts_the_decided_round_on_air_once(show):
    audience = show.audience
    assert audience is not None
    before = len(rows(show, "SELECT id FROM on_air"))
    a_round_with_a_vote(audience, "a storm of paper birds")
    show.set_mode("anarchy", actor="console:alice")
    assert show.director is not None and show.director.on_air is not None
    assert show.director.on_air.text == "a storm of paper birds"
    assert [r["text"] for r in rows(show, "SELECT text FROM on_air ORDER BY id")[before:]] == ["a storm of paper birds"]
    aired = rows(show, "SELECT aired FROM rounds WHERE winner = 'a storm of paper birds'")
    assert len(aired) == 1 and aired[0]["aired"] is not None


# -- pushed, not polled ------------------------------------------------------------------------------


async def test_a_subscriber_is_handed_each_change_from_another_thread():
    states: Latest[int] = Latest()
    with states.subscribe() as sub:
        threading.Thread(target=states.publish, args=(1,)).start()
        assert await sub.next(timeout=5) == 1
        assert not states.publish(1), "an unchanged value is not published again"
        for n in (2, 3, 4):  # a slow reader skips stale values: it gets the newest
            states.publish(n)
        assert await sub.next(timeout=5) == 4
        with pytest.raises(TimeoutError):
            await sub.next(timeout=0.05)  # nothing new: nothing handed out
    assert len(states) == 0


async def test_the_show_pushes_a_control_to_its_subscribers(show):
    with show.states.subscribe() as sub:
        first = await sub.next(timeout=5)
        assert first.story_paused is False
        show.pause_story(True, actor="console:alice")
        assert (await sub.next(timeout=5)).story_paused is True


async def test_an_open_console_page_is_pushed_a_change_made_elsewhere(show, aiohttp_client):
    """Nobody polls: the show's loop is not even running here, so only the push
    from the control itself can reach the page."""
    client = await aiohttp_client(create_app(show, show.settings.console, tokens=TOKENS))
    ws = await client.ws_connect(f"/ws/state?token={TOKENS.viewer}")
    try:

        async def next_state() -> dict:
            while True:
                msg = await asyncio.wait_for(ws.receive_json(), 10)
                if msg["type"] == "state":
                    return msg

        assert (await next_state())["story_paused"] is False
        show.pause_story(True, actor="terminal")  # not through the console
        while not (await next_state())["story_paused"]:
            pass
    finally:
        await ws.close()


async def test_the_running_show_builds_its_state_when_what_it_shows_can_change(tmp_path, monkeypatch):
    """The loop publishes on the audience's events and when the countdown's next whole
    second is due: never a state that differs from the last only within a second."""
    show = new_show(tmp_path, monkeypatch)
    loop = asyncio.get_running_loop()
    published: list[ShowState] = []
    enough = asyncio.Event()

    def heard(state: ShowState) -> None:
        published.append(state)
        if len(published) >= 8:
            loop.call_soon_threadsafe(enough.set)

    stop = show.states.listen(heard)
    async with on_air(show):
        assert show.audience is not None
        show.audience.chat("twitch", "ann", "!p a kite over the dunes")  # an event: published on the next step
        await asyncio.wait_for(enough.wait(), 60)
    stop()
    assert any(st.counts.get("messages") == 1 for st in published)

    def shown(st: ShowState) -> ShowState:  # the countdown as the overlay shows it: whole seconds
        return replace(st, round=replace(st.round, time_left=math.ceil(st.round.time_left)))

    seen = [shown(st) for st in published[:8]]
    repeats = [i for i in range(1, len(seen)) if seen[i] == seen[i - 1]]
    assert repeats == [], "a state was built and published that changed nothing but the time within a second"


# -- the console uses the surface and nothing else ----------------------------------------------------

FORBIDDEN = ("streambot.app", "streambot.director", "streambot.broadcast", "streambot.world")


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module a console file imports (relative ones resolved)."""
    package = "streambot.console"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            out.add(module)
            out.update(f"{module}.{a.name}" for a in node.names)
    return out


def test_the_console_imports_nothing_below_the_show_surface():
    files = sorted(CONSOLE.glob("*.py"))
    assert len(files) >= 10
    reached = {f.name: sorted(m for m in imported_modules(f) if m.startswith(FORBIDDEN)) for f in files}
    assert {k: v for k, v in reached.items() if v} == {}
    assert "streambot.surface" in imported_modules(CONSOLE / "views.py")


@dataclass(frozen=True)
class Said:
    """What this small show puts on air (the director's `Direction` is another `Directed`)."""

    text: str
    styled: str
    source: str
    user: str | None


class SmallShow:
    """A show with no world and no broadcast: the audience, an on-air line, a timeline in a list.
    Everything the console may use is here; anything else it reached for would fail."""

    def __init__(self, settings) -> None:
        self._settings = settings
        self.audience = Audience.from_settings(settings, embeddings=False)
        self._states: Latest[ShowState] = Latest()
        self._on_air: OnAir | None = None
        self._actions: list[TimelineEntry] = []
        self._timeline: Latest[int] = Latest()
        self._off_air = False
        self._paused = False
        self._states.publish(self.state())

    @property
    def settings(self):
        return self._settings

    @property
    def states(self) -> Latest[ShowState]:
        return self._states

    @property
    def voice(self):
        return None

    @property
    def timeline_changes(self) -> Latest[int]:
        return self._timeline

    def state(self) -> ShowState:
        a = self.audience
        return ShowState(
            WorldInfo("meadow", "The Meadow", "grass"),
            self._on_air,
            self._off_air,
            self._paused,
            False,
            a.snapshot(),
            a.banned(),
            dict(a.counts),
        )

    def _changed(self) -> None:
        self._states.publish(self.state())

    def health(self):
        return None

    def frame(self):
        return None

    def streaming(self) -> bool:
        return False

    def overlay_state(self, state=None):
        from streambot.broadcast.overlay_state import build_overlay_state

        st = state or self.state()
        return build_overlay_state(st.round, st.on_air, st.world.title, off_air=st.off_air)

    def overlay_layout(self) -> dict:
        return {}

    def observe_frames(self, observer):
        return lambda: None

    def timeline(self, limit: int = 40) -> list[TimelineEntry]:
        return self._actions[::-1][:limit]

    def now(self) -> float:
        return time.monotonic()

    def audio_status(self) -> dict:
        return {}

    def world_status(self) -> dict:
        return {"state": "ok"}

    def budget_status(self):
        return None

    def adapter_states(self) -> dict[str, str]:
        return {}

    def watch_source(self):
        return None

    def record(self, actor: str, action: str, detail: str = "") -> None:
        self._actions.append(TimelineEntry(self.now(), actor, action, detail))
        self._timeline.publish(len(self._actions))

    def force(self, text: str, *, actor: str) -> bool:
        cleaned = self.audience.screen_text(text)
        if cleaned is None:
            return False
        self._on_air = OnAir(Said(cleaned, cleaned, "console", actor), 1, time.monotonic(), actor=actor)
        self.record(actor, "force", cleaned)
        self._changed()
        return True

    def skip_round(self, *, actor: str) -> None:
        self.audience.skip_round(actor=actor)
        self._changed()

    def approve(self, candidate_id: int, *, actor: str) -> bool:
        return self.audience.approve(candidate_id, actor=actor)

    def reject(self, candidate_id: int, *, actor: str) -> bool:
        return self.audience.reject(candidate_id, actor=actor)

    def ban(self, user: str, *, actor: str, platform: str | None = None) -> None:
        self.audience.ban(user, actor=actor, platform=platform)

    def unban(self, user: str, *, actor: str, platform: str | None = None) -> None:
        self.audience.unban(user, actor=actor, platform=platform)

    def switch_world(self, name_or_path: str, *, actor: str) -> WorldInfo:
        return WorldInfo(name_or_path, name_or_path, "")

    def set_round_length(self, seconds: float, *, actor: str) -> None:
        self.audience.set_round_length(seconds, actor=actor)

    def pause_story(self, paused: bool, *, actor: str) -> None:
        self._paused = paused
        self.record(actor, "pause story" if paused else "resume story")
        self._changed()

    def set_mode(self, mode: str, *, actor: str) -> None:
        self.audience.set_mode(mode, actor=actor)

    def lock(self, locked: bool, *, actor: str) -> None:
        self.audience.lock(actor=actor, locked=locked)

    def kill_switch(self, on: bool, *, actor: str) -> None:
        self._off_air = on
        self.record(actor, "kill switch on" if on else "kill switch off")
        self._changed()

    def set_music(self, on: bool, *, actor: str) -> None:
        self.record(actor, "music on" if on else "music off")


async def test_the_console_runs_on_any_implementation_of_the_surface(tmp_path, monkeypatch, aiohttp_client):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    small: ShowSurface = SmallShow(settings_for(tmp_path))
    client = await aiohttp_client(create_app(small, small.settings.console, tokens=TOKENS))
    admin = {"Authorization": f"Bearer {TOKENS.admin}"}
    r = await client.post("/api/force", json={"text": "a paper moon"}, headers=admin)
    assert r.status == 200, await r.text()
    state = (await r.json())["state"]
    assert state["on_air"]["text"] == "a paper moon" and state["on_air"]["by"] == "console:admin"
    assert (await client.post("/api/kill-switch", json={"on": True}, headers=admin)).status == 200
    timeline = await (await client.get("/api/timeline", headers=admin)).json()
    assert [(e["actor"], e["action"]) for e in timeline] == [
        ("console:admin", "kill switch on"),
        ("console:admin", "force"),
    ]
    assert (await client.get("/healthz")).status == 503  # no broadcast: said, not a crash
    assert (await client.get("/metrics", headers=admin)).status == 200
    ws = await client.ws_connect(f"/ws/state?token={TOKENS.viewer}")
    try:
        small.pause_story(True, actor="terminal")
        while True:
            msg = await asyncio.wait_for(ws.receive_json(), 10)
            if msg["type"] == "state" and msg["story_paused"]:
                break
        assert msg["off_air"] is True
    finally:
        await ws.close()


# -- the Discord round messages follow the published state ---------------------------------------------


@pytest.fixture
async def fake_discord(monkeypatch):
    from .fake_discord import serving

    async with serving(monkeypatch) as server:
        yield server


async def test_discord_round_messages_follow_the_published_state(fake_discord):
    """The edit spacing has long passed on the show's clock, but the bot waits for
    the next published state (up to `update_s`, 30 s here): only the push brings
    the new idea to the round message."""
    from streambot.audience.discord_bot import DiscordBot
    from streambot.audience.moderation import Moderation
    from streambot.config import DiscordSettings, ModerationSettings, VotingSettings
    from streambot.replay import VirtualClock
    from streambot.voting import VotingEngine

    from .fake_discord import CHANNEL, GUILD, TOKEN
    from .localserver import until

    clock = VirtualClock(0.0)
    engine = VotingEngine(VotingSettings(round_s=120, grace_s=1, stream_delay_s=0), now=clock.t)
    audience = Audience(engine, Moderation(ModerationSettings(classifier=False, semantic=False)), clock=clock)
    states: Latest[ShowState] = Latest()

    def publish() -> None:
        states.publish(
            ShowState(
                WorldInfo("meadow", "The Meadow", "grass"),
                None,
                False,
                False,
                False,
                audience.snapshot(),
                (),
                dict(audience.counts),
            )
        )

    bot = DiscordBot(
        audience,
        DiscordSettings(enabled=True, channels=[int(CHANNEL)], guilds=[int(GUILD)], update_s=30.0),
        TOKEN,
        wall=lambda: 1_800_000_000 + clock.t,
        tick_s=0.01,
        states=states,
    )
    publish()
    task = asyncio.create_task(bot.run())
    try:
        await until(lambda: len(fake_discord.messages) == 1)
        (message_id,) = fake_discord.messages
        assert "No ideas yet" in fake_discord.messages[message_id]["content"]
        audience.chat("discord", "ann", "!p a dragon over the meadow")
        audience.screen_now()
        clock.t = 31.0  # the edit spacing allows an edit now
        publish()
        await until(lambda: "a dragon over the meadow" in fake_discord.messages[message_id]["content"], 15)
    finally:
        await bot.close()
        await asyncio.wait_for(task, 10)
