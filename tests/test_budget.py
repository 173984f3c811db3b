"""The GPU budget: a GPU world is on air only while it matters. The day's GPU
hours spent, or nobody watching on Twitch, and the sketch world takes over
(ResilientWorld's own switch); a new day, or viewers, and the GPU world comes
back. The hours are kept in the timeline across a restart, Twitch's viewer
count arrives through twitchio against the strict local Twitch, and the
console shows it all."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from twitchio.models.streams import Stream

import streambot.audience.twitch as twitch_module
from streambot.app import Show, ShowOptions, gpu_budget
from streambot.config import ConfigError, load_settings, resolve_world
from streambot.console import Tokens, create_app
from streambot.devserver import free_port
from streambot.store import Store
from streambot.world.budget import BUDGET, NO_VIEWERS, GpuBudget
from streambot.world.resilient import ResilientWorld
from streambot.world.sketch import SketchWorld

from .conftest import ROOT, run_cli
from .localserver import until
from .media import decode_frames
from .test_cli_errors import _one_sentence
from .test_twitch import audience_at, same_shape, twitch_chat
from .test_world_faults import FakeClock, FlakyWorld, diff
from .twitch_fake import CLIENT_ID, CLIENT_SECRET, FakeTwitch, serving

SIZE = (160, 90)
NEW_YORK = "America/New_York"
# 100 s before midnight in New York (03:58:20 UTC: no day boundary near it in UTC)
T0 = datetime(2026, 3, 14, 23, 58, 20, tzinfo=ZoneInfo(NEW_YORK)).timestamp()
DATA = Path(__file__).parent / "data"


class GpuGradient(FlakyWorld):
    """The moving gradient of the world-fault tests, as a GPU world (what the stream and video worlds are)."""

    name = "gradient"
    gpu = True


def budget_at(clock: FakeClock, start: float = T0, **limits) -> GpuBudget:
    """A budget whose clock reads `start` (Unix time) when `clock` reads 0."""
    return GpuBudget(
        active=True, world="gradient", timezone=NEW_YORK, clock=clock, wall=lambda: start + clock.t, **limits
    )


def world_with(budget: GpuBudget, clock: FakeClock) -> tuple[GpuGradient, ResilientWorld]:
    backend = GpuGradient()
    world = ResilientWorld(
        backend, lambda: SketchWorld(embedder=None, background=False), clock=clock, background=False, budget=budget
    )
    world.start(resolve_world("meadow"), SIZE, 30)
    return backend, world


def play(
    world: ResilientWorld, backend: GpuGradient, clock: FakeClock, start: float, end: float, step: float = 0.5
) -> list[tuple[float, bool, object]]:
    """Render one frame every `step` seconds of the fake clock: (time, the backend's?, frame)."""
    out = []
    n = 0
    while start + n * step < end:
        clock.t = start + n * step
        before = backend.calls
        frame = world.render()
        out.append((clock.t, backend.calls > before, frame))
        n += 1
    return out


def budget_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "streambot.world.budget"]


