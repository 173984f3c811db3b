"""A local Discord for discord.py's own code to run against: the gateway
websocket and the REST routes streambot uses, on 127.0.0.1.

It checks on the wire what Discord checks, and what matters to the show:
- messages and interaction replies are Discord's documented JSON; a message
  over 2,000 characters, or components past Discord's limits, is refused with
  Discord's 400 "Invalid Form Body";
- mentions are resolved as Discord resolves them (`allowed_mentions` absent:
  everything in the text pings), and every message that would ping someone, or
  that does not say "mention nobody" (`{"parse": []}`), is a violation;
- slash-command registration is a bulk overwrite per scope (global or one
  guild), and a command is offered only where Discord would offer it: in a
  guild it is registered for, or globally in the contexts it allows, and to a
  member holding its `default_member_permissions` (administrators and the
  guild's owner always);
- options are built from the registered schema, so a test cannot send a user
  to an option Discord would take as text, nor a number outside an INTEGER
  option's `min_value`/`max_value` (Discord's client refuses it; without them,
  Discord's own -2^53..2^53); autocomplete asks and answers as Discord's do
  (at most 25 choices, names of 1 to 100 characters, values of the option's
  type and range);
- the original response of an interaction can be edited through its webhook
  (`PATCH /webhooks/{app}/{token}/messages/@original`) while its token lives
  (15 minutes), once it was answered;
- every message create and edit is counted; a reply must reference a message
  of its channel;
- gateway intents as Discord applies them: a privileged intent the app's page
  does not enable closes the connection (4014, "Disallowed intent(s)"); a
  member's message (MESSAGE_CREATE) reaches only a bot with the guild messages
  intent, and without Message Content it arrives with no text, attachments,
  embeds or components; voice state events need the voice states intent;
- attachments are served from a CDN route by their signed URL only;
- a voice connection request (gateway op 4) is answered with the bot's voice
  state and a voice server address; no voice server listens there, so the
  connection fails as it does when a firewall blocks Discord's voice servers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import re
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import yarl
from aiohttp import web
from discord.gateway import DiscordWebSocket
from discord.http import Route

from .localserver import LocalServer

TOKEN = "discord-bot-token-0123456789"
APP, GUILD, OTHER, CHANNEL, OTHER_CHANNEL, DM_CHANNEL = "900", "100", "110", "200", "210", "290"
MOD_ROLE, OWNER, OTHER_OWNER = "300", "1", "66"
BOT = {"id": "901", "username": "streambot", "discriminator": "0", "avatar": None, "bot": True, "global_name": None}

VOICE_CHANNEL = "250"  # a voice channel in the show's server

ADMINISTRATOR = 1 << 3
MANAGE_MESSAGES = 1 << 13
# Gateway intents (https://discord.com/developers/docs/events/gateway#list-of-intents)
GUILDS_INTENT, GUILD_MEMBERS, GUILD_VOICE_STATES = 1 << 0, 1 << 1, 1 << 7
GUILD_PRESENCES, GUILD_MESSAGES, MESSAGE_CONTENT = 1 << 8, 1 << 9, 1 << 15
PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT
# Application flags saying which privileged intents the app's page enables
APP_FLAGS = {GUILD_PRESENCES: 1 << 13, GUILD_MEMBERS: 1 << 15, MESSAGE_CONTENT: 1 << 19}
VOICE_MESSAGE = 1 << 13  # message flag IS_VOICE_MESSAGE
USER_MENTION = re.compile(r"<@!?(\d+)>")
ROLE_MENTION = re.compile(r"<@&(\d+)>")
EVERYONE = re.compile(r"@(everyone|here)")
OPTION_TYPES = {
    1: "SUB_COMMAND",
    2: "SUB_COMMAND_GROUP",
    3: "STRING",
    4: "INTEGER",
    5: "BOOLEAN",
    6: "USER",
    7: "CHANNEL",
    8: "ROLE",
    9: "MENTIONABLE",
    10: "NUMBER",
    11: "ATTACHMENT",
}


class NotOffered(LookupError):
    """Discord would not show this command to this member here."""


def jr(data, status: int = 200) -> web.Response:
    # Discord answers with exactly "application/json"; discord.py checks for it.
    return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"})


def invalid(field: str, message: str) -> web.Response:
    return jr(
        {
            "code": 50035,
            "message": "Invalid Form Body",
            "errors": {field: {"_errors": [{"code": "BASE_TYPE_INVALID", "message": message}]}},
        },
        400,
    )


def user(uid: str, name: str) -> dict:
    return {"id": uid, "username": name, "discriminator": "0", "avatar": None, "global_name": name.title()}


def iso() -> str:
    return datetime.now(UTC).isoformat()


def role(rid: str, name: str, guild: str) -> dict:
    return {
        "id": rid,
        "name": name,
        "permissions": "0",
        "position": 1 if rid != guild else 0,
        "color": 0,
        "hoist": False,
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def guild_data(gid: str, owner: str, channel: str, roles: list[dict], voice: str | None = None) -> dict:
    voice_channels = (
        []
        if voice is None
        else [
            {
                "id": voice,
                "type": 2,
                "name": "stage",
                "position": 1,
                "permission_overwrites": [],
                "nsfw": False,
                "parent_id": None,
                "bitrate": 64000,
                "user_limit": 0,
                "rtc_region": None,
            }
        ]
    )
    return {
        "id": gid,
        "name": f"Server {gid}",
        "icon": None,
        "owner_id": owner,
        "afk_timeout": 300,
        "roles": [role(gid, "@everyone", gid), *roles],
        "channels": [
            {
                "id": channel,
                "type": 0,
                "name": "world",
                "position": 0,
                "permission_overwrites": [],
                "nsfw": False,
                "parent_id": None,
                "topic": None,
                "rate_limit_per_user": 0,
            },
            *voice_channels,
        ],
        "members": [],
        "member_count": 4,
        "features": [],
        "emojis": [],
        "stickers": [],
        "threads": [],
        "voice_states": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "large": False,
        "unavailable": False,
        "joined_at": "2024-01-01T00:00:00+00:00",
        "premium_tier": 0,
        "preferred_locale": "en-US",
        "mfa_level": 0,
        "verification_level": 0,
        "explicit_content_filter": 0,
        "default_message_notifications": 0,
        "system_channel_flags": 0,
        "nsfw_level": 0,
        "description": None,
        "banner": None,
        "splash": None,
        "discovery_splash": None,
        "premium_subscription_count": 0,
        "vanity_url_code": None,
        "application_id": None,
    }


# The show's server (moderators by role) and someone else's server that added the bot too.
GUILDS = {
    GUILD: guild_data(GUILD, OWNER, CHANNEL, [role(MOD_ROLE, "Moderator", GUILD)], VOICE_CHANNEL),
    OTHER: guild_data(OTHER, OTHER_OWNER, OTHER_CHANNEL, []),
}
CHANNEL_GUILD = {CHANNEL: GUILD, OTHER_CHANNEL: OTHER}
VOICE_CHANNEL_GUILD = {VOICE_CHANNEL: GUILD}


def pings(content: str, allowed: dict | None) -> list[str]:
    """Who a message would notify, by Discord's rules for `allowed_mentions`."""
    if allowed is None:  # no allowed_mentions: every mention in the text pings
        allowed = {"parse": ["users", "roles", "everyone"]}
    parse = allowed.get("parse", [])
    out = [f"user:{u}" for u in USER_MENTION.findall(content) if "users" in parse or u in allowed.get("users", [])]
    out += [f"role:{r}" for r in ROLE_MENTION.findall(content) if "roles" in parse or r in allowed.get("roles", [])]
    if "everyone" in parse:
        out += [f"@{m}" for m in EVERYONE.findall(content)]
    return out


