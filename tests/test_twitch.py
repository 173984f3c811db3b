"""Twitch: twitchio's own code, unmodified, against the strict local Twitch in
tests/twitch_fake.py (tokens, Helix, the EventSub websocket)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import time
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import limits.storage.memory
import pytest

from streambot.audience.commands import HELP
from streambot.audience.events import REFUSED, Audience
from streambot.audience.moderation import Moderation
from streambot.audience.twitch import TwitchChat, chat_limit, round_message, write_tokens
from streambot.config import ModerationSettings, TwitchSettings, VotingSettings
from streambot.director import Director
from streambot.replay import VirtualClock
from streambot.store import Store
from streambot.voting import RoundResult, VotingEngine, Winner
from streambot.world.sketch import SketchWorld
from streambot.worldspec import WorldSpec

from . import twitch_fake as tf
from .localserver import until
from .twitch_fake import CLIENT_ID, CLIENT_SECRET, FakeTwitch

DATA = Path(__file__).parent / "data"
# What the README's authorisation asks the chatting account for.
SCOPES = (
    "user:read:chat",
    "user:write:chat",
    "user:bot",
    "channel:bot",
    "channel:moderate",
    "channel:manage:broadcast",
    "channel:manage:redemptions",
)
CHAT_ONLY = ("user:read:chat", "user:write:chat")


@pytest.fixture
async def fake(monkeypatch):
    async with tf.serving(monkeypatch) as server:
        yield server


def audience_at(clock: VirtualClock, store: Store | None = None) -> Audience:
    engine = VotingEngine(VotingSettings(round_s=10, grace_s=1, stream_delay_s=0), now=clock.t)
    return Audience(engine, Moderation(ModerationSettings()), clock=clock, store=store)


@pytest.fixture
def director():
    """The real director over the sketch world, on a virtual clock: what goes on air."""
    spec = WorldSpec("lagoon", "Lagoon", "A lagoon.", "bright", ("waves roll in", "a storm gathers"))
    world = SketchWorld(embedder=None, background=False)
    world.start(spec, (160, 90), 30, seed=1)
    yield Director(world, spec, beat_interval_s=20, clock=VirtualClock(0.0))
    world.close()


def air(director: Director, winner: Winner) -> None:
    """A round's winner goes on air, as the show does it (`Show.on_winner`)."""
    director.submit(winner.text, source="audience", user=winner.user, round=winner.round)


def twitch_chat(
    audience: Audience,
    token: tuple[str, str] | None,
    tmp_path: Path,
    *,
    on_viewers=None,
    viewers_every_s: float | None = None,
    on_air=None,
    **settings,
) -> TwitchChat:
    """The adapter for the channel "streamer" of the fake, with the app's secret and `token`."""
    settings = {
        "enabled": True,
        "client_id": CLIENT_ID,
        "channel": "streamer",
        "tokens_file": str(tmp_path / "twitch_tokens.json"),
    } | settings
    secrets = {"twitch_client_secret": CLIENT_SECRET}
    if token is not None:
        secrets |= {"twitch_token": token[0], "twitch_refresh_token": token[1]}
    return TwitchChat(
        audience,
        TwitchSettings(**settings),
        secrets,
        on_viewers=on_viewers,
        viewers_every_s=viewers_every_s,
        on_air=on_air,
    )


@asynccontextmanager
async def running(chat: TwitchChat, fake: FakeTwitch, *subscriptions: str):
    """The adapter's own task, live with `subscriptions`; closed (and awaited) after."""
    task = asyncio.create_task(chat.run())
    try:
        await fake.wait(lambda: all(fake.live(t) for t in ("channel.chat.message", *subscriptions)))
        await until(lambda: chat.state == "live")
        yield task
    finally:
        await chat.close()
        await asyncio.wait_for(task, 10)
    assert chat.state == "closed"


def streambot_log(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("streambot"))


async def settled(fake: FakeTwitch, audience: Audience, channel, n: int) -> None:
    """Wait until the adapter has taken in `n` messages more than it has now; a marker message
    (not a command) is chatted last, so everything sent before it has been seen."""
    target = audience.counts["messages"] + n + 1
    marker = fake.accounts.get("9999") or fake.account("9999", "marker")
    await fake.chat(channel, marker, "marker")
    await until(lambda: audience.counts["messages"] >= target)
    assert audience.counts["messages"] == target


# -- the fake against Twitch's documented messages ---------------------------------------


