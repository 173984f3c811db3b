"""The chat platforms the show can take prompts from, as `streambot.registry.CHATS` names them.

Each is a small class with three steps, in the order the show starts:
`wanted` (is it turned on), `check` (are its settings and secrets usable:
one sentence and no connection when not) and `create` (the adapter, given
what it needs through a `ChatContext`). The adapter modules (twitchio,
discord.py) are imported only by `create`, so checking costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..config import ConfigError, Settings

if TYPE_CHECKING:
    from ..onair import Latest, OnAir, ShowState
    from ..store import Store
    from .discord_bot import DiscordBot
    from .events import ChatSurface
    from .local import LocalChat
    from .twitch import TwitchChat
    from .voice import VoiceService


@dataclass
class ChatContext:
    """What an adapter is handed when the show builds it."""

    audience: ChatSurface
    settings: Settings
    secrets: dict[str, str] = field(default_factory=dict)
    store: Store | None = None  # the timeline
    voice: VoiceService | None = None  # when [voice] is on
    on_viewers: Callable[[int | None], None] | None = None  # the GPU budget hears how many watch
    chat_source: str | None = None  # "-" stdin, a file path, or None
    on_line: Callable[[str, str], None] | None = None  # a line typed by the streamer
    states: Latest[ShowState] | None = None  # the show's published state (Discord's round messages follow it)
    on_air: Callable[[Callable[[OnAir], object]], Callable[[], None]] | None = None  # the director's subscribe (OnAir)


class Twitch:
    @staticmethod
    def wanted(settings: Settings, chat_source: str | None) -> bool:
        return settings.twitch.enabled

    @staticmethod
    def check(settings: Settings, secrets: dict[str, str]) -> None:
        if not settings.twitch.client_id:
            raise ConfigError(
                "[twitch] client_id is empty: register an application (see the README), "
                "or set [twitch] enabled = false."
            )
        if not settings.twitch.channel:
            raise ConfigError("[twitch] channel is empty: name the broadcaster's login.")

    @staticmethod
    def create(ctx: ChatContext) -> TwitchChat:
        from .twitch import TwitchChat

        return TwitchChat(ctx.audience, ctx.settings.twitch, ctx.secrets, on_viewers=ctx.on_viewers, on_air=ctx.on_air)


class Discord:
    @staticmethod
    def wanted(settings: Settings, chat_source: str | None) -> bool:
        return settings.discord.enabled

    @staticmethod
    def check(settings: Settings, secrets: dict[str, str]) -> None:
        if not secrets.get("discord_token"):
            raise ConfigError(
                "No Discord bot token is set: put it in STREAMBOT_DISCORD_TOKEN or as discord_token "
                "in the secrets file, or set [discord] enabled = false."
            )

    @staticmethod
    def create(ctx: ChatContext) -> DiscordBot:
        from .discord_bot import DiscordBot

        return DiscordBot(
            ctx.audience,
            ctx.settings.discord,
            ctx.secrets.get("discord_token", ""),
            store=ctx.store,
            voice=ctx.voice,
            states=ctx.states,
        )


class Terminal:
    @staticmethod
    def wanted(settings: Settings, chat_source: str | None) -> bool:
        return chat_source is not None

    @staticmethod
    def check(settings: Settings, secrets: dict[str, str]) -> None:
        """A followed file may not exist yet (it is followed until it does); stdin is always there."""

    @staticmethod
    def create(ctx: ChatContext) -> LocalChat:
        from .local import LocalChat

        assert ctx.on_line is not None and ctx.chat_source is not None
        return LocalChat(ctx.on_line, source=ctx.chat_source)
