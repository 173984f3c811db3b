"""A strict local Twitch: id.twitch.tv (tokens), api.twitch.tv/helix and the
EventSub websocket, on one loopback port, for twitchio's own code to run against.

Strict where a lenient fake would hide a bug:
- every Helix call needs a live bearer token issued to this Client-Id, and the
  scopes (and the user) Twitch's reference names for that endpoint;
- refresh tokens rotate: a refresh token works once, and the access token it
  replaced stops working;
- the websocket sends `session_keepalive` on its own timer (the session's
  `keepalive_timeout_seconds`, as Twitch does), closes an unused session with
  4003 and a talking client with 4001, delivers notifications only to the
  subscriptions a session holds, drops those subscriptions when the socket
  drops, and can revoke them;
- chat the bot sends comes back over EventSub, before Helix answers, as on Twitch;
  a reply (`reply_parent_message_id`) must name a message of the same chat;
- a path can be throttled: 429 with `Ratelimit-Reset`, and a retry before the
  reset is refused again.

The message shapes are Twitch's documented ones; tests/data/twitch_samples.json
holds the reference examples they are checked against.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import secrets as _secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import twitchio.eventsub.websockets as tio_ws
from aiohttp import web
from twitchio.http import Route

from .localserver import LocalServer

CLIENT_ID = "cid-0123456789"
CLIENT_SECRET = "client-secret-xyz123"


def iso(t: float | None = None) -> str:
    d = datetime.fromtimestamp(time.time() if t is None else t, UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- messages, as Twitch's reference shows them ---------------------------------------


def _meta(kind: str, sub: dict | None = None) -> dict:
    m = {"message_id": str(uuid.uuid4()), "message_type": kind, "message_timestamp": iso()}
    if sub is not None:
        m |= {"subscription_type": sub["type"], "subscription_version": sub["version"]}
    return m


def welcome(session: str, keepalive_s: int, connected_at: str) -> dict:
    return {
        "metadata": _meta("session_welcome"),
        "payload": {
            "session": {
                "id": session,
                "status": "connected",
                "connected_at": connected_at,
                "keepalive_timeout_seconds": keepalive_s,
                "reconnect_url": None,
            }
        },
    }


def keepalive() -> dict:
    return {"metadata": _meta("session_keepalive"), "payload": {}}


def reconnect(session: str, url: str, connected_at: str) -> dict:
    return {
        "metadata": _meta("session_reconnect"),
        "payload": {
            "session": {
                "id": session,
                "status": "reconnecting",
                "keepalive_timeout_seconds": None,
                "reconnect_url": url,
                "connected_at": connected_at,
            }
        },
    }


def revocation(sub: dict, status: str) -> dict:
    s = {k: sub[k] for k in ("id", "type", "version", "cost", "condition", "created_at")}
    s |= {"status": status, "transport": {"method": "websocket", "session_id": sub["transport"]["session_id"]}}
    return {"metadata": _meta("revocation", sub), "payload": {"subscription": s}}


def notification(sub: dict, event: dict) -> dict:
    s = {k: sub[k] for k in ("id", "status", "type", "version", "condition", "created_at", "cost")}
    s["transport"] = {"method": "websocket", "session_id": sub["transport"]["session_id"]}
    return {"metadata": _meta("notification", sub), "payload": {"subscription": s, "event": event}}


@dataclass(frozen=True)
class Account:
    id: str
    login: str

    @property
    def name(self) -> str:
        return self.login.title()


def _who(prefix: str, a: Account) -> dict:
    return {f"{prefix}_id": a.id, f"{prefix}_login": a.login, f"{prefix}_name": a.name}


def chat_event(
    channel: Account, chatter: Account, text: str, message_id: str, badges=(), source: Account | None = None
) -> dict:
    shared = source is not None and source != channel
    return {
        **_who("broadcaster_user", channel),
        **_who("chatter_user", chatter),
        "message_id": message_id,
        "message": {
            "text": text,
            "fragments": [{"type": "text", "text": text, "cheermote": None, "emote": None, "mention": None}],
        },
        "color": "#00FF7F",
        "badges": [{"set_id": b, "id": "1", "info": ""} for b in badges],
        "message_type": "text",
        "cheer": None,
        "reply": None,
        "channel_points_custom_reward_id": None,
        "channel_points_animation_id": None,
        **(
            _who("source_broadcaster_user", source)
            if shared
            else {
                "source_broadcaster_user_id": None,
                "source_broadcaster_user_login": None,
                "source_broadcaster_user_name": None,
            }
        ),
        "source_message_id": str(uuid.uuid4()) if shared else None,
        "source_badges": [{"set_id": b, "id": "1", "info": ""} for b in badges] if shared else None,
        "is_source_only": False if shared else None,
    }


def message_delete_event(channel: Account, target: Account, message_id: str) -> dict:
    return {**_who("broadcaster_user", channel), **_who("target_user", target), "message_id": message_id}


def clear_user_event(channel: Account, target: Account) -> dict:
    return {**_who("broadcaster_user", channel), **_who("target_user", target)}


def ban_event(channel: Account, user: Account, moderator: Account, reason: str, ends_at: str | None) -> dict:
    return {
        **_who("user", user),
        **_who("broadcaster_user", channel),
        **_who("moderator_user", moderator),
        "reason": reason,
        "banned_at": iso(),
        "ends_at": ends_at,
        "is_permanent": ends_at is None,
    }


def redemption_event(channel: Account, user: Account, redemption_id: str, reward: dict, text: str) -> dict:
    return {
        "id": redemption_id,
        **_who("broadcaster_user", channel),
        **_who("user", user),
        "user_input": text,
        "status": "unfulfilled",
        "reward": {k: reward[k] for k in ("id", "title", "cost", "prompt")},
        "redeemed_at": iso(),
    }


def reward_json(channel: Account, reward: dict) -> dict:
    return {
        "broadcaster_name": channel.name,
        "broadcaster_login": channel.login,
        "broadcaster_id": channel.id,
        "id": reward["id"],
        "image": None,
        "background_color": "#00E5CB",
        "is_enabled": True,
        "cost": reward["cost"],
        "title": reward["title"],
        "prompt": reward["prompt"],
        "is_user_input_required": reward["input"],
        "max_per_stream_setting": {"is_enabled": False, "max_per_stream": 0},
        "max_per_user_per_stream_setting": {"is_enabled": False, "max_per_user_per_stream": 0},
        "global_cooldown_setting": {"is_enabled": False, "global_cooldown_seconds": 0},
        "is_paused": False,
        "is_in_stock": True,
        "default_image": {
            f"url_{n}x": f"https://static-cdn.jtvnw.net/custom-reward-images/default-{n}.png" for n in (1, 2, 4)
        },
        "should_redemptions_skip_request_queue": False,
        "redemptions_redeemed_current_stream": None,
        "cooldown_expires_at": None,
    }


def stream_json(channel: Account, stream: dict) -> dict:
    """One entry of Get Streams' data."""
    return {
        "id": stream["id"],
        "user_id": channel.id,
        "user_login": channel.login,
        "user_name": channel.name,
        "game_id": "509660",
        "game_name": "Art",
        "type": "live",
        "title": "An endless world, steered by chat",
        "tags": ["English"],
        "viewer_count": stream["viewers"],
        "started_at": stream["started_at"],
        "language": "en",
        "thumbnail_url": f"https://static-cdn.jtvnw.net/previews-ttv/live_user_{channel.login}-{{width}}x{{height}}.jpg",
        "tag_ids": [],
        "is_mature": False,
    }