def shape(value):
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def same_shape(ours, reference, where: str = "$", nullable: frozenset = frozenset()) -> None:
    """Same keys at every level, same JSON types; null only where Twitch's example has null
    (or the field is documented as nullable). A condition's keys depend on its type."""
    if where.endswith(".condition"):
        assert isinstance(ours, dict) and all(isinstance(v, str) for v in ours.values()), where
    elif isinstance(reference, dict):
        assert isinstance(ours, dict), where
        assert set(ours) == set(reference), f"{where}: {sorted(set(ours) ^ set(reference))}"
        for k in reference:
            same_shape(ours[k], reference[k], f"{where}.{k}", nullable)
    elif isinstance(reference, list):
        assert isinstance(ours, list), where
        for item in ours:
            same_shape(item, reference[0], f"{where}[]", nullable) if reference else None
    elif reference is None or ours is None:
        assert reference is None or where.rsplit(".", 1)[-1] in nullable, f"{where}: null"
    else:
        assert type(ours) is type(reference), f"{where}: {type(ours).__name__} is not {type(reference).__name__}"


def test_fake_messages_match_the_documented_shapes() -> None:
    ref = json.loads((DATA / "twitch_samples.json").read_text())
    ch, ann, mod, other = (
        tf.Account("1", "streamer"),
        tf.Account("2", "ann"),
        tf.Account("3", "mod"),
        tf.Account("4", "guest"),
    )
    sub = {
        "id": "s",
        "status": "enabled",
        "type": "channel.chat.message",
        "version": "1",
        "condition": {"broadcaster_user_id": "1", "user_id": "1"},
        "created_at": tf.iso(),
        "cost": 0,
        "transport": {"method": "websocket", "session_id": "x", "connected_at": tf.iso()},
    }
    same_shape(tf.welcome("x", 10, tf.iso()), ref["session_welcome"])
    same_shape(tf.keepalive(), ref["session_keepalive"])
    same_shape(tf.reconnect("x", "ws://h/ws", tf.iso()), ref["session_reconnect"])
    same_shape(tf.revocation(sub, "user_removed"), ref["revocation"])
    envelope = tf.notification(sub, {})
    same_shape(envelope, ref["notification"])
    events = ref["events"]
    same_shape(tf.chat_event(ch, ann, "hi", "m1", ["moderator"]), events["channel.chat.message"])
    same_shape(
        tf.chat_event(ch, ann, "hi", "m1", ["moderator"], source=other), events["channel.chat.message (shared chat)"]
    )
    same_shape(tf.message_delete_event(ch, ann, "m1"), events["channel.chat.message_delete"])
    same_shape(tf.clear_user_event(ch, ann), events["channel.chat.clear_user_messages"])
    same_shape(tf.ban_event(ch, ann, mod, "", tf.iso()), events["channel.ban"])
    same_shape(tf.ban_event(ch, ann, mod, "", None), events["channel.ban"], nullable=frozenset({"ends_at"}))
    reward = {"id": "r", "title": "Prompt", "cost": 100, "prompt": "", "input": True}
    same_shape(
        tf.redemption_event(ch, ann, "x", reward, "a dragon"),
        events["channel.channel_points_custom_reward_redemption.add"],
    )
    same_shape(tf.reward_json(ch, reward), ref["helix"]["POST /channel_points/custom_rewards"]["data"][0])
    # The reference examples parse with twitchio's own models, as ours do.
    from twitchio.models.eventsub_ import create_event_instance

    for kind, event in events.items():
        t = kind.split(" ")[0]
        msg = {
            "metadata": {**envelope["metadata"], "subscription_type": t},
            "payload": {"subscription": {**sub, "type": t}, "event": event},
        }
        assert create_event_instance(t, msg, http=None) is not None


