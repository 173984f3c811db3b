"""Twitch: twitchio's own code, unmodified, against a local EventSub websocket and
Helix written with aiohttp, speaking Twitch's documented message shapes."""
from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from datetime import datetime, timezone

import pytest
import twitchio.eventsub.websockets as tio_ws
from aiohttp import web
from twitchio.http import Route

from streambot.audience.commands import HELP
from streambot.audience.events import Audience
from streambot.audience.moderation import Moderation
from streambot.audience.twitch import SendLimiter, TwitchChat, round_message
from streambot.config import ModerationSettings, TwitchSettings, VotingSettings
from streambot.replay import VirtualClock
from streambot.voting import VotingEngine

from .localserver import LocalServer, until

APP_TOKEN = "apptoken-0123456789"
USER_TOKEN = "usertoken-abcdefghij"
REFRESH = "refresh-abcdefghij"
SECRET = "client-secret-xyz123"
BROADCASTER = ("1001", "streamer", "Streamer")


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeTwitch(LocalServer):
    """id.twitch.tv, api.twitch.tv/helix and eventsub.wss.twitch.tv on 127.0.0.1."""

    def __init__(self) -> None:
        super().__init__()
        self.app.router.add_post("/oauth2/token", self.token)
        self.app.router.add_get("/oauth2/validate", self.validate)
        self.app.router.add_get("/helix/users", self.users)
        self.app.router.add_post("/helix/eventsub/subscriptions", self.subscribe)
        self.app.router.add_post("/helix/chat/messages", self.chat_message)
        self.app.router.add_post("/helix/streams/markers", self.marker)
        self.app.router.add_get("/ws", self.websocket)
        self.session_ids: list[str] = []
        self.subscriptions: list[dict] = []
        self.sent: list[dict] = []
        self.markers: list[dict] = []
        self.auth_headers: list[str] = []
        self.connected = asyncio.Condition()
        self.ids = itertools.count(1)

    # -- id.twitch.tv
    async def token(self, request: web.Request) -> web.Response:
        return web.json_response({"access_token": APP_TOKEN, "expires_in": 5_000_000, "token_type": "bearer"})

    async def validate(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        self.auth_headers.append(auth)
        if USER_TOKEN in auth:
            return web.json_response({
                "client_id": "cid", "login": BROADCASTER[1], "scopes": ["user:read:chat", "user:write:chat"],
                "user_id": BROADCASTER[0], "expires_in": 14_000,
            })
        if APP_TOKEN in auth:
            return web.json_response({"client_id": "cid", "scopes": [], "expires_in": 5_000_000})
        return web.json_response({"status": 401, "message": "invalid access token"}, status=401)

    # -- helix
    async def users(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [{
            "id": BROADCASTER[0], "login": BROADCASTER[1], "display_name": BROADCASTER[2], "type": "",
            "broadcaster_type": "affiliate", "description": "", "profile_image_url": "", "offline_image_url": "",
            "view_count": 0, "created_at": "2020-01-01T00:00:00Z",
        }]})

    async def subscribe(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.subscriptions.append(body)
        return web.json_response({"data": [{
            "id": str(uuid.uuid4()), "status": "enabled", "type": body["type"], "version": body["version"],
            "condition": body["condition"], "created_at": now_iso(), "cost": 0,
            "transport": {"method": "websocket", "session_id": body["transport"]["session_id"],
                          "connected_at": now_iso()},
        }], "total": len(self.subscriptions), "total_cost": 0, "max_total_cost": 10}, status=202)

    async def chat_message(self, request: web.Request) -> web.Response:
        self.sent.append(await request.json())
        return web.json_response({"data": [{"message_id": str(uuid.uuid4()), "is_sent": True, "drop_reason": None}]})

    async def marker(self, request: web.Request) -> web.Response:
        self.markers.append(await request.json())
        return web.json_response({"data": [{"id": "m1", "created_at": now_iso(), "description": "x",
                                            "position_seconds": 12}]})

    # -- eventsub websocket
    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session = f"session-{next(self.ids)}"
        await ws.send_json({
            "metadata": {"message_id": str(uuid.uuid4()), "message_type": "session_welcome",
                         "message_timestamp": now_iso()},
            "payload": {"session": {"id": session, "status": "connected", "connected_at": now_iso(),
                                    "keepalive_timeout_seconds": 10, "reconnect_url": None}},
        })
        async with self.connected:
            self.sockets.append(ws)
            self.session_ids.append(session)
            self.connected.notify_all()
        async for _ in ws:  # Twitch ignores (and forbids) client messages
            pass
        return ws

    async def wait_sockets(self, n: int) -> None:
        async with self.connected:
            await asyncio.wait_for(self.connected.wait_for(lambda: len(self.sockets) >= n), 15)

    async def keepalive(self, ws: web.WebSocketResponse) -> None:
        await ws.send_json({"metadata": {"message_id": str(uuid.uuid4()), "message_type": "session_keepalive",
                                         "message_timestamp": now_iso()}, "payload": {}})

    async def reconnect(self, ws: web.WebSocketResponse, session: str) -> None:
        await ws.send_json({
            "metadata": {"message_id": str(uuid.uuid4()), "message_type": "session_reconnect",
                         "message_timestamp": now_iso()},
            "payload": {"session": {"id": session, "status": "reconnecting", "keepalive_timeout_seconds": None,
                                    "reconnect_url": f"ws://127.0.0.1:{self.port}/ws?reconnect=1",
                                    "connected_at": now_iso()}},
        })

    async def chat(self, ws: web.WebSocketResponse, session: str, user: tuple[str, str], text: str,
                   badges: list[str] = ()) -> None:
        """A `channel.chat.message` notification, as in Twitch's reference."""
        await ws.send_json({
            "metadata": {"message_id": str(uuid.uuid4()), "message_type": "notification",
                         "message_timestamp": now_iso(), "subscription_type": "channel.chat.message",
                         "subscription_version": "1"},
            "payload": {
                "subscription": {
                    "id": str(uuid.uuid4()), "status": "enabled", "type": "channel.chat.message", "version": "1",
                    "condition": {"broadcaster_user_id": BROADCASTER[0], "user_id": BROADCASTER[0]},
                    "transport": {"method": "websocket", "session_id": session},
                    "created_at": now_iso(), "cost": 0,
                },
                "event": {
                    "broadcaster_user_id": BROADCASTER[0], "broadcaster_user_login": BROADCASTER[1],
                    "broadcaster_user_name": BROADCASTER[2],
                    "chatter_user_id": user[0], "chatter_user_login": user[1], "chatter_user_name": user[1].title(),
                    "message_id": str(uuid.uuid4()),
                    "message": {"text": text, "fragments": [
                        {"type": "text", "text": text, "cheermote": None, "emote": None, "mention": None}]},
                    "color": "#00FF7F",
                    "badges": [{"set_id": b, "id": "1", "info": ""} for b in badges],
                    "message_type": "text", "cheer": None, "reply": None,
                    "channel_points_custom_reward_id": None, "channel_points_animation_id": None,
                    "source_broadcaster_user_id": None, "source_broadcaster_user_login": None,
                    "source_broadcaster_user_name": None, "source_message_id": None, "source_badges": None,
                    "is_source_only": None,
                },
            },
        })


@pytest.fixture
async def fake_twitch(monkeypatch):
    server = FakeTwitch()
    await server.start()
    monkeypatch.setattr(tio_ws, "WSS", f"ws://127.0.0.1:{server.port}/ws")
    monkeypatch.setattr(Route, "BASE", f"http://127.0.0.1:{server.port}/helix/")
    monkeypatch.setattr(Route, "ID_BASE", f"http://127.0.0.1:{server.port}/")
    yield server
    await server.stop()


async def test_chat_through_eventsub_and_helix(fake_twitch: FakeTwitch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    clock = VirtualClock(0.0)
    engine = VotingEngine(VotingSettings(round_s=10, stream_delay_s=0, grace_s=1), now=0.0)
    audience = Audience(engine, Moderation(ModerationSettings()), clock=clock)
    chat = TwitchChat(
        audience,
        TwitchSettings(enabled=True, client_id="cid", channel="streamer", markers=True),
        {"twitch_client_secret": SECRET, "twitch_token": USER_TOKEN, "twitch_refresh_token": REFRESH},
    )
    task = asyncio.create_task(chat.run())
    try:
        await fake_twitch.wait_sockets(1)
        await until(lambda: chat.state == "live" and len(fake_twitch.subscriptions) == 1)
        sub = fake_twitch.subscriptions[0]
        assert sub["type"] == "channel.chat.message"
        assert sub["condition"] == {"broadcaster_user_id": "1001", "user_id": "1001"}
        assert sub["transport"] == {"method": "websocket", "session_id": "session-1"}

        ws, sid = fake_twitch.sockets[0], fake_twitch.session_ids[0]
        await fake_twitch.keepalive(ws)
        await fake_twitch.chat(ws, sid, ("2001", "ann"), "!p a dragon attacks", ["subscriber"])
        await fake_twitch.chat(ws, sid, ("2002", "bob"), "!prompt a castle in the clouds")
        await fake_twitch.chat(ws, sid, ("2003", "cat"), "!vote 2")
        await fake_twitch.chat(ws, sid, ("2004", "dan"), "+2")
        await fake_twitch.chat(ws, sid, ("2004", "dan"), "!2 \U000e0000")  # a repeat: still one vote
        await fake_twitch.chat(ws, sid, ("2005", "eve"), "!help")
        await fake_twitch.chat(ws, sid, ("2006", "fay"), "!help")
        await fake_twitch.chat(ws, sid, ("2007", "gus"), "!p sh1t")
        await until(lambda: audience.counts["messages"] == 8)
        snap = audience.snapshot()
        assert [(c.number, c.text, c.votes) for c in snap.candidates] == [
            (2, "a castle in the clouds", 3.0), (1, "a dragon attacks", 1.0)]
        assert fake_twitch.sent == []  # nothing per command

        clock.t = 11.0
        winner = audience.tick()
        assert winner.text == "a castle in the clouds" and winner.user == "bob"
        await until(lambda: len(fake_twitch.sent) == 1 and len(fake_twitch.markers) == 1)
        msg = fake_twitch.sent[0]
        assert msg["broadcaster_id"] == "1001" and msg["sender_id"] == "1001"
        assert "a castle in the clouds" in msg["message"] and "@bob" in msg["message"]
        assert msg["message"].count(HELP) == 1  # two asked, one answer
        assert "sh1t" not in msg["message"]
        assert fake_twitch.markers[0]["user_id"] == "1001"

        # Twitch asks us to move: session_reconnect to a new URL; subscriptions carry over.
        await fake_twitch.reconnect(ws, sid)
        await fake_twitch.wait_sockets(2)
        await until(lambda: ws.closed)
        ws2, sid2 = fake_twitch.sockets[1], fake_twitch.session_ids[1]
        await fake_twitch.chat(ws2, sid2, ("2001", "ann"), "!p night falls")
        await until(lambda: audience.counts["messages"] == 9)
        assert [c.text for c in audience.snapshot().candidates] == ["night falls"]
        assert len(fake_twitch.subscriptions) == 1

        # A plain drop: twitchio dials again and subscribes on the new session.
        await ws2.close()
        await fake_twitch.wait_sockets(3)
        await until(lambda: len(fake_twitch.subscriptions) == 2)
        assert fake_twitch.subscriptions[1]["transport"]["session_id"] == fake_twitch.session_ids[2]
        ws3, sid3 = fake_twitch.sockets[2], fake_twitch.session_ids[2]
        await fake_twitch.chat(ws3, sid3, ("2008", "hal"), "!1")
        await until(lambda: audience.counts["votes"] == 4)
        assert audience.snapshot().candidates[0].votes == 2
        await until(lambda: chat.state == "live")
    finally:
        await chat.close()
        await asyncio.wait_for(task, 10)
    assert chat.state == "closed"
    logged = caplog.text
    for secret in (USER_TOKEN, REFRESH, SECRET):
        assert secret not in logged or all(secret not in r.getMessage() for r in caplog.records
                                           if r.name.startswith("streambot"))


async def test_failure_retries_without_raising(fake_twitch: FakeTwitch, caplog) -> None:
    engine = VotingEngine(VotingSettings(), now=0.0)
    audience = Audience(engine, Moderation(ModerationSettings()))
    chat = TwitchChat(
        audience, TwitchSettings(enabled=True, client_id="cid", channel="streamer"),
        {"twitch_client_secret": SECRET, "twitch_token": "wrong-token-123456"},
    )
    task = asyncio.create_task(chat.run())
    await until(lambda: chat.state == "retrying")
    assert not task.done()
    await chat.close()
    await asyncio.wait_for(task, 10)
    assert "wrong-token-123456" not in " ".join(r.getMessage() for r in caplog.records if r.name.startswith("streambot"))


def test_send_limiter_and_round_message() -> None:
    clock = VirtualClock(0.0)
    lim = SendLimiter(20, clock=clock)
    assert sum(lim.try_acquire() for _ in range(30)) == 20
    clock.t = 30.0
    assert lim.try_acquire()

    from streambot.voting import RoundResult, Winner
    r = RoundResult(3, 0, 10, Winner("a dragon", "ann", "twitch", 3, 1.0), (), 0)
    assert round_message(r, help_asked=False, now_text=None) == "Round 3: \u201ca dragon\u201d by @ann (1 vote) is on air."
    empty = RoundResult(4, 0, 10, None, (), 0)
    assert round_message(empty, help_asked=False, now_text=None) is None
    assert round_message(empty, help_asked=True, now_text="Now: x.") == f"Now: x. {HELP}"
    long = RoundResult(5, 0, 10, Winner("x" * 600, "ann", "twitch", 5, 2.0), (), 0)
    assert len(round_message(long, help_asked=True, now_text=None)) == 500
