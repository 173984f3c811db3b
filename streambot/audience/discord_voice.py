"""Discord voice commands: `/listen`, `/leave`, and voice messages.

Two Cogs the Discord bot loads when voice is on.

`VoiceCommands`: `/listen` joins the voice channel named in `[voice]
discord_channels` for that server, or the moderator's own, and hears every
speaker through `discord_receive.VoiceSink` (DAVE included); `/leave` leaves.
Like `/mod`, both are registered only in the servers listed in
`discord.guilds` (a global command would reach every server that added the
bot), shown by Discord to members who may Manage Messages, and acted on for
moderators of those servers; with no server listed there is no `/listen`.
Each utterance is transcribed off the loop by the shared `VoiceService` and
enters the round as the speaker's own prompt or vote.

`VoiceMessages`: voice messages (attachments Discord marks as such) posted in
the bot's channels are the fallback that needs no voice connection at all:
they are downloaded, transcribed the same way, and answered with what was
heard. Discord sends a message's attachments only to a bot with the
privileged Message Content intent, so `voice_intents` asks for it only when
voice messages are on.
"""

from __future__ import annotations

import asyncio
import io
import logging
from typing import TYPE_CHECKING

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from .discord_viewer import plain, viewer_from
from .voice import LOADING, OFF, VoiceError, decode, discord_voice_note

if TYPE_CHECKING:
    import numpy as np

    from ..config import DiscordSettings, VoiceSettings
    from ..viewer import Viewer
    from .events import Reply
    from .voice import Heard, VoiceService

log = logging.getLogger(__name__)

NO_COMMAND = 'No command heard: say "{wake}" and your idea, or "vote" and a number.'
JOIN_TIMEOUT_S = 20.0


class _VoiceCog(commands.Cog):
    """What both voice Cogs share: the voice service and whose roles count."""

    def __init__(self, service: VoiceService, voice: VoiceSettings, discord_settings: DiscordSettings) -> None:
        self.service = service
        self.voice = voice
        self.discord = discord_settings

    def _viewer(self, member: discord.abc.User, guild_id: int | None) -> Viewer:
        """Roles count only in the show's own servers, as for typed commands."""
        return viewer_from(member, self.discord.moderator_roles, trusted=guild_id in self.discord.guilds)


class VoiceCommands(_VoiceCog):
    """`/listen` and `/leave`: added only for the servers in `discord.guilds`."""

    def _refusal(self, interaction: discord.Interaction) -> str | None:
        # Discord offers these only where they are registered; this holds even
        # if it offered a stale registration somewhere else (the command tree
        # has already refused direct messages).
        if interaction.guild is None or interaction.guild_id not in self.discord.guilds:
            return "Voice commands are not turned on in this server."
        if not self._viewer(interaction.user, interaction.guild_id).is_moderator:
            return "Only moderators can do that."
        return None

    # -- commands ----------------------------------------------------------------------
    @app_commands.command(name="listen", description="Moderators: join the voice channel and take spoken commands")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_messages=True)
    async def listen(self, interaction: discord.Interaction) -> None:
        refusal = self._refusal(interaction)
        if refusal is None:
            refusal = await self._join(interaction)
        await _answer(
            interaction, refusal or f'Listening. Say "{self.voice.wake}" and your idea, or "vote" and a number.'
        )

    @app_commands.command(name="leave", description="Moderators: leave the voice channel")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_messages=True)
    async def leave(self, interaction: discord.Interaction) -> None:
        refusal = self._refusal(interaction)
        vc = interaction.guild.voice_client if interaction.guild else None
        if refusal is None:
            if vc is None:
                refusal = "I am not in a voice channel here."
            else:
                await vc.disconnect(force=False)
        await _answer(interaction, refusal or "Left the voice channel.")

    async def _join(self, interaction: discord.Interaction) -> str | None:
        """None when listening; else one sentence saying why not."""
        if self.service.state != "ready":  # the speech model loads once the show is on air
            return LOADING if self.service.state == "loading" else OFF
        ok, sentence = discord_voice_note()
        if not ok:
            return sentence + _fallback_hint(self.voice)
        guild = interaction.guild
        assert guild is not None
        channel = next(
            (c for c in guild.voice_channels + guild.stage_channels if c.id in self.voice.discord_channels), None
        )
        if channel is None:
            state = getattr(interaction.user, "voice", None)  # known from voice state events (voice_states intent)
            channel = state.channel if state is not None else None
        if channel is None:
            return "Join a voice channel first (or set [voice] discord_channels)."
        from .discord_receive import VoiceRecvClient, VoiceSink

        vc = guild.voice_client
        try:
            if not isinstance(vc, VoiceRecvClient):  # None: not connected (the show connects with no other client)
                vc = await channel.connect(cls=VoiceRecvClient, self_deaf=False, timeout=JOIN_TIMEOUT_S)
            elif vc.channel != channel:
                await vc.move_to(channel)
        except (TimeoutError, discord.ClientException, RuntimeError, OSError, aiohttp.ClientError) as e:
            # OSError and ClientError: the voice server Discord named cannot be reached (a firewall, UDP blocked)
            log.warning("discord voice: joining %s failed: %s", channel, e)
            return f"I could not join {channel.name} ({type(e).__name__})." + _fallback_hint(self.voice)
        if not vc.is_listening():
            loop = asyncio.get_running_loop()
            vc.listen(
                VoiceSink(
                    lambda user_id, audio, ended_at: loop.call_soon_threadsafe(
                        self._heard_speaker, guild, user_id, audio, ended_at
                    ),
                    silence_ms=self.voice.silence_ms,
                    max_s=self.voice.max_utterance_s,
                    threshold=self.voice.vad_threshold,
                )
            )
        log.info("discord voice: listening in %s", channel)
        return None

    def _heard_speaker(self, guild: discord.Guild, user_id: int, audio: np.ndarray, ended_at: float) -> None:
        member = guild.get_member(user_id)
        if member is None:
            asyncio.ensure_future(self._fetch_and_hear(guild, user_id, audio, ended_at))
            return
        if not member.bot:
            self.service.hear(self._viewer(member, guild.id), audio, ended_at)

    async def _fetch_and_hear(self, guild: discord.Guild, user_id: int, audio: np.ndarray, ended_at: float) -> None:
        try:
            member = await guild.fetch_member(user_id)
        except discord.HTTPException:
            log.info("discord voice: speaker %s is not a member; ignored", user_id)
            return
        if not member.bot:
            self.service.hear(self._viewer(member, guild.id), audio, ended_at)