async def test_fake_twitch_is_strict(fake: FakeTwitch) -> None:
    """The fake refuses what Twitch refuses, and keeps its own keepalive timer."""
    ref = json.loads((DATA / "twitch_samples.json").read_text())["helix"]
    ch = fake.account("1001", "streamer")
    access, refresh = fake.user_token(ch, CHAT_ONLY)
    base = f"http://127.0.0.1:{fake.port}"

    def auth(token: str, client: str = CLIENT_ID) -> dict:
        return {"Authorization": f"Bearer {token}", "Client-Id": client}

    async with aiohttp.ClientSession() as http:
        msg = {"broadcaster_id": "1001", "sender_id": "1001", "message": "hello"}
        r = await http.post(f"{base}/helix/chat/messages", json=msg)
        assert r.status == 401  # no bearer token
        r = await http.post(f"{base}/helix/chat/messages", json=msg, headers=auth(access, "someone-else"))
        assert r.status == 401  # another app's client id
        r = await http.post(f"{base}/helix/streams/markers", json={"user_id": "1001"}, headers=auth(access))
        assert r.status == 401 and "channel:manage:broadcast" in (await r.json())["message"]  # missing scope
        r = await http.post(f"{base}/helix/chat/messages", json=msg, headers=auth(access))
        assert r.status == 200
        same_shape(await r.json(), ref["POST /chat/messages"], nullable=frozenset({"drop_reason"}))
        assert r.headers["Ratelimit-Limit"] == "800"

        fake.throttle("chat/messages", refusals=1, reset_in=30)
        r = await http.post(f"{base}/helix/chat/messages", json=msg, headers=auth(access))
        assert r.status == 429 and int(r.headers["Ratelimit-Reset"]) >= time.time() + 29
        same_shape(await r.json(), ref["429"])
        r = await http.post(f"{base}/helix/chat/messages", json=msg, headers=auth(access))
        assert r.status == 429 and fake.early_retries == 1  # before the reset: refused again

        # Refresh tokens rotate: each works once; the access token it replaced stops working.
        form = {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "grant_type": "refresh_token",
            "refresh_token": refresh,
        }
        r = await http.post(f"{base}/oauth2/token", params=form)
        new = await r.json()
        assert r.status == 200 and new["refresh_token"] != refresh and new["access_token"] != access
        assert (await http.post(f"{base}/oauth2/token", params=form)).status == 400
        assert (await http.get(f"{base}/oauth2/validate", headers={"Authorization": f"OAuth {access}"})).status == 401
        v = await http.get(f"{base}/oauth2/validate", headers={"Authorization": f"OAuth {new['access_token']}"})
        assert (await v.json())["user_id"] == "1001"
        access = new["access_token"]

        # The websocket: the session's keepalive comes on Twitch's timer; an unused session
        # is closed with 4003; a client that talks is closed with 4001.
        idle = await http.ws_connect(f"ws://127.0.0.1:{fake.port}/ws")
        talker = await http.ws_connect(f"ws://127.0.0.1:{fake.port}/ws")
        used = await http.ws_connect(f"ws://127.0.0.1:{fake.port}/ws?keepalive_timeout_seconds=3")
        welcome = await used.receive_json(timeout=5)
        assert welcome["payload"]["session"]["keepalive_timeout_seconds"] == 10  # Twitch's floor
        sub = {
            "type": "channel.chat.message",
            "version": "1",
            "condition": {"broadcaster_user_id": "1001", "user_id": "1001"},
            "transport": {"method": "websocket", "session_id": welcome["payload"]["session"]["id"]},
        }
        r = await http.post(f"{base}/helix/eventsub/subscriptions", json=sub, headers=auth(access))
        assert r.status == 202
        same_shape(await r.json(), ref["POST /eventsub/subscriptions"])
        r = await http.post(f"{base}/helix/eventsub/subscriptions", json=sub, headers=auth(access))
        assert r.status == 409
        app = await (
            await http.post(
                f"{base}/oauth2/token",
                params={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "grant_type": "client_credentials"},
            )
        ).json()
        r = await http.post(f"{base}/helix/eventsub/subscriptions", json=sub, headers=auth(app["access_token"]))
        assert r.status == 400  # websockets take user tokens only
        await talker.receive_json(timeout=5)
        await talker.send_str("hello?")
        closed = await talker.receive(timeout=5)
        assert (closed.type, closed.data) == (aiohttp.WSMsgType.CLOSE, 4001)
        await idle.receive_json(timeout=5)
        keep = await used.receive_json(timeout=30)
        assert keep["metadata"]["message_type"] == "session_keepalive"
        # on the session's 10 s (not the 3 s asked for), by the fake's own timestamps
        sent = [datetime.fromisoformat(m["metadata"]["message_timestamp"]) for m in (welcome, keep)]
        assert (sent[1] - sent[0]).total_seconds() >= 9.9, sent
        closed = await idle.receive(timeout=5)
        assert (closed.type, closed.data) == (aiohttp.WSMsgType.CLOSE, 4003)
        await used.close()
        await fake.wait(lambda: not fake.subscriptions)  # they die with the socket


# -- the adapter ------------------------------------------------------------------------