def check_components(rows: list) -> str | None:
    """Discord's limits on message components; None when they hold."""
    if len(rows) > 5:
        return "at most 5 action rows"
    for row in rows:
        if row.get("type") != 1 or not 1 <= len(row.get("components", [])) <= 5:
            return "an action row holds 1 to 5 components"
        for c in row["components"]:
            if c.get("type") != 2:
                continue
            if len(c.get("label") or "") > 80 or not 1 <= len(c.get("custom_id") or "") <= 100:
                return "a button label is at most 80 characters, its custom_id 1 to 100"
            if not isinstance(c.get("disabled", False), bool):
                return "disabled is a boolean"
    return None


class FakeDiscord(LocalServer):
    """The gateway and the parts of the REST API the bot uses, on 127.0.0.1.

    `privileged`: the privileged intents enabled on the app's page in the
    developer portal (none, as for a new app)."""

    def __init__(self, *, privileged: int = 0) -> None:
        super().__init__()
        self.privileged = privileged
        app = self.app
        app.router.add_get("/api/v10/users/@me", self.me)
        app.router.add_get("/api/v10/oauth2/applications/@me", self.app_info)
        app.router.add_put("/api/v10/applications/{app}/guilds/{guild}/commands", self.sync)
        app.router.add_put("/api/v10/applications/{app}/commands", self.sync)
        app.router.add_post("/api/v10/channels/{channel}/messages", self.post_message)
        app.router.add_patch("/api/v10/channels/{channel}/messages/{message}", self.edit_message)
        app.router.add_post("/api/v10/interactions/{iid}/{token}/callback", self.callback)
        app.router.add_patch("/api/v10/webhooks/{app}/{token}/messages/@original", self.edit_original)
        app.router.add_get("/attachments/{channel}/{aid}/{filename}", self.cdn)
        app.router.add_get("/gw", self.gateway)
        self.commands: dict[str, list[dict]] = {}  # scope ("global" or a guild id) -> registered commands
        self.syncs: list[str] = []  # the scopes, in the order they were overwritten
        self.messages: dict[str, dict] = {}
        self.posts: list[dict] = []  # every message create body, in order
        self.edits: list[dict] = []  # every message edit body (with "id"), in order
        self.responses: list[dict] = []
        self.replies: dict[str, str] = {}  # interaction id -> the text answered (as last edited)
        self.choices: dict[str, list[dict]] = {}  # autocomplete interaction id -> the choices answered
        self.edited: dict[str, list[str]] = {}  # interaction id -> its original response's edits, in order
        self.tokens: dict[str, tuple[str, float]] = {}  # interaction token -> (id, when it was created)
        self.schemas: dict[str, dict] = {}  # autocomplete interaction id -> the focused option's schema
        self.violations: list[str] = []
        self.pinged: list[str] = []
        self.checked = 0  # messages and replies whose allowed_mentions were checked
        self.identifies = 0
        self.intents: int | None = None  # what the session identified with
        self.refused_intents: list[int] = []  # identifies closed with 4014
        self.resumes: list[dict] = []
        self.files: dict[str, bytes] = {}  # CDN path -> bytes
        self.downloads: list[str] = []  # CDN paths fetched
        self.voice_requests: list[dict] = []  # gateway op 4 payloads: the bot joining or leaving voice
        self.voice_endpoint = ""  # set on start: an address where no voice server listens
        self.seq = itertools.count(1)
        self.ids = itertools.count(5000)
        self.cond = asyncio.Condition()

    async def start(self) -> None:
        await super().start()
        with socket.socket() as s:  # a port that was free a moment ago: connecting there is refused
            s.bind(("127.0.0.1", 0))
            self.voice_endpoint = f"127.0.0.1:{s.getsockname()[1]}"

    def app_flags(self) -> int:
        return sum(flag for intent, flag in APP_FLAGS.items() if self.privileged & intent)

    # -- REST ------------------------------------------------------------------------
    async def me(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bot {TOKEN}":
            return jr({"message": "401: Unauthorized", "code": 0}, 401)
        return jr(BOT)

    async def app_info(self, request: web.Request) -> web.Response:
        return jr(
            {
                "id": APP,
                "name": "streambot",
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": user(OWNER, "owner"),
                "verify_key": "k",
                "flags": self.app_flags(),
                "summary": "",
                "team": None,
            }
        )

    def register(self, scope: str, body: list[dict]) -> list[dict]:
        """Bulk overwrite, as `PUT .../commands` does: the scope's commands are exactly these."""
        out = []
        for c in body:
            perms = c.get("default_member_permissions")
            out.append(
                dict(
                    c,
                    id=str(next(self.ids)),
                    application_id=APP,
                    version="1",
                    guild_id=None if scope == "global" else scope,
                    default_member_permissions=None if perms is None else str(perms),
                    dm_permission=c.get("dm_permission", True),
                    nsfw=c.get("nsfw", False),
                    contexts=c.get("contexts"),
                    integration_types=c.get("integration_types", [0]),
                )
            )
        self.commands[scope] = out
        self.syncs.append(scope)
        return out

    async def sync(self, request: web.Request) -> web.Response:
        return jr(self.register(request.match_info.get("guild", "global"), await request.json()))

    def _mentions_ok(self, where: str, content: str, allowed: dict | None) -> None:
        self.checked += 1
        who = pings(content, allowed)
        self.pinged += who
        nothing = (
            allowed is not None
            and allowed.get("parse") == []
            and not allowed.get("users")
            and not allowed.get("roles")
            and not allowed.get("replied_user")
        )
        if not nothing:
            self.violations.append(f"{where}: allowed_mentions {allowed!r} does not mention nobody")
        if who:
            self.violations.append(f"{where}: would ping {who}")

    def _message(self, mid: str, channel: str, body: dict) -> dict:
        content = body.get("content") or ""
        who = pings(content, body.get("allowed_mentions"))
        return {
            "id": mid,
            "channel_id": channel,
            "guild_id": CHANNEL_GUILD.get(channel),
            "author": BOT,
            "content": content,
            "timestamp": iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": any(w.startswith("@") for w in who),
            "mentions": [user(w[5:], "someone") for w in who if w.startswith("user:")],
            "mention_roles": [w[5:] for w in who if w.startswith("role:")],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "components": body.get("components", []),
            "flags": 0,
        }

    def _refused(self, body: dict) -> web.Response | None:
        if len(body.get("content") or "") > 2000:
            return invalid("content", "Must be 2000 or fewer in length.")
        problem = check_components(body.get("components") or [])
        return invalid("components", problem) if problem else None

    async def post_message(self, request: web.Request) -> web.Response:
        body = await request.json()
        channel = request.match_info["channel"]
        if channel not in CHANNEL_GUILD:
            return jr({"code": 10003, "message": "Unknown Channel"}, 404)
        if (refused := self._refused(body)) is not None:
            return refused
        ref = body.get("message_reference")
        if ref is not None and (self.messages.get(str(ref.get("message_id")), {}).get("channel_id") != channel):
            return invalid("message_reference", "Unknown message")
        self._mentions_ok(f"POST channel {channel}", body.get("content") or "", body.get("allowed_mentions"))
        mid = str(next(self.ids))
        self.posts.append(body)
        self.messages[mid] = self._message(mid, channel, body)
        return jr(self.messages[mid])

    async def edit_message(self, request: web.Request) -> web.Response:
        body = await request.json()
        mid = request.match_info["message"]
        if mid not in self.messages:
            return jr({"code": 10008, "message": "Unknown Message"}, 404)
        if (refused := self._refused(body)) is not None:
            return refused
        old = self.messages[mid]
        content = body["content"] if body.get("content") is not None else old["content"]
        self._mentions_ok(f"PATCH message {mid}", content, body.get("allowed_mentions"))
        self.edits.append(dict(body, id=mid))
        new = self._message(
            mid,
            old["channel_id"],
            dict(
                content=content,
                components=body.get("components", old["components"]),
                allowed_mentions=body.get("allowed_mentions"),
            ),
        )
        self.messages[mid] = dict(new, timestamp=old["timestamp"], edited_timestamp=iso())
        return jr(self.messages[mid])

    async def callback(self, request: web.Request) -> web.Response:
        body = await request.json()
        iid = request.match_info["iid"]
        if body["type"] == 8:  # APPLICATION_COMMAND_AUTOCOMPLETE_RESULT
            choices = body.get("data", {}).get("choices")
            problem = self._bad_choices(choices, self.schemas.get(iid))
            if problem:
                return invalid("data.choices", problem)
            self.choices[iid] = choices
            self.responses.append(body)
            return jr(
                {
                    "interaction": {
                        "id": iid,
                        "type": 4,
                        "response_message_id": None,
                        "response_message_loading": False,
                        "response_message_ephemeral": False,
                    }
                }
            )
        if body["type"] in (4, 7):  # a message, or an update of the button's message
            data = body.get("data", {})
            if (refused := self._refused(data)) is not None:
                return refused
            self._mentions_ok(
                f"interaction {request.match_info['iid']}", data.get("content") or "", data.get("allowed_mentions")
            )
        self.responses.append(body)
        self.replies[request.match_info["iid"]] = body.get("data", {}).get("content")
        return jr(
            {
                "interaction": {
                    "id": request.match_info["iid"],
                    "type": body["type"],
                    "response_message_id": None,
                    "response_message_loading": False,
                    "response_message_ephemeral": True,
                }
            }
        )

    @staticmethod
    def _bad_choices(choices, option: dict | None) -> str | None:
        if not isinstance(choices, list) or len(choices) > 25:
            return "at most 25 choices"
        for c in choices:
            if not 1 <= len(c.get("name") or "") <= 100:
                return "a choice's name is 1 to 100 characters"
            if option is not None and option["type"] == 4:
                v = c.get("value")
                if not isinstance(v, int) or not _in_range(v, option):
                    return f"a choice's value must be an integer within the option's range, not {v!r}"
        return None

    async def edit_original(self, request: web.Request) -> web.Response:
        """The interaction's first answer, edited through its webhook."""
        found = self.tokens.get(request.match_info["token"])
        if request.match_info["app"] != APP or found is None or time.monotonic() - found[1] > 15 * 60:
            return jr({"code": 10015, "message": "Unknown Webhook"}, 404)
        iid = found[0]
        if iid not in self.replies:
            return jr({"code": 10008, "message": "Unknown Message"}, 404)  # nothing answered yet
        body = await request.json()
        if (refused := self._refused(body)) is not None:
            return refused
        content = body.get("content")
        if content is None:
            content = self.replies[iid]
        self._mentions_ok(f"interaction {iid} edited", content or "", body.get("allowed_mentions"))
        self.replies[iid] = content
        self.edited.setdefault(iid, []).append(content)
        return jr(self._message(f"{iid}0", CHANNEL, dict(body, content=content)))

    # -- the gateway -------------------------------------------------------------------
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
                intents = data["d"]["intents"]
                if intents & PRIVILEGED & ~self.privileged:
                    self.refused_intents.append(intents)
                    await ws.close(code=4014, message=b"Disallowed intent(s).")
                    break
                self.intents = intents
                await self.dispatch(
                    ws,
                    "READY",
                    {
                        "v": 10,
                        "user": BOT,
                        "guilds": [{"id": g, "unavailable": True} for g in GUILDS],
                        "session_id": "session-a",
                        "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gw",
                        "application": {"id": APP, "flags": self.app_flags()},
                        "private_channels": [],
                        "relationships": [],
                    },
                )
                for g in GUILDS.values():
                    await self.dispatch(ws, "GUILD_CREATE", g)
                await self._register(ws)
            elif data["op"] == 6:
                self.resumes.append(data["d"])
                await self.dispatch(ws, "RESUMED", {})
                await self._register(ws)
            elif data["op"] == 4:
                await self._voice_request(ws, data["d"])
        return ws

    async def _voice_request(self, ws: web.WebSocketResponse, d: dict) -> None:
        """The bot joins (or leaves, channel_id null) a voice channel: Discord
        answers with the bot's voice state and, on joining, a voice server."""
        guild, channel = str(d["guild_id"]), None if d["channel_id"] is None else str(d["channel_id"])
        self.voice_requests.append(dict(d, guild_id=guild, channel_id=channel))  # snowflakes as strings
        if channel is not None and VOICE_CHANNEL_GUILD.get(channel) != guild:
            self.violations.append(f"op 4: {channel} is not a voice channel of guild {guild}")
            return
        await self.voice_state(ws, BOT, channel, guild=guild, self_deaf=d["self_deaf"], self_mute=d["self_mute"])
        if channel is not None:
            await self.dispatch(
                ws, "VOICE_SERVER_UPDATE", {"token": "voice-token", "guild_id": guild, "endpoint": self.voice_endpoint}
            )

    async def _register(self, ws: web.WebSocketResponse) -> None:
        async with self.cond:
            self.sockets.append(ws)
            self.cond.notify_all()

    async def reply(self, iid: str) -> str:
        """The text the bot answered to this interaction, once it has."""
        async with asyncio.timeout(15):
            while iid not in self.replies:
                await asyncio.sleep(0.02)
        return self.replies[iid]

    async def wait_sockets(self, n: int) -> None:
        async with self.cond:
            await asyncio.wait_for(self.cond.wait_for(lambda: len(self.sockets) >= n), 15)

    async def dispatch(self, ws: web.WebSocketResponse, event: str, data: dict) -> None:
        await ws.send_json({"op": 0, "t": event, "s": next(self.seq), "d": data})

    def has(self, intent: int) -> bool:
        return self.intents is not None and bool(self.intents & intent)

    # -- the CDN ---------------------------------------------------------------------------
    @staticmethod
    def _signature(path: str) -> str:
        return hashlib.sha256(f"cdn:{path}".encode()).hexdigest()

    def attach(self, channel: str, filename: str, data: bytes, content_type: str, **fields) -> dict:
        """An uploaded file, as a message's attachment: served from its signed CDN URL."""
        aid = str(next(self.ids))
        path = f"/attachments/{channel}/{aid}/{filename}"
        self.files[path] = data
        url = f"http://127.0.0.1:{self.port}{path}?ex=7fffffff&is=00000000&hm={self._signature(path)}&"
        return {
            "id": aid,
            "filename": filename,
            "size": len(data),
            "url": url,
            "proxy_url": url,
            "content_type": content_type,
            **fields,
        }

    async def cdn(self, request: web.Request) -> web.Response:
        path = request.path
        if path not in self.files or request.query.get("hm") != self._signature(path):
            return web.Response(status=404, text="This content is no longer available.")
        self.downloads.append(path)
        return web.Response(body=self.files[path], content_type="audio/ogg" if path.endswith(".ogg") else None)

    # -- what a member does --------------------------------------------------------------
    def offered(self, name: str, guild: str | None, who: dict, permissions: int) -> tuple[dict, str | None]:
        """The command Discord shows this member here, and the guild it is registered for."""
        found = None
        if guild is not None:
            found = next(((c, guild) for c in self.commands.get(guild, []) if c["name"] == name), None)
        if found is None:
            for c in self.commands.get("global", []):
                contexts = c.get("contexts")
                if contexts is None:
                    allowed = guild is not None or c.get("dm_permission", True)
                else:
                    allowed = (0 if guild is not None else 1) in contexts
                if c["name"] == name and allowed:
                    found = (c, None)
        if found is None:
            raise NotOffered(f"/{name} is not offered {'in guild ' + guild if guild else 'in a DM'}")
        cmd = found[0]
        needed = cmd.get("default_member_permissions")
        if (
            guild is not None
            and needed is not None
            and who["id"] != GUILDS[guild]["owner_id"]
            and not permissions & ADMINISTRATOR
            and permissions & int(needed) != int(needed)
        ):
            raise NotOffered(f"/{name} needs permissions {needed}; the member has {permissions}")
        return found

    @staticmethod
    def options(schema: list[dict], given: dict, guild: str | None) -> tuple[list[dict], dict]:
        """The options Discord sends for these values, typed by the registered schema."""
        out, resolved = [], {}
        for opt in schema:
            name, kind = opt["name"], opt["type"]
            if name not in given:
                if opt.get("required"):
                    raise ValueError(f"option {name} is required")
                continue
            value = given[name]
            if kind == 6:
                if not isinstance(value, dict):
                    raise TypeError(f"option {name} is a USER: Discord sends a picked user, not {value!r}")
                resolved.setdefault("users", {})[value["id"]] = value
                if guild is not None:
                    resolved.setdefault("members", {})[value["id"]] = {
                        "roles": [],
                        "joined_at": "2024-01-01T00:00:00+00:00",
                        "nick": None,
                        "avatar": None,
                        "premium_since": None,
                        "pending": False,
                        "permissions": "0",
                        "flags": 0,
                    }
                value = value["id"]
            elif kind == 3 and not isinstance(value, str):
                raise TypeError(f"option {name} is a STRING: a member types text, not {value!r}")
            elif kind == 4 and not isinstance(value, int):
                raise TypeError(f"option {name} is an INTEGER")
            elif kind == 4 and not _in_range(value, opt):
                raise ValueError(
                    f"option {name}: Discord's client does not send {value} "
                    f"(min_value {opt.get('min_value')}, max_value {opt.get('max_value')})"
                )
            elif kind not in (3, 4, 6):
                raise TypeError(f"option {name}: type {OPTION_TYPES.get(kind, kind)} is not modelled here")
            out.append({"name": name, "type": kind, "value": value})
        unknown = set(given) - {o["name"] for o in schema}
        if unknown:
            raise ValueError(f"no option(s) {sorted(unknown)}")
        return out, resolved

    async def command(
        self,
        ws,
        who: dict,
        name: str,
        options: dict | None = None,
        *,
        sub: str | None = None,
        guild: str | None = GUILD,
        roles: list[str] = (),
        permissions: int = 0,
    ) -> str:
        """A member runs a slash command, as Discord's client lets them."""
        cmd, scope = self.offered(name, guild, who, permissions)
        schema = cmd.get("options") or []
        if sub is not None:
            subcommand = next((o for o in schema if o["type"] == 1 and o["name"] == sub), None)
            if subcommand is None:
                raise NotOffered(f"/{name} has no subcommand {sub}")
            opts, resolved = self.options(subcommand.get("options") or [], options or {}, guild)
            opts = [{"name": sub, "type": 1, "options": opts}]
        else:
            opts, resolved = self.options(schema, options or {}, guild)
        data = {"id": cmd["id"], "name": name, "type": 1, "options": opts}
        if resolved:
            data["resolved"] = resolved
        if scope is not None:
            data["guild_id"] = scope
        return await self.interaction(ws, who, 2, data, guild=guild, roles=list(roles), permissions=permissions)

    async def autocomplete(
        self, ws, who: dict, name: str, option: str, typed: str, *, guild: str | None = GUILD
    ) -> list[dict]:
        """A member types `typed` into a command's option that has autocomplete: the choices
        the bot answers (Discord sends the focused value as typed, a string)."""
        cmd, scope = self.offered(name, guild, who, 0)
        opt = next((o for o in cmd.get("options") or [] if o["name"] == option), None)
        if opt is None or not opt.get("autocomplete"):
            raise NotOffered(f"/{name} {option} has no autocomplete")
        data = {
            "id": cmd["id"],
            "name": name,
            "type": 1,
            "options": [{"name": option, "type": opt["type"], "value": typed, "focused": True}],
        }
        if scope is not None:
            data["guild_id"] = scope
        iid = await self.interaction(ws, who, 4, data, guild=guild, schema=opt)
        async with asyncio.timeout(15):
            while iid not in self.choices:
                await asyncio.sleep(0.02)
        return self.choices[iid]

    async def post(
        self,
        ws,
        who: dict,
        content: str = "",
        *,
        channel: str = CHANNEL,
        roles: list[str] = (),
        attachments: list[dict] = (),
        flags: int = 0,
    ) -> dict:
        """A member posts in a guild channel; the bot gets MESSAGE_CREATE as its intents allow."""
        guild = CHANNEL_GUILD[channel]
        mid = str(next(self.ids))
        message = {
            "id": mid,
            "channel_id": channel,
            "guild_id": guild,
            "author": who,
            "content": content,
            "timestamp": iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": list(attachments),
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": flags,
            "components": [],
        }
        self.messages[mid] = message
        if not self.has(GUILD_MESSAGES):
            return message
        seen = dict(message)
        if not self.has(MESSAGE_CONTENT) and f"<@{BOT['id']}>" not in content:
            seen.update(content="", attachments=[], embeds=[], components=[])
        seen["member"] = {
            "roles": list(roles),
            "joined_at": "2024-01-01T00:00:00+00:00",
            "deaf": False,
            "mute": False,
            "flags": 0,
            "nick": None,
            "avatar": None,
            "premium_since": None,
            "pending": False,
        }
        await self.dispatch(ws, "MESSAGE_CREATE", seen)
        return message

    async def voice_message(self, ws, who: dict, data: bytes, seconds: float, *, channel: str = CHANNEL) -> dict:
        """A voice message as Discord's client records one: no text, one Ogg Opus
        attachment with its duration and waveform, the IS_VOICE_MESSAGE flag."""
        attachment = self.attach(
            channel,
            "voice-message.ogg",
            data,
            "audio/ogg",
            duration_secs=seconds,
            waveform=base64.b64encode(bytes(32)).decode(),
        )
        return await self.post(ws, who, channel=channel, attachments=[attachment], flags=VOICE_MESSAGE)

    async def voice_state(
        self,
        ws,
        who: dict,
        channel: str | None,
        *,
        guild: str = GUILD,
        roles: list[str] = (),
        self_deaf: bool = False,
        self_mute: bool = False,
    ) -> None:
        """Someone joins (or leaves) a voice channel: VOICE_STATE_UPDATE, with the voice states intent."""
        if not self.has(GUILD_VOICE_STATES):
            return
        await self.dispatch(
            ws,
            "VOICE_STATE_UPDATE",
            {
                "guild_id": guild,
                "channel_id": channel,
                "user_id": who["id"],
                "session_id": f"voice-{who['id']}",
                "deaf": False,
                "mute": False,
                "self_deaf": self_deaf,
                "self_mute": self_mute,
                "self_video": False,
                "suppress": False,
                "request_to_speak_timestamp": None,
                "member": {
                    "user": who,
                    "roles": list(roles),
                    "joined_at": "2024-01-01T00:00:00+00:00",
                    "deaf": False,
                    "mute": False,
                    "flags": 0,
                    "nick": None,
                    "avatar": None,
                    "premium_since": None,
                    "pending": False,
                },
            },
        )

    async def button(self, ws, who: dict, custom_id: str, message: dict) -> str:
        return await self.interaction(
            ws,
            who,
            3,
            {"custom_id": custom_id, "component_type": 2},
            message=message,
            guild=CHANNEL_GUILD[message["channel_id"]],
            channel=message["channel_id"],
        )

    async def interaction(
        self,
        ws,
        who: dict,
        kind: int,
        data: dict,
        *,
        guild: str | None = GUILD,
        channel: str | None = None,
        roles: list[str] = (),
        permissions: int = 0,
        message: dict | None = None,
        schema: dict | None = None,
    ) -> str:
        """INTERACTION_CREATE as Discord sends it, from a guild channel or from a DM with the bot."""
        iid = str(next(self.ids))
        self.tokens[f"itoken{iid}"] = (iid, time.monotonic())
        if schema is not None:
            self.schemas[iid] = schema
        payload = {
            "id": iid,
            "application_id": APP,
            "type": kind,
            "token": f"itoken{iid}",
            "version": 1,
            "locale": "en-US",
            "app_permissions": "0",
            "entitlements": [],
            "data": data,
            "attachment_size_limit": 8_388_608,
        }
        if guild is None:
            payload.update(
                channel_id=DM_CHANNEL,
                context=1,
                user=who,
                authorizing_integration_owners={"0": "0"},
                channel={"id": DM_CHANNEL, "type": 1, "recipients": [who], "last_message_id": None, "flags": 0},
            )
        else:
            channel = channel or next(c for c, g in CHANNEL_GUILD.items() if g == guild)
            payload.update(
                guild_id=guild,
                channel_id=channel,
                guild_locale="en-US",
                context=0,
                authorizing_integration_owners={"0": guild},
                guild={"id": guild, "locale": "en-US", "features": []},
                channel={
                    "id": channel,
                    "type": 0,
                    "guild_id": guild,
                    "name": "world",
                    "position": 0,
                    "permission_overwrites": [],
                    "nsfw": False,
                    "parent_id": None,
                },
                member={
                    "user": who,
                    "roles": list(roles),
                    "joined_at": "2024-01-01T00:00:00+00:00",
                    "deaf": False,
                    "mute": False,
                    "permissions": str(permissions),
                    "flags": 0,
                    "nick": None,
                    "avatar": None,
                    "premium_since": None,
                    "pending": False,
                },
            )
        if message is not None:
            payload["message"] = message
        await self.dispatch(ws, "INTERACTION_CREATE", payload)
        return iid


def _in_range(value: int, option: dict) -> bool:
    low, high = option.get("min_value"), option.get("max_value")
    return -(2**53) < value < 2**53 and (low is None or value >= low) and (high is None or value <= high)


def buttons_of(message: dict) -> list[str]:
    return [c["custom_id"] for row in message.get("components", []) for c in row.get("components", [])]


def disabled_of(message: dict) -> list[bool]:
    return [c.get("disabled", False) for row in message.get("components", []) for c in row.get("components", [])]


@contextlib.asynccontextmanager
async def serving(monkeypatch, **kw) -> AsyncIterator[FakeDiscord]:
    """The fake, with discord.py pointed at it; its violations fail the test at the end."""
    server = FakeDiscord(**kw)
    await server.start()
    monkeypatch.setattr(Route, "BASE", f"http://127.0.0.1:{server.port}/api/v10")
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(f"ws://127.0.0.1:{server.port}/gw"))
    try:
        yield server
    finally:
        await server.stop()
    assert not server.violations, server.violations