class VoiceMessages(_VoiceCog):
    """Voice messages in the channels of `discord.channels`, transcribed and answered."""

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.guild is None or message.channel.id not in self.discord.channels:
            return
        for attachment in message.attachments:
            if attachment.is_voice_message():
                await self.hear_voice_message(message, attachment)

    async def hear_voice_message(self, message: discord.Message, attachment: discord.Attachment) -> None:
        if attachment.size > self.voice.upload_max_bytes:
            await _reply(message, "That voice message is too long for a command.")
            return
        try:
            data = await attachment.read()
            audio = await asyncio.to_thread(
                decode, io.BytesIO(data), max_s=self.voice.upload_max_s, name="That voice message"
            )
        except VoiceError as e:
            await _reply(message, str(e))
            return
        except discord.HTTPException as e:
            log.warning("discord voice message not downloaded: %s", e)
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[Heard, Reply | None]] = loop.create_future()

        def finished(heard: Heard, reply: Reply | None) -> None:
            if not done.done():
                done.set_result((heard, reply))

        assert message.guild is not None
        self.service.hear(self._viewer(message.author, message.guild.id), audio, done=finished)
        heard, reply = await done
        if reply is not None and self.service.audience is not None:
            reply = await self.service.audience.settle(reply)
        await _reply(message, describe(heard, reply, self.voice.wake))


def describe(heard: Heard, reply: Reply | None, wake: str) -> str:
    """What the speaker is told: what was heard, and what became of it."""
    if heard.command is None:
        busy = "Too many voice commands at once; try again in a moment."
        return {"dropped": busy, "loading": LOADING, "off": OFF}.get(
            heard.error, "That voice message could not be transcribed."
        )
    said = plain(heard.command.text) or "nothing"
    if heard.command.command is None:
        return f'Heard "{said}". ' + NO_COMMAND.format(wake=wake)
    return f'Heard "{said}". ' + ((reply.text if reply is not None and reply.text else "") or "OK.")


def _fallback_hint(voice: VoiceSettings) -> str:
    return " Voice messages in the bot's channels still work." if voice.discord_voice_messages else ""


async def _answer(interaction: discord.Interaction, text: str) -> None:
    try:
        await interaction.response.send_message(discord.utils.escape_mentions(text), ephemeral=True)
    except discord.HTTPException as e:
        log.info("discord reply failed: %s", e)


async def _reply(message: discord.Message, text: str) -> None:
    try:
        await message.reply(text, mention_author=False, allowed_mentions=discord.AllowedMentions.none())
    except discord.HTTPException as e:
        log.info("discord reply failed: %s", e)


def voice_intents(intents: discord.Intents, voice: VoiceSettings) -> None:
    """What voice needs from the gateway: voice states (who is in which voice
    channel, and the bot's own voice connection), and for voice messages the
    guild messages with their attachments, which Discord sends only with the
    privileged Message Content intent (enabled in the developer portal first)."""
    intents.voice_states = True
    if voice.discord_voice_messages:
        intents.guild_messages = True
        intents.message_content = True


async def add_voice(
    bot: commands.Bot, service: VoiceService, voice: VoiceSettings, discord_settings: DiscordSettings
) -> None:
    """Load `/listen` and `/leave` in the configured servers only, and the voice message listener when on."""
    if discord_settings.guilds:
        await bot.add_cog(
            VoiceCommands(service, voice, discord_settings),
            guilds=[discord.Object(id=g) for g in discord_settings.guilds],
        )
    else:
        log.warning("discord: no `guilds` configured, so no /listen: voice channels need the show's server ids")
    if voice.discord_voice_messages:
        await bot.add_cog(VoiceMessages(service, voice, discord_settings))