async def test_chat_through_eventsub_and_helix(fake: FakeTwitch, tmp_path, caplog, director) -> None:
    caplog.set_level(logging.DEBUG)
    streamer = fake.account("1001", "streamer")
    viewers = {
        n: fake.account(str(2000 + i), n)
        for i, n in enumerate(("ann", "bob", "cat", "dan", "eve", "fay", "gus", "hal"), 1)
    }
    token = fake.user_token(streamer, SCOPES)
    clock = VirtualClock(0.0)
    audience = audience_at(clock)
    chat = twitch_chat(audience, token, tmp_path, markers=True, on_air=director.subscribe)
    async with running(chat, fake):
        sub = fake.created[0]
        assert sub["condition"] == {"broadcaster_user_id": "1001", "user_id": "1001"}
        v = viewers
        await fake.chat(streamer, v["ann"], "!p a dragon attacks", ["subscriber"])
        await fake.chat(streamer, v["bob"], "!prompt a castle in the clouds")
        await fake.chat(streamer, v["cat"], "!vote 2")
        await fake.chat(streamer, v["dan"], "+2")
        await fake.chat(streamer, v["dan"], "!2 \U000e0000")  # a repeat: still one vote
        await fake.chat(streamer, v["eve"], "!help")
        await fake.chat(streamer, v["fay"], "!help")
        rude = await fake.chat(streamer, v["gus"], "!p sh1t")
        await settled(fake, audience, streamer, 8)
        snap = audience.snapshot()
        assert [(c.number, c.text, c.votes) for c in snap.candidates] == [
            (2, "a castle in the clouds", 3.0),
            (1, "a dragon attacks", 1.0),
        ]
        # nothing per command but the one refusal, in its thread
        await fake.wait(lambda: len(fake.sent) == 1)
        assert [(m["message"], m["reply_parent_message_id"]) for m in fake.sent] == [(REFUSED, rude)]

        clock.t = 11.0
        winner = audience.tick()
        assert winner.text == "a castle in the clouds" and winner.user == "bob"
        air(director, winner)
        await fake.wait(lambda: len(fake.sent) == 2 and len(fake.markers) == 1)
        msg = fake.sent[1]
        assert msg["broadcaster_id"] == "1001" and msg["sender_id"] == "1001"
        assert "a castle in the clouds" in msg["message"] and "@bob" in msg["message"]
        assert msg["message"].count(HELP) == 1  # two asked, one answer
        assert "sh1t" not in msg["message"]
        assert fake.markers[0]["user_id"] == "1001"

        # Twitch asks us to move: session_reconnect to a new URL; subscriptions carry over.
        old = fake.session_of("channel.chat.message")
        await fake.move(old)
        await fake.wait(lambda: old.ws.closed and fake.session_of("channel.chat.message") is not old)
        await fake.chat(streamer, v["ann"], "!p night falls")
        await until(lambda: [c.text for c in audience.snapshot().candidates] == ["night falls"])
        created = len(fake.created)

        # A plain drop: twitchio dials again and subscribes on the new session.
        dropped = fake.session_of("channel.chat.message")
        await dropped.ws.close()
        await fake.wait(lambda: fake.live("channel.chat.message") and len(fake.created) > created)
        assert fake.session_of("channel.chat.message") is not dropped
        night = audience.snapshot().candidates[0].number  # numbers are never reused within a show
        assert night == 3
        await fake.chat(streamer, v["hal"], f"!{night}")
        await until(lambda: audience.counts["votes"] == 4)
        assert audience.snapshot().candidates[0].votes == 2
    logged = streambot_log(caplog)
    for secret in (*token, CLIENT_SECRET):
        assert secret not in logged


async def test_a_session_twitch_stops_delivering_to_is_rebuilt(fake: FakeTwitch, tmp_path) -> None:
    """twitchio re-dials a dropped socket by itself and says nothing meanwhile: Twitch's own list of
    subscriptions shows chat is not reaching us, the state says so, and after `watchdog_s` the whole
    session is built again; chat comes back when Twitch takes sockets again."""
    streamer = fake.account("1001", "streamer")
    ann = fake.account("2001", "ann")
    audience = audience_at(VirtualClock(0.0))
    token = fake.user_token(streamer, SCOPES)
    chat = TwitchChat(
        audience,
        TwitchSettings(
            enabled=True, client_id=CLIENT_ID, channel="streamer", tokens_file=str(tmp_path / "twitch_tokens.json")
        ),
        {"twitch_client_secret": CLIENT_SECRET, "twitch_token": token[0], "twitch_refresh_token": token[1]},
        watchdog_s=2.0,
        health_s=0.2,
    )
    async with running(chat, fake):
        first = fake.session_of("channel.chat.message")
        fake.refuse_sockets = True  # an EventSub outage
        await first.ws.close()
        await until(lambda: chat.state == "reconnecting")
        assert any(c[:2] == ("GET", "eventsub/subscriptions") and c[2] == 200 for c in fake.calls)
        await until(lambda: chat.state.startswith("retrying"))  # the watchdog gave the session up
        fake.refuse_sockets = False
        await fake.wait(lambda: fake.live("channel.chat.message"))
        await until(lambda: chat.state == "live")
        assert fake.session_of("channel.chat.message") is not first
        await fake.chat(streamer, ann, "!p night falls")
        await until(lambda: [c.text for c in audience.snapshot().candidates] == ["night falls"])


async def test_failure_retries_without_raising(fake: FakeTwitch, tmp_path, caplog) -> None:
    fake.account("1001", "streamer")
    chat = twitch_chat(audience_at(VirtualClock(0.0)), ("wrong-token-123456", "wrong-refresh-123456"), tmp_path)
    task = asyncio.create_task(chat.run())
    await until(lambda: chat.state.startswith("retrying"))
    assert not task.done()
    await chat.close()
    await asyncio.wait_for(task, 10)
    assert "wrong-token-123456" not in streambot_log(caplog)