def test_budget_spent_means_the_sketch_world_until_the_next_day(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="streambot")
    clock = FakeClock(0.0)
    store = Store(tmp_path / "timeline.sqlite3", background=False)
    budget = budget_at(clock, daily_gpu_hours=0.01)  # 36 s
    budget.resume(store)
    backend, world = world_with(budget, clock)
    frames = play(world, backend, clock, 0.0, 60.0)
    # on air until the 36 s are used, then never rendered again that day
    on_gpu = [t for t, gpu, _ in frames if gpu]
    assert on_gpu == [i * 0.5 for i in range(72)], on_gpu[-3:]
    s = budget.status()
    assert (s.standby, s.used_s, s.day) == (BUDGET, 36.0, "2026-03-14")
    assert world.status().standby == BUDGET and world.status().state == "ok"
    # the sketch world is what goes out, after a cross-fade (not a cut)
    steps = [diff(a.image, b.image) for (_, _, a), (_, _, b) in zip(frames, frames[1:])]
    assert max(steps[70:]) < 20, "a cross-fade, not a cut"
    assert all(diff(f.image, backend.last) > 20 for t, _, f in frames if t >= 52)
    assert store.gpu_seconds("2026-03-14") == 36.0
    # midnight in New York: a new day, a new budget, the GPU world back at once
    later = play(world, backend, clock, 100.0, 110.0)
    assert later[0][1], "back on the new day's first frame"
    assert all(gpu for _, gpu, _ in later)
    s = budget.status()
    assert (s.standby, s.day, s.used_s) == (None, "2026-03-15", 9.5)
    assert 86390 <= s.resets_in_s <= 86400
    world.close()
    assert store.gpu_seconds("2026-03-14") == 36.0 and store.gpu_seconds("2026-03-15") == 9.5
    assert budget_lines(caplog) == [
        "the gradient world leaves the air, the sketch world takes over: today's GPU budget of 0.01 h is used "
        "up, until midnight (America/New_York)",
        "the gradient world is back on air: a new day (2026-03-15) and its GPU budget",
    ]
    store.close()


def test_a_day_is_counted_to_its_midnight(tmp_path):
    clock = FakeClock(0.0)
    store = Store(tmp_path / "timeline.sqlite3", background=False)
    budget = budget_at(clock)  # no limit: counted all the same
    budget.resume(store)
    backend, world = world_with(budget, clock)
    play(world, backend, clock, 0.0, 130.0, step=3.0)
    world.close()
    # midnight (100 s) falls between the frames at 99 and 102 s: that interval is split there
    assert store.gpu_seconds("2026-03-14") == 100.0
    assert store.gpu_seconds("2026-03-15") == 29.0
    assert budget.status().standby is None


def test_nobody_watching_means_the_sketch_world_until_someone_does(caplog):
    caplog.set_level(logging.INFO, logger="streambot")
    clock = FakeClock(0.0)
    budget = budget_at(clock, T0 - 12 * 3600, idle_after_s=60)  # noon: no midnight in this test
    backend, world = world_with(budget, clock)
    # no Twitch: the audience is unknown, and an unknown audience never sends the GPU world away
    assert all(gpu for _, gpu, _ in play(world, backend, clock, 0.0, 200.0, step=2.0))
    budget.set_viewers(3)
    play(world, backend, clock, 200.0, 210.0)
    clock.t = 210.0
    budget.set_viewers(0)
    budget.set_viewers(0)  # Twitch saying it again does not restart the wait
    waiting = play(world, backend, clock, 210.0, 270.0)
    assert all(gpu for _, gpu, _ in waiting)
    assert budget.status().idle_in_s == pytest.approx(0.5)
    idle = play(world, backend, clock, 270.0, 300.0)
    assert not any(gpu for _, gpu, _ in idle)
    assert budget.status().standby == NO_VIEWERS and budget.status().idle_in_s is None
    steered = world.steer(_direction("a red sunset"), 0.5)
    budget.set_viewers(1)  # back at once, on the next frame
    back = play(world, backend, clock, 300.0, 302.0)
    assert back[0][1] and all(gpu for _, gpu, _ in back)
    assert back[-1][2].generation == steered, "the steer made during standby reached the GPU world"
    assert max(diff(a.image, b.image) for (_, _, a), (_, _, b) in zip(back, back[1:])) < 20
    assert budget.status().standby is None
    # only the time on air was counted: 270 s, not the 30 s the sketch world covered
    assert budget.status().used_s == pytest.approx(270.0 + 1.5)
    assert budget_lines(caplog) == [
        "the gradient world leaves the air, the sketch world takes over: Twitch has reported no viewers for 60 s",
        "the gradient world is back on air: 1 viewer on Twitch",
    ]
    world.close()


def _direction(text: str):
    from streambot.world.base import Direction

    return Direction(text, text)


