"""Twitch chat in and out, with twitchio 3.

In: EventSub over websocket. `channel.chat.message` brings prompts and votes:
only this channel's own chat (a Shared Chat session mirrors other channels'
messages in), and every message but those the bot itself sent (so a streamer
chatting as the bot is heard). Twitch's own moderation is mirrored at once: a
deleted message (`channel.chat.message_delete`) takes its prompt or vote back;
a viewer whose messages are cleared, or who is banned or timed out
(`channel.chat.clear_user_messages`, and `channel.ban` with the broadcaster's
token) leaves the ballot. With a reward configured, channel-point redemptions
are priority prompts.

Staying connected: twitchio follows `session_reconnect` and re-dials a dropped
socket by itself. A subscription Twitch revokes (the user was removed, the
authorisation revoked, ...) is requested again at once, and the reason logged
and shown in `state`. On top of that `TwitchChat.run` rebuilds the whole client
with a jittered exponential back-off (`reconnect.stay_connected`, tenacity)
whenever it fails or stays disconnected, and never raises.

Out: Helix `POST /chat/messages`, batched to one message per round (the
winner, plus answers to `!help` / `!now` asked during the round), inside
Twitch's limit of 20 messages per 30 s (100 when the bot is a moderator),
held as a moving window by `limits`. Two things are answered to the viewer
alone, as a threaded reply (`reply_parent_message_id`), once each and within
`REPLY_SHARE` of that limit: a refused prompt (the one refusal, also when the
safety screen in the pooling worker refuses it after the fact), and a vote
for a number of a round already decided ("#3 was in the last round"), once
per viewer and round. A 429
is waited out until Twitch's `Ratelimit-Reset` and tried once more when that
is soon enough. Chat goes out with the app access token when Twitch will show
the bot badge for it (the chatting account granted `user:bot`, and the channel
`channel:bot` or made the bot a moderator), else with the user token. Only a
Twitch winner is named with `@`: a name from another platform may be someone
else's login here. Optionally a stream marker at every prompt change.

What went on air is the director's `OnAir` (`on_air`: its subscribe), not the
round: a round's winner that never airs (refused late by moderation, or
replaced by the streamer's forced prompt) gets no marker and no fulfilment,
and a forced prompt, which airs without a round, gets its marker.

Viewers: every `viewers_every_s` the channel's viewer count is read from Helix
`GET /streams` (no stream in the answer: the channel is offline, nobody
watches) and handed to `on_viewers` (the show's GPU budget); None when it
cannot be read or chat is down, since an unknown audience must not look like
an absent one.

Channel points: the reward (title and cost from config) is created through
Helix on the first run, because Twitch lets only the app that created a reward
update its redemptions; a redemption is fulfilled when its prompt goes on air
(its `OnAir` names the round it won) and refunded when it is refused, does
not win its round, or won but had not aired by the next round's close.

Tokens: the chatting account's user token and refresh token come from the
tokens file (what the last run had), else from the secrets (`twitch_token`,
`twitch_refresh_token`); with neither, the adapter serves twitchio's OAuth flow
on `oauth_host:oauth_port` and logs the address to open. Refresh tokens rotate,
so every refresh twitchio makes is written to the tokens file (mode 600) at once.

twitchio's surface: a `twitchio.Client` with its `event_*` handlers, not a
`commands.Bot` with Components. Chat commands are the show's own grammar
(`audience.commands`: `!2`, `+2`, `!vote 2`, full-width forms), the same for
every platform, which twitchio's prefix commands cannot spell (a command named
"2"). Only twitchio's documented API is used. It says nothing while it re-dials
a dropped EventSub socket, so whether chat still reaches us is asked of Twitch
every `HEALTH_S` (Get EventSub Subscriptions: is the chat subscription
enabled?); a session Twitch has not delivered to for `watchdog_s` is rebuilt.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import Counter
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, TypeVar

import aiohttp
import twitchio
from cachetools import FIFOCache
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from tenacity import RetryCallState, wait_exponential_jitter
from twitchio import eventsub

from .. import paths
from .. import secrets as secret_store
from ..config import TwitchSettings
from ..viewer import Viewer
from .commands import HELP
from .events import ChatMessage, ChatSurface, PromptEvent, Reply
from .reconnect import stay_connected

if TYPE_CHECKING:
    from typing import Unpack

    from twitchio.authentication import UserTokenPayload, ValidateTokenPayload
    from twitchio.types_.options import ClientOptions

    from ..onair import OnAir
    from ..voting import RoundResult

log = logging.getLogger(__name__)
T = TypeVar("T")

# What the chatting account is asked for; chat needs the first two, the rest are extras
# (those marked "broadcaster" only work when the bot chats as the broadcaster).
SCOPES = (
    "user:read:chat",  # read chat over EventSub
    "user:write:chat",  # send chat through Helix
    "user:bot",  # the bot badge: chat sent with the app token ...
    "channel:bot",  # ... in a channel that allows it (broadcaster; or make the bot a moderator)
    "channel:moderate",  # channel.ban: bans and timeouts (broadcaster)
    "channel:manage:broadcast",  # stream markers (broadcaster or editor)
    "channel:manage:redemptions",  # the channel-point reward: create, fulfil, refund (broadcaster)
)
WINDOW_S = 30.0
RETRY_BUDGET_S = 10.0  # a round message later than this is news nobody needs
VIEWERS_EVERY_S = 30.0  # Twitch refreshes a stream's viewer count about once a minute
RECENT_IDS = 2000  # message ids remembered, oldest forgotten first
HEALTH_S = 15.0  # how often Twitch is asked whether chat still reaches us (two Helix calls)
HEALTHY_S = 60.0  # a session that ran this long before failing starts a fresh back-off
BACKOFF = wait_exponential_jitter(initial=1, max=60, jitter=1)  # 1, 2, 4 ... 60 s, jittered
REWARD_PROMPT = "Your idea for the world: it goes on air next round."
# Answers to one viewer (a refused prompt, a vote for an earlier round's number) are threaded
# replies, at most this share of the chat limit, so the round's own message always has room.
REPLY_SHARE = 0.5
LATE_ANSWER_S = 600.0  # a prompt's screen waits at most 120 s for the sentence model: plenty

# Why Twitch revokes a subscription (EventSub's revocation `status`).
REVOKED = {
    "user_removed": "the account no longer exists or was suspended",
    "authorization_revoked": "the account disconnected the app (authorise again)",
    "version_removed": "Twitch retired this subscription version",
    "chat_user_banned": "the chatting account is banned from the channel",
    "notification_failures_exceeded": "notifications kept failing",
}


def chat_limit(bot_is_moderator: bool) -> RateLimitItem:
    """Twitch's limit on chat a user sends: 20 messages in any 30 s, 100 in a
    channel where the bot is a moderator (held as a moving window, so no 30 s
    ever holds more, whenever Twitch's own window starts)."""
    return RateLimitItemPerSecond(100 if bot_is_moderator else 20, int(WINDOW_S))


def viewer_from(chatter: twitchio.Chatter) -> Viewer:
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
        # `@` pings; only a Twitch login is surely this person's here.
        by = f"@{w.user}" if w.platform == "twitch" else w.user + (" on Discord" if w.platform == "discord" else "")
        parts.append(f"Round {result.round}: \u201c{w.text}\u201d by {by} ({votes}) is on air.")
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


def write_tokens(path: Path, user_id: str, token: str, refresh: str) -> None:
    """The chatting account's tokens, in twitchio's tokens-file format, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(
            {
                user_id: {
                    "user_id": user_id,
                    "token": token,
                    "refresh": refresh,
                    "last_validated": time.strftime("%Y-%m-%dT%H:%M:%S"),
                }
            },
            f,
        )
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)  # never a half-written file: it holds the only live refresh token


class RateLimited(Exception):
    """Helix said 429 and its reset is further away than the retry budget."""

    def __init__(self, wait: float | None) -> None:
        self.wait = wait
        super().__init__("Twitch's rate limit" + (f" resets in {wait:.0f} s" if wait is not None else ""))


@dataclass
class _Redemption:
    payload: twitchio.ChannelPointsRedemptionAdd
    viewer: Viewer
    round: int


class _Client(twitchio.Client):
    """twitchio's client with its events routed to the adapter."""

    def __init__(
        self, chat: TwitchChat, *, client_id: str, client_secret: str | None, **options: Unpack[ClientOptions]
    ) -> None:
        super().__init__(client_id=client_id, client_secret=client_secret, **options)
        self._chat = chat

    async def event_message(self, payload: twitchio.ChatMessage) -> None:
        self._chat.on_message(payload)

    async def event_message_delete(self, payload: twitchio.ChatMessageDelete) -> None:
        self._chat.on_message_delete(payload)

    async def event_chat_clear_user(self, payload: twitchio.ChannelChatClearUserMessages) -> None:
        self._chat.on_cleared(payload.broadcaster, payload.user, "messages cleared")

    async def event_ban(self, payload: twitchio.ChannelBan) -> None:
        self._chat.on_cleared(
            payload.broadcaster,
            payload.user,
            "banned" if payload.permanent else "timed out",
            actor=payload.moderator.name,
        )

    async def event_custom_redemption_add(self, payload: twitchio.ChannelPointsRedemptionAdd) -> None:
        self._chat.on_redemption(payload)

    async def event_subscription_revoked(self, payload: twitchio.SubscriptionRevoked) -> None:
        await self._chat.on_revoked(payload)

    async def event_token_refreshed(self, payload: twitchio.TokenRefreshedPayload) -> None:
        self._chat.save_tokens(payload.user_id, payload.token, payload.refresh_token)

    async def event_websocket_welcome(self, payload: twitchio.WebsocketWelcome) -> None:
        self._chat.welcomes += 1

    async def event_oauth_authorized(self, payload: UserTokenPayload) -> None:
        validated = await self.add_token(payload.access_token, payload.refresh_token)
        self._chat.save_tokens(validated.user_id, payload.access_token, payload.refresh_token)
        self._chat.authorized.set()

    async def event_error(self, payload: twitchio.EventErrorPayload) -> None:
        log.warning("twitch event handler failed: %s", secret_store.redact(repr(payload.error)))


class TwitchChat:
    platform = "twitch"

    def __init__(
        self,
        audience: ChatSurface,
        settings: TwitchSettings,
        secrets: dict[str, str],
        *,
        watchdog_s: float = 120.0,
        health_s: float = HEALTH_S,
        wall: Callable[[], float] = time.time,
        on_viewers: Callable[[int | None], None] | None = None,
        viewers_every_s: float | None = None,
        on_air: Callable[[Callable[[OnAir], object]], Callable[[], None]] | None = None,
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
        self.health_s = health_s
        self.wall = wall  # Ratelimit-Reset is a Unix time
        self.on_viewers = on_viewers
        self.viewers_every_s = viewers_every_s or VIEWERS_EVERY_S
        self.viewers: int | None = None  # as Twitch last said; None: unknown
        self.state = "idle"
        self.welcomes = 0
        self.sent = 0
        self.authorized = asyncio.Event()
        self.send_limit = chat_limit(settings.bot_is_moderator)
        self.reply_limit = RateLimitItemPerSecond(max(1, int(self.send_limit.amount * REPLY_SHARE)), int(WINDOW_S))
        self._answered: FIFOCache[tuple[str, int], None] = FIFOCache(RECENT_IDS)  # (viewer, round): stale vote
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self.client: _Client | None = None
        self.bot_id: str | None = None
        self.broadcaster: twitchio.PartialUser | None = None
        self.via_app = False  # chat goes out with the app token (the bot badge)
        self.reward_id: str | None = None
        self.reward_managed = False  # created by this app, so its redemptions can be fulfilled
        self._session_http: aiohttp.ClientSession | None = None
        self._subscriptions: dict[str, eventsub.SubscriptionPayload] = {}  # by type
        self._rebuild: str | None = None  # why the session must be built again
        self.problem = ""  # what keeps chat down, for the state the console shows
        self._reset_at: float | None = None  # the last 429's Ratelimit-Reset
        self._sent_ids: FIFOCache[str, None] = FIFOCache(RECENT_IDS)  # what the bot sent, to know its echo
        self._seen_ids: FIFOCache[str, None] = FIFOCache(RECENT_IDS)  # Twitch delivers at least once
        self._sending: Counter[str] = Counter()
        self._redemptions: dict[str, _Redemption] = {}
        self._won: dict[int, list[_Redemption]] = {}  # round -> redemptions that won it, until it airs
        self._closing = asyncio.Event()
        self._help_asked = False
        self._now_asked = False
        self._tasks: set[asyncio.Task[object]] = set()
        self._loop = _running_loop()  # the director may publish from another thread
        self._unsubscribe = audience.subscribe(self.on_round)
        self._unsubscribe_on_air = on_air(self.on_air) if on_air is not None else (lambda: None)

    @property
    def tokens_file(self) -> Path:
        return paths.configured(self.settings.tokens_file, paths.twitch_tokens_file())

    # -- lifecycle ---------------------------------------------------------------
    async def run(self) -> None:
        """Stay connected until `close()`; every failure is logged and retried."""
        await stay_connected(
            self._connect,
            closing=self._closing,
            wait=BACKOFF,
            before_sleep=self._retrying,
            on_drop=self._dropped,
            healthy_s=HEALTHY_S,
        )
        self.state = "closed"

    async def _connect(self) -> None:
        self.state = "connecting"
        try:
            await self._session()
        finally:
            await self._teardown()

    @staticmethod
    def _dropped(e: Exception) -> None:
        log.warning("twitch chat stopped: %s; reconnecting", secret_store.redact(str(e) or repr(e)))

    def _retrying(self, retry: RetryCallState) -> None:
        e = retry.outcome.exception() if retry.outcome is not None else None
        wait = retry.next_action.sleep if retry.next_action is not None else 0.0
        log.warning("twitch chat failed, retrying in %.0f s: %s", wait, secret_store.redact(str(e) or repr(e)))
        log.debug("twitch chat failure", exc_info=e)
        self.state = f"retrying ({self.problem})" if self.problem else "retrying"

    async def close(self) -> None:
        """Stop and disconnect. Safe to call twice."""
        self._closing.set()
        self._unsubscribe()
        self._unsubscribe_on_air()
        for task in list(self._tasks):
            task.cancel()
        await self._teardown()
        self.state = "closed"

    async def _teardown(self) -> None:
        self._report_viewers(None)  # chat down: the audience is unknown, not gone
        client, self.client = self.client, None
        if client is not None:
            try:
                await client.close(save_tokens=False)
            except Exception as e:
                log.debug("closing the twitch client: %s", e)
        http, self._session_http = self._session_http, None
        if http is not None:
            await http.close()

    def _http_session(self) -> aiohttp.ClientSession:
        """twitchio's HTTP session, with Helix's rate-limit reset noted from every 429."""
        trace = aiohttp.TraceConfig()

        async def on_end(
            _session: aiohttp.ClientSession, _ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams
        ) -> None:
            if params.response.status == 429:
                try:
                    self._reset_at = float(params.response.headers["Ratelimit-Reset"])
                except (KeyError, ValueError):
                    self._reset_at = None

        trace.on_request_end.append(on_end)
        return aiohttp.ClientSession(trace_configs=[trace])

    async def _session(self) -> None:
        s = self.settings
        self._rebuild = None
        self._session_http = self._http_session()
        client = self.client = _Client(
            self,
            client_id=s.client_id,
            client_secret=self.client_secret,
            redirect_uri=f"http://{s.oauth_host}:{s.oauth_port}/oauth/callback",
            scopes=twitchio.Scopes(list(SCOPES)),
            adapter=twitchio.web.AiohttpAdapter(host=s.oauth_host, port=s.oauth_port),
            fetch_client_user=False,
            session=self._session_http,
        )
        # 1. an app token (client credentials), or the user token standing in for one
        stand_in = None if self.client_secret else (self.token or (self._saved_tokens() or ("",))[0] or None)
        await client.login(token=stand_in, load_tokens=False, save_tokens=False)
        # 2. the chatting account's user token
        validated = await self._user_token(client)
        if validated.user_id is None:  # an app token: no account to chat as
            raise RuntimeError("the Twitch token is an app token, not an account's: authorise again (see the README)")
        self.bot_id = validated.user_id
        scopes = set(validated.scopes)
        missing = {"user:read:chat", "user:write:chat"} - scopes
        if missing:
            raise RuntimeError(f"the Twitch token lacks {', '.join(sorted(missing))}: authorise again (see the README)")
        # 3. the channel
        if validated.login and validated.login.lower() == s.channel.lower():
            self.broadcaster = client.create_partialuser(validated.user_id, validated.login)
        else:
            users = await client.fetch_users(logins=[s.channel])
            if not users:
                raise RuntimeError(f"there is no Twitch channel named {s.channel!r}")
            self.broadcaster = users[0]
        is_broadcaster = self.broadcaster.id == self.bot_id
        # 4. how chat goes out: the app token shows the bot badge, where Twitch allows it
        self.via_app = (
            bool(self.client_secret)
            and "user:bot" in scopes
            and (s.bot_is_moderator or (is_broadcaster and "channel:bot" in scopes))
        )
        log.info(
            "twitch chat goes out %s",
            "with the app token (bot badge)" if self.via_app else "with the user token (no bot badge: see the README)",
        )
        # 5. subscriptions (twitchio opens the EventSub websocket on the first)
        b, me = self.broadcaster.id, self.bot_id
        wanted: list[eventsub.SubscriptionPayload] = [
            eventsub.ChatMessageSubscription(broadcaster_user_id=b, user_id=me),
            eventsub.ChatMessageDeleteSubscription(broadcaster_user_id=b, user_id=me),
            eventsub.ChatClearUserMessagesSubscription(broadcaster_user_id=b, user_id=me),
        ]
        if is_broadcaster and "channel:moderate" in scopes:
            wanted.append(eventsub.ChannelBanSubscription(broadcaster_user_id=b))
        if s.reward:
            self.reward_id = await self._reward(scopes, is_broadcaster)
            if self.reward_id:
                wanted.append(
                    eventsub.ChannelPointsRedeemAddSubscription(broadcaster_user_id=b, reward_id=self.reward_id)
                )
        self._subscriptions = {}
        for sub in wanted:
            await client.subscribe_websocket(sub, token_for=me)
            self._subscriptions[_type_of(sub)] = sub
        self.state = "live"
        self.problem = ""
        log.info("twitch chat live in #%s as %s", s.channel, validated.login)
        if self.on_viewers is not None:
            self._spawn(self._watch_viewers(client, self.broadcaster))
        # 6. watch: twitchio re-dials a dropped socket by itself; Twitch's own word on whether chat
        # still reaches us decides when the session must be built again
        down_since: float | None = None
        tick = min(1.0, self.health_s)
        next_check = time.monotonic() + self.health_s
        while not self._closing.is_set():
            try:
                await asyncio.wait_for(self._closing.wait(), tick)
            except TimeoutError:
                pass
            if self._rebuild:
                raise RuntimeError(self._rebuild)
            if self._closing.is_set() or time.monotonic() < next_check:
                continue
            delivering = await self._delivering(client)
            next_check = time.monotonic() + self.health_s
            if delivering:
                down_since = None
                if self.state == "reconnecting":
                    self.state = "live"
            else:
                self.state = "reconnecting"
                down_since = down_since or time.monotonic()
                if time.monotonic() - down_since > self.watchdog_s:
                    raise RuntimeError(f"no EventSub connection for {self.watchdog_s:.0f} s")

    async def _watch_viewers(self, client: _Client, broadcaster: twitchio.PartialUser) -> None:
        """The channel's viewer count, every `viewers_every_s`, while this session lives."""
        while not self._closing.is_set() and self.client is client:
            try:
                streams = await self._helix(
                    lambda: _first(client.fetch_streams(user_ids=[broadcaster.id], first=1, max_results=1))
                )
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.info("the Twitch viewer count cannot be read: %s", secret_store.redact(str(e) or repr(e)))
                count = None
            else:
                count = streams.viewer_count if streams is not None else 0  # offline: nobody watches
            if self.client is client:
                self._report_viewers(count)
            try:
                await asyncio.wait_for(self._closing.wait(), self.viewers_every_s)
            except TimeoutError:
                pass

    def _report_viewers(self, count: int | None) -> None:
        if count != self.viewers:
            log.debug("twitch viewers: %s", "unknown" if count is None else count)
        self.viewers = count
        if self.on_viewers is not None:
            try:
                self.on_viewers(count)
            except Exception:  # the show's side must not end chat
                log.exception("the viewer count could not be handed on")

    async def _delivering(self, client: twitchio.Client) -> bool:
        """Whether Twitch holds an enabled chat subscription for the bot: only then does chat reach
        us (a dropped socket's subscriptions are disabled at once)."""
        try:
            subs = await client.fetch_eventsub_subscriptions(token_for=self.bot_id, type="channel.chat.message")
            async for sub in subs.subscriptions:
                if sub.status == "enabled":
                    return True
        except Exception as e:  # Helix out of reach: EventSub most likely too
            log.debug("twitch subscription check failed: %s", secret_store.redact(str(e) or repr(e)))
        return False

    # -- tokens ------------------------------------------------------------------------
    async def _user_token(self, client: _Client) -> ValidateTokenPayload:
        """The chatting account's token, validated: the saved one, the secrets', or a new one."""
        saved = self._saved_tokens()
        if saved is not None:
            try:
                validated = await client.add_token(*saved)
                if not self.settings.bot or (validated.login or "").lower() == self.settings.bot.lower():
                    return validated
                if validated.user_id is not None:
                    await client.remove_token(validated.user_id)
                log.warning(
                    "the saved Twitch token belongs to %s, not to twitch.bot %s; not using it",
                    validated.login,
                    self.settings.bot,
                )
            except twitchio.HTTPException as e:
                if e.status >= 500:
                    raise
                log.warning(
                    "the saved Twitch token no longer works (%s)%s",
                    e.status,
                    "; trying the one in the secrets" if self.token else "",
                )
        if self.token:
            validated = await client.add_token(self.token, self.refresh)
            if self.settings.bot and (validated.login or "").lower() != self.settings.bot.lower():
                raise RuntimeError(
                    f"the Twitch token belongs to {validated.login!r}, not to twitch.bot {self.settings.bot!r}"
                )
            return validated
        # 0. nothing yet: twitchio's own OAuth flow, once
        s = self.settings
        await client.adapter.run()
        log.warning(
            "Twitch needs your permission: open http://%s:%s/oauth?scopes=%s in a browser, "
            "logged in as the account that should chat.",
            s.oauth_host,
            s.oauth_port,
            "+".join(SCOPES),
        )
        self.state = "needs_auth"
        await self.authorized.wait()
        user_id = next(iter(client.tokens))
        return await client.http.validate_token(client.tokens[user_id]["token"])

    def _saved_tokens(self) -> tuple[str, str] | None:
        try:
            data = json.loads(self.tokens_file.read_text(encoding="utf-8"))
            entry = next(iter(data.values()))
            token, refresh = str(entry["token"]), str(entry["refresh"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, StopIteration, AttributeError, TypeError):
            log.warning("%s cannot be read; ignoring it", self.tokens_file)
            return None
        secret_store.register(token)
        secret_store.register(refresh)
        return token, refresh

    def save_tokens(self, user_id: str | None, token: str, refresh: str) -> None:
        """twitchio refreshed (or the OAuth flow made) a token: save it now, the old refresh token is spent."""
        secret_store.register(token)
        secret_store.register(refresh)
        if not user_id:
            return
        try:
            write_tokens(self.tokens_file, str(user_id), token, refresh)
            log.info("saved the refreshed Twitch token to %s", self.tokens_file)
        except OSError as e:
            log.error(
                "the refreshed Twitch token cannot be saved to %s (%s): a restart will need a new authorisation",
                self.tokens_file,
                e.strerror or e,
            )

    # -- revocation ----------------------------------------------------------------------
    async def on_revoked(self, payload: twitchio.SubscriptionRevoked) -> None:
        """Twitch revoked a subscription: say why, and ask for it again at once."""
        kind = str(payload.type)
        reason = getattr(payload.reason, "value", str(payload.reason))
        why = REVOKED.get(reason, reason)
        log.warning("Twitch revoked the %s subscription: %s (%s); subscribing again", kind, why, reason)
        self.state = f"resubscribing ({reason})"
        sub, client = self._subscriptions.get(kind), self.client
        if sub is None or client is None:
            return
        try:
            await client.subscribe_websocket(sub, token_for=self.bot_id)
        except Exception as e:
            # The account or its authorisation is gone: build again, with the backoff, until it is back.
            log.error(
                "Twitch chat is deaf: the %s subscription cannot be renewed (%s): %s",
                kind,
                reason,
                secret_store.redact(str(e)),
            )
            self._rebuild = f"{kind} revoked: {reason}"
            self.problem = f"revoked: {reason}"
            self.state = f"revoked ({reason})"
            return
        log.info("subscribed to %s again", kind)
        self.state = "live"

    # -- in ------------------------------------------------------------------------
    def _ours(self, broadcaster: twitchio.PartialUser) -> bool:
        return self.broadcaster is not None and str(broadcaster.id) == self.broadcaster.id

    def on_message(self, payload: twitchio.ChatMessage) -> None:
        if not self._ours(payload.broadcaster):
            return
        if payload.source_broadcaster is not None and not self._ours(payload.source_broadcaster):
            return  # Shared Chat: mirrored from another channel, whose viewers vote there
        if payload.id in self._seen_ids:
            return  # Twitch delivers at least once
        self._seen_ids[payload.id] = None
        if payload.chatter.id == self.bot_id and (
            payload.id in self._sent_ids or " ".join(payload.text.split()) in self._sending
        ):
            return  # what the bot itself sent (the echo can come before Helix answers)
        viewer = viewer_from(payload.chatter)
        reply = self.audience.handle(ChatMessage(viewer, payload.text, payload.id))
        if reply.kind == "help":
            self._help_asked = True
        elif reply.kind == "now":
            self._now_asked = True
        elif reply.kind == "blocked":
            self._spawn(self.reply_to(payload.id, reply.text))
        elif reply.screening:  # "being checked" is not said here; a refusal after the screen is
            self._spawn(self._answer_screened(payload.id, reply))
        elif reply.kind == "unknown" and reply.number is not None and (viewer.key, reply.round) not in self._answered:
            self._answered[(viewer.key, reply.round)] = None  # a stale vote: told once per round
            self._spawn(self.reply_to(payload.id, reply.text))

    async def _answer_screened(self, message_id: str, reply: Reply) -> None:
        final = await self.audience.settle(reply, timeout=LATE_ANSWER_S)
        if final.kind == "blocked":
            await self.reply_to(message_id, final.text)

    def on_message_delete(self, payload: twitchio.ChatMessageDelete) -> None:
        if self._ours(payload.broadcaster):
            self.audience.retract_message("twitch", payload.message_id, actor="twitch:moderator")

    def on_cleared(
        self, broadcaster: twitchio.PartialUser, user: twitchio.PartialUser, why: str, *, actor: str | None = None
    ) -> None:
        """A viewer's messages were cleared (a ban or a timeout does that too): out of the ballot."""
        if not self._ours(broadcaster):
            return
        viewer = Viewer("twitch", user.name or str(user.id), frozenset({"viewer"}), str(user.id))
        self.audience.retract_viewer(viewer, actor=f"twitch:{actor or 'moderator'}", why=why)

    def on_redemption(self, payload: twitchio.ChannelPointsRedemptionAdd) -> None:
        if not self._ours(payload.broadcaster) or payload.reward.id != self.reward_id:
            return
        viewer = Viewer(
            "twitch", payload.user.name or str(payload.user.id), frozenset({"viewer"}), str(payload.user.id)
        )
        reply = self.audience.handle(PromptEvent(viewer, payload.user_input, priority=True, id=payload.id))
        if reply.kind in ("new", "pooled"):
            self._redemptions[payload.id] = _Redemption(payload, viewer, reply.round)
        else:
            self._spawn(self._settle(payload, on_air=False))

    async def _settle(self, redemption: twitchio.ChannelPointsRedemptionAdd, *, on_air: bool) -> None:
        """Fulfil a redemption that went on air, refund one that did not."""
        if not self.reward_managed or self.bot_id is None:
            return  # the streamer's reward queue keeps it (see `_reward`)
        call = redemption.fulfill if on_air else redemption.refund
        bot_id = self.bot_id
        try:
            await self._helix(lambda: call(token_for=bot_id))
        except Exception as e:
            log.warning(
                "the channel-point redemption could not be %s: %s",
                "fulfilled" if on_air else "refunded",
                secret_store.redact(str(e)),
            )

    async def _reward(self, scopes: set[str], is_broadcaster: bool) -> str | None:
        """The configured reward's id, created on the first run; None when channel points are off."""
        s, b = self.settings, self.broadcaster
        assert b is not None
        self.reward_managed = False
        if not is_broadcaster:
            log.warning(
                "twitch.reward is set, but channel points need the broadcaster's own token "
                '(twitch.bot = ""): the reward is off'
            )
            return None
        if "channel:manage:redemptions" not in scopes:
            log.warning(
                "twitch.reward is set, but the token lacks channel:manage:redemptions: authorise again "
                "(see the README); the reward is off"
            )
            return None
        title = s.reward.strip().lower()
        mine = [r for r in await b.fetch_custom_rewards(manageable=True) if r.title.strip().lower() == title]
        if mine:
            self.reward_managed = True
            return mine[0].id
        try:
            created = await b.create_custom_reward(s.reward.strip(), s.reward_cost, prompt=REWARD_PROMPT)
        except twitchio.HTTPException as e:
            if e.status != 400:
                raise
            others = [r for r in await b.fetch_custom_rewards() if r.title.strip().lower() == title]
            if not others:
                log.warning(
                    "the channel-point reward %r cannot be created: %s", s.reward, e.extra.get("message", e.status)
                )
                return None
            log.warning(
                "The channel-point reward %r was made outside streambot, and Twitch lets only the app that created "
                "a reward fulfil or refund its redemptions: they become prompts but stay in your reward queue. "
                "Delete it on the dashboard (streambot then creates its own) or choose another twitch.reward.",
                s.reward,
            )
            return others[0].id
        log.info("created the channel-point reward %r (%d points)", created.title, created.cost)
        self.reward_managed = True
        return created.id

    # -- out -----------------------------------------------------------------------
    def on_round(self, result: RoundResult) -> None:
        """A round was decided: one chat message; its redemptions that lost are refunded
        (one that won waits for its `OnAir`)."""
        self._settle_redemptions(result)
        if not self.settings.reply:
            return
        text = round_message(
            result,
            help_asked=self._help_asked,
            now_text=self.audience.now_text() if self._now_asked else None,
        )
        self._help_asked = self._now_asked = False
        if text:
            self._spawn(self.send(text))

    def _settle_redemptions(self, result: RoundResult) -> None:
        # a winner of an earlier round that has not aired by now never will
        for round_no in [n for n in self._won if n < result.round]:
            for r in self._won.pop(round_no):
                self._spawn(self._settle(r.payload, on_air=False))
        w = result.winner
        won = next((c for c in result.candidates if w is not None and c.text == w.text), None)
        for rid, r in list(self._redemptions.items()):
            if r.round > result.round:
                continue
            del self._redemptions[rid]
            winning = (
                r.round == result.round
                and w is not None
                and w.platform == "twitch"
                and (w.user == r.viewer.name or (won is not None and r.viewer.name in won.users))
            )
            if winning:
                self._won.setdefault(result.round, []).append(r)
            else:
                self._spawn(self._settle(r.payload, on_air=False))

    def on_air(self, entry: OnAir) -> None:
        """The director put something on air: a stream marker for a prompt (a winner or a
        forced one, not the world's own story), and the redemptions of the round it won fulfilled."""
        loop = self._loop
        if loop is not None and _running_loop() is not loop:
            loop.call_soon_threadsafe(self.on_air, entry)
            return
        if entry.round is not None:
            for r in self._won.pop(entry.round, []):
                self._spawn(self._settle(r.payload, on_air=True))
        if self.settings.markers and entry.source != "story":
            self._spawn(self._marker(entry.text))

    def _spawn(self, coro: Awaitable[object]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _helix(self, call: Callable[[], Awaitable[T]]) -> T:
        """One Helix call. A 429 is waited out until Twitch's `Ratelimit-Reset` and tried once
        more, when that is within `RETRY_BUDGET_S`; otherwise `RateLimited`."""
        try:
            return await call()
        except twitchio.HTTPException as e:
            if e.status != 429:
                raise
            wait = None if self._reset_at is None else max(0.0, self._reset_at - self.wall())
            if wait is None or wait > RETRY_BUDGET_S:
                raise RateLimited(wait) from None
        log.info("twitch rate limit: retrying in %.1f s", wait)
        await asyncio.sleep(wait)  # Twitch's own pacing; close() cancels it
        try:
            return await call()
        except twitchio.HTTPException as e:
            if e.status == 429:
                raise RateLimited(None) from None
            raise

    async def reply_to(self, message_id: str, text: str) -> bool:
        """Answer one viewer's message in its thread, within the replies' share of the limit."""
        if not self.settings.reply:  # the streamer asked for a quiet bot
            return False
        if self.client is None or not self._limiter.hit(self.reply_limit, "replies"):
            log.info("twitch reply to a viewer skipped: rate limit")
            return False
        return await self.send(text, reply_to=message_id)

    async def send(self, text: str, *, reply_to: str | None = None) -> bool:
        """Send one chat message (a reply in `reply_to`'s thread) if connected and inside the rate limit."""
        client, broadcaster, bot_id = self.client, self.broadcaster, self.bot_id
        if client is None or broadcaster is None or bot_id is None:
            return False
        if not self._limiter.hit(self.send_limit, "chat"):
            log.info("twitch chat reply skipped: rate limit")
            return False
        text = _fit(text)
        self._sending[text] += 1
        try:
            sent = await self._send(broadcaster, bot_id, text, reply_to)
        except RateLimited as e:
            log.warning("twitch chat reply dropped: %s", e)
            return False
        except Exception as e:
            log.warning("twitch chat reply failed: %s", secret_store.redact(str(e)))
            return False
        finally:
            self._sending[text] -= 1
            if self._sending[text] <= 0:
                del self._sending[text]
        self._sent_ids[sent.id] = None
        self.sent += 1
        return True

    async def _send(
        self, broadcaster: twitchio.PartialUser, bot_id: str, text: str, reply_to: str | None = None
    ) -> twitchio.SentMessage:
        if self.via_app:
            try:
                return await self._helix(
                    lambda: broadcaster.send_message(text, sender=bot_id, token_for=None, reply_to_message_id=reply_to)
                )
            except twitchio.HTTPException as e:
                if e.status not in (401, 403):
                    raise
                # The bot lost moderator status, or user:bot / channel:bot was withdrawn.
                log.warning(
                    "Twitch refused chat sent with the app token (%s); sending with the user token, "
                    "without the bot badge",
                    e.status,
                )
                self.via_app = False
        return await self._helix(
            lambda: broadcaster.send_message(text, sender=bot_id, token_for=bot_id, reply_to_message_id=reply_to)
        )

    async def _marker(self, text: str) -> None:
        broadcaster, bot_id = self.broadcaster, self.bot_id
        if self.client is None or broadcaster is None or bot_id is None:
            return
        try:
            await self._helix(lambda: broadcaster.create_stream_marker(token_for=bot_id, description=text[:140]))
        except Exception as e:  # e.g. not live: markers only exist on a live stream
            log.info("no stream marker: %s", secret_store.redact(str(e)))


async def _first(items: AsyncIterable[T]) -> T | None:
    """The first item of one of twitchio's paginated iterators, or None."""
    async for item in items:
        return item
    return None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _type_of(sub: eventsub.SubscriptionPayload) -> str:
    return str(getattr(sub.type, "value", sub.type))