async def test_the_broadcaster_chatting_as_the_bot_is_heard(fake: FakeTwitch, tmp_path) -> None:
    """bot = "": the streamer's own commands count; only what the bot itself sent is dropped."""
    streamer = fake.account("1001", "streamer")
    ann = fake.account("2001", "ann")
    clock = VirtualClock(0.0)
    audience = audience_at(clock)
    chat = twitch_chat(audience, fake.user_token(streamer, SCOPES), tmp_path)
    async with running(chat, fake):
        await fake.chat(streamer, streamer, "!p a storm over the sea", ["broadcaster"])
        await fake.chat(streamer, ann, "!p a quiet village")
        await settled(fake, audience, streamer, 2)
        assert [c.text for c in audience.snapshot().candidates] == ["a storm over the sea", "a quiet village"]
        await fake.chat(streamer, streamer, "!skip", ["broadcaster"])
        await until(lambda: audience.snapshot().round == 2)  # the streamer's !skip worked
        assert audience.snapshot().candidates == ()

        # The bot's round message comes back over EventSub (before Helix answers); it is not chat.
        await fake.chat(streamer, ann, "!p a lighthouse")
        await fake.chat(streamer, ann, "!help")
        await settled(fake, audience, streamer, 2)
        before = audience.counts["messages"]
        clock.t = 25.0
        audience.tick()
        await fake.wait(lambda: len(fake.sent) == 1)
        await settled(fake, audience, streamer, 0)
        assert audience.counts["messages"] == before + 1  # the marker only, not the echo


async def test_shared_chat_counts_only_this_channel(fake: FakeTwitch, tmp_path) -> None:
    streamer = fake.account("1001", "streamer")
    guest_channel = fake.account("3001", "guestchannel")
    ann, zed = fake.account("2001", "ann"), fake.account("2009", "zed")
    audience = audience_at(VirtualClock(0.0))
    chat = twitch_chat(audience, fake.user_token(streamer, SCOPES), tmp_path)
    async with running(chat, fake):
        await fake.chat(streamer, ann, "!p a red moon")
        await fake.chat(streamer, zed, "!p a flood", source=guest_channel)  # mirrored from the other channel
        await fake.chat(streamer, zed, "!1", source=guest_channel)
        await fake.chat(streamer, zed, "!p a desert", source=streamer)  # in this channel during the session
        await settled(fake, audience, streamer, 2)
        assert [(c.text, c.votes) for c in audience.snapshot().candidates] == [("a red moon", 1.0), ("a desert", 1.0)]


async def test_token_refreshes_are_saved_and_survive_a_restart(fake: FakeTwitch, tmp_path, caplog) -> None:
    streamer = fake.account("1001", "streamer")
    # Twitch hands out a token close to expiry: twitchio refreshes it at once, and the
    # refresh token rotates, so the secrets file's pair is spent from then on.
    old = fake.user_token(streamer, CHAT_ONLY, expires_in=600)  # chat goes out with this token
    chat = twitch_chat(audience_at(VirtualClock(0.0)), old, tmp_path)
    tokens_file = tmp_path / "twitch_tokens.json"
    async with running(chat, fake):
        await until(lambda: tokens_file.exists())
        saved = json.loads(tokens_file.read_text())["1001"]
        assert saved["refresh"] != old[1] and saved["token"] != old[0]
        assert stat.S_IMODE(os.stat(tokens_file).st_mode) == 0o600
        assert fake.refreshes.get(saved["refresh"]) is not None  # the live pair

        # A token that expires mid-show is refreshed again, and that one is saved too.
        fake.expire(saved["token"])
        await chat.send("hello")
        await until(lambda: json.loads(tokens_file.read_text())["1001"]["refresh"] != saved["refresh"])
    assert fake.refreshes.get(json.loads(tokens_file.read_text())["1001"]["refresh"]) is not None

    # A restart with the same (spent) secrets logs in with the saved pair.
    again = twitch_chat(audience_at(VirtualClock(0.0)), old, tmp_path)
    async with running(again, fake):
        pass
    logged = streambot_log(caplog)
    assert saved["token"] not in logged and saved["refresh"] not in logged


async def test_a_saved_token_of_another_account_is_let_go(fake: FakeTwitch, tmp_path, caplog) -> None:
    """twitch.bot names the chatting account: a saved token of another account is not used, and
    twitchio stops managing it (a refresh of it would be saved in the bot's place)."""
    streamer, ann = fake.account("1001", "streamer"), fake.account("2001", "ann")
    write_tokens(tmp_path / "twitch_tokens.json", "2001", *fake.user_token(ann, SCOPES))
    chat = twitch_chat(audience_at(VirtualClock(0.0)), fake.user_token(streamer, SCOPES), tmp_path, bot="streamer")
    async with running(chat, fake):
        assert chat.client is not None and set(chat.client.tokens) == {"1001"}
    assert "belongs to ann, not to twitch.bot streamer" in streambot_log(caplog)