def test_a_world_that_uses_no_gpu_counts_nothing():
    settings = load_settings(None, {"budget": {"daily_gpu_hours": 0.001, "idle_after_s": 1}})
    budget = gpu_budget(SketchWorld(embedder=None, background=False), settings)
    budget.set_viewers(0)
    assert budget.update(True) is None
    status = budget.status().to_json()
    assert status["active"] is False and status["used_s"] == 0.0 and status["standby"] is None
    assert gpu_budget(GpuGradient(), settings).status().active
    from streambot.world.stream import StreamWorld
    from streambot.world.video import VideoWorld

    assert StreamWorld.gpu and VideoWorld.gpu and not SketchWorld.gpu


# -- the show: its hours kept across a restart ----------------------------------------------


def show_settings(tmp_path: Path, **budget):
    return load_settings(
        None,
        {
            "stream": {"size": "320x180", "fps": 15, "bitrate_kbps": 300},
            "audio": {"enabled": False},
            "world": {"sketch": {"embedder": None}},
            "voting": {"pool_embeddings": False, "timeline": str(tmp_path / "timeline.sqlite3")},
            "budget": {"timezone": "UTC", **budget},
        },
    )


def test_a_restart_keeps_the_days_gpu_hours(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="streambot")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    first = Show(
        show_settings(tmp_path),
        resolve_world("meadow"),
        GpuGradient(),
        ShowOptions(outputs=[str(tmp_path / "first.mkv")], duration_s=3.0, chat_source=None),
    )
    first.open()
    asyncio.run(first.run())
    used = first.budget_status()["used_s"]
    assert 2.0 < used < 30, used  # about the show's length: the GPU world was on air throughout
    # the next run, with a budget smaller than what today has used: the sketch world from the start
    second = Show(
        show_settings(tmp_path, daily_gpu_hours=used / 3600 / 2),
        resolve_world("meadow"),
        GpuGradient(),
        ShowOptions(outputs=[str(tmp_path / "second.mkv")], duration_s=3.0, chat_source=None),
    )
    second.open()
    backend = second.world.backend
    asyncio.run(second.run())
    status = second.budget_status()
    assert status["standby"] == BUDGET and status["used_s"] == pytest.approx(used, abs=0.05)
    assert backend.calls == 0, "the GPU world never went on air"
    frames = decode_frames(tmp_path / "second.mkv", size=(160, 90))
    first_frames = decode_frames(tmp_path / "first.mkv", size=(160, 90))
    assert len(frames) > 20
    assert min(diff(a, b) for _, a in frames[-10:] for _, b in first_frames[-10:]) > 10
    assert "today's GPU budget of" in caplog.text


# -- Twitch's viewer count, through twitchio ---------------------------------------------------


@pytest.fixture
async def fake(monkeypatch):
    async with serving(monkeypatch) as server:
        yield server


def test_the_fakes_streams_answer_is_twitchs():
    ref = json.loads((DATA / "twitch_samples.json").read_text())["helix"]["GET /streams"]
    from . import twitch_fake as tf

    ours = tf.stream_json(
        tf.Account("1001", "streamer"), {"id": "1", "started_at": "2026-03-14T10:00:00Z", "viewers": 3}
    )
    same_shape(ours, ref["data"][0])
    for data in (ours, ref["data"][0]):  # both read by twitchio's own model
        assert Stream(data, http=None).viewer_count == data["viewer_count"]