# -- what each subscription type needs (Twitch's EventSub subscription types page) ----

# type -> (version, condition keys (required, optional), scopes (any of), whose token)
SUBSCRIPTION_RULES = {
    "channel.chat.message": ("1", {"broadcaster_user_id", "user_id"}, set(), {"user:read:chat"}, "user_id"),
    "channel.chat.message_delete": ("1", {"broadcaster_user_id", "user_id"}, set(), {"user:read:chat"}, "user_id"),
    "channel.chat.clear_user_messages": ("1", {"broadcaster_user_id", "user_id"}, set(), {"user:read:chat"}, "user_id"),
    "channel.ban": ("1", {"broadcaster_user_id"}, set(), {"channel:moderate"}, "broadcaster_user_id"),
    "channel.channel_points_custom_reward_redemption.add": (
        "1",
        {"broadcaster_user_id"},
        {"reward_id"},
        {"channel:read:redemptions", "channel:manage:redemptions"},
        "broadcaster_user_id",
    ),
}


@dataclass
class Token:
    value: str
    client_id: str
    user_id: str | None  # None: an app access token
    scopes: frozenset[str]
    expires_at: float
    refresh: str | None = None
    valid: bool = True


@dataclass
class Session:
    id: str
    ws: web.WebSocketResponse
    keepalive_s: int
    connected_at: str
    last_sent: float = field(default_factory=time.monotonic)
    subscribed: bool = False
    moved: bool = False  # handed over to a new session by session_reconnect
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, message: dict) -> None:
        async with self.lock:
            if not self.ws.closed:
                await self.ws.send_json(message)
                self.last_sent = time.monotonic()