async def test_a_429_waits_for_ratelimit_reset_and_retries_once(fake: FakeTwitch, tmp_path, caplog) -> None:
    streamer = fake.account("1001", "streamer")
    chat = twitch_chat(audience_at(VirtualClock(0.0)), fake.user_token(streamer, SCOPES), tmp_path)
    async with running(chat, fake):
        fake.throttle("chat/messages", refusals=1, reset_in=1.0)
        assert await chat.send("round 1 is on air")
        assert [m["message"] for m in fake.sent] == ["round 1 is on air"]
        assert [c[2] for c in fake.calls if c[1] == "chat/messages"] == [429, 200]
        assert fake.early_retries == 0  # not before the reset

        # A reset beyond the budget: the message is dropped, said so, and nothing is retried.
        fake.throttle("chat/messages", refusals=1, reset_in=120.0)
        caplog.clear()
        assert not await chat.send("round 2 is on air")
        assert [c[2] for c in fake.calls if c[1] == "chat/messages"] == [429, 200, 429]
        assert len(fake.sent) == 1 and fake.early_retries == 0
        logged = streambot_log(caplog)
        assert "dropped: Twitch's rate limit resets in 12" in logged and "retrying" not in logged, logged


async def test_a_revoked_subscription_is_renewed_at_once(fake: FakeTwitch, tmp_path, caplog) -> None:
    streamer = fake.account("1001", "streamer")
    ann = fake.account("2001", "ann")
    audience = audience_at(VirtualClock(0.0))
    chat = twitch_chat(audience, fake.user_token(streamer, SCOPES), tmp_path)
    async with running(chat, fake):
        first = fake.live("channel.chat.message")[0]["id"]
        socket = fake.session_of("channel.chat.message")
        await fake.revoke("channel.chat.message", "user_removed")
        await fake.wait(lambda: fake.live("channel.chat.message"), timeout=30)
        assert fake.live("channel.chat.message")[0]["id"] != first
        # at once: on the same socket, not after a reconnect and its back-off
        assert fake.session_of("channel.chat.message") is socket
        assert "user_removed" in streambot_log(caplog)
        await fake.chat(streamer, ann, "!p a waterfall")
        await until(lambda: [c.text for c in audience.snapshot().candidates] == ["a waterfall"])

        # The streamer disconnects the app: the tokens die; the console says why.
        await fake.revoke("channel.chat.message", "authorization_revoked")
        await until(lambda: "authorization_revoked" in chat.state)
        assert "authorization_revoked" in streambot_log(caplog)


async def test_twitch_moderation_takes_things_off_the_ballot(fake: FakeTwitch, tmp_path) -> None:
    streamer = fake.account("1001", "streamer")
    mod = fake.account("1002", "mod")
    ann, bob, cat, dan, eve, fay = (
        fake.account(str(2001 + i), n) for i, n in enumerate(("ann", "bob", "cat", "dan", "eve", "fay"))
    )
    store = Store(tmp_path / "timeline.sqlite3", background=False)
    clock = VirtualClock(0.0)
    audience = audience_at(clock, store)
    chat = twitch_chat(audience, fake.user_token(streamer, SCOPES), tmp_path)
    deleted = ("channel.chat.message_delete", "channel.chat.clear_user_messages", "channel.ban")
    async with running(chat, fake, *deleted):
        m_ann = await fake.chat(streamer, ann, "!p a dragon")
        await fake.chat(streamer, bob, "!p a castle")
        m_cat = await fake.chat(streamer, cat, "!vote 1")
        await fake.chat(streamer, dan, "!p a dragon")  # the same idea: dan joins #1
        await fake.chat(streamer, eve, "!2")
        await settled(fake, audience, streamer, 5)

        def ballot():
            return [(c.text, c.votes, c.author) for c in audience.snapshot().candidates]

        assert ballot() == [("a dragon", 3.0, "ann"), ("a castle", 2.0, "bob")]
        await fake.delete_message(streamer, cat, m_cat)  # a deleted vote
        await until(lambda: ballot()[0][1] == 2.0)
        await fake.delete_message(streamer, ann, m_ann)  # a deleted prompt: dan's submission stays
        await until(lambda: ballot() == [("a castle", 2.0, "bob"), ("a dragon", 1.0, "dan")])
        await fake.clear_user(streamer, bob)  # bob's messages cleared: his prompt goes, eve's vote with it
        await until(lambda: ballot() == [("a dragon", 1.0, "dan")])
        await fake.ban(streamer, dan, mod, timeout_s=600)  # a timeout
        await until(lambda: ballot() == [])
        clock.t = 11.0
        assert audience.tick() is None

        # A streambot ban is kept by Twitch user id: a rename does not escape it, nor a restart.
        await fake.chat(streamer, fay, "hello")
        await fake.chat(streamer, streamer, "!ban fay", ["broadcaster"])
        await settled(fake, audience, streamer, 2)
        fake.accounts["2006"] = renamed = tf.Account("2006", "fay_again")
        await fake.chat(streamer, renamed, "!p a comet")
        await settled(fake, audience, streamer, 1)
        assert audience.snapshot().candidates == ()
    store.close()
    again = audience_at(VirtualClock(0.0), Store(tmp_path / "timeline.sqlite3", background=False))
    chat = twitch_chat(again, fake.user_token(streamer, SCOPES), tmp_path)
    async with running(chat, fake):
        await fake.chat(streamer, renamed, "!p a comet")
        await fake.chat(streamer, ann, "!p a meteor")
        await settled(fake, again, streamer, 2)
        assert [c.text for c in again.snapshot().candidates] == ["a meteor"]
    again.store.close()


