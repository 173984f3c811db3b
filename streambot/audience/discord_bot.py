"""Discord: slash commands, vote buttons, a round message per round.

`/prompt idea`, `/vote number`, `/now` and, for members holding a role named
in `discord.moderator_roles` (or Manage Server), `/mod skip|lock|unlock|ban|unban`.
Every configured channel (in as many servers as you like) gets one message
per round listing the numbered candidates with one button each; it is edited
as votes come in (at most every `update_s`) and closed with the winner.
Buttons carry their round in their custom id, so a click on an old round's
message never lands in a newer round.

discord.py resumes the gateway session and reconnects by itself;
`DiscordBot.run` additionally restarts the client with a backoff if it ever
stops, and never raises.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from .. import secrets as secret_store
from ..config import DiscordSettings
from .events import Audience, ModEvent, PromptEvent, Reply, Viewer, VoteEvent

log = logging.getLogger(__name__)

CUSTOM_ID = r"streambot:vote:(?P<round>[0-9]+):(?P<number>[0-9]+)"


class VoteButton(discord.ui.DynamicItem[discord.ui.Button], template=CUSTOM_ID):
    """One candidate's button; stateless, so it keeps working across restarts."""

    def __init__(self, round_no: int, number: int, label: str | None = None) -> None:
        super().__init__(discord.ui.Button(
            label=label or f"#{number}", style=discord.ButtonStyle.primary,
            custom_id=f"streambot:vote:{round_no}:{number}",
        ))
        self.round_no = round_no
        self.number = number

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button, match: Any) -> VoteButton:
        return cls(int(match["round"]), int(match["number"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        bot: DiscordBot | None = getattr(interaction.client, "streambot", None)
        if bot is None:
            return
        await bot.on_button(interaction, self.round_no, self.number)


def viewer_from(user: discord.abc.User, moderator_roles: list[str]) -> Viewer:
    roles = {"viewer"}
    if isinstance(user, discord.Member):
        names = {r.name.lower() for r in user.roles}
        perms = user.guild_permissions
        if names & {m.lower() for m in moderator_roles} or perms.manage_guild or perms.administrator:
            roles.add("moderator")
        if user.guild.owner_id == user.id:
            roles.add("broadcaster")
        if user.premium_since is not None:
            roles.add("subscriber")  # a server booster
    return Viewer("discord", user.name, frozenset(roles), str(user.id))


def render_round(audience: Audience) -> tuple[str, list[tuple[int, str]]]:
    """The round message's text and its buttons (number, label)."""
    s = audience.snapshot()
    if s.mode == "anarchy":
        return "**Anarchy mode**: every `/prompt` goes straight on air.", []
    lines = [f"**Round {s.round}** \u2014 {s.time_left:.0f} s left" + (" \u2014 prompts locked" if s.locked else "")]
    buttons = []
    for c in s.candidates:
        votes = f"{c.votes:g} vote{'s' if c.votes != 1 else ''}"
        lines.append(f"**#{c.number}** {discord.utils.escape_markdown(c.text)} \u2014 {votes}")
        buttons.append((c.number, f"#{c.number} {c.text}"[:80]))
    if not s.candidates:
        lines.append("No ideas yet: `/prompt` one!")
    lines.append("Vote with a button or `/vote`; suggest with `/prompt`.")
    return "\n".join(lines), buttons


def render_result(audience: Audience, round_no: int) -> str:
    last = audience.engine.last
    if last is None or last.round != round_no:
        return f"**Round {round_no}** is over."
    if last.winner is None:
        return f"**Round {round_no}** is over: {'skipped' if last.skipped else 'no winner'}."
    w = last.winner
    return (f"**Round {round_no}** \u2014 on air: **{discord.utils.escape_markdown(w.text)}** "
            f"by {w.user} ({w.votes:g} votes)")


class _Client(commands.Bot):  # a Bot for its Cogs (voice); slash commands only, no prefix commands
    def __init__(self, bot: DiscordBot, **kwargs: Any) -> None:
        super().__init__(command_prefix=commands.when_mentioned, help_command=None, **kwargs)
        self.streambot = bot
        bot.add_commands(self.tree)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(VoteButton)
        if self.streambot.voice is not None:
            from .discord_voice import add_voice

            await add_voice(self, self.streambot.voice, self.streambot.voice.settings, self.streambot.settings)
        await self.streambot.sync_commands(self)

    async def on_ready(self) -> None:
        log.info("discord bot ready as %s in %d server(s)", self.user, len(self.guilds))
        self.streambot.state = "live"

    async def on_resumed(self) -> None:
        self.streambot.resumes += 1
        self.streambot.state = "live"

    async def on_disconnect(self) -> None:
        self.streambot.state = "reconnecting"


class _RoundMessage:
    __slots__ = ("round", "message", "text", "buttons")

    def __init__(self, round_no: int, message: discord.Message, text: str, buttons: list) -> None:
        self.round = round_no
        self.message = message
        self.text = text
        self.buttons = buttons


class DiscordBot:
    platform = "discord"

    def __init__(self, audience: Audience, settings: DiscordSettings, token: str, voice: Any = None) -> None:
        if not token:
            raise ValueError("no Discord bot token: set STREAMBOT_DISCORD_TOKEN (see the README).")
        secret_store.register(token)
        self.audience = audience
        self.settings = settings
        self.token = token
        self.voice = voice  # a VoiceService: /listen, /leave and voice messages
        self.state = "idle"
        self.resumes = 0
        self.client: _Client | None = None
        self._closing = asyncio.Event()
        self._rounds: dict[int, _RoundMessage] = {}

    # -- lifecycle ---------------------------------------------------------------
    def make_client(self) -> _Client:
        intents = discord.Intents.none()
        intents.guilds = True  # channels and roles; no privileged intents needed
        if self.voice is not None:
            from .discord_voice import voice_intents

            voice_intents(intents, self.voice.settings)
        return _Client(self, intents=intents)

    async def run(self) -> None:
        """Stay connected until `close()`; a failure is logged and retried."""
        delay = 2.0
        while not self._closing.is_set():
            self.state = "connecting"
            client = self.client = self.make_client()
            updater = asyncio.create_task(self._update_loop(client))
            started = time.monotonic()
            try:
                await client.start(self.token, reconnect=True)
            except asyncio.CancelledError:
                raise
            except discord.LoginFailure:
                log.error("discord rejected the bot token; retrying in 5 minutes")
                delay = 300.0
            except Exception as e:
                log.warning("discord bot stopped: %s", secret_store.redact(str(e) or repr(e)))
                log.debug("discord bot failure", exc_info=True)
            finally:
                updater.cancel()
                if not client.is_closed():
                    await client.close()
                self._rounds.clear()
            if self._closing.is_set():
                break
            self.state = "retrying"
            if time.monotonic() - started > 60 and delay < 300:
                delay = 2.0
            try:
                await asyncio.wait_for(self._closing.wait(), delay * random.uniform(0.8, 1.2))
            except TimeoutError:
                pass
            delay = min(delay * 2, 300.0)
        self.state = "closed"

    async def close(self) -> None:
        """Stop and disconnect. Safe to call twice."""
        self._closing.set()
        if self.client is not None and not self.client.is_closed():
            await self.client.close()
        self.state = "closed"

    async def sync_commands(self, client: _Client) -> None:
        try:
            if self.settings.guilds:
                for gid in self.settings.guilds:
                    guild = discord.Object(id=gid)
                    client.tree.copy_global_to(guild=guild)
                    await client.tree.sync(guild=guild)
            else:
                await client.tree.sync()
        except discord.HTTPException as e:  # the buttons still work; say why commands don't
            log.warning("discord slash commands not synced: %s", e)

    # -- commands ------------------------------------------------------------------
    def add_commands(self, tree: app_commands.CommandTree) -> None:
        @tree.command(name="prompt", description="Suggest what happens next in the world")
        @app_commands.describe(idea="What should happen?")
        async def prompt(interaction: discord.Interaction, idea: app_commands.Range[str, 1, 300]) -> None:
            await self._answer(interaction, self.audience.handle(PromptEvent(self.viewer(interaction), idea)))

        @tree.command(name="vote", description="Vote for a candidate by its number")
        @app_commands.describe(number="The candidate's number")
        async def vote(interaction: discord.Interaction, number: app_commands.Range[int, 1, 9999]) -> None:
            await self._answer(interaction, self.audience.handle(VoteEvent(self.viewer(interaction), number)))

        @tree.command(name="now", description="What is on air, and how long this round has left")
        async def now(interaction: discord.Interaction) -> None:
            await interaction.response.send_message(self.audience.now_text(), ephemeral=True)

        @tree.command(name="mod", description="Moderators: skip the round, lock prompts, ban or unban a viewer")
        @app_commands.describe(action="What to do", user="The viewer (for ban and unban)")
        async def mod(interaction: discord.Interaction,
                      action: Literal["skip", "lock", "unlock", "ban", "unban"], user: str = "") -> None:
            event = ModEvent(self.viewer(interaction), action, user.strip().lstrip("@").lower())
            reply = self.audience.handle(event)
            if reply.kind == "denied":
                reply = Reply("denied", "Only moderators can do that.")
            await self._answer(interaction, reply)

    def viewer(self, interaction: discord.Interaction) -> Viewer:
        return viewer_from(interaction.user, self.settings.moderator_roles)

    async def on_button(self, interaction: discord.Interaction, round_no: int, number: int) -> None:
        reply = self.audience.handle(VoteEvent(self.viewer(interaction), number, round=round_no))
        await self._answer(interaction, reply)

    @staticmethod
    async def _answer(interaction: discord.Interaction, reply: Reply) -> None:
        try:
            await interaction.response.send_message(reply.text or "OK.", ephemeral=True)
        except discord.HTTPException as e:
            log.info("discord reply failed: %s", e)

    # -- round messages --------------------------------------------------------------
    async def _update_loop(self, client: _Client) -> None:
        await client.wait_until_ready()
        while not client.is_closed():
            try:
                await self.update_round_messages(client)
            except Exception:  # one bad edit must not end the updates
                log.exception("discord round message update failed")
            await asyncio.sleep(self.settings.update_s)

    async def update_round_messages(self, client: discord.Client) -> None:
        """Post, edit or close each channel's round message to match the round."""
        text, buttons = render_round(self.audience)
        round_no = self.audience.snapshot().round
        for channel_id in self.settings.channels:
            current = self._rounds.get(channel_id)
            try:
                if current is not None and current.round != round_no:
                    await current.message.edit(content=render_result(self.audience, current.round), view=None)
                    current = None
                if current is None:
                    channel = client.get_channel(channel_id) or await client.fetch_channel(channel_id)
                    message = await channel.send(text, view=self._view(round_no, buttons))  # type: ignore[union-attr]
                    self._rounds[channel_id] = _RoundMessage(round_no, message, text, buttons)
                elif current.text != text or current.buttons != buttons:
                    await current.message.edit(content=text, view=self._view(round_no, buttons))
                    current.text, current.buttons = text, buttons
            except discord.HTTPException as e:
                log.warning("discord channel %s: round message not updated: %s", channel_id, e)
                self._rounds.pop(channel_id, None)  # post afresh next time

    @staticmethod
    def _view(round_no: int, buttons: list[tuple[int, str]]) -> discord.ui.View | None:
        if not buttons:
            return None
        view = discord.ui.View(timeout=None)
        for number, label in buttons[:25]:
            view.add_item(VoteButton(round_no, number, label))
        return view
