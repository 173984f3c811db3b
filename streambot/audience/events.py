"""The audience's typed events and the hub every adapter pushes them into.

Adapters (Twitch, Discord, the console's chat box, stdin) turn what their
platform delivers into a `Viewer` and one of `ChatMessage`, `PromptEvent`,
`VoteEvent`, `ModEvent`, and call `Audience.handle` on the asyncio loop.
The hub runs moderation, hands what passes to the voting engine, records
moderator and console actions in the timeline, and tells subscribers
(adapters replying in chat, the overlay) when a round has ended.

A new idea is numbered only once the safety screen in the pooling worker
has passed it (a tenth of a second or so): `handle` answers "being
checked", and `settle` waits for the screen and gives the final answer
("Your idea is #4.", "waits for a moderator", or the one refusal), so no
viewer is told a number for an idea that never shows.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from cachetools import FIFOCache

from ..viewer import Viewer
from .commands import HELP, MODERATOR_KINDS, ModAction, parse

if TYPE_CHECKING:
    from ..config import Settings
    from ..embeddings import ModelProcess
    from ..onair import OnAir
    from ..store import Store
    from ..voting import Mode, RoundResult, Screened, Snapshot, VotingEngine, Winner
    from ..worldspec import WorldSpec
    from .moderation import Moderation

log = logging.getLogger(__name__)

Platform = Literal["twitch", "discord", "local"]
ROLES = ("broadcaster", "moderator", "subscriber", "vip", "viewer")


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """A line of chat, commands and all; the hub parses it."""

    viewer: Viewer
    text: str
    id: str = ""  # the platform's message id: a moderator deleting the message takes it back


@dataclass(frozen=True, slots=True)
class PromptEvent:
    viewer: Viewer
    text: str
    priority: bool = False  # a channel-point redemption
    id: str = ""


@dataclass(frozen=True, slots=True)
class VoteEvent:
    viewer: Viewer
    number: int
    round: int | None = None  # only this round (a button on a round message)
    id: str = ""


@dataclass(frozen=True, slots=True)
class ModEvent:
    viewer: Viewer
    action: ModAction
    target: str = ""


Event = ChatMessage | PromptEvent | VoteEvent | ModEvent

ReplyKind = Literal[
    "none",
    "new",
    "pooled",
    "voted",
    "unknown",
    "rejected",
    "blocked",
    "help",
    "now",
    "done",
    "denied",
]


@dataclass(frozen=True, slots=True)
class Reply:
    """What to tell the viewer, if the platform answers one by one (Discord).

    `text` never repeats a blocked prompt. Twitch batches instead: see
    `audience.twitch`.
    """

    kind: ReplyKind
    text: str = ""
    number: int | None = None  # kind "unknown": set only for a number of an earlier round (a stale vote)
    round: int = 0  # where a prompt or vote landed
    candidate: int | None = None  # the candidate's id in that round (a prompt)
    screening: bool = False  # the safety screen has yet to pass it: `Audience.settle` waits for it


NONE = Reply("none")


class ChatSurface(Protocol):
    """What a chat adapter (Twitch, Discord, the terminal) may do with the show's audience:
    hand in what viewers said, hear each round's result, answer `!now`, moderate.
    `Audience` below is one."""

    clock: Callable[[], float]

    def handle(self, event: Event, now: float | None = None) -> Reply: ...
    def chat(
        self,
        platform: str,
        user: str,
        text: str,
        roles: tuple[str, ...] | frozenset[str] = (),
        now: float | None = None,
    ) -> Reply: ...
    async def settle(self, reply: Reply, timeout: float = 2.0) -> Reply: ...
    def subscribe(self, callback: Callable[[RoundResult], object]) -> Callable[[], None]: ...
    def snapshot(self, now: float | None = None) -> Snapshot: ...
    def now_text(self, now: float | None = None) -> str: ...
    def retract_message(self, platform: str, message_id: str, *, actor: str = "") -> bool: ...
    def retract_viewer(self, viewer: Viewer, *, actor: str = "", why: str = "") -> int: ...
    def ban(
        self,
        user: str,
        *,
        actor: str,
        platform: str | None = None,
        user_id: str | None = None,
        now: float | None = None,
    ) -> None: ...
    def unban(
        self,
        user: str,
        *,
        actor: str,
        platform: str | None = None,
        user_id: str | None = None,
        now: float | None = None,
    ) -> None: ...


class Audience:
    """Moderation in front of the voting engine, for every adapter at once."""

    def __init__(
        self,
        engine: VotingEngine,
        moderation: Moderation,
        *,
        store: Store | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.moderation = moderation
        self.store = store
        self.clock = clock
        self.on_air_text: str | None = None
        self.counts = {"messages": 0, "prompts": 0, "votes": 0, "blocked": 0, "held": 0, "dropped": 0}
        # Bumped whenever what `snapshot()` or `counts` show may have changed by an event (time
        # alone moves only the countdown): the show publishes its state again when it moves.
        self.changes = 0
        self._subscribers: list[Callable[[RoundResult], object]] = []
        # (round, candidate id) -> viewers waiting for the screen's verdict; and recent verdicts
        self._waiting: dict[tuple[int, int], list[asyncio.Future[Screened]]] = {}
        self._screened: FIFOCache[tuple[int, int], Screened] = FIFOCache(2048)  # replies waiting to be read
        self._closed = asyncio.Event() if _has_loop() else None
        # (platform, message id) -> what that message put in the ballot, for a moderator's deletion
        # rounds last seconds: older messages no longer matter
        self._placed: FIFOCache[tuple[str, str], tuple[str, int, str | None, int | None]] = FIFOCache(20_000)
        if store is not None:
            for key in store.bans():
                moderation.bans.add(key)
            moderation.ban_names.update(store.ban_names())

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        store: Store | None = None,
        clock: Callable[[], float] = time.monotonic,
        embeddings: bool = True,
        world: WorldSpec | None = None,
        wait_for_model: bool = True,
    ) -> Audience:
        """Moderation and a voting engine built from `Settings` (voting, moderation);
        `world` (default: the configured preset) says which safety categories it allows.
        `wait_for_model=False`: pool by words until the shared sentence model's
        background load is done, then by meaning; the safety screen holds new
        candidates until it can judge them by meaning."""
        from .. import embeddings as shared
        from ..config import resolve_world
        from ..voting import VotingEngine
        from .moderation import Moderation

        embed = lexicon = None
        use_model = embeddings and settings.voting.pool_embeddings
        if use_model:
            from ..lexicon import WordNet

            if wait_for_model:
                embedder = shared.get_embedder()
                embed = embedder.encode if embedder is not None else None
            lexicon = WordNet.find()
        moderation = Moderation(settings.moderation, wait_for_model=wait_for_model)
        moderation.set_world(world or resolve_world(settings.world.preset))
        engine = VotingEngine(
            settings.voting,
            now=clock(),
            approval=settings.moderation.approval,
            embed=embed,
            lexicon=lexicon,
            screen=moderation.screen if moderation.safety is not None else None,
        )
        if use_model and not wait_for_model:

            def take(embedder: ModelProcess) -> None:
                engine.pooler.embed = embedder.encode

            shared.when_ready(take)
            shared.load_in_background()
        return cls(engine, moderation, store=store, clock=clock)

    # -- events in ---------------------------------------------------------------
    def chat(
        self,
        platform: str,
        user: str,
        text: str,
        roles: tuple[str, ...] | frozenset[str] = (),
        now: float | None = None,
    ) -> Reply:
        """One line of chat from anywhere (the console's chat box, stdin)."""
        return self.handle(ChatMessage(Viewer(platform, user, frozenset(roles)), text), now)

    def handle(self, event: Event, now: float | None = None) -> Reply:
        now = self.clock() if now is None else now
        viewer = event.viewer
        self.counts["messages"] += 1
        self.changes += 1
        self.moderation.remember(viewer)
        if isinstance(event, ChatMessage):
            self.moderation.seen(viewer, now)
            cmd = parse(event.text)
            if cmd is None:
                return NONE
            if cmd.kind == "prompt":
                event = PromptEvent(viewer, cmd.text, id=event.id)
            elif cmd.kind == "vote":
                event = VoteEvent(viewer, cmd.number, id=event.id)
            elif cmd.kind == "mode":
                if self.moderation.is_banned(viewer):
                    return NONE
                return self._mode_vote(viewer, cmd.text, now)
            elif cmd.kind in MODERATOR_KINDS:
                event = ModEvent(viewer, cmd.kind, cmd.text)
            elif cmd.kind == "help":
                return Reply("help", HELP)
            else:
                return Reply("now", self.now_text(now))
        if self.moderation.is_banned(viewer):
            return NONE
        if isinstance(event, VoteEvent):
            return self._vote(event, now)
        if isinstance(event, PromptEvent):
            return self._prompt(event, now)
        return self._mod(event, now)

    def _vote(self, event: VoteEvent, now: float) -> Reply:
        if self.moderation.is_new(event.viewer, now):
            return Reply("rejected", "New here? Chat a little before voting.")
        out = self.engine.vote(event.viewer, event.number, now, round_no=event.round)
        if out.status in ("voted", "changed"):
            self.counts["votes"] += 1
            self._place(event, out.round, None, out.number)
            return Reply("voted", f"Voted for #{out.number}.", out.number, out.round)
        if out.status == "locked":
            return Reply("rejected", _REJECTED["locked"])
        if out.status == "anarchy":
            return Reply("rejected", "Anarchy mode: no votes, just !p <idea>.")
        if out.status == "closed":
            return Reply("rejected", "That round is over; vote in the new one.")
        if out.status == "stale":
            when = "the last round" if out.round == self.engine.current.number - 1 else f"round {out.round}"
            # the number it named, and where: an adapter that answers few things (Twitch) answers this one
            return Reply(
                "unknown",
                f"#{event.number} was in {when}; vote for one of this round's ideas.",
                event.number,
                out.round,
            )
        return Reply("unknown", f"There is no #{event.number} this round.")

    def _mode_vote(self, viewer: Viewer, mode: str, now: float) -> Reply:
        # `parse` names no other mode
        out = self.engine.mode_vote(viewer, "anarchy" if mode == "anarchy" else "rounds", now)
        if out.status == "mode_vote":
            self.counts["votes"] += 1
            return Reply("voted", f"Your vote for {'anarchy' if mode == 'anarchy' else 'democracy'} counts.")
        if out.status == "locked":
            return Reply("rejected", _REJECTED["locked"])
        return Reply("rejected", "The mode is the streamer's choice here.")

    def _prompt(self, event: PromptEvent, now: float) -> Reply:
        verdict = self.moderation.check_prompt(event.viewer, event.text, now)
        if not verdict.ok:
            if verdict.reason == "blocked":  # every layer, every category: one reply that names no rule
                self.counts["blocked"] += 1
                self.engine.note_blocked(now)
                return Reply("blocked", REFUSED)
            self.counts["dropped"] += 1
            return Reply("rejected", _REJECTED.get(verdict.reason, "Not now."))
        out = self.engine.submit(event.viewer, verdict.text, now, priority=event.priority, held=verdict.held)
        if out.status in ("new", "pooled"):
            self.counts["prompts"] += 1
            self.counts["held"] += verdict.held
            self._place(event, out.round, verdict.text, None)
            if out.screening:
                return Reply(out.status, CHECKING, None, out.round, out.candidate, screening=True)
            if out.number is None:
                return Reply(out.status, WAITING, None, out.round, out.candidate)
            verb = "is" if out.status == "new" else "joined"
            return Reply(out.status, f"Your idea {verb} #{out.number}.", out.number, out.round, out.candidate)
        if out.status == "queued":
            self.counts["prompts"] += 1
            return Reply("new", "Your idea goes on air next.", None, out.round)
        if out.status == "held":  # anarchy: nobody could approve it before it aired
            self.counts["held"] += 1
            return Reply("blocked", REFUSED)
        self.counts["dropped"] += 1
        return Reply("rejected", _REJECTED.get(out.status, "Not now."))

    def _mod(self, event: ModEvent, now: float) -> Reply:
        viewer = event.viewer
        if not viewer.is_moderator:
            return Reply("denied")
        actor = f"{viewer.platform}:{viewer.name}"
        if event.action == "ban":
            if not event.target:
                return Reply("rejected", "Usage: !ban user")
            self.ban(event.target, actor=actor, platform=viewer.platform, now=now)
        elif event.action == "unban":
            self.unban(event.target, actor=actor, platform=viewer.platform, now=now)
        elif event.action == "skip":
            self.skip_round(actor=actor, now=now, as_seen=True)
        else:
            self.lock(actor=actor, locked=event.action == "lock", now=now)
        return Reply("done", f"Done: {event.action} {event.target}".strip())

    def _place(self, event: PromptEvent | VoteEvent, round_no: int, text: str | None, number: int | None) -> None:
        if not event.id:
            return
        self._placed[(event.viewer.platform, event.id)] = (event.viewer.key, round_no, text, number)

    def screen_text(self, text: str) -> str | None:
        """A prompt the streamer puts on air without a vote: the cleaned text when
        every moderation layer passes it, None when it can't go on air."""
        return self.moderation.check_text(text)

    def retract_message(self, platform: str, message_id: str, *, actor: str = "") -> bool:
        """A moderator deleted a message on its platform: its prompt or vote leaves the ballot."""
        placed = self._placed.pop((platform, message_id), None)
        if placed is None:
            return False
        key, round_no, text, number = placed
        removed = self.engine.retract(key, round_no=round_no, prompt=text, number=number)
        if removed:
            self._log(actor or platform, "retract", f"{key}: a deleted message")
        return removed > 0

    def retract_viewer(self, viewer: Viewer, *, actor: str = "", why: str = "") -> int:
        """A viewer's messages were cleared, or they were banned or timed out, on their platform:
        their prompts and votes leave the ballot now."""
        removed = self.engine.retract(viewer.key)
        if removed:
            self._log(actor or viewer.platform, "retract", f"{viewer.key} ({viewer.name}){': ' + why if why else ''}")
        return removed

    async def settle(self, reply: Reply, timeout: float = 2.0) -> Reply:
        """The final answer to a prompt: waits (at most `timeout`) for the safety screen when
        `reply.screening`, then says the idea's number, that it waits for a moderator, or the
        one refusal. Anything else comes back as it is."""
        if not reply.screening or reply.candidate is None:
            return reply
        key = (reply.round, reply.candidate)
        found = self._screened.get(key)
        if found is None:
            fut: asyncio.Future[Screened] = asyncio.get_running_loop().create_future()
            self._waiting.setdefault(key, []).append(fut)
            try:
                found = await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                return reply
            finally:
                waiting = self._waiting.get(key, [])
                if fut in waiting:
                    waiting.remove(fut)
                if not waiting:
                    self._waiting.pop(key, None)
        return _settled(reply, found)

    def _deliver_screened(self) -> None:
        """Hand the screen's verdicts to the viewers waiting for them (on the loop)."""
        for s in self.engine.take_screened():
            self.changes += 1
            key = (s.round, s.candidate)
            self._screened[key] = s
            for fut in self._waiting.pop(key, []):
                if not fut.done():
                    fut.set_result(s)

    def screen_now(self) -> None:
        """Pool and screen what is waiting, here and now (what `run`'s worker does), and tell
        whoever waits in `settle`."""
        self.engine.pool()
        self._deliver_screened()

    # -- time and results ---------------------------------------------------------
    def subscribe(self, callback: Callable[[RoundResult], object]) -> Callable[[], None]:
        """Call `callback(result)` on the loop after every round; returns the unsubscriber."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def _publish(self, results: list[RoundResult]) -> None:
        for result in results:
            self.changes += 1
            if self.store is not None:
                self.store.record_round(result)
            for cb in list(self._subscribers):
                try:
                    ret = cb(result)
                    if inspect.isawaitable(ret):
                        asyncio.ensure_future(ret)
                except Exception:  # one adapter's bug must not stop the rounds
                    log.exception("round subscriber failed")

    def tick(self, now: float | None = None) -> Winner | None:
        """Move the rounds on; the winner to put on air now, if any."""
        now = self.clock() if now is None else now
        round_before = self.engine.current.number
        results = self.engine.tick(now)
        if self.engine.current.number != round_before:  # a round opened (its winner comes after the grace)
            self.changes += 1
        self._deliver_screened()  # a round decided at once screens what was left
        self._publish(results)
        for switch in self.engine.take_switches():
            self._log(
                "chat", "mode", f"{switch.mode} (chat vote {switch.anarchy} anarchy, {switch.democracy} democracy)"
            )
        winners = [r.winner for r in results if r.winner is not None]
        if winners:
            # `!now` answers with the winner from here on; the director's event follows
            # in the same tick (`note_on_air`) and is the one the timeline records
            self.on_air_text = winners[-1].text
            return winners[-1]
        return None

    def set_world(self, spec: WorldSpec) -> None:
        """Another world is on air: its preset says which safety categories it allows."""
        self.moderation.set_world(spec)

    def note_on_air(self, entry: OnAir) -> None:
        """A director listener: what is on air, for `!now` (the show writes the timeline)."""
        self.on_air_text = entry.text

    def banned(self) -> tuple[str, ...]:
        """Every ban in force, as keys ("twitch:name", "*:name", "discord:id"), sorted."""
        return tuple(sorted(self.moderation.bans))

    def snapshot(self, now: float | None = None) -> Snapshot:
        return self.engine.snapshot(self.clock() if now is None else now)

    def now_text(self, now: float | None = None) -> str:
        s = self.snapshot(now)
        on = f"Now: {self.on_air_text}." if self.on_air_text else "The world is telling its own story."
        if s.mode == "anarchy":
            back = " !democracy to vote for rounds again." if s.meter is not None else ""
            return f"{on} Anarchy mode: every !p goes on air.{back}"
        return f"{on} Round {s.round}, {s.time_left:.0f}s left."

    async def run(
        self, on_winner: Callable[[Winner], object], *, interval: float = 0.1, save_every_s: float = 1.0
    ) -> None:
        """Tick, pool near-duplicates in a worker thread, save the round; until `close()`."""
        self._closed = asyncio.Event()
        last_save = 0.0
        try:
            await asyncio.to_thread(self.moderation.warm_up)
        except Exception:  # the screen itself refuses what it cannot check
            log.exception("the safety layers could not warm up")
        while not self._closed.is_set():
            try:
                if self.engine.has_pending():  # pooling and the safety screen, off the loop
                    await asyncio.to_thread(self.engine.pool)
                    self._deliver_screened()
                now = self.clock()
                winner = self.tick(now)
                if winner is not None:
                    try:
                        on_winner(winner)
                    except Exception:
                        log.exception("putting the winner on air failed")
                if self.store is not None and now - last_save >= save_every_s:
                    last_save = now
                    self.store.save_state(self.engine.state(now))
            except Exception:  # the show goes on whatever one tick did
                log.exception("audience tick failed")
            try:
                await asyncio.wait_for(self._closed.wait(), interval)
            except TimeoutError:
                pass

    async def close(self) -> None:
        if self._closed is not None:
            self._closed.set()
        if self.store is not None:
            self.store.save_state(self.engine.state(self.clock()))

    def resume(self, now: float | None = None) -> bool:
        """Pick up the round saved before a restart; True when there was one."""
        if self.store is None:
            return False
        state = self.store.load_state()
        if not state:
            return False
        self.engine.restore(state, self.clock() if now is None else now)
        self.changes += 1
        log.info("resumed round %s with %d candidate(s)", state.get("round"), len(state.get("candidates", [])))
        return True

    # -- the console's (and moderators') actions ---------------------------------
    def _log(self, actor: str, action: str, detail: str = "") -> None:
        """A control or a moderator's action: recorded, and the state it changed published."""
        self.changes += 1
        log.info("%s: %s %s", actor, action, detail)
        if self.store is not None:
            self.store.log_action(actor, action, detail)

    def skip_round(self, *, actor: str, now: float | None = None, as_seen: bool = False) -> None:
        """End the round with no winner: the one under way, or (`as_seen`: a
        moderator in chat) the one viewers see on the delayed stream."""
        now = self.clock() if now is None else now
        results = self.engine.skip(now, as_seen=as_seen)
        self._publish(results)
        self._log(actor, "skip", ",".join(f"round {r.round}" for r in results))

    def approve(self, candidate_id: int, *, actor: str) -> bool:
        view = self.engine.approve(candidate_id, approved=True)
        self._log(actor, "approve", f"#{candidate_id}")
        return view is not None

    def reject(self, candidate_id: int, *, actor: str) -> bool:
        view = self.engine.approve(candidate_id, approved=False)
        self._log(actor, "reject", f"#{candidate_id}")
        return view is not None

    def ban(
        self,
        user: str,
        *,
        actor: str,
        platform: str | None = None,
        user_id: str | None = None,
        now: float | None = None,
    ) -> None:
        """Ban a viewer (on one platform, or everywhere); their votes this round go too.

        With `user_id` the ban holds that platform account whatever it is called later; by
        name, it also holds the accounts recently seen under that name."""
        keys = self.moderation.ban(user, platform, user_id=user_id or "")
        banned = set(keys)
        name = user.lstrip("@").lower()

        def match(key: str) -> bool:
            if key in banned:
                return True
            plat, rest = key.split(":", 1)  # viewers without an id are keyed by name
            return not user_id and rest == name and (platform is None or plat == platform)

        self.engine.remove_viewer(match)
        if self.store is not None:
            for key in keys:
                self.store.add_ban(key, actor, self.moderation.ban_names.get(key, ""))
        self._log(actor, "ban", ",".join(keys))

    def unban(
        self,
        user: str,
        *,
        actor: str,
        platform: str | None = None,
        user_id: str | None = None,
        now: float | None = None,
    ) -> None:
        keys = self.moderation.unban(user, platform)
        if user_id:
            keys += self.moderation.unban(user_id, platform)
        if not keys and platform:  # a console ban applies everywhere; a mod may lift it
            keys = self.moderation.unban(user, None)
        if self.store is not None:
            for k in keys:
                self.store.remove_ban(k)
        self._log(actor, "unban", ",".join(keys) or user)

    def lock(self, *, actor: str, locked: bool = True, now: float | None = None, action: str | None = None) -> None:
        """Stop (or start again) taking prompts and votes; recorded as `action`
        (the kill switch's one entry) or as lock/unlock."""
        self.engine.set_locked(locked)
        self._log(actor, action or ("lock" if locked else "unlock"))

    def set_round_length(self, seconds: float, *, actor: str, now: float | None = None) -> None:
        self.engine.set_round_length(seconds, self.clock() if now is None else now)
        self._log(actor, "round_length", f"{seconds:g}s")

    def set_mode(self, mode: Mode, *, actor: str, now: float | None = None) -> Winner | None:
        """Switch mode; a round under way is decided at once (its winner is returned)."""
        results = self.engine.set_mode(mode, self.clock() if now is None else now)
        self._publish(results)
        self._log(actor, "mode", mode)
        winners = [r.winner for r in results if r.winner is not None]
        if winners:
            # `!now` answers with the winner from here on; the director's event follows
            # in the same tick (`note_on_air`) and is the one the timeline records
            self.on_air_text = winners[-1].text
            return winners[-1]
        return None


REFUSED = "That prompt can't go on air."
CHECKING = "Your idea is being checked."
WAITING = "Your idea waits for a moderator."


def _settled(reply: Reply, s: Screened) -> Reply:
    if s.outcome == "refused":
        return Reply("blocked", REFUSED, None, reply.round)
    if s.outcome == "held" or s.number is None:
        return Reply(reply.kind, WAITING, None, reply.round, reply.candidate)
    verb = "joined" if reply.kind == "pooled" or s.outcome == "joined" else "is"
    return Reply(reply.kind, f"Your idea {verb} #{s.number}.", s.number, reply.round, reply.candidate)


_REJECTED = {
    "empty": "That prompt is empty.",
    "rate_limited": "Slow down a little.",
    "new_viewer": "New here? Chat a little before prompting.",
    "locked": "Prompts and votes are locked right now.",
    "banned": "",
}


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False