async def test_twitch_reports_viewers_through_twitchio(fake: FakeTwitch, tmp_path):
    streamer = fake.account("1001", "streamer")
    bigger = fake.account("1002", "bigger")
    fake.go_live(bigger, viewers=5000)  # another channel: never our count
    token = fake.user_token(streamer, ("user:read:chat", "user:write:chat"))
    clock = FakeClock(0.0)
    budget = GpuBudget(active=True, idle_after_s=60, clock=clock)
    chat = twitch_chat(audience_at(_virtual()), token, tmp_path, on_viewers=budget.set_viewers, viewers_every_s=0.05)
    task = asyncio.create_task(chat.run())
    try:
        await until(lambda: chat.state == "live")
        await until(lambda: budget.status().viewers == 0)  # not live yet: nobody can be watching
        fake.go_live(streamer, viewers=3)
        await until(lambda: budget.status().viewers == 3)
        fake.set_viewers(streamer, 0)
        await until(lambda: budget.status().viewers == 0)
        clock.t = 61.0
        assert budget.update(True) == NO_VIEWERS
        fake.set_viewers(streamer, 7)
        await until(lambda: budget.status().viewers == 7)
        assert budget.update(False) is None
        # Twitch cannot say (rate-limited for a minute): unknown, never "nobody"
        fake.throttle("streams", refusals=1000, reset_in=60)
        await until(lambda: budget.status().viewers is None)
        assert ("GET", "streams", 429) in fake.calls
    finally:
        await chat.close()
        await asyncio.wait_for(task, 10)
    assert budget.status().viewers is None
    asked = [c for c in fake.calls if c[1] == "streams"]
    assert ("GET", "streams", 200) in asked


def _virtual():
    from streambot.replay import VirtualClock

    return VirtualClock(0.0)


async def test_the_show_leaves_the_gpu_for_an_empty_channel_and_the_console_says_so(
    fake: FakeTwitch, tmp_path, monkeypatch, aiohttp_client
):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(twitch_module, "VIEWERS_EVERY_S", 0.1)
    streamer = fake.account("1001", "streamer")
    token = fake.user_token(streamer, ("user:read:chat", "user:write:chat"))
    fake.go_live(streamer, viewers=0)
    settings = load_settings(
        None,
        {
            "stream": {"size": "320x180", "fps": 15, "bitrate_kbps": 300},
            "audio": {"enabled": False},
            "world": {"sketch": {"embedder": None}},
            "voting": {"pool_embeddings": False, "timeline": str(tmp_path / "timeline.sqlite3")},
            "twitch": {
                "enabled": True,
                "client_id": CLIENT_ID,
                "channel": "streamer",
                "tokens_file": str(tmp_path / "twitch_tokens.json"),
            },
            "budget": {"daily_gpu_hours": 2, "idle_after_s": 1.0},
        },
    )
    secrets = {"twitch_client_secret": CLIENT_SECRET, "twitch_token": token[0], "twitch_refresh_token": token[1]}
    show = Show(
        settings,
        resolve_world("meadow"),
        GpuGradient(),
        ShowOptions(outputs=[str(tmp_path / "show.flv")], chat_source=None, secrets=secrets),
    )
    await asyncio.to_thread(show.open)
    running = asyncio.create_task(show.run())
    tokens = Tokens.generate()
    client = await aiohttp_client(create_app(show, settings.console, tokens=tokens, background=False))
    bearer = {"Authorization": f"Bearer {tokens.admin}"}

    async def health() -> dict:
        r = await client.get("/api/health", headers=bearer)
        assert r.status == 200
        return (await r.json())["budget"]

    try:
        await until(lambda: show.world_status()["standby"] == NO_VIEWERS, 30)
        b = await health()
        assert b["active"] is True and b["world"] == "gradient" and b["viewers"] == 0
        assert b["standby"] == NO_VIEWERS and b["why"] == "Twitch has reported no viewers for 1 s"
        assert b["budget_h"] == 2.0 and 0 < b["used_s"] and b["left_h"] == pytest.approx(2 - b["used_h"], abs=1e-3)
        metrics = await (await client.get("/metrics", headers=bearer)).text()
        assert 'streambot_gpu_standby{reason="no_viewers"} 1.0' in metrics
        assert 'streambot_gpu_standby{reason="budget"} 0.0' in metrics
        assert "streambot_twitch_viewers 0.0" in metrics and "streambot_gpu_budget_seconds 7200.0" in metrics
        used_then = b["used_s"]
        fake.set_viewers(streamer, 12)
        await until(lambda: show.world_status()["standby"] is None, 30)
        b = await health()
        assert b["viewers"] == 12 and b["standby"] is None and b["why"] is None
        await until(lambda: show.budget_status()["used_s"] > used_then + 0.5, 30)  # counting again
        # the OpenAPI document says what the answer is
        doc = await (await client.get("/api/openapi.json")).json()
        schema = doc["paths"]["/api/health"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert set(schema["properties"]["budget"]["required"]) == set(b)
    finally:
        show.stop()
        await asyncio.wait_for(running, 60)


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "budget, field, words",
    [
        ({"timezone": "Mars/Olympus"}, "budget.timezone", "is not a time zone name"),
        ({"daily_gpu_hours": -1}, "budget.daily_gpu_hours", "greater than or equal to 0"),
        ({"daily_gpu_hours": 25}, "budget.daily_gpu_hours", "less than or equal to 24"),
        ({"idle_after_s": "soon"}, "budget.idle_after_s", "valid number"),
        ({"fallback": "480p"}, "budget.fallback", "is not a known setting"),
    ],
)
def test_bad_budget_settings_are_one_sentence(budget, field, words):
    with pytest.raises(ConfigError) as e:
        load_settings(None, {"budget": budget})
    msg = str(e.value)
    assert f"field '{field}'" in msg and words in msg and msg.endswith(".") and "\n" not in msg