def test_winners_from_elsewhere_are_not_pinged() -> None:
    def message(platform: str) -> str:
        return round_message(
            RoundResult(3, 0, 10, Winner("a dragon", "ann", platform, 3, 1.0), (), 0), help_asked=False, now_text=None
        )

    assert "@ann" in message("twitch")  # Twitch's own login: the winner hears of it
    assert "@" not in message("discord") and "ann" in message("discord")
    assert "@" not in message("local")


async def test_channel_points_reward_is_created_fulfilled_and_refunded(
    fake: FakeTwitch, tmp_path, caplog, director
) -> None:
    streamer = fake.account("1001", "streamer")
    ann, bob, cat = fake.account("2001", "ann"), fake.account("2002", "bob"), fake.account("2003", "cat")
    clock = VirtualClock(0.0)
    audience = audience_at(clock)
    settings = {"reward": "Prompt on air", "reward_cost": 300}
    chat = twitch_chat(audience, fake.user_token(streamer, SCOPES), tmp_path, on_air=director.subscribe, **settings)
    redeem = "channel.channel_points_custom_reward_redemption.add"
    async with running(chat, fake, redeem):
        [reward] = fake.rewards.values()
        assert (reward["title"], reward["cost"], reward["input"], reward["client_id"]) == (
            "Prompt on air",
            300,
            True,
            CLIENT_ID,
        )
        on_air = await fake.redeem(streamer, ann, reward, "a comet")
        refused = await fake.redeem(streamer, bob, reward, "sh1t")  # the block list refuses it
        await fake.wait(lambda: fake.redemptions[refused]["status"] == "CANCELED")
        await until(lambda: [c.text for c in audience.snapshot().candidates] == ["a comet"])
        assert fake.redemptions[on_air]["status"] == "UNFULFILLED"
        clock.t = 11.0
        winner = audience.tick()
        assert winner.text == "a comet"
        air(director, winner)
        await fake.wait(lambda: fake.redemptions[on_air]["status"] == "FULFILLED")

        # Two priority prompts in one round: the one that does not go on air is refunded.
        first = await fake.redeem(streamer, cat, reward, "a glacier")  # (ann still cools down from her win)
        second = await fake.redeem(streamer, bob, reward, "a volcano")
        await until(lambda: len(audience.snapshot().candidates) == 2)
        clock.t = 22.0
        winner = audience.tick()
        assert winner.text == "a glacier"
        air(director, winner)
        await fake.wait(
            lambda: (fake.redemptions[first]["status"], fake.redemptions[second]["status"]) == ("FULFILLED", "CANCELED")
        )

    # A restart finds its reward instead of making another.
    again = twitch_chat(audience_at(VirtualClock(0.0)), fake.user_token(streamer, SCOPES), tmp_path, **settings)
    async with running(again, fake, redeem):
        assert len(fake.rewards) == 1


async def test_markers_and_fulfilment_follow_what_went_on_air(fake: FakeTwitch, tmp_path, director) -> None:
    """A round's winner that never airs (refused late, or replaced by the streamer's forced
    prompt) gets no marker and no fulfilment; a forced prompt, which airs without a round,
    gets its marker; one marker per prompt that airs, none for the world's own story."""
    streamer = fake.account("1001", "streamer")
    ann, bob = fake.account("2001", "ann"), fake.account("2002", "bob")
    clock = VirtualClock(0.0)
    audience = audience_at(clock)
    settings = {"reward": "Prompt on air", "reward_cost": 300, "markers": True}
    chat = twitch_chat(audience, fake.user_token(streamer, SCOPES), tmp_path, on_air=director.subscribe, **settings)
    redeem = "channel.channel_points_custom_reward_redemption.add"
    async with running(chat, fake, redeem):
        [reward] = fake.rewards.values()
        comet = await fake.redeem(streamer, ann, reward, "a comet")
        await until(lambda: [c.text for c in audience.snapshot().candidates] == ["a comet"])
        clock.t = 11.0
        assert audience.tick().text == "a comet"  # it won, but the show does not air it
        director.submit("a lighthouse", source="console", user="alice", actor="console:alice")
        await fake.wait(lambda: len(fake.markers) == 1)
        assert [m["description"] for m in fake.markers] == ["a lighthouse"]
        assert fake.redemptions[comet]["status"] == "UNFULFILLED"
        clock.t = 22.0
        assert audience.tick() is None  # the next round's close: a winner that never aired is refunded
        await fake.wait(lambda: fake.redemptions[comet]["status"] == "CANCELED")

        volcano = await fake.redeem(streamer, bob, reward, "a volcano")
        await until(lambda: [c.text for c in audience.snapshot().candidates] == ["a volcano"])
        clock.t = 33.0
        winner = audience.tick()
        air(director, winner)
        assert director.tick(100.0) is not None and director.on_air.source == "story"  # the world's own beat
        await fake.wait(lambda: fake.redemptions[volcano]["status"] == "FULFILLED" and len(fake.markers) == 2)
        director.submit("a lighthouse at dawn", source="console", user="alice", actor="console:alice")
        await fake.wait(lambda: len(fake.markers) == 3)
    assert [m["description"] for m in fake.markers] == ["a lighthouse", "a volcano", "a lighthouse at dawn"]


