"""Discord: discord.py's real client, gateway, command tree, dynamic buttons and
HTTP, against a local gateway websocket and REST API written with aiohttp."""
from __future__ import annotations

import asyncio
import copy
import itertools
import json
from datetime import datetime, timezone

import discord
import pytest
import yarl
from aiohttp import web
from discord.gateway import DiscordWebSocket
from discord.http import Route

from streambot.audience.discord_bot import DiscordBot, render_round
from streambot.audience.events import Audience
from streambot.audience.moderation import Moderation
from streambot.config import DiscordSettings, ModerationSettings, VotingSettings
from streambot.replay import VirtualClock
from streambot.voting import VotingEngine

from .localserver import LocalServer, until

TOKEN = "discord-bot-token-0123456789"
APP, GUILD, CHANNEL, MOD_ROLE, OWNER = "900", "100", "200", "300", "1"
BOT = {"id": "901", "username": "streambot", "discriminator": "0", "avatar": None, "bot": True, "global_name": None}


def jr(data, status: int = 200) -> web.Response:
    # Discord answers with exactly "application/json"; discord.py checks for it.
    return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"})


def user(uid: str, name: str) -> dict:
    return {"id": uid, "username": name, "discriminator": "0", "avatar": None, "global_name": name.title()}


def iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def role(rid: str, name: str) -> dict:
    return {"id": rid, "name": name, "permissions": "0", "position": 1 if rid != GUILD else 0, "color": 0,
            "hoist": False, "managed": False, "mentionable": False, "flags": 0}


GUILD_DATA = {
    "id": GUILD, "name": "Test server", "icon": None, "owner_id": OWNER, "afk_timeout": 300,
    "roles": [role(GUILD, "@everyone"), role(MOD_ROLE, "Moderator")],
    "channels": [{"id": CHANNEL, "type": 0, "name": "world", "position": 0, "permission_overwrites": [],
                  "nsfw": False, "parent_id": None, "topic": None, "rate_limit_per_user": 0}],
    "members": [], "member_count": 4, "features": [], "emojis": [], "stickers": [], "threads": [],
    "voice_states": [], "presences": [], "stage_instances": [], "guild_scheduled_events": [], "large": False,
    "unavailable": False, "joined_at": "2024-01-01T00:00:00+00:00", "premium_tier": 0, "preferred_locale": "en-US",
    "mfa_level": 0, "verification_level": 0, "explicit_content_filter": 0, "default_message_notifications": 0,
    "system_channel_flags": 0, "nsfw_level": 0, "description": None, "banner": None, "splash": None,
    "discovery_splash": None, "premium_subscription_count": 0, "vanity_url_code": None, "application_id": None,
}


