"""Discord: slash commands, vote buttons, one round message per round and channel.

Commands are grouped in Cogs. `/prompt idea`, `/vote number` and `/now` are for
everyone, in servers only. `/mod skip|lock|unlock|ban|unban` is registered in
the servers listed in `discord.guilds` and nowhere else: a global command would
reach every server that added the bot, whose owners Discord calls
administrators. Discord shows `/mod` to members who may Manage Messages
(`default_member_permissions`; a server changes that under Integrations); the
bot acts on it for a role named in `discord.moderator_roles` or Manage Server,
in a listed server. Roles count nowhere else, and nothing is answered in DMs.

Round messages: every channel in `discord.channels` gets one message per round,
numbered candidates with one button each. The round's end is a Discord
timestamp (`<t:UNIX:R>`) that counts down on each viewer's own client, so the
message is edited only when what it shows changes (candidates, votes), and at
most every `update_s`. In the show, the messages follow the state it
publishes (`DiscordBot(..., states=show.states)`); a bot on its own reads
the audience once a `tick_s`. When the round's result is published, the message is
closed: buttons disabled, the winner's in green, the result in the text. Its
ids are kept in the timeline (`Store.save_state(..., key="discord")`), so after
a restart the message left open is closed the same way.

With voice on (`DiscordBot(..., voice=service)`), `discord_voice` adds
`/listen` and `/leave` under the same rules as `/mod`, and voice messages; the
client then asks for the intents voice needs (`voice_intents`).

Nobody is ever pinged: the client sends `allowed_mentions` that allow nothing
with every message and reply, and viewers' text shows mentions as plain text.

discord.py resumes the gateway session and reconnects by itself; `run`
restarts the client with a jittered exponential back-off
(`reconnect.stay_connected`, tenacity) if it ever stops, and never raises.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import discord
from cachetools import FIFOCache
from discord import app_commands
from discord.ext import commands, tasks
from tenacity import RetryCallState, wait_exponential, wait_random

from .. import secrets as secret_store
from ..config import DiscordSettings
from ..onair import Latest
from ..viewer import Viewer
from .commands import ModAction
from .discord_viewer import plain, viewer_from
from .events import ChatSurface, ModEvent, PromptEvent, Reply, VoteEvent
from .reconnect import stay_connected

if TYPE_CHECKING:
    from ..onair import ShowState
    from ..store import Store
    from ..voting import CandidateView, RoundResult, Snapshot
    from .voice import VoiceService

log = logging.getLogger(__name__)

CUSTOM_ID = r"streambot:vote:(?P<round>[0-9]+):(?P<number>[0-9]+)"
STATE_KEY = "discord"  # the timeline's state row holding the round messages' ids
MAX_CONTENT = 2000  # Discord refuses longer messages
MAX_NUMBER = 2**53 - 1  # Discord's largest INTEGER option
LATE_ANSWER_S = 600.0  # an interaction's token lasts 15 minutes; the screen waits at most 120 s for its model
HEALTHY_S = 60.0  # a client that ran this long before failing starts a fresh back-off
RETRY_CHANNEL_S = 60.0  # after a failed send, leave the channel alone this long (invalid requests get bots banned)
_backoff = wait_exponential(multiplier=2, max=300) + wait_random(0, 2)  # 2, 4, 8 ... 300 s, jittered


class VoteButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=CUSTOM_ID):
    """One candidate's button; stateless, so it keeps working across restarts."""

    def __init__(
        self, round_no: int, number: int, label: str | None = None, *, disabled: bool = False, won: bool = False
    ) -> None:
        style = discord.ButtonStyle.success if won else discord.ButtonStyle.primary
        super().__init__(
            discord.ui.Button(
                label=label or f"#{number}",
                style=style,
                disabled=disabled,
                custom_id=f"streambot:vote:{round_no}:{number}",
            )
        )
        self.round_no = round_no
        self.number = number

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> VoteButton:
        return cls(int(match["round"]), int(match["number"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        show: DiscordBot | None = getattr(interaction.client, "streambot", None)
        if show is not None:
            await show.on_button(interaction, self.round_no, self.number)


# -- what the messages say -------------------------------------------------------------
def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _votes(v: float) -> str:
    return f"{v:g} vote{'' if v == 1 else 's'}"


def _fit(head: str, candidates: Sequence[CandidateView], foot: str) -> str:
    """The message, each candidate's text cut to an equal share of Discord's 2,000 characters."""
    share = (MAX_CONTENT - len(head) - len(foot)) // max(1, len(candidates)) - 40
    while True:  # escaping can lengthen a text: cut shorter until it fits
        lines = [f"**#{c.number}** {plain(_clip(c.text, share))} \u2014 {_votes(c.votes)}" for c in candidates]
        text = "\n".join(filter(None, [head, *lines, foot]))
        if len(text) <= MAX_CONTENT or share <= 10:
            return text[:MAX_CONTENT]
        share //= 2


def render_round(s: Snapshot, ends_at: int | None) -> tuple[str, list[tuple[int, str]]]:
    """The round message's text and its buttons (number, label).

    `ends_at` (Unix seconds) is shown as a Discord timestamp, which each client
    counts down by itself: the text does not change as time passes.
    """
    if s.mode == "anarchy":
        return "**Anarchy mode**: every `/prompt` goes straight on air.", []
    head = f"**Round {s.round}**"
    if ends_at is not None:
        head += " \u2014 ends " + discord.utils.format_dt(datetime.fromtimestamp(ends_at, UTC), "R")
    if s.locked:
        head += " \u2014 prompts locked"
    foot = "Vote with a button or `/vote`; suggest with `/prompt`."
    if not s.candidates:
        head += "\nNo ideas yet: `/prompt` one!"
    buttons = [(c.number, _clip(f"#{c.number} {c.text}", 80)) for c in s.candidates if c.number is not None]
    return _fit(head, s.candidates, foot), buttons


def render_result(round_no: int, result: RoundResult | None) -> str:
    """A closed round message: who won, and the final tally."""
    if result is None:
        return f"**Round {round_no}** is over."
    if result.winner is None:
        head = f"**Round {round_no}** is over: {'skipped' if result.skipped else 'no winner'}."
    else:
        w = result.winner
        head = f"**Round {round_no}** \u2014 on air: **{plain(w.text)}** by {plain(w.user)} ({_votes(w.votes)})"
    shown = [c for c in result.candidates if c.number is not None][:10]
    return _fit(head, shown, "")


# -- commands ----------------------------------------------------------------------------
class RoundCommands(commands.Cog):
    """`/prompt`, `/vote`, `/now`: for everyone, in servers."""

    def __init__(self, show: DiscordBot) -> None:
        self.show = show

    @app_commands.command(name="prompt", description="Suggest what happens next in the world")
    @app_commands.guild_only()
    @app_commands.describe(idea="What should happen?")
    async def prompt(self, interaction: discord.Interaction, idea: app_commands.Range[str, 1, 300]) -> None:
        show = self.show
        reply = show.audience.handle(PromptEvent(show.viewer(interaction), idea))
        first = await show.audience.settle(reply)  # its number once screened, within 2 s
        await show.answer(interaction, first)
        if first.screening:  # still "being checked": the answer is edited when the screen has spoken
            show.answer_later(interaction, reply)

    # Numbers are never reused within a show, so no fixed max_value is "this round's": 9999 would
    # refuse real candidates after a long day. The round's own numbers are offered as autocomplete
    # choices; Discord's client bounds the rest to 1..2^53-1, and the hub answers a number not in play.
    @app_commands.command(name="vote", description="Vote for a candidate by its number")
    @app_commands.guild_only()
    @app_commands.describe(number="The candidate's number")
    async def vote(self, interaction: discord.Interaction, number: app_commands.Range[int, 1, MAX_NUMBER]) -> None:
        show = self.show
        await show.answer(interaction, show.audience.handle(VoteEvent(show.viewer(interaction), number)))

    @vote.autocomplete("number")
    async def _numbers(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[int]]:
        typed = str(current or "").strip().lstrip("#")
        return [
            app_commands.Choice(name=_clip(f"#{c.number} {c.text}", 100), value=c.number)
            for c in self.show.audience.snapshot().candidates
            if c.number is not None and str(c.number).startswith(typed)
        ][:25]

    @app_commands.command(name="now", description="What is on air, and how long this round has left")
    @app_commands.guild_only()
    async def now(self, interaction: discord.Interaction) -> None:
        await self.show.answer(interaction, Reply("now", self.show.audience.now_text()))


class ModCommands(commands.Cog):
    """`/mod ...`: added only for the servers in `discord.guilds`."""

    mod = app_commands.Group(
        name="mod",
        description="Moderators: skip the round, lock prompts, ban or unban a viewer",
        guild_only=True,
        allowed_contexts=app_commands.AppCommandContext(guild=True),
        default_permissions=discord.Permissions(manage_messages=True),
    )

    def __init__(self, show: DiscordBot) -> None:
        self.show = show

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        # Discord only offers /mod where it is registered; this holds even if it
        # offered a stale registration somewhere else.
        if interaction.guild_id not in self.show.settings.guilds:
            await self.show.answer(interaction, Reply("denied", "Moderation works only in the show's own server."))
            return False
        return True

    async def cog_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        if not isinstance(error, app_commands.CheckFailure):  # a refused check has been answered
            log.error("discord /mod failed", exc_info=error)

    async def _act(self, interaction: discord.Interaction, action: ModAction) -> None:
        reply = self.show.audience.handle(ModEvent(self.show.viewer(interaction), action))
        await self.show.answer(interaction, reply)

    @mod.command(name="skip", description="End this round now, with no winner")
    async def skip(self, interaction: discord.Interaction) -> None:
        await self._act(interaction, "skip")

    @mod.command(name="lock", description="Stop new prompts (votes go on)")
    async def lock(self, interaction: discord.Interaction) -> None:
        await self._act(interaction, "lock")

    @mod.command(name="unlock", description="Take prompts again")
    async def unlock(self, interaction: discord.Interaction) -> None:
        await self._act(interaction, "unlock")

    @mod.command(name="ban", description="Ban a viewer from prompting and voting")
    @app_commands.describe(user="The viewer")
    async def ban(self, interaction: discord.Interaction, user: discord.User) -> None:
        show = self.show
        viewer = show.viewer(interaction)
        if not viewer.is_moderator:
            await show.answer(interaction, Reply("denied"))
            return
        show.audience.ban(user.name, actor=f"discord:{viewer.name}", platform="discord", user_id=str(user.id))
        await show.answer(interaction, Reply("done", f"Done: ban {user.name}"))

    @mod.command(name="unban", description="Lift a viewer's ban")
    @app_commands.describe(user="The viewer")
    async def unban(self, interaction: discord.Interaction, user: discord.User) -> None:
        show = self.show
        viewer = show.viewer(interaction)
        if not viewer.is_moderator:
            await show.answer(interaction, Reply("denied"))
            return
        show.audience.unban(user.name, actor=f"discord:{viewer.name}", platform="discord", user_id=str(user.id))
        await show.answer(interaction, Reply("done", f"Done: unban {user.name}"))


class RoundMessages(commands.Cog):
    """Keeps the round messages up to date: on each state the show publishes
    (at most one refresh a `tick_s`), or, for a bot without a show's states,
    once a `tick_s`."""

    def __init__(self, show: DiscordBot, client: discord.Client) -> None:
        self.show = show
        self.client = client
        self._follow: asyncio.Task[None] | None = None

    async def cog_load(self) -> None:
        if self.show.states is not None:
            self._follow = asyncio.create_task(self.follow(self.show.states), name="discord round messages")
            return
        self.refresh.change_interval(seconds=self.show.tick_s)
        self.refresh.start()

    async def cog_unload(self) -> None:
        self.refresh.cancel()
        if self._follow is not None:
            self._follow.cancel()

    async def follow(self, states: Latest[ShowState]) -> None:
        """Refresh with each published round. A refresh is also due when nothing
        changed for `update_s`: an edit held back by the spacing, or a message
        closing after its round's grace, waits for time, not for a change."""
        await self.client.wait_until_ready()
        last: Snapshot | None = None
        with states.subscribe() as sub:
            while True:
                try:
                    last = (await sub.next(timeout=self.show.settings.update_s)).round
                except TimeoutError:
                    pass
                try:
                    await self.show.refresh(last)
                except Exception:  # one bad update must not end the updates
                    log.exception("discord round messages not updated")
                await asyncio.sleep(self.show.tick_s)  # pacing: Discord's limits on edits

    @tasks.loop(seconds=1.0)
    async def refresh(self) -> None:
        try:
            await self.show.refresh()
        except Exception:  # one bad update must not end the updates
            log.exception("discord round messages not updated")

    @refresh.before_loop
    async def _ready(self) -> None:
        await self.client.wait_until_ready()


class _Tree(app_commands.CommandTree):
    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.guild_id is None:  # every command is for servers; Discord should not offer them in DMs
            await DiscordBot.answer(interaction, Reply("denied", "streambot's commands work in the show's server."))
            return False
        return True

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        if isinstance(error, app_commands.CommandNotFound):  # e.g. a command registered here by an older version
            log.info("discord: /%s is not a command here (server %s)", error.name, interaction.guild_id)
        elif not isinstance(error, app_commands.CheckFailure):
            log.error("discord command failed", exc_info=error)
        if not interaction.response.is_done():
            await DiscordBot.answer(interaction, Reply("denied", "That command is not available here."))


class _Client(commands.Bot):
    def __init__(self, show: DiscordBot) -> None:
        intents = discord.Intents.none()
        intents.guilds = True  # channels and roles; nothing privileged unless voice messages are on
        if show.voice is not None and show.voice.settings is not None:
            from .discord_voice import voice_intents

            voice_intents(intents, show.voice.settings)
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            tree_cls=_Tree,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.streambot = show

    async def setup_hook(self) -> None:
        show = self.streambot
        self.add_dynamic_items(VoteButton)
        guilds = [discord.Object(id=g) for g in show.settings.guilds]
        if guilds:
            await self.add_cog(RoundCommands(show), guilds=guilds)
            await self.add_cog(ModCommands(show), guilds=guilds)
        else:
            await self.add_cog(RoundCommands(show))
            log.warning("discord: no `guilds` configured, so no /mod: moderation needs the show's server ids")
        await self.add_cog(RoundMessages(show, self))
        if show.voice is not None and show.voice.settings is not None:
            from .discord_voice import add_voice

            await add_voice(self, show.voice, show.voice.settings, show.settings)
        await show.sync_commands(self)

    async def on_message(self, message: discord.Message) -> None:
        # Slash commands only: a message is never a prefix command (with voice
        # messages on, "@streambot hi" would otherwise log CommandNotFound).
        # Cogs' own message listeners still get every message.
        pass

    async def on_ready(self) -> None:
        log.info("discord bot ready as %s in %d server(s)", self.user, len(self.guilds))
        self.streambot.state = "live"

    async def on_resumed(self) -> None:
        self.streambot.resumes += 1
        self.streambot.state = "live"

    async def on_disconnect(self) -> None:
        self.streambot.state = "reconnecting"


@dataclass(eq=False)
class _Posted:
    """A round message the bot has posted and not yet closed."""

    channel: int
    message: int
    round: int
    mode: str
    buttons: list[tuple[int, str]]
    text: str = ""
    ends_at: int | None = None
    at: float = 0.0  # clock time of the last post or edit
    over_since: float | None = None  # when its round stopped being the current one

    def saved(self) -> dict[str, object]:
        return {
            "channel": self.channel,
            "message": self.message,
            "round": self.round,
            "mode": self.mode,
            "buttons": [list(b) for b in self.buttons],
        }

    @classmethod
    def from_saved(cls, d: dict[str, Any]) -> _Posted:  # JSON data, as `saved` wrote it
        return cls(
            int(d["channel"]),
            int(d["message"]),
            int(d["round"]),
            d.get("mode", "rounds"),
            [(int(n), str(label)) for n, label in d.get("buttons", [])],
        )


@dataclass
class _Board:
    """The round messages across client restarts: open ones and those waiting for their result."""

    open: dict[int, _Posted] = field(default_factory=dict)
    closing: list[_Posted] = field(default_factory=list)
    left_open: list[_Posted] = field(default_factory=list)  # from before a restart
    results: FIFOCache[int, RoundResult] = field(default_factory=lambda: FIFOCache(32))  # the latest rounds'
    retry_at: dict[int, float] = field(default_factory=dict)  # channel -> clock time


class DiscordBot:
    platform = "discord"

    def __init__(
        self,
        audience: ChatSurface,
        settings: DiscordSettings,
        token: str,
        *,
        store: Store | None = None,
        wall: Callable[[], float] = time.time,
        tick_s: float = 1.0,
        voice: VoiceService | None = None,
        states: Latest[ShowState] | None = None,
    ) -> None:
        if not token:
            raise ValueError("no Discord bot token: set STREAMBOT_DISCORD_TOKEN (see the README).")
        secret_store.register(token)
        self.audience = audience
        self.settings = settings
        self.token = token
        self.store = store
        self.clock = audience.clock  # round times and edit spacing, on the show's clock
        self.wall = wall  # Unix time, for the timestamps Discord shows
        self.tick_s = tick_s
        self.states = states  # the show's published state: round messages follow it
        self.voice = voice  # a VoiceService: /listen, /leave and voice messages
        self.state = "idle"
        self.resumes = 0
        self.refreshes = 0
        self.client: _Client | None = None
        self._closing = asyncio.Event()
        self._lock = asyncio.Lock()
        self._late: set[asyncio.Task[None]] = set()  # answers edited once the safety screen has spoken
        self._board = _Board()
        saved = store.load_state(STATE_KEY) if store is not None else None
        for d in (saved or {}).get("messages", []):
            self._board.left_open.append(_Posted.from_saved(d))

    # -- lifecycle ---------------------------------------------------------------
    def make_client(self) -> _Client:
        return _Client(self)

    async def run(self) -> None:
        """Stay connected until `close()`; a failure is logged and retried, never raised."""
        unsubscribe = self.audience.subscribe(self._on_result)
        try:
            await stay_connected(
                self._session,
                closing=self._closing,
                wait=self._wait,
                before_sleep=self._retrying,
                on_drop=self._dropped,
                healthy_s=HEALTHY_S,
            )
        finally:
            unsubscribe()
            self.state = "closed"

    async def _session(self) -> None:
        """One client from login to close."""
        self.state = "connecting"
        client = self.client = self.make_client()
        try:
            await client.start(self.token, reconnect=True)
            if not self._closing.is_set():
                raise ConnectionError("the Discord client stopped by itself")
        finally:
            if not client.is_closed():
                await client.close()

    @staticmethod
    def _wait(state: RetryCallState) -> float:
        if state.outcome is not None and isinstance(
            state.outcome.exception(), (discord.LoginFailure, discord.PrivilegedIntentsRequired)
        ):
            return 300.0  # a rejected token or intent stays rejected until someone changes it
        return _backoff(state)

    @staticmethod
    def _dropped(e: Exception) -> None:
        log.warning("discord bot stopped: %s; reconnecting", secret_store.redact(str(e) or repr(e)))

    def _retrying(self, state: RetryCallState) -> None:
        self.state = "retrying"
        e = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        if isinstance(e, discord.LoginFailure):
            log.error("discord rejected the bot token; retrying in %.0f s", wait)
        elif isinstance(e, discord.PrivilegedIntentsRequired):
            log.error(
                "discord refused the Message Content intent that voice messages need: enable it on the "
                "bot's page in the developer portal, or set [voice] discord_voice_messages = false; "
                "retrying in %.0f s",
                wait,
            )
        else:
            log.warning("discord bot stopped: %s; retrying in %.0f s", secret_store.redact(str(e) or repr(e)), wait)
            log.debug("discord bot failure", exc_info=e)

    async def close(self) -> None:
        """Stop and disconnect. Safe to call twice."""
        self._closing.set()
        for task in list(self._late):
            task.cancel()
        if self.client is not None and not self.client.is_closed():
            await self.client.close()
        self.state = "closed"

    async def sync_commands(self, client: _Client) -> None:
        try:
            for gid in self.settings.guilds:
                await client.tree.sync(guild=discord.Object(id=gid))
            # Global: the viewer commands when no server is listed; otherwise
            # nothing, which also removes what an older version registered.
            await client.tree.sync()
        except discord.HTTPException as e:  # the buttons still work; say why commands don't
            log.warning("discord slash commands not synced: %s", e)

    # -- commands ------------------------------------------------------------------
    def viewer(self, interaction: discord.Interaction) -> Viewer:
        trusted = interaction.guild_id is not None and interaction.guild_id in self.settings.guilds
        return viewer_from(interaction.user, self.settings.moderator_roles, trusted=trusted)

    async def on_button(self, interaction: discord.Interaction, round_no: int, number: int) -> None:
        reply = self.audience.handle(VoteEvent(self.viewer(interaction), number, round=round_no))
        await self.answer(interaction, reply)

    @staticmethod
    async def answer(interaction: discord.Interaction, reply: Reply) -> None:
        text = "Only moderators can do that." if reply.kind == "denied" and not reply.text else reply.text
        try:
            await interaction.response.send_message(discord.utils.escape_mentions(text or "OK."), ephemeral=True)
        except discord.HTTPException as e:
            log.info("discord reply failed: %s", e)

    def answer_later(self, interaction: discord.Interaction, reply: Reply) -> None:
        """Edit the "being checked" answer once the screen has judged the idea: its number,
        a moderator's wait, or the one refusal (so a refused idea is never left unsaid)."""

        async def edit() -> None:
            final = await self.audience.settle(reply, timeout=LATE_ANSWER_S)
            if final.screening:
                return
            try:
                await interaction.edit_original_response(content=discord.utils.escape_mentions(final.text))
            except discord.HTTPException as e:
                log.info("discord answer not edited: %s", e)

        task = asyncio.ensure_future(edit())
        self._late.add(task)
        task.add_done_callback(self._late.discard)

    # -- round messages --------------------------------------------------------------
    def _on_result(self, result: RoundResult) -> None:
        if result.mode != "rounds":
            return
        self._board.results[result.round] = result

    def _save(self) -> None:
        if self.store is not None:
            b = self._board
            self.store.save_state({"messages": [p.saved() for p in [*b.open.values(), *b.closing]]}, STATE_KEY)

    def _ends_at(self, s: Snapshot, before: int | None) -> int | None:
        if s.mode != "rounds":
            return None
        end = round(self.wall() + s.time_left)
        # the two clocks tick apart by a fraction: a second either way is the same end
        return before if before is not None and abs(end - before) <= 1 else end

    def _message(self, p: _Posted) -> discord.PartialMessage:
        assert self.client is not None
        return self.client.get_partial_messageable(p.channel).get_partial_message(p.message)

    @staticmethod
    def _view(
        round_no: int, buttons: list[tuple[int, str]], *, closed: bool = False, winner: int | None = None
    ) -> discord.ui.View | None:
        if not buttons:
            return None
        view = discord.ui.View(timeout=None)
        for number, label in buttons[:25]:
            view.add_item(VoteButton(round_no, number, label, disabled=closed, won=number == winner))
        return view

    async def refresh(self, snapshot: Snapshot | None = None) -> None:
        """Post, edit or close each channel's round message to match the round
        (`snapshot`, as published; the audience's now when None)."""
        async with self._lock:
            if self.client is None or not self.client.is_ready() or self.client.is_closed():
                return
            now = self.clock()
            s = snapshot if snapshot is not None else self.audience.snapshot(now)
            if self._board.left_open:
                await self._close_left_open(s, now)
            for channel in self.settings.channels:
                await self._refresh_channel(channel, s, now)
            await self._close_finished(s, now)
            self.refreshes += 1

    async def _refresh_channel(self, channel: int, s: Snapshot, now: float) -> None:
        board = self._board
        p = board.open.get(channel)
        if p is not None and (p.round, p.mode) != (s.round, s.mode):
            p.over_since = now
            board.closing.append(board.open.pop(channel))
            p = None
        if now < board.retry_at.get(channel, 0.0):  # it failed a moment ago
            return
        try:
            if p is None:
                ends = self._ends_at(s, None)
                text, buttons = render_round(s, ends)
                assert self.client is not None  # `refresh` returns without one
                view = self._view(s.round, buttons)
                messageable = self.client.get_partial_messageable(channel)
                # `send` takes view=None as no view, but its overloads do not say so
                sent = await (messageable.send(text, view=view) if view is not None else messageable.send(text))
                board.open[channel] = _Posted(channel, sent.id, s.round, s.mode, buttons, text, ends, now)
                self._save()
                return
            ends = self._ends_at(s, p.ends_at)
            text, buttons = render_round(s, ends)
            if (text, buttons) == (p.text, p.buttons) or now - p.at < self.settings.update_s:
                return
            await self._message(p).edit(content=text, view=self._view(s.round, buttons))
            saved = buttons != p.buttons
            p.text, p.buttons, p.ends_at, p.at = text, buttons, ends, now
            if saved:
                self._save()
        except discord.HTTPException as e:
            log.warning("discord channel %s: round message not updated: %s", channel, e)
            board.retry_at[channel] = now + RETRY_CHANNEL_S
            if p is not None and isinstance(e, discord.NotFound):  # deleted: post afresh
                board.open.pop(channel, None)
                self._save()

    async def _close_finished(self, s: Snapshot, now: float) -> None:
        """Close the messages of rounds whose result is in (or overdue)."""
        board = self._board
        for p in list(board.closing):
            if p.over_since is None:
                if (p.round, p.mode) == (s.round, s.mode):
                    continue  # a round that went on after a restart
                p.over_since = now
            result = board.results.get(p.round) if p.mode == "rounds" else None
            overdue = now - p.over_since > s.grace_s + 10
            if p.mode == "rounds" and result is None and not overdue:
                continue
            if p.mode == "rounds":
                text = render_result(p.round, result)
            else:
                text = "**Anarchy mode** is over."
            winner = _winning_number(result)
            try:
                await self._message(p).edit(
                    content=text, view=self._view(p.round, p.buttons, closed=True, winner=winner)
                )
            except discord.HTTPException as e:
                log.warning("discord channel %s: round %d message not closed: %s", p.channel, p.round, e)
            board.closing.remove(p)
            self._save()

    async def _close_left_open(self, s: Snapshot, now: float) -> None:
        """Disable the buttons of the messages a previous run left open."""
        board = self._board
        for p in board.left_open:
            goes_on = (p.round, p.mode) == (s.round, s.mode) and s.mode == "rounds"
            text = (
                f"**Round {p.round}** goes on in a new message below."
                if goes_on
                else f"**Round {p.round}** ended when the show restarted."
            )
            try:
                await self._message(p).edit(content=text, view=self._view(p.round, p.buttons, closed=True))
            except discord.HTTPException as e:
                log.warning("discord channel %s: message %s left open not closed: %s", p.channel, p.message, e)
                continue
            if goes_on:  # it shows the result too, when the round ends
                board.closing.append(p)
        board.left_open.clear()
        self._save()


def _winning_number(result: RoundResult | None) -> int | None:
    if result is None or result.winner is None:
        return None
    return next((c.number for c in result.candidates if c.text == result.winner.text), None)
