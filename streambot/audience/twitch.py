"""Twitch chat in and out, with twitchio 3.

In: EventSub over websocket, `channel.chat.message` (and, optionally,
`channel.channel_points_custom_reward_redemption.add` for priority prompts).
twitchio follows Twitch's `session_reconnect` and re-dials a dropped socket
by itself; on top of that `TwitchChat.run` rebuilds the whole client with a
backoff whenever it fails or stays disconnected, and never raises.

Out: Helix `POST /chat/messages`, batched to one message per round (the
winner, plus answers to `!help` / `!now` asked during the round), inside
Twitch's limit of 20 messages per 30 s (100 when the bot is a moderator).
Optionally a stream marker at every prompt change, so the VOD has chapters.

Tokens: a user access token and its refresh token for the chatting account
come from the secrets (`twitch_token`, `twitch_refresh_token`) or from the
tokens file twitchio's own OAuth flow wrote; with neither, the adapter
serves that flow on `oauth_host:oauth_port` and logs the address to open.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import twitchio
from twitchio import eventsub

from .. import secrets as secret_store
from ..config import TwitchSettings, default_secrets_file
from .commands import HELP
from .events import Audience, ChatMessage, PromptEvent, Viewer

if TYPE_CHECKING:
    from ..voting import RoundResult

log = logging.getLogger(__name__)

# What the chatting account's token needs; the last three only for the extras.
SCOPES = (
    "user:read:chat",  # read chat over EventSub
    "user:write:chat",  # send chat through Helix
    "user:bot",  # appear as a bot in the channel
    "channel:manage:broadcast",  # stream markers (broadcaster or editor)
    "channel:read:redemptions",  # channel-point prompts (broadcaster only)
)
WINDOW_S = 30.0


class SendLimiter:
    """At most `limit` messages in any `window` seconds (Twitch's chat rule)."""

    def __init__(self, limit: int, window: float = WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.sent: list[float] = []

    def try_acquire(self) -> bool:
        now = self.clock()
        self.sent = [t for t in self.sent if now - t < self.window]
        if len(self.sent) >= self.limit:
            return False
        self.sent.append(now)
        return True


def viewer_from(chatter: Any) -> Viewer:
    roles = {"viewer"}
    for role in ("broadcaster", "moderator", "subscriber", "vip"):
        try:
            if getattr(chatter, role, False):
                roles.add(role)
        except Exception:  # a badge twitchio cannot read is not worth a dropped message
            pass
    return Viewer("twitch", chatter.name or str(chatter.id), frozenset(roles), str(chatter.id))


def round_message(result: RoundResult, *, help_asked: bool, now_text: str | None) -> str | None:
    """The one chat message a round gets, or None when there is nothing to say."""
    parts = []
    w = result.winner
    if w is not None:
        votes = f"{w.votes:g} vote{'s' if w.votes != 1 else ''}"
        parts.append(f"Round {result.round}: \u201c{w.text}\u201d by @{w.user} ({votes}) is on air.")
    elif now_text:
        parts.append(now_text)
    if help_asked:
        parts.append(HELP)
    if not parts:
        return None
    return _fit(" ".join(parts))


def _fit(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


class _Client(twitchio.Client):
    """twitchio's client with its events routed to the adapter."""

    def __init__(self, chat: TwitchChat, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._chat = chat

    async def event_message(self, payload: twitchio.ChatMessage) -> None:
        self._chat.on_message(payload)

    async def event_custom_redemption_add(self, payload: Any) -> None:
        self._chat.on_redemption(payload)

    async def event_websocket_welcome(self, payload: Any) -> None:
        self._chat.welcomes += 1
        self._chat.state = "live"

    async def event_oauth_authorized(self, payload: Any) -> None:
        await self.add_token(payload.access_token, payload.refresh_token)
        self._chat.authorized.set()

    async def event_error(self, payload: Any) -> None:
        log.warning("twitch event handler failed: %s", secret_store.redact(repr(payload.error)))


class TwitchChat:
    platform = "twitch"

    def __init__(
        self,
        audience: Audience,
        settings: TwitchSettings,
        secrets: dict[str, str],
        *,
        watchdog_s: float = 120.0,
    ) -> None:
        if not settings.client_id:
            raise ValueError("twitch.client_id is empty: register an application (see the README).")
        if not settings.channel:
            raise ValueError("twitch.channel is empty: name the broadcaster's login.")
        self.audience = audience
        self.settings = settings
        self.client_secret = secrets.get("twitch_client_secret") or os.environ.get("STREAMBOT_TWITCH_CLIENT_SECRET")
        self.token = secrets.get("twitch_token")
        self.refresh = secrets.get("twitch_refresh_token") or os.environ.get("STREAMBOT_TWITCH_REFRESH_TOKEN", "")
        for value in (self.client_secret, self.token, self.refresh):
            secret_store.register(value)
        self.watchdog_s = watchdog_s
        self.state = "idle"
        self.welcomes = 0
        self.sent = 0
        self.authorized = asyncio.Event()
        self.limiter = SendLimiter(100 if settings.bot_is_moderator else 20)
        self.client: _Client | None = None
        self.bot_id: str | None = None
        self.broadcaster: twitchio.PartialUser | None = None
        self._closing = asyncio.Event()
        self._help_asked = False
        self._now_asked = False
        self._tasks: set[asyncio.Task] = set()
        self._unsubscribe = audience.subscribe(self.on_round)

    @property
    def tokens_file(self) -> Path:
        if self.settings.tokens_file:
            return Path(os.path.expanduser(self.settings.tokens_file))
        return default_secrets_file().parent / "twitch_tokens.json"

    # -- lifecycle ---------------------------------------------------------------
    async def run(self) -> None:
        """Stay connected until `close()`; every failure is logged and retried."""
        delay = 1.0
        while not self._closing.is_set():
            self.state = "connecting"
            started = time.monotonic()
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("twitch chat failed, retrying in %.0f s: %s", delay, secret_store.redact(str(e) or repr(e)))
                log.debug("twitch chat failure", exc_info=True)
            finally:
                await self._teardown()
            if self._closing.is_set():
                break
            self.state = "retrying"
            if time.monotonic() - started > 60:
                delay = 1.0  # it had been working: start the backoff again
            try:
                await asyncio.wait_for(self._closing.wait(), delay * random.uniform(0.8, 1.2))
            except TimeoutError:
                pass
            delay = min(delay * 2, 60.0)
        self.state = "closed"

    async def close(self) -> None:
        """Stop and disconnect. Safe to call twice."""
        self._closing.set()
        self._unsubscribe()
        await self._teardown()
        self.state = "closed"

    async def _teardown(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                await client.close(save_tokens=False)
            except Exception as e:
                log.debug("closing the twitch client: %s", e)

    async def _session(self) -> None:
        s = self.settings
        client = self.client = _Client(
            self,
            client_id=s.client_id,
            client_secret=self.client_secret,
            redirect_uri=f"http://{s.oauth_host}:{s.oauth_port}/oauth/callback",
            scopes=twitchio.Scopes(list(SCOPES)),
            adapter=twitchio.web.AiohttpAdapter(host=s.oauth_host, port=s.oauth_port),
            fetch_client_user=False,
        )
        # 1. an app token (client credentials), or the user token standing in for one
        await client.login(token=None if self.client_secret else self.token, load_tokens=False, save_tokens=False)
        # 2. the chatting account's user token
        validated = await self._user_token(client)
        self.bot_id = validated.user_id
        if s.bot and validated.login and validated.login.lower() != s.bot.lower():
            raise RuntimeError(f"the Twitch token belongs to {validated.login!r}, not to twitch.bot {s.bot!r}")
        # 3. the channel
        if validated.login and validated.login.lower() == s.channel.lower():
            self.broadcaster = client.create_partialuser(validated.user_id, validated.login)
        else:
            users = await client.fetch_users(logins=[s.channel])
            if not users:
                raise RuntimeError(f"there is no Twitch channel named {s.channel!r}")
            self.broadcaster = users[0]
        # 4. subscriptions (twitchio opens the EventSub websocket on the first)
        await client.subscribe_websocket(
            eventsub.ChatMessageSubscription(broadcaster_user_id=self.broadcaster.id, user_id=self.bot_id),
            token_for=self.bot_id,
        )
        if s.reward and self.broadcaster.id == self.bot_id:
            await client.subscribe_websocket(
                eventsub.ChannelPointsRedeemAddSubscription(broadcaster_user_id=self.broadcaster.id),
                token_for=self.bot_id,
            )
        self.state = "live"
        log.info("twitch chat live in #%s as %s", s.channel, validated.login)
        # 5. watch: twitchio reconnects by itself; a session that stays down is rebuilt
        down_since: float | None = None
        while not self._closing.is_set():
            try:
                await asyncio.wait_for(self._closing.wait(), 1.0)
            except TimeoutError:
                pass
            if self._connected(client):
                down_since = None
                self.state = "live"
            else:
                self.state = "reconnecting"
                down_since = down_since or time.monotonic()
                if time.monotonic() - down_since > self.watchdog_s:
                    raise RuntimeError(f"no EventSub connection for {self.watchdog_s:.0f} s")

    @staticmethod
    def _connected(client: twitchio.Client) -> bool:
        sockets = [w for per_user in client._websockets.values() for w in per_user.values()]
        return any(w.connected for w in sockets)

    async def _user_token(self, client: _Client) -> Any:
        if self.token:
            return await client.add_token(self.token, self.refresh)
        if self.tokens_file.exists():
            await client.load_tokens(str(self.tokens_file))
            if client.tokens:
                user_id = next(iter(client.tokens))
                data = client.tokens[user_id]
                secret_store.register(data["token"])
                secret_store.register(data["refresh"])
                return await client.add_token(data["token"], data["refresh"])
        # 0. nothing yet: twitchio's own OAuth flow, once
        s = self.settings
        await client.adapter.run()
        scopes = "+".join(SCOPES)
        log.warning(
            "Twitch needs your permission: open http://%s:%s/oauth?scopes=%s in a browser, "
            "logged in as the account that should chat.", s.oauth_host, s.oauth_port, scopes,
        )
        self.state = "needs_auth"
        await self.authorized.wait()
        await client.save_tokens(str(self.tokens_file))
        os.chmod(self.tokens_file, 0o600)
        user_id = next(iter(client.tokens))
        return await client.http.validate_token(client.tokens[user_id]["token"])

    # -- in ------------------------------------------------------------------------
    def on_message(self, payload: twitchio.ChatMessage) -> None:
        if payload.chatter.id == self.bot_id:
            return  # our own replies
        reply = self.audience.handle(ChatMessage(viewer_from(payload.chatter), payload.text))
        if reply.kind == "help":
            self._help_asked = True
        elif reply.kind == "now":
            self._now_asked = True

    def on_redemption(self, payload: Any) -> None:
        if payload.reward.title.strip().lower() != self.settings.reward.strip().lower():
            return
        viewer = Viewer("twitch", payload.user.name or str(payload.user.id), frozenset({"viewer"}), str(payload.user.id))
        self.audience.handle(PromptEvent(viewer, payload.user_input, priority=True))

    # -- out -----------------------------------------------------------------------
    def on_round(self, result: RoundResult) -> None:
        """A round was decided: one chat message, one stream marker."""
        if result.winner is not None and self.settings.markers:
            self._spawn(self._marker(result.winner.text))
        if not self.settings.reply:
            return
        text = round_message(
            result, help_asked=self._help_asked,
            now_text=self.audience.now_text() if self._now_asked else None,
        )
        self._help_asked = self._now_asked = False
        if text:
            self._spawn(self.send(text))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def send(self, text: str) -> bool:
        """Send one chat message if connected and inside the rate limit."""
        client, broadcaster, bot_id = self.client, self.broadcaster, self.bot_id
        if client is None or broadcaster is None or bot_id is None:
            return False
        if not self.limiter.try_acquire():
            log.info("twitch chat reply skipped: rate limit")
            return False
        try:
            await broadcaster.send_message(_fit(text), sender=bot_id, token_for=bot_id)
            self.sent += 1
            return True
        except Exception as e:
            log.warning("twitch chat reply failed: %s", secret_store.redact(str(e)))
            return False

    async def _marker(self, text: str) -> None:
        if self.client is None or self.broadcaster is None or self.bot_id is None:
            return
        try:
            await self.broadcaster.create_stream_marker(token_for=self.bot_id, description=text[:140])
        except Exception as e:  # e.g. not live: markers only exist on a live stream
            log.info("no stream marker: %s", secret_store.redact(str(e)))