class FakeDiscord(LocalServer):
    """The gateway and the parts of the REST API the bot uses, on 127.0.0.1."""

    def __init__(self) -> None:
        super().__init__()
        app = self.app
        app.router.add_get("/api/v10/users/@me", self.me)
        app.router.add_get("/api/v10/oauth2/applications/@me", self.app_info)
        app.router.add_put("/api/v10/applications/{app}/guilds/{guild}/commands", self.sync)
        app.router.add_put("/api/v10/applications/{app}/commands", self.sync)
        app.router.add_post("/api/v10/channels/{channel}/messages", self.post_message)
        app.router.add_patch("/api/v10/channels/{channel}/messages/{message}", self.edit_message)
        app.router.add_post("/api/v10/interactions/{iid}/{token}/callback", self.callback)
        app.router.add_get("/gw", self.gateway)
        self.synced: list[tuple[str, list]] = []
        self.messages: dict[str, dict] = {}
        self.edits: list[dict] = []
        self.responses: list[dict] = []
        self.identifies = 0
        self.resumes: list[dict] = []
        self.seq = itertools.count(1)
        self.ids = itertools.count(5000)
        self.cond = asyncio.Condition()

    async def me(self, request: web.Request) -> web.Response:
        return jr(BOT)

    async def app_info(self, request: web.Request) -> web.Response:
        return jr({
            "id": APP, "name": "streambot", "description": "", "icon": None, "bot_public": False,
            "bot_require_code_grant": False, "owner": user(OWNER, "owner"), "verify_key": "k", "flags": 0,
            "summary": "", "team": None,
        })

    async def sync(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.synced.append((request.match_info.get("guild", "global"), body))
        return jr([dict(c, id=str(next(self.ids)), application_id=APP, version="1",
                                       default_member_permissions=None, dm_permission=True, nsfw=False)
                                  for c in body])

    def _message(self, mid: str, body: dict) -> dict:
        return {"id": mid, "channel_id": CHANNEL, "guild_id": GUILD, "author": BOT,
                "content": body.get("content", ""), "timestamp": iso(), "edited_timestamp": None, "tts": False,
                "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [], "embeds": [],
                "pinned": False, "type": 0, "components": body.get("components", []), "flags": 0}

    async def post_message(self, request: web.Request) -> web.Response:
        mid = str(next(self.ids))
        self.messages[mid] = self._message(mid, await request.json())
        return jr(self.messages[mid])

    async def edit_message(self, request: web.Request) -> web.Response:
        body = await request.json()
        mid = request.match_info["message"]
        self.edits.append(dict(body, id=mid))
        self.messages[mid].update(content=body.get("content", self.messages[mid]["content"]),
                                  components=body.get("components", []))
        return jr(self.messages[mid])

    async def callback(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.responses.append(body)
        return jr({"interaction": {
            "id": request.match_info["iid"], "type": body["type"], "response_message_id": None,
            "response_message_loading": False, "response_message_ephemeral": True}})

    async def gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": 41250}})
        async for msg in ws:
            data = json.loads(msg.data)
            if data["op"] == 1:
                await ws.send_json({"op": 11})
            elif data["op"] == 2:
                assert data["d"]["token"] == TOKEN
                self.identifies += 1
                await self.dispatch(ws, "READY", {
                    "v": 10, "user": BOT, "guilds": [{"id": GUILD, "unavailable": True}],
                    "session_id": "session-a", "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gw",
                    "application": {"id": APP, "flags": 0}, "private_channels": [], "relationships": [],
                })
                await self.dispatch(ws, "GUILD_CREATE", GUILD_DATA)
                await self._register(ws)
            elif data["op"] == 6:
                self.resumes.append(data["d"])
                await self.dispatch(ws, "RESUMED", {})
                await self._register(ws)
        return ws

    async def _register(self, ws: web.WebSocketResponse) -> None:
        async with self.cond:
            self.sockets.append(ws)
            self.cond.notify_all()

    async def wait_sockets(self, n: int) -> None:
        async with self.cond:
            await asyncio.wait_for(self.cond.wait_for(lambda: len(self.sockets) >= n), 15)

    async def dispatch(self, ws: web.WebSocketResponse, event: str, data: dict) -> None:
        await ws.send_json({"op": 0, "t": event, "s": next(self.seq), "d": data})

    async def interaction(self, ws: web.WebSocketResponse, who: dict, roles: list[str], kind: int, data: dict,
                          message: dict | None = None) -> str:
        iid = str(next(self.ids))
        payload = {
            "id": iid, "application_id": APP, "type": kind, "token": f"itoken{iid}", "version": 1,
            "guild_id": GUILD, "channel_id": CHANNEL, "locale": "en-US", "guild_locale": "en-US",
            "app_permissions": "0", "entitlements": [], "authorizing_integration_owners": {"0": GUILD},
            "context": 0, "data": data, "attachment_size_limit": 8_388_608,
            "channel": {"id": CHANNEL, "type": 0, "guild_id": GUILD, "name": "world", "position": 0,
                        "permission_overwrites": [], "nsfw": False, "parent_id": None},
            "member": {"user": who, "roles": roles, "joined_at": "2024-01-01T00:00:00+00:00", "deaf": False,
                       "mute": False, "permissions": "0", "flags": 0, "nick": None, "avatar": None,
                       "premium_since": None, "pending": False},
        }
        if message is not None:
            payload["message"] = message
        await self.dispatch(ws, "INTERACTION_CREATE", payload)
        return iid

    async def command(self, ws, who, name: str, options: list[dict], roles: list[str] = ()) -> str:
        return await self.interaction(ws, who, list(roles), 2, {"id": "1", "name": name, "type": 1,
                                                                 "options": options})

    async def button(self, ws, who, custom_id: str, message: dict) -> str:
        return await self.interaction(ws, who, [], 3, {"custom_id": custom_id, "component_type": 2}, message)


@pytest.fixture
async def fake_discord(monkeypatch):
    server = FakeDiscord()
    await server.start()
    monkeypatch.setattr(Route, "BASE", f"http://127.0.0.1:{server.port}/api/v10")
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(f"ws://127.0.0.1:{server.port}/gw"))
    yield server
    await server.stop()


def buttons_of(message: dict) -> list[str]:
    return [c["custom_id"] for row in message.get("components", []) for c in row.get("components", [])]


async def test_slash_commands_buttons_round_messages_and_resume(fake_discord: FakeDiscord) -> None:
    clock = VirtualClock(0.0)
    engine = VotingEngine(VotingSettings(round_s=10, stream_delay_s=0, grace_s=1), now=0.0)
    audience = Audience(engine, Moderation(ModerationSettings()), clock=clock)
    bot = DiscordBot(audience, DiscordSettings(enabled=True, channels=[int(CHANNEL)], guilds=[int(GUILD)],
                                               update_s=1.0), TOKEN)
    task = asyncio.create_task(bot.run())
    ann, bob, cat, boss = user("11", "ann"), user("12", "bob"), user("13", "cat"), user("14", "boss")
    try:
        await fake_discord.wait_sockets(1)
        await until(lambda: bot.state == "live")
        guild, commands = fake_discord.synced[0]
        assert guild == GUILD and {c["name"] for c in commands} == {"prompt", "vote", "now", "mod"}
        ws = fake_discord.sockets[0]

        # slash commands go through discord.py's command tree
        await fake_discord.command(ws, ann, "prompt", [{"name": "idea", "type": 3, "value": "a dragon"}])
        await fake_discord.command(ws, bob, "prompt", [{"name": "idea", "type": 3, "value": "a castle"}])
        await fake_discord.command(ws, cat, "vote", [{"name": "number", "type": 4, "value": 2}])
        await until(lambda: len(fake_discord.responses) == 3)
        assert [r["data"]["content"] for r in fake_discord.responses] == [
            "Your idea is #1.", "Your idea is #2.", "Voted for #2."]
        assert all(r["data"]["flags"] == 64 for r in fake_discord.responses)  # ephemeral

        # the round message appears with one button per candidate
        await until(lambda: any(len(buttons_of(m)) == 2 for m in fake_discord.messages.values()))
        (message,) = fake_discord.messages.values()
        stale = copy.deepcopy(message)
        assert buttons_of(message) == ["streambot:vote:1:2", "streambot:vote:1:1"]
        assert "**#2** a castle" in message["content"]

        # a button press goes through discord.py's dynamic item dispatch
        await fake_discord.button(ws, ann, "streambot:vote:1:2", message)
        await until(lambda: len(fake_discord.responses) == 4)
        assert fake_discord.responses[-1]["data"]["content"] == "Voted for #2."
        assert [c.votes for c in audience.snapshot().candidates] == [3.0, 0.0]
        await until(lambda: "3 votes" in fake_discord.messages[message["id"]]["content"])  # edited live

        # moderators by role name; others are refused
        await fake_discord.command(ws, cat, "mod", [{"name": "action", "type": 3, "value": "lock"}])
        await fake_discord.command(ws, boss, "mod", [{"name": "action", "type": 3, "value": "ban"},
                                                     {"name": "user", "type": 3, "value": "@Cat"}], [MOD_ROLE])
        await until(lambda: len(fake_discord.responses) == 6)
        assert fake_discord.responses[4]["data"]["content"] == "Only moderators can do that."
        assert audience.moderation.is_banned(audience_viewer("cat"))
        assert not engine.locked

        # the gateway asks for a reconnect: discord.py resumes the session
        await ws.send_json({"op": 7, "d": None})
        await fake_discord.wait_sockets(2)
        assert fake_discord.resumes and fake_discord.resumes[0]["session_id"] == "session-a"
        assert fake_discord.identifies == 1
        ws2 = fake_discord.sockets[1]

        # the round ends: the old message closes with the winner; an old button is refused
        clock.t = 11.5
        winner = audience.tick()
        assert winner.text == "a castle" and winner.votes == 2  # cat was banned: the vote went too
        await until(lambda: "on air: **a castle**" in fake_discord.messages[message["id"]]["content"])
        assert buttons_of(fake_discord.messages[message["id"]]) == []
        await fake_discord.button(ws2, ann, "streambot:vote:1:1", stale)  # a click that raced the edit
        await until(lambda: len(fake_discord.responses) == 7)
        assert fake_discord.responses[-1]["data"]["content"] == "That round is over; vote in the new one."
        await until(lambda: len(fake_discord.messages) == 2)  # round 2's message
    finally:
        await bot.close()
        await asyncio.wait_for(task, 10)
    assert bot.state == "closed"


def audience_viewer(name: str):
    from streambot.audience.events import Viewer
    return Viewer("discord", name)


async def test_failure_is_retried_not_raised(fake_discord: FakeDiscord, monkeypatch) -> None:
    # An API that answers 404 to everything: login fails, the bot waits and retries.
    monkeypatch.setattr(Route, "BASE", f"http://127.0.0.1:{fake_discord.port}/nothing-here")
    engine = VotingEngine(VotingSettings(), now=0.0)
    bot = DiscordBot(Audience(engine, Moderation(ModerationSettings())), DiscordSettings(), TOKEN)
    task = asyncio.create_task(bot.run())
    await until(lambda: bot.state == "retrying")
    assert not task.done()
    await bot.close()
    await asyncio.wait_for(task, 10)


def test_render_round() -> None:
    engine = VotingEngine(VotingSettings(top_n=2), now=0.0)
    audience = Audience(engine, Moderation(ModerationSettings()), clock=lambda: 3.0)
    text, buttons = render_round(audience)
    assert "No ideas yet" in text and buttons == []
    audience.chat("discord", "ann", "!p a *bold* dragon")
    text, buttons = render_round(audience)
    assert "\\*bold\\*" in text and buttons == [(1, "#1 a *bold* dragon")]
    with pytest.raises(ValueError, match="token"):
        DiscordBot(audience, DiscordSettings(), "")
    assert isinstance(discord.__version__, str)