def test_a_bad_time_zone_stops_the_cli_with_one_sentence(cli_env, tmp_path):
    cfg = tmp_path / "my.toml"
    cfg.write_text('[budget]\ntimezone = "Europe/Atlantis"\n')
    r = run_cli(["run", "--config", str(cfg), "--output", str(tmp_path / "x.flv")], cli_env)
    msg = _one_sentence(r)
    assert "my.toml" in msg and "budget.timezone" in msg and "Europe/Atlantis" in msg


# -- the console page, in a real browser -----------------------------------------------------

NODE = shutil.which("node")
CHROMIUM = os.environ.get("STREAMBOT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
HAVE_PLAYWRIGHT = (ROOT / "node_modules" / "playwright-core" / "package.json").is_file()


@pytest.mark.slow
@pytest.mark.skipif(
    NODE is None or CHROMIUM is None or not HAVE_PLAYWRIGHT, reason="needs node, chromium and playwright-core (npm ci)"
)
async def test_the_console_page_shows_the_gpu_hours(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    admin = "budget-admin-token-0123456789abcdef"
    port = free_port()
    show = Show(
        show_settings(tmp_path, daily_gpu_hours=0.001),
        resolve_world("meadow"),
        GpuGradient(),
        ShowOptions(
            outputs=[str(tmp_path / "show.flv")],
            chat_source=None,
            console=f"127.0.0.1:{port}",
            secrets={"admin_token": admin},
        ),
    )
    await asyncio.to_thread(show.open)
    running = asyncio.create_task(show.run())
    try:
        await until(lambda: show.world_status()["standby"] == BUDGET, 60)  # 3.6 s of GPU time
        cfg = {"url": f"http://127.0.0.1:{port}/", "token": admin, "chromium": CHROMIUM}
        proc = await asyncio.create_subprocess_exec(
            NODE,
            str(ROOT / "tests" / "browser" / "budget_e2e.mjs"),
            json.dumps(cfg),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        seen = json.loads(out or b"{}")
        assert seen.get("errors") == [] and seen.get("card"), (seen, err.decode()[-2000:])
    finally:
        show.stop()
        await asyncio.wait_for(running, 60)
    card = seen["card"]
    assert card["tag"] == "sketch world on air"
    assert card["why"] == (
        "The sketch world is on air: today's GPU budget of 0.001 h is used up, until midnight (UTC)."
    )
    assert card["used"] == "0.00 / 0.00 h" and card["bar"] == "100%"
    assert card["viewers"] == "unknown"
    assert "sketch world on air · GPU budget spent" in card["world"]