async def test_a_reward_made_on_the_dashboard_is_explained(fake: FakeTwitch, tmp_path, caplog) -> None:
    streamer = fake.account("1001", "streamer")
    ann = fake.account("2001", "ann")
    reward = fake.add_reward(streamer, "Prompt on air")  # not created by this app
    audience = audience_at(VirtualClock(0.0))
    chat = twitch_chat(audience, fake.user_token(streamer, SCOPES), tmp_path, reward="Prompt on air")
    async with running(chat, fake, "channel.channel_points_custom_reward_redemption.add"):
        assert len(fake.rewards) == 1
        await fake.redeem(streamer, ann, reward, "a comet")
        await until(lambda: [c.text for c in audience.snapshot().candidates] == ["a comet"])
    assert "only the app that created a reward" in streambot_log(caplog)
    assert not any(c[0] == "PATCH" for c in fake.calls)


@pytest.mark.parametrize("case", ["broadcaster", "moderator bot", "plain bot"])
async def test_the_bot_badge_comes_with_the_app_token(fake: FakeTwitch, tmp_path, case: str) -> None:
    """Twitch shows the bot badge on chat sent with the app access token, once the bot granted
    user:bot and the channel channel:bot (or made the bot a moderator); a user token never shows it."""
    streamer = fake.account("1001", "streamer")
    if case == "broadcaster":
        token, settings = fake.user_token(streamer, SCOPES), {}
    else:
        mod = case == "moderator bot"
        bot = fake.account("1500", "worldbot", moderator_of=streamer if mod else None)
        token = fake.user_token(bot, ("user:read:chat", "user:write:chat", "user:bot"))
        settings = {"bot": "worldbot", "bot_is_moderator": mod}
    chat = twitch_chat(audience_at(VirtualClock(0.0)), token, tmp_path, **settings)
    async with running(chat, fake):
        assert await chat.send("hello")
    assert fake.sent[0]["badge"] is (case != "plain bot")
    assert fake.sent[0]["sender_id"] == ("1001" if case == "broadcaster" else "1500")


@pytest.mark.parametrize("moderator, limit", [(False, 20), (True, 100)])
async def test_chat_stays_inside_twitchs_rate_limit(fake: FakeTwitch, tmp_path, monkeypatch, moderator, limit) -> None:
    """Twitch's rule for chat a user sends: 20 messages per 30 s, 100 where the bot is a moderator."""
    clock = VirtualClock(1000.0)
    monkeypatch.setattr(limits.storage.memory, "time", SimpleNamespace(time=clock))  # the limiter's clock only
    streamer = fake.account("1001", "streamer")
    chat = twitch_chat(
        audience_at(VirtualClock(0.0)), fake.user_token(streamer, SCOPES), tmp_path, bot_is_moderator=moderator
    )
    async with running(chat, fake):
        results = [await chat.send(f"message {i}") for i in range(limit + 5)]
        assert results == [True] * limit + [False] * 5
        assert len(fake.sent) == limit
        clock.t += 29.0
        assert not await chat.send("still inside the window")
        clock.t += 1.5  # the first message is 30 s old
        assert await chat.send("a new window")
    assert len(fake.sent) == limit + 1
    assert chat_limit(moderator).amount == limit and chat_limit(moderator).get_expiry() == 30


def test_round_message() -> None:
    r = RoundResult(3, 0, 10, Winner("a dragon", "ann", "twitch", 3, 1.0), (), 0)
    assert (
        round_message(r, help_asked=False, now_text=None) == "Round 3: \u201ca dragon\u201d by @ann (1 vote) is on air."
    )
    empty = RoundResult(4, 0, 10, None, (), 0)
    assert round_message(empty, help_asked=False, now_text=None) is None
    assert round_message(empty, help_asked=True, now_text="Now: x.") == f"Now: x. {HELP}"
    long = RoundResult(5, 0, 10, Winner("x" * 600, "ann", "twitch", 5, 2.0), (), 0)
    assert len(round_message(long, help_asked=True, now_text=None)) == 500