TOKEN = web.RequestKey("token", Token)


class HelixError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message


_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests",
}


class FakeTwitch(LocalServer):
    def __init__(self, *, client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET) -> None:
        super().__init__()
        self.client_id, self.client_secret = client_id, client_secret
        self.app.middlewares.append(self._helix_middleware)
        r = self.app.router
        r.add_post("/oauth2/token", self.oauth_token)
        r.add_get("/oauth2/validate", self.oauth_validate)
        r.add_get("/helix/users", self.users)
        r.add_post("/helix/eventsub/subscriptions", self.create_subscription)
        r.add_get("/helix/eventsub/subscriptions", self.get_subscriptions)
        r.add_post("/helix/chat/messages", self.send_chat)
        r.add_post("/helix/streams/markers", self.create_marker)
        r.add_get("/helix/streams", self.get_streams)
        r.add_get("/helix/channel_points/custom_rewards", self.get_rewards)
        r.add_post("/helix/channel_points/custom_rewards", self.create_reward)
        r.add_patch("/helix/channel_points/custom_rewards/redemptions", self.update_redemption)
        r.add_get("/ws", self.websocket)
        self.accounts: dict[str, Account] = {}
        self.moderators: set[tuple[str, str]] = set()  # (channel id, user id)
        self.grants: dict[str, frozenset[str]] = {}  # user id -> scopes granted to this client
        self.tokens: dict[str, Token] = {}
        self.refreshes: dict[str, Token] = {}
        self.sessions: dict[str, Session] = {}
        self.subscriptions: dict[str, dict] = {}  # live ones
        self.created: list[dict] = []  # every subscription request that succeeded
        self.sent: list[dict] = []  # chat messages sent through Helix
        self.said: dict[str, str] = {}  # chat message id -> its channel's id, for replies to it
        self.markers: list[dict] = []
        self.streams: dict[str, dict] = {}  # channel id -> its live stream
        self.rewards: dict[str, dict] = {}
        self.redemptions: dict[str, dict] = {}
        self.calls: list[tuple[str, str, int]] = []  # (method, path, status) of every Helix call
        self.throttles: dict[str, list] = {}  # path -> [refusals left, reset (epoch s)]
        self.early_retries = 0
        self.refuse_sockets = False  # an EventSub outage: websocket connections are refused
        self.changed = asyncio.Condition()
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()

    # -- set-up ------------------------------------------------------------------------
    def account(self, user_id: str, login: str, *, moderator_of: Account | None = None) -> Account:
        a = self.accounts[user_id] = Account(user_id, login)
        if moderator_of is not None:
            self.moderators.add((moderator_of.id, user_id))
        return a

    def user_token(self, account: Account, scopes, *, expires_in: int = 14_000) -> tuple[str, str]:
        """What the OAuth flow would hand out: (access token, refresh token)."""
        self.grants[account.id] = self.grants.get(account.id, frozenset()) | frozenset(scopes)
        return self._issue(account.id, frozenset(scopes), expires_in)

    def _issue(self, user_id: str | None, scopes: frozenset[str], expires_in: int) -> tuple[str, str]:
        access = f"tok-{_secrets.token_hex(12)}"
        refresh = f"ref-{_secrets.token_hex(12)}" if user_id else None
        t = Token(access, self.client_id, user_id, scopes, time.time() + expires_in, refresh)
        self.tokens[access] = t
        if refresh:
            self.refreshes[refresh] = t
        return access, refresh or ""

    def expire(self, access: str) -> None:
        self.tokens[access].valid = False

    def throttle(self, path: str, *, refusals: int = 1, reset_in: float = 1.0) -> None:
        """The next `refusals` calls to /helix/<path> get 429 until `reset_in` seconds from now."""
        self.throttles[path] = [refusals, time.time() + reset_in]

    def go_live(self, channel: Account, viewers: int = 0) -> None:
        """The channel's broadcast is live on Twitch (Get Streams lists it) with `viewers` watching."""
        started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.streams[channel.id] = {
            "id": str(next(self._ids) + 40_000_000_000),
            "started_at": started,
            "viewers": viewers,
        }

    def set_viewers(self, channel: Account, viewers: int) -> None:
        self.streams[channel.id]["viewers"] = viewers

    def go_offline(self, channel: Account) -> None:
        self.streams.pop(channel.id, None)

    def add_reward(self, channel: Account, title: str, cost: int = 100, *, client_id: str | None = None) -> dict:
        """A reward as the dashboard makes it (no client id: no app may manage it)."""
        reward = {
            "id": str(uuid.uuid4()),
            "channel": channel.id,
            "title": title,
            "cost": cost,
            "prompt": "",
            "input": True,
            "client_id": client_id,
        }
        self.rewards[reward["id"]] = reward
        return reward

    # -- tokens: id.twitch.tv ----------------------------------------------------------
    async def oauth_token(self, request: web.Request) -> web.Response:
        form = dict(request.query) | dict(await request.post())
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return web.json_response({"status": 403, "message": "invalid client secret"}, status=403)
        grant = form.get("grant_type")
        if grant == "client_credentials":
            access, _ = self._issue(None, frozenset(), 5_000_000)
            return web.json_response({"access_token": access, "expires_in": 5_000_000, "token_type": "bearer"})
        if grant == "refresh_token":
            old = self.refreshes.pop(form.get("refresh_token", ""), None)
            if old is None:
                return web.json_response({"status": 400, "message": "Invalid refresh token"}, status=400)
            old.valid = False  # rotated: the old pair is spent
            access, refresh = self._issue(old.user_id, old.scopes, 14_000)
            await self._notify_changed()
            return web.json_response(
                {
                    "access_token": access,
                    "refresh_token": refresh,
                    "expires_in": 14_000,
                    "scope": sorted(old.scopes),
                    "token_type": "bearer",
                }
            )
        return web.json_response({"status": 400, "message": "unsupported grant type"}, status=400)

    def _token(self, value: str) -> Token | None:
        t = self.tokens.get(value)
        if t is None or not t.valid or t.expires_at < time.time():
            return None
        return t

    async def oauth_validate(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme not in ("OAuth", "Bearer") or not value:  # Twitch documents OAuth and takes both
            return web.json_response({"status": 401, "message": "missing authorization token"}, status=401)
        t = self._token(value)
        if t is None:
            return web.json_response({"status": 401, "message": "invalid access token"}, status=401)
        body = {"client_id": t.client_id, "scopes": sorted(t.scopes), "expires_in": int(t.expires_at - time.time())}
        if t.user_id:
            body |= {"login": self.accounts[t.user_id].login, "user_id": t.user_id}
        return web.json_response(body)

    # -- helix: authentication, rate limits ------------------------------------------
    @web.middleware
    async def _helix_middleware(self, request: web.Request, handler):
        if not request.path.startswith("/helix/"):
            return await handler(request)
        path = request.path.removeprefix("/helix/")
        headers = {
            "Ratelimit-Limit": "800",
            "Ratelimit-Remaining": "799",
            "Ratelimit-Reset": str(int(time.time()) + 60),
        }
        try:
            auth = request.headers.get("Authorization", "")
            token = self._token(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
            if token is None:
                raise HelixError(401, "Invalid OAuth token")
            if request.headers.get("Client-Id") != token.client_id:
                raise HelixError(401, "Client ID and OAuth token do not match")
            throttle = self.throttles.get(path)
            if throttle is not None:
                left, reset = throttle
                if left > 0 or time.time() < reset:
                    if left <= 0:
                        self.early_retries += 1  # came back before Ratelimit-Reset
                    throttle[0] = left - 1
                    headers |= {"Ratelimit-Remaining": "0", "Ratelimit-Reset": str(math.ceil(reset))}
                    raise HelixError(429, "")
                del self.throttles[path]
            request[TOKEN] = token
            response = await handler(request)
        except HelixError as e:
            self.calls.append((request.method, path, e.status))
            await self._notify_changed()
            return web.json_response(
                {"error": _REASONS[e.status], "status": e.status, "message": e.message},
                status=e.status,
                headers=headers,
            )
        self.calls.append((request.method, path, response.status))
        response.headers.update(headers)
        await self._notify_changed()
        return response

    @staticmethod
    def _need(request: web.Request, scopes: set[str], *, user: str | None = None) -> Token:
        """A user token with one of `scopes`, belonging to `user` when given."""
        t: Token = request[TOKEN]
        if t.user_id is None:
            raise HelixError(401, "This endpoint requires a user access token")
        if scopes and not scopes & t.scopes:
            raise HelixError(401, f"Missing scope: {' or '.join(sorted(scopes))}")
        if user is not None and t.user_id != user:
            raise HelixError(403, "The ID in the token does not match the user in the request")
        return t

    # -- helix endpoints -----------------------------------------------------------------
    async def users(self, request: web.Request) -> web.Response:
        logins = set(request.query.getall("login", []))
        ids = set(request.query.getall("id", []))
        found = [a for a in self.accounts.values() if a.login in logins or a.id in ids]
        return web.json_response(
            {
                "data": [
                    {
                        "id": a.id,
                        "login": a.login,
                        "display_name": a.name,
                        "type": "",
                        "broadcaster_type": "affiliate",
                        "description": "",
                        "profile_image_url": "",
                        "offline_image_url": "",
                        "view_count": 0,
                        "created_at": "2020-01-01T00:00:00Z",
                    }
                    for a in found
                ]
            }
        )

    async def get_streams(self, request: web.Request) -> web.Response:
        """Get Streams: any live token; only live channels are listed, most viewers first."""
        q = request.query
        ids, logins = q.getall("user_id", []), q.getall("user_login", [])
        if len(ids) > 100 or len(logins) > 100:
            raise HelixError(400, "The maximum number of user_id and user_login parameters is 100")
        if q.get("type", "all") not in ("all", "live"):
            raise HelixError(400, "The type query parameter must be all or live")
        first = q.get("first", "20")
        if not first.isdigit() or not 1 <= int(first) <= 100:
            raise HelixError(400, "The first query parameter must be between 1 and 100")
        found = [
            (a, self.streams[a.id])
            for a in self.accounts.values()
            if a.id in self.streams and (not ids and not logins or a.id in ids or a.login in logins)
        ]
        found.sort(key=lambda x: -x[1]["viewers"])
        return web.json_response({"data": [stream_json(a, st) for a, st in found[: int(first)]], "pagination": {}})

    async def create_subscription(self, request: web.Request) -> web.Response:
        body = await request.json()
        rule = SUBSCRIPTION_RULES.get(body.get("type"))
        if rule is None or body.get("version") != rule[0]:
            raise HelixError(400, "unknown subscription type or version")
        version, required, optional, scopes, owner = rule
        cond = body.get("condition") or {}
        if not required <= set(cond) or not set(cond) <= required | optional:
            raise HelixError(400, "invalid condition")
        transport = body.get("transport") or {}
        t: Token = request[TOKEN]
        if t.user_id is None:
            raise HelixError(400, "websocket transport requires a user access token")
        session = self.sessions.get(transport.get("session_id", ""))
        if transport.get("method") != "websocket" or session is None or session.ws.closed:
            raise HelixError(400, "invalid transport: no such websocket session")
        self._need(request, scopes, user=cond[owner])
        for s in self.subscriptions.values():
            if (s["type"], s["condition"], s["transport"]["session_id"]) == (body["type"], cond, session.id):
                raise HelixError(409, "subscription already exists")
        sub = {
            "id": str(uuid.uuid4()),
            "status": "enabled",
            "type": body["type"],
            "version": version,
            "condition": cond,
            "created_at": iso(),
            "cost": 0,
            "user_id": t.user_id,
            "transport": {"method": "websocket", "session_id": session.id, "connected_at": session.connected_at},
        }
        self.subscriptions[sub["id"]] = sub
        self.created.append(sub)
        session.subscribed = True
        out = {k: v for k, v in sub.items() if k != "user_id"}
        return web.json_response(
            {"data": [out], "total": len(self.subscriptions), "total_cost": 0, "max_total_cost": 10}, status=202
        )

    async def get_subscriptions(self, request: web.Request) -> web.Response:
        """With a user token: the WebSocket subscriptions that user created. One filter at most.
        A dropped socket's subscriptions are gone (Twitch lists them disabled for a while)."""
        t = self._need(request, set())
        filters = {k: v for k, v in request.query.items() if k in ("status", "type", "user_id", "subscription_id")}
        if len(filters) > 1:
            raise HelixError(400, "status, type, user_id and subscription_id are mutually exclusive")
        matches = {
            "status": lambda s, v: s["status"] == v,
            "type": lambda s, v: s["type"] == v,
            "subscription_id": lambda s, v: s["id"] == v,
            "user_id": lambda s, v: v in s["condition"].values(),
        }
        subs = [
            s
            for s in self.subscriptions.values()
            if s["user_id"] == t.user_id and all(matches[k](s, v) for k, v in filters.items())
        ]
        data = [{k: v for k, v in s.items() if k != "user_id"} for s in subs]
        return web.json_response(
            {"data": data, "total": len(data), "total_cost": 0, "max_total_cost": 10, "pagination": {}}
        )

    async def send_chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        channel = self.accounts.get(str(body.get("broadcaster_id")))
        sender = self.accounts.get(str(body.get("sender_id")))
        text = body.get("message", "")
        if channel is None or sender is None or not text or len(text) > 500:
            raise HelixError(400, "invalid broadcaster_id, sender_id or message")
        parent = body.get("reply_parent_message_id")
        if parent is not None and self.said.get(parent) != channel.id:
            raise HelixError(400, "The reply_parent_message_id is not a message in this chat")
        t: Token = request[TOKEN]
        if t.user_id is None:
            # The app token: the sender granted user:bot, the channel channel:bot (or made the sender a mod).
            if "user:bot" not in self.grants.get(sender.id, ()):
                raise HelixError(403, "The sender has not authorized the app with user:bot")
            if "channel:bot" not in self.grants.get(channel.id, ()) and (channel.id, sender.id) not in self.moderators:
                raise HelixError(403, "The broadcaster has not authorized the app with channel:bot")
        else:
            self._need(request, {"user:write:chat"}, user=sender.id)
        message_id = str(uuid.uuid4())
        self.sent.append(
            {**body, "message_id": message_id, "via": "user" if t.user_id else "app", "badge": t.user_id is None}
        )
        self.said[message_id] = channel.id
        # Twitch echoes the message to every chat subscription, often before this answer arrives.
        await self.deliver(
            "channel.chat.message", channel, chat_event(channel, sender, " ".join(text.split()), message_id)
        )
        return web.json_response({"data": [{"message_id": message_id, "is_sent": True, "drop_reason": None}]})

    async def create_marker(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._need(request, {"channel:manage:broadcast"}, user=str(body.get("user_id")))
        self.markers.append(body)
        return web.json_response(
            {
                "data": [
                    {
                        "id": str(next(self._ids)),
                        "created_at": iso(),
                        "description": body.get("description", ""),
                        "position_seconds": 12,
                    }
                ]
            }
        )

    async def get_rewards(self, request: web.Request) -> web.Response:
        channel = request.query.get("broadcaster_id", "")
        self._need(request, {"channel:read:redemptions", "channel:manage:redemptions"}, user=channel)
        mine = request.query.get("only_manageable_rewards", "false").lower() == "true"
        found = [
            r
            for r in self.rewards.values()
            if r["channel"] == channel and (not mine or r["client_id"] == request.headers.get("Client-Id"))
        ]
        return web.json_response({"data": [reward_json(self.accounts[channel], r) for r in found]})

    async def create_reward(self, request: web.Request) -> web.Response:
        channel = request.query.get("broadcaster_id", "")
        self._need(request, {"channel:manage:redemptions"}, user=channel)
        body = await request.json()
        title, cost = str(body.get("title", "")), body.get("cost")
        if not title or len(title) > 45 or not isinstance(cost, int) or cost < 1:
            raise HelixError(400, "title (1 to 45 characters) and cost (at least 1) are required")
        if any(r["channel"] == channel and r["title"].lower() == title.lower() for r in self.rewards.values()):
            raise HelixError(400, "CREATE_CUSTOM_REWARD_DUPLICATE_REWARD")
        reward = {
            "id": str(uuid.uuid4()),
            "channel": channel,
            "title": title,
            "cost": cost,
            "prompt": body.get("prompt", ""),
            "input": bool(body.get("is_user_input_required")),
            "client_id": request.headers.get("Client-Id"),
        }
        self.rewards[reward["id"]] = reward
        return web.json_response({"data": [reward_json(self.accounts[channel], reward)]})

    async def update_redemption(self, request: web.Request) -> web.Response:
        q = request.query
        channel = q.get("broadcaster_id", "")
        self._need(request, {"channel:manage:redemptions"}, user=channel)
        reward = self.rewards.get(q.get("reward_id", ""))
        if reward is None or reward["channel"] != channel:
            raise HelixError(404, "no such reward")
        if reward["client_id"] != request.headers.get("Client-Id"):
            raise HelixError(
                403, "The ID in the Client-Id header must match the client ID used to create the custom reward."
            )
        status = (await request.json()).get("status")
        red = self.redemptions.get(q.get("id", ""))
        if status not in ("FULFILLED", "CANCELED") or red is None or red["reward_id"] != reward["id"]:
            raise HelixError(400, "invalid status or redemption id")
        if red["status"] != "UNFULFILLED":
            raise HelixError(400, "the redemption is not UNFULFILLED")
        red["status"] = status
        user = self.accounts[red["user_id"]]
        ch = self.accounts[channel]
        return web.json_response(
            {
                "data": [
                    {
                        "broadcaster_name": ch.name,
                        "broadcaster_login": ch.login,
                        "broadcaster_id": ch.id,
                        "id": red["id"],
                        **_who("user", user),
                        "user_input": red["text"],
                        "status": status,
                        "redeemed_at": red["at"],
                        "reward": {k: reward[k] for k in ("id", "title", "prompt", "cost")},
                    }
                ]
            }
        )

    # -- eventsub websocket -----------------------------------------------------------------
    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        if self.refuse_sockets:
            raise web.HTTPServiceUnavailable()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        try:
            wanted = int(request.query.get("keepalive_timeout_seconds", "10"))
        except ValueError:
            wanted = 10
        session = Session(f"session-{next(self._ids)}", ws, max(10, min(600, wanted)), iso())
        old = self.sessions.get(request.query.get("reconnect", ""))
        await session.send(welcome(session.id, session.keepalive_s, session.connected_at))
        async with self.changed:
            self.sessions[session.id] = session
            self.sockets.append(ws)
            if old is not None:  # session_reconnect: the subscriptions move to the new session
                old.moved = True
                for s in self.subscriptions.values():
                    if s["transport"]["session_id"] == old.id:
                        s["transport"]["session_id"] = session.id
                        session.subscribed = True
            self.changed.notify_all()
        if old is not None:
            await old.ws.close()
        timer = asyncio.create_task(self._keepalive(session))
        try:
            async for _ in ws:  # Twitch forbids client messages
                await ws.close(code=4001, message=b"sent inbound traffic")
        finally:
            timer.cancel()
            async with self.changed:
                if not session.moved:  # the subscriptions die with the socket
                    for sid in [k for k, s in self.subscriptions.items() if s["transport"]["session_id"] == session.id]:
                        del self.subscriptions[sid]
                self.changed.notify_all()
        return ws

    async def _keepalive(self, session: Session) -> None:
        """Twitch's timer: silence for `keepalive_timeout_seconds` brings a keepalive; a session
        with no subscription by then is closed as unused."""
        while not session.ws.closed:
            due = session.last_sent + session.keepalive_s
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if session.ws.closed:
                return
            if not session.subscribed:
                await session.ws.close(code=4003, message=b"connection unused")
                return
            if time.monotonic() >= session.last_sent + session.keepalive_s:
                await session.send(keepalive())

    async def _notify_changed(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def wait(self, predicate, timeout: float = 15.0) -> None:
        """Until `predicate()` holds (checked whenever the fake's state changes)."""
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), timeout)

    def live(self, sub_type: str) -> list[dict]:
        return [s for s in self.subscriptions.values() if s["type"] == sub_type]

    def session_of(self, sub_type: str) -> Session:
        return self.sessions[self.live(sub_type)[0]["transport"]["session_id"]]

    # -- what happens on Twitch ---------------------------------------------------------
    async def deliver(self, sub_type: str, channel: Account, event: dict) -> int:
        """A notification to every session subscribed to `sub_type` in `channel`."""
        n = 0
        for sub in list(self.subscriptions.values()):
            if sub["type"] != sub_type or sub["condition"]["broadcaster_user_id"] != channel.id:
                continue
            if sub["condition"].get("reward_id") not in (None, "", event.get("reward", {}).get("id")):
                continue
            session = self.sessions[sub["transport"]["session_id"]]
            await session.send(notification(sub, event))
            n += 1
        return n

    async def chat(
        self, channel: Account, chatter: Account, text: str, badges=(), source: Account | None = None
    ) -> str:
        """Someone chats in `channel` (or in `source`, a channel sharing its chat); the message id."""
        message_id = str(uuid.uuid4())
        self.said[message_id] = channel.id
        await self.deliver(
            "channel.chat.message", channel, chat_event(channel, chatter, text, message_id, badges, source)
        )
        return message_id

    async def delete_message(self, channel: Account, target: Account, message_id: str) -> None:
        await self.deliver("channel.chat.message_delete", channel, message_delete_event(channel, target, message_id))

    async def clear_user(self, channel: Account, target: Account) -> None:
        await self.deliver("channel.chat.clear_user_messages", channel, clear_user_event(channel, target))

    async def ban(self, channel: Account, user: Account, moderator: Account, *, timeout_s: int | None = None) -> None:
        """A ban or timeout: channel.ban, and, as on Twitch, the user's messages are cleared."""
        ends = iso(time.time() + timeout_s) if timeout_s else None
        await self.deliver("channel.ban", channel, ban_event(channel, user, moderator, "", ends))
        await self.clear_user(channel, user)

    async def redeem(self, channel: Account, user: Account, reward: dict, text: str) -> str:
        rid = str(uuid.uuid4())
        self.redemptions[rid] = {
            "id": rid,
            "reward_id": reward["id"],
            "user_id": user.id,
            "text": text,
            "status": "UNFULFILLED",
            "at": iso(),
        }
        await self.deliver(
            "channel.channel_points_custom_reward_redemption.add",
            channel,
            redemption_event(channel, user, rid, reward, text),
        )
        return rid

    async def revoke(self, sub_type: str, status: str) -> None:
        """Twitch takes a subscription back (`authorization_revoked` also kills the user's tokens)."""
        for sub in self.live(sub_type):
            del self.subscriptions[sub["id"]]
            if status == "authorization_revoked":
                for t in self.tokens.values():
                    if t.user_id == sub["user_id"]:
                        t.valid = False
                        self.refreshes.pop(t.refresh or "", None)
                self.grants.pop(sub["user_id"], None)
            await self.sessions[sub["transport"]["session_id"]].send(revocation(sub, status))
        await self._notify_changed()

    async def move(self, session: Session) -> None:
        """session_reconnect: ask the client to move to a new URL."""
        url = f"ws://127.0.0.1:{self.port}/ws?reconnect={session.id}"
        await session.send(reconnect(session.id, url, session.connected_at))

    async def stop(self) -> None:
        await super().stop()


@contextlib.asynccontextmanager
async def serving(monkeypatch) -> AsyncIterator[FakeTwitch]:
    """The fake, with twitchio pointed at it (its EventSub websocket, Helix and the token
    endpoints); stopped after."""
    server = FakeTwitch()
    await server.start()
    monkeypatch.setattr(tio_ws, "WSS", f"ws://127.0.0.1:{server.port}/ws")
    monkeypatch.setattr(Route, "BASE", f"http://127.0.0.1:{server.port}/helix/")
    monkeypatch.setattr(Route, "ID_BASE", f"http://127.0.0.1:{server.port}/")
    try:
        yield server
    finally:
        await server.stop()
