"""Voting rounds: candidates, one vote per viewer per round, a winner.

A round lasts `round_s`; prompts and votes come in; when it ends the next
round opens at once. Viewers see the stream `stream_delay_s` late (Twitch's
normal latency is several seconds) and chat takes a moment more, so votes
for the old round still count for `stream_delay_s + grace_s`. Then the old
round is decided: most weighted votes, ties to the earlier candidate, never a
viewer still cooling down from their last win, never a banned one.

Candidates are numbered once per show: a number is never given again, so a
late `!vote 3` lands on the #3 the viewer saw, or is answered ("#3 was in the
last round"), never counted for another idea. Near-duplicate prompts are
pooled into one candidate shown under its first wording: identical wording
at once, similar ideas in batches (`pool()`, off the asyncio loop; the
decision is `streambot.pooling`'s).

A new candidate is hidden (not in the snapshot, not votable, cannot win)
until the `screen` handed in (moderation's semantic layer) has passed it;
that happens in the same worker batch as pooling, on the same embeddings.
It gets its number only then, so no viewer is told a number for an idea
that never shows. A refused candidate is dropped with its votes and counted
as blocked. One the layers are unsure of is held: it waits, unnumbered and
unshown, for a moderator's approval (`approve`), as in approval mode, and
is neither pooled with others nor can others pool into it; unapproved when
the round is decided, it never airs. Deciding a round never waits for the
screen (it may run on the asyncio loop, and the screen may wait for its model
to load): a candidate the worker has not screened by then is left out.
`take_screened` says what became of each screened candidate, for whoever
told its viewer to wait.

In `anarchy` mode there are no rounds: each accepted prompt goes on air by
itself, rate-limited per viewer and overall, once screened. With `mode_vote` on, chat moves
a meter with `!anarchy` and `!democracy` and the engine switches modes when
one side holds `mode_vote_threshold` of the recent votes (Twitch Plays
Pokemon's rule), at most once per `mode_vote_cooldown_s`.

The engine is synchronous and takes `now` from its caller, so the live app,
the replay and the tests drive it on their own clocks. Its methods are
thread-safe; `pool()` may run in a worker thread.
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .config import VotingSettings
from .lexicon import WordNet
from .pooling import Pooler, Prompt, content_words, exact_key
from .ratelimit import RateLimiter
from .viewer import Viewer

log = logging.getLogger(__name__)

Mode = Literal["rounds", "anarchy"]
ScreenVerdict = Literal["admit", "hold", "refuse"]
# texts, their embeddings (None when pooling has none) -> per text "admit", "hold" (for a
# moderator) or "refuse" (True and False are read as admit and refuse)
Screen = Callable[[list[str], "np.ndarray | None"], Sequence["ScreenVerdict | bool"]]

__all__ = ["VotingEngine", "Pooler", "content_words", "exact_key"]


# -- the round -------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class Candidate:
    id: int  # arrival order, never given twice in a show (what a moderator approves by); ties go to the lower
    text: str  # the first wording
    author: Viewer
    at: float
    number: int | None = None  # what viewers vote with; None until approved
    approved: bool = True
    priority: bool = False
    votes: float = 0.0
    voters: dict[str, Viewer] = field(default_factory=dict)  # in order of voting
    submitters: list[Viewer] = field(default_factory=list)
    merged_into: Candidate | None = None
    prompt: Prompt | None = None  # what pooling knows about it, once pooled
    vector: np.ndarray | None = None  # its sentence embedding, once pooled
    screened: bool = True  # False: hidden until the safety screen has passed it
    held: bool = False  # the safety layers were unsure: it waits for a moderator

    def live(self) -> Candidate:
        c = self
        while c.merged_into is not None:
            c = c.merged_into
        return c


@dataclass(slots=True)
class Ballot:
    candidate: Candidate
    weight: float
    at: float
    viewer: Viewer | None = None


@dataclass(eq=False)
class Round:
    number: int
    opened: float
    closes: float
    candidates: list[Candidate] = field(default_factory=list)  # live ones, by id
    by_number: dict[int, Candidate] = field(default_factory=dict)
    by_key: dict[str, Candidate] = field(default_factory=dict)
    ballots: dict[str, Ballot] = field(default_factory=dict)
    pending: list[Candidate] = field(default_factory=list)  # not yet compared by embedding
    pooled: list[Candidate] = field(default_factory=list)
    vectors: np.ndarray | None = None  # row i: pooled[i]'s embedding (zeros if none)
    by_words: dict[frozenset[str], list[Candidate]] = field(default_factory=dict)  # pooled, without embeddings
    blocked: int = 0
    held: int = 0  # candidates held for a moderator (and prompts, in anarchy)
    done: bool = False
    skipped: bool = False


# -- results and views -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CandidateView:
    id: int
    number: int | None
    text: str
    votes: float
    users: tuple[str, ...]  # who voted for it (submitting counts), in order
    author: str
    platform: str
    approved: bool
    held: bool = False  # waiting because the safety layers were unsure (not approval mode)


@dataclass(frozen=True, slots=True)
class Winner:
    text: str
    user: str
    platform: str
    round: int
    votes: float
    priority: bool = False


@dataclass(frozen=True, slots=True)
class RoundResult:
    round: int
    opened: float
    closed: float
    winner: Winner | None
    candidates: tuple[CandidateView, ...]  # most votes first
    blocked: int
    skipped: bool = False
    mode: Mode = "rounds"
    ballots: tuple[Ballot, ...] = ()  # the final vote of each viewer
    held: int = 0  # held for a moderator (those never approved did not run)

    def to_json(self) -> dict[str, object]:
        """The replay's line: round, mode, winner and who is credited, candidates (text, votes, users),
        blocked, held, skipped."""

        def num(v: float) -> float | int:
            return int(v) if float(v).is_integer() else round(v, 3)

        return {
            "round": self.round,
            "mode": self.mode,
            "winner": self.winner.text if self.winner else None,
            "by": self.winner.user if self.winner else None,
            "candidates": [{"text": c.text, "votes": num(c.votes), "users": list(c.users)} for c in self.candidates],
            "blocked": self.blocked,
            "held": self.held,
            "skipped": self.skipped,
        }


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the overlay, the console and `!now` show. Read-only."""

    mode: Mode
    round: int
    time_left: float
    round_s: float
    grace_s: float  # how long after a round's end its votes still count (stream delay included)
    locked: bool
    approval: bool
    candidates: tuple[CandidateView, ...]  # the top N, numbered, most votes first
    total_candidates: int
    voters: int
    pending: tuple[CandidateView, ...]  # awaiting approval (console only)
    last: RoundResult | None
    meter: Meter | None = None  # chat's vote between the modes, when it may switch them


@dataclass(frozen=True, slots=True)
class Meter:
    """Chat's vote between anarchy and democracy (voting rounds), as the console shows it."""

    anarchy: int  # viewers whose latest mode vote, within the window, is anarchy
    democracy: int
    threshold: float  # the share one side needs
    min_voters: int  # and at least this many viewers on it
    cooldown_left_s: float  # until chat may switch again

    @property
    def share(self) -> float | None:
        """Anarchy's share of the votes (None: nobody voted)."""
        total = self.anarchy + self.democracy
        return self.anarchy / total if total else None


@dataclass(frozen=True, slots=True)
class ModeSwitch:
    """Chat switched the mode: for the timeline."""

    mode: Mode
    at: float
    anarchy: int
    democracy: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one prompt or vote."""

    status: Literal[
        "new",
        "pooled",
        "queued",
        "held",
        "voted",
        "changed",
        "unknown",
        "stale",
        "locked",
        "anarchy",
        "rate_limited",
        "closed",
        "mode_vote",
        "mode_off",
    ]
    number: int | None = None
    round: int = 0
    candidate: int | None = None  # the candidate's id in its round (new and pooled)
    screening: bool = False  # it waits for the safety screen: its number comes after


@dataclass(frozen=True, slots=True)
class Screened:
    """What the safety screen made of a candidate a viewer was told to wait for."""

    round: int
    candidate: int  # its id in the round
    outcome: Literal["shown", "joined", "held", "refused"]  # joined: pooled into another idea
    number: int | None = None  # what viewers vote with (shown, joined)


def _top(cands: Sequence[Candidate], n: int) -> list[Candidate]:
    return heapq.nsmallest(n, cands, key=lambda c: (-c.votes, c.id))


# -- the engine -----------------------------------------------------------------


class VotingEngine:
    def __init__(
        self,
        settings: VotingSettings | None = None,
        *,
        now: float = 0.0,
        approval: bool = False,
        embed: Callable[[list[str]], np.ndarray] | None = None,
        lexicon: WordNet | None = None,
        screen: Screen | None = None,
    ) -> None:
        s = self.settings = settings or VotingSettings()
        self.mode: Mode = s.mode
        self.round_s = s.round_s
        self.stream_delay_s = s.stream_delay_s
        self.grace_s = s.grace_s
        self.top_n = s.top_n
        self.cooldown_rounds = s.cooldown_rounds
        self.weights = s.weights.model_dump()
        self.approval = approval
        self.locked = False
        self.pooler = Pooler(embed, lexicon, threshold=s.pool_threshold, reworded=s.pool_threshold_reworded)
        self.screen = screen
        self._anarchy_unscreened: list[Winner] = []
        self._lock = threading.RLock()
        self._cooldown: dict[str, int] = {}  # viewer key -> last round they cannot win
        self._round_no = 0
        self._next_number = 1  # candidate numbers are never given twice in a show
        self._next_id = 1  # nor are candidate ids
        self.held_wait_s = s.held_wait_s
        self._retired: dict[int, int] = {}  # number -> its round, for rounds already decided
        self._mode_votes: dict[str, tuple[Mode, float]] = {}  # viewer key -> (mode, when), oldest first
        self._last_switch = float("-inf")
        self._switches: list[ModeSwitch] = []
        self.current: Round = self._open(now)
        self.closing: Round | None = None  # ended, still taking late votes
        self.last: RoundResult | None = None
        self._anarchy_viewer = RateLimiter(1.0 / max(s.anarchy_viewer_interval_s, 1e-6), 1)
        self._anarchy_global = RateLimiter(1.0 / max(s.anarchy_global_interval_s, 1e-6), 1)
        self._anarchy_queue: list[Winner] = []
        self._screened: deque[Screened] = deque(maxlen=4096)  # until `take_screened`

    # -- rounds
    def _open(self, at: float) -> Round:
        self._round_no += 1
        return Round(self._round_no, at, at + self.round_s)

    @property
    def late_s(self) -> float:
        """How long after its end a round still takes votes: what viewers see lags by the stream delay."""
        return self.stream_delay_s + self.grace_s

    def weight(self, viewer: Viewer) -> float:
        roles = viewer.roles or frozenset(("viewer",))
        return max((self.weights.get(r, self.weights["viewer"]) for r in roles), default=1.0)

    def next_deadline(self) -> float:
        """The next time `tick` has something to do (rounds mode)."""
        with self._lock:
            if self.closing is not None:
                return min(self.current.closes, self.closing.closes + self.late_s)
            return self.current.closes

    def tick(self, now: float) -> list[RoundResult]:
        """Close rounds whose time is up; decide those whose grace has passed."""
        out: list[RoundResult] = []
        with self._lock:
            if self.mode == "anarchy":  # (prompts the worker has not screened yet wait for it)
                while self._anarchy_queue:
                    w = self._anarchy_queue.pop(0)
                    out.append(self._anarchy_result(w, now))
                return out + self._mode_meter(now)
            out += self._mode_meter(now)
            if self.mode != "rounds":  # chat just chose anarchy
                return out
            while True:
                if self.closing is not None and now >= self.closing.closes + self.late_s:
                    out.append(self._finish(self.closing, self.closing.closes + self.late_s))
                    self.closing = None
                elif now >= self.current.closes:
                    if self.closing is not None:  # only when grace was raised mid-round
                        out.append(self._finish(self.closing, now))
                    ended = self.current
                    start = ended.closes if now - ended.closes < self.round_s else now
                    self.closing, self.current = ended, self._open(start)
                    for cand in [c for c in ended.candidates if self._waiting(c)]:
                        self._carry(ended, cand, now)
                else:
                    self._expire(now)
                    return out

    def _waiting(self, cand: Candidate) -> bool:
        """Whether a candidate waits for a moderator: screened, not approved, not pooled away."""
        return cand.screened and not cand.approved and cand.merged_into is None

    def _carry(self, r: Round, cand: Candidate, now: float) -> None:
        """An idea waiting for a moderator moves into the round viewers see now (where the console
        lists it and an approval numbers it), its submitters' votes with it: a round's end never
        drops it unseen. Called with the lock held."""
        to = self.current
        self._forget(r, cand)
        key = exact_key(cand.text)
        same = to.by_key.get(key)
        if same is not None:  # submitted again meanwhile: one idea, every submitter on it
            same = same.live()
            same.submitters.extend(v for v in cand.submitters if v not in same.submitters)
            cand.merged_into, target = same, same
        else:
            to.candidates.append(cand)
            to.by_key[key] = cand
            target = cand
        for viewer in cand.submitters:
            if viewer.key not in to.ballots:
                self._cast(to, viewer, target, now)

    def _expire(self, now: float) -> None:
        """Ideas no moderator decided on within `held_wait_s` of their arrival leave."""
        r = self.current
        for cand in [c for c in r.candidates if self._waiting(c) and now - c.at > self.held_wait_s]:
            self._forget(r, cand)

    # -- prompts and votes
    def submit(self, viewer: Viewer, text: str, now: float, *, priority: bool = False, held: bool = False) -> Outcome:
        """A moderated prompt (`held`: the inline layers were unsure); the viewer's vote goes with it."""
        with self._lock:
            if self.locked:
                return Outcome("locked")
            if self.mode == "anarchy":
                if held:  # nobody can approve a prompt that goes on air at once: it never does
                    self.current.held += 1
                    return Outcome("held", None, self._round_no)
                return self._anarchy_submit(viewer, text, now)
            r = self.current
            key = exact_key(text)
            cand = r.by_key.get(key)
            if cand is not None:
                cand = cand.live()
                cand.submitters.append(viewer)
                self._cast(r, viewer, cand, now)
                return Outcome("pooled", cand.number, r.number, cand.id, not cand.screened)
            cand = Candidate(
                self._next_id,
                text,
                viewer,
                now,
                approved=not (self.approval or held),
                priority=priority,
                submitters=[viewer],
                screened=self.screen is None,
                held=held,
            )
            self._next_id += 1
            if held:
                r.held += 1
            if cand.approved and cand.screened:
                self._number(r, cand)
            r.candidates.append(cand)
            r.by_key[key] = cand
            r.pending.append(cand)
            self._cast(r, viewer, cand, now)
            return Outcome("new", cand.number, r.number, cand.id, not cand.screened)

    def vote(self, viewer: Viewer, number: int, now: float, *, round_no: int | None = None) -> Outcome:
        """A vote for candidate `number`; with `round_no` (a Discord button) only in that round."""
        with self._lock:
            if self.locked:  # the lock stops votes as well as prompts
                return Outcome("locked")
            if self.mode == "anarchy":
                return Outcome("anarchy")
            r = self.current
            cand = r.by_number.get(number)
            if cand is None and self.closing is not None and number in self.closing.by_number:
                r = self.closing  # the round the viewer still sees on a delayed stream
                cand = r.by_number[number]
                if now >= r.closes + self.late_s:
                    return Outcome("stale", number, r.number)
            if cand is None:
                if number in self._retired:
                    return Outcome("stale", number, self._retired[number])
                return Outcome("unknown", number, self.current.number)
            if round_no is not None and round_no != r.number:
                return Outcome("closed", number, r.number)
            if not cand.live().screened:  # hidden until the safety screen has passed it
                return Outcome("unknown", number, self.current.number)
            cand = cand.live()
            old = r.ballots.get(viewer.key)
            if old is not None and old.candidate.live() is cand:
                return Outcome("voted", cand.number, r.number)
            self._cast(r, viewer, cand, now)
            return Outcome("changed" if old else "voted", cand.number, r.number)

    def note_blocked(self, now: float) -> None:
        with self._lock:
            self.current.blocked += 1

    def _number(self, r: Round, cand: Candidate) -> None:
        cand.number = self._next_number
        r.by_number[cand.number] = cand
        self._next_number += 1

    def _cast(self, r: Round, viewer: Viewer, cand: Candidate, now: float) -> None:
        key = viewer.key
        old = r.ballots.get(key)
        weight = self.weight(viewer)
        if old is not None:
            prev = old.candidate.live()
            prev.votes -= old.weight
            prev.voters.pop(key, None)
        r.ballots[key] = Ballot(cand, weight, now, viewer)
        cand.votes += weight
        cand.voters[key] = viewer

    def _merge(self, r: Round, cand: Candidate, into: Candidate) -> None:
        into.submitters.extend(cand.submitters)
        for key, viewer in cand.voters.items():
            r.ballots[key].candidate = into
            into.voters.setdefault(key, viewer)
        into.votes += cand.votes
        cand.votes = 0.0
        cand.voters = {}
        cand.merged_into = into
        if cand.priority:
            into.priority = True
        r.candidates.remove(cand)
        if cand.number is not None and not into.approved:
            into.approved = True  # a moderator approved one wording of it
            self._number(r, into)

    def remove_viewer(self, viewer_key_match: Callable[[str], bool]) -> int:
        """Take back the votes of viewers (a ban); their lone candidates go too,
        and a candidate others also submitted is no longer credited to them."""
        removed = 0
        with self._lock:
            for r in filter(None, (self.closing, self.current)):
                for key in [k for k in r.ballots if viewer_key_match(k)]:
                    b = r.ballots.pop(key)
                    c = b.candidate.live()
                    c.votes -= b.weight
                    c.voters.pop(key, None)
                    removed += 1
                for c in list(r.candidates):
                    keep = [v for v in c.submitters if not viewer_key_match(v.key)]
                    if not keep:
                        self._drop(r, c)
                    elif len(keep) < len(c.submitters):
                        c.submitters, c.author = keep, keep[0]
            for key in [k for k in self._mode_votes if viewer_key_match(k)]:
                del self._mode_votes[key]
        return removed

    def retract(
        self, key: str, *, round_no: int | None = None, prompt: str | None = None, number: int | None = None
    ) -> int:
        """Take back what one viewer put in the ballot of the rounds still open.

        With `prompt` (their wording) or `number` (what they voted for), in round `round_no`:
        that one message, deleted by a moderator. With neither: everything of theirs (their
        messages were cleared, they were banned or timed out). Their vote goes; so does their
        submission, and a candidate nobody else submitted; one others also submitted stays,
        credited to the next of them. Returns how many votes and submissions went.
        """
        removed = 0
        with self._lock:
            for r in filter(None, (self.closing, self.current)):
                if r.done or (round_no is not None and r.number != round_no):
                    continue
                if prompt is not None:
                    found = r.by_key.get(exact_key(prompt))
                elif number is not None:
                    found = r.by_number.get(number)
                else:
                    found = None
                only = found.live() if found is not None else None
                if (prompt is not None or number is not None) and (only is None or only not in r.candidates):
                    continue
                ballot = r.ballots.get(key)
                if ballot is not None and (only is None or ballot.candidate.live() is only):
                    del r.ballots[key]
                    cand = ballot.candidate.live()
                    cand.votes -= ballot.weight
                    cand.voters.pop(key, None)
                    removed += 1
                if number is not None:
                    continue  # a vote's message: the viewer's submissions stay
                for cand in [only] if only is not None else list(r.candidates):
                    mine = [v for v in cand.submitters if v.key == key]
                    if not mine:
                        continue
                    if prompt is not None:
                        mine = mine[:1]  # one message, one submission
                    for v in mine:
                        cand.submitters.remove(v)
                    removed += len(mine)
                    if cand.submitters:
                        cand.author = cand.submitters[0]
                    else:
                        self._forget(r, cand)
                        # Its number no longer leads to it either.
                        r.by_number = {n: c for n, c in r.by_number.items() if c.live() is not cand}
        return removed

    def _forget(self, r: Round, cand: Candidate) -> None:
        """A candidate gone for good (refused, withdrawn, expired, moved on): dropped,
        and its wording no longer leads to it. (A candidate pooled into another is
        only dropped: its wording leads to the one it joined.)"""
        self._drop(r, cand)
        r.by_key = {k: c for k, c in r.by_key.items() if c.live() is not cand}

    def _drop(self, r: Round, cand: Candidate) -> None:
        for key in list(cand.voters):
            r.ballots.pop(key, None)
        cand.voters = {}
        cand.votes = 0.0
        if cand in r.candidates:
            r.candidates.remove(cand)
        if cand in r.pending:
            r.pending.remove(cand)
        if cand in r.pooled:  # rare (a ban, a rejection): rebuild the rows
            pooled, r.pooled, r.vectors, r.by_words = r.pooled, [], None, {}
            for c in pooled:
                if c is not cand:
                    self._add_pooled(r, c)

    # -- pooling near-duplicates
    def pool(self) -> int:
        """Compare new candidates with the round's others; merge the same ideas.

        The embedding runs outside the lock, once per batch, so this can be
        called from a worker thread while chat keeps coming in. Each candidate
        keeps its embedding (`Candidate.vector`). Returns how many were merged.
        """
        with self._lock:
            batch = [(r, c) for r in filter(None, (self.closing, self.current)) for c in r.pending]
            for r in filter(None, (self.closing, self.current)):
                r.pending = []
            anarchy = self._take_anarchy()
        if anarchy:
            self._screen_anarchy(anarchy)
        if not batch:
            return 0
        prompts = self._prepare([c.text for _, c in batch])
        vectors = _vectors(prompts)
        verdicts = self._screen([c for _, c in batch], vectors)
        merged = 0
        with self._lock:
            for i, ((r, cand), prompt) in enumerate(zip(batch, prompts)):
                if r.done or cand.merged_into is not None or cand not in r.candidates:
                    continue
                merged += self._settle(r, cand, prompt, verdicts[i])
        return merged

    def _settle(self, r: Round, cand: Candidate, prompt: Prompt, verdict: ScreenVerdict) -> int:
        """A screened candidate: refused, held, or shown (pooled with the same idea, numbered); 1 if merged."""
        fresh = not cand.screened
        if verdict == "refuse":
            self._refuse(r, cand)
            self._screened.append(Screened(r.number, cand.id, "refused"))
            return 0
        cand.screened = True
        if (verdict == "hold" or cand.held) and cand.number is None:  # not if a moderator approved it already
            if not cand.held:
                cand.held, cand.approved = True, False
                r.held += 1
            cand.prompt, cand.vector = prompt, prompt.vector  # not pooled: nothing may ride on it
            if fresh:
                self._screened.append(Screened(r.number, cand.id, "held"))
            if r is not self.current and not r.done:  # its round ended meanwhile
                self._carry(r, cand, cand.at)
            return 0
        merged = self._place(r, cand, prompt)
        live = cand.live()
        if live.approved and live.number is None:
            self._number(r, live)
        if fresh:
            self._screened.append(Screened(r.number, cand.id, "joined" if merged else "shown", live.number))
        return merged

    def take_screened(self) -> list[Screened]:
        """What the screen decided since the last call (thread-safe)."""
        with self._lock:
            out = list(self._screened)
            self._screened.clear()
            return out

    def _screen(self, cands: list[Candidate], vectors: np.ndarray | None) -> list[ScreenVerdict]:
        """The safety screen's verdicts for candidates not yet screened."""
        out: list[ScreenVerdict] = ["admit"] * len(cands)
        if self.screen is None:
            return out
        todo = [i for i, c in enumerate(cands) if not c.screened]
        if todo:
            sub = None if vectors is None else vectors[todo]
            for i, v in zip(todo, self.screen([cands[i].text for i in todo], sub)):
                out[i] = _verdict(v)
        return out

    def _refuse(self, r: Round, cand: Candidate) -> None:
        """A candidate the screen refused: gone, with its votes, counted as blocked."""
        self._forget(r, cand)
        if cand.number is not None:
            r.by_number.pop(cand.number, None)
        r.blocked += 1

    def has_pending(self) -> bool:
        """Whether `pool()` has work: candidates to pool or screen."""
        with self._lock:
            return bool(self._anarchy_unscreened) or any(
                r.pending for r in (self.current, self.closing) if r is not None
            )

    def _prepare(self, texts: list[str]) -> list[Prompt]:
        try:
            return self.pooler.prepare(texts)
        except Exception:  # a broken model must not stop voting: pool by words
            log.exception("sentence embedding failed; pooling by words this round")
            return Pooler(None, self.pooler.lexicon).prepare(texts)

    def _place(self, r: Round, cand: Candidate, prompt: Prompt) -> int:
        """Merge a newly analysed candidate into the same idea, or keep it; 1 if merged."""
        cand.prompt, cand.vector = prompt, prompt.vector
        target = self._most_similar(r, cand)
        if target is not None:
            self._merge(r, cand, target)
            return 1
        self._add_pooled(r, cand)
        return 0

    @staticmethod
    def _add_pooled(r: Round, cand: Candidate) -> None:
        n = len(r.pooled)
        r.pooled.append(cand)
        if cand.vector is None:
            if cand.prompt is not None:
                r.by_words.setdefault(cand.prompt.words, []).append(cand)
            return
        if r.vectors is None:
            r.vectors = np.zeros((64, cand.vector.shape[0]), np.float32)
        if n >= r.vectors.shape[0]:
            # (n may be far past the size when the model arrived mid-round)
            grown = np.zeros((max(r.vectors.shape[0] * 2, n + 1), r.vectors.shape[1]), np.float32)
            grown[:n] = r.vectors[:n]
            r.vectors = grown
        r.vectors[n] = cand.vector

    def _most_similar(self, r: Round, cand: Candidate) -> Candidate | None:
        others = r.pooled
        if not others or cand.prompt is None:
            return None
        if cand.vector is not None and r.vectors is not None:
            sims = r.vectors[: len(others)] @ cand.vector  # rows without a vector score 0
            near = np.argpartition(-sims, 4)[:5] if len(others) > 5 else np.arange(len(others))
            order = sorted(near, key=lambda j: (-sims[j], j))
            shortlist: list[Candidate] = [others[j] for j in order]
        else:  # no embeddings: only the same content words can be the same idea
            shortlist = r.by_words.get(cand.prompt.words, []) if cand.prompt.words else []
        for other in shortlist:
            if other.prompt is not None and self.pooler.same(cand.prompt, other.prompt):
                return other
        return None

    # -- deciding
    def _eligible_user(self, cand: Candidate, round_no: int) -> Viewer | None:
        """Who gets the credit: the first submitter not cooling down from a win."""
        for v in cand.submitters:
            if self._cooldown.get(v.key, 0) < round_no:
                return v
        return None

    def _finish(self, r: Round, closed: float) -> RoundResult:
        if r.pending:
            self._close_pending(r)
        r.done = True
        winner: Winner | None = None
        ranked = sorted((c for c in r.candidates if c.screened and not c.held), key=lambda c: (-c.votes, c.id))
        if not r.skipped:
            choices = [c for c in ranked if c.approved and c.votes > 0]
            prio = [c for c in choices if c.priority]
            for c in prio + choices:
                user = self._eligible_user(c, r.number)
                if user is not None:
                    winner = Winner(c.text, user.name, user.platform, r.number, c.votes, c.priority)
                    if self.cooldown_rounds:
                        self._cooldown[user.key] = r.number + self.cooldown_rounds
                    break
        if len(self._cooldown) > 10_000:
            self._cooldown = {k: v for k, v in self._cooldown.items() if v >= r.number}
        self._retired.update(dict.fromkeys(r.by_number, r.number))
        if len(self._retired) > 20_000:  # a long show: the oldest numbers are long forgotten
            for n in list(self._retired)[:10_000]:
                del self._retired[n]
        result = RoundResult(
            r.number,
            r.opened,
            closed,
            winner,
            tuple(_view(c) for c in ranked),
            r.blocked,
            r.skipped,
            "rounds",
            tuple(r.ballots.values()),
            r.held,
        )
        self.last = result
        return result

    def _close_pending(self, r: Round) -> None:
        """What the worker had not reached when the round is decided (usually nothing).

        This runs on the caller's thread, often the asyncio loop (a tick, a
        skip from the console), so it never calls the sentence model or the
        safety screen, which may wait for the model to load: a candidate not
        yet screened is left out of the round, and one already screened is
        pooled by its words."""
        pending, r.pending = r.pending, []
        for cand in pending:
            if not cand.screened:  # never numbered, never shown: its votes go with it
                self._drop(r, cand)
        late = [c for c in pending if c.screened and c.merged_into is None and c in r.candidates]
        if not late:
            return
        prompts = Pooler(None, self.pooler.lexicon).prepare([c.text for c in late])
        for cand, prompt in zip(late, prompts):
            if cand.merged_into is None and cand in r.candidates:
                self._settle(r, cand, prompt, "admit")

    # -- anarchy
    def _anarchy_submit(self, viewer: Viewer, text: str, now: float) -> Outcome:
        limited = not viewer.is_moderator
        if (limited and not self._anarchy_viewer.check(viewer.key, now)) or not self._anarchy_global.check("*", now):
            return Outcome("rate_limited")
        if limited:
            self._anarchy_viewer.allow(viewer.key, now)
        self._anarchy_global.allow("*", now)
        self._round_no += 1
        w = Winner(text, viewer.name, viewer.platform, self._round_no, self.weight(viewer))
        if self.screen is None:
            self._anarchy_queue.append(w)
            del self._anarchy_queue[:-5]
        else:
            self._anarchy_unscreened.append(w)
            del self._anarchy_unscreened[:-5]
        return Outcome("queued", None, self._round_no)

    def _take_anarchy(self) -> list[Winner]:
        taken, self._anarchy_unscreened = self._anarchy_unscreened, []
        return taken

    def _screen_anarchy(self, prompts: list[Winner]) -> None:
        """Screen anarchy prompts; those that pass may go on air."""
        assert self.screen is not None
        verdicts = self.screen([w.text for w in prompts], None)
        with self._lock:
            for w, v in zip(prompts, verdicts):
                verdict = _verdict(v)
                if verdict == "admit":
                    self._anarchy_queue.append(w)
                elif verdict == "hold":  # nobody can approve it before it would air: it never does
                    self.current.held += 1
                else:
                    self.current.blocked += 1
            del self._anarchy_queue[:-5]

    def _anarchy_result(self, w: Winner, now: float) -> RoundResult:
        view = CandidateView(1, None, w.text, w.votes, (w.user,), w.user, w.platform, True)
        blocked, self.current.blocked = self.current.blocked, 0
        held, self.current.held = self.current.held, 0
        result = RoundResult(w.round, now, now, w, (view,), blocked, False, "anarchy", held=held)
        self.last = result
        return result

    # -- the console's controls
    def skip(self, now: float, *, as_seen: bool = False) -> list[RoundResult]:
        """End a round with no winner: the one under way, or with `as_seen`
        (a moderator in chat, watching the delayed stream) the one viewers see,
        which may be the round just ended and still in its grace period."""
        with self._lock:
            seen = self.closing
            if as_seen and seen is not None and now - self.stream_delay_s < seen.closes:
                seen.skipped = True
                self.closing = None
                return [self._finish(seen, now)]
            r = self.current
            r.skipped = True
            out = [self._finish(r, now)]
            self.current = self._open(now)
            return out

    def approve(self, cand_id: int, *, approved: bool = True) -> CandidateView | None:
        """Let a waiting candidate win (approved) or take it out (rejected)."""
        with self._lock:
            r = self.current
            for rr in filter(None, (self.closing, self.current)):
                if any(c.id == cand_id for c in rr.candidates):
                    r = rr
                    break
            cand = next((c for c in r.candidates if c.id == cand_id), None)
            if cand is None:
                return None
            if approved:
                if not cand.approved:
                    cand.approved, cand.held = True, False
                    if cand.number is None:
                        self._number(r, cand)
            else:
                self._forget(r, cand)
            return _view(cand)

    def set_round_length(self, seconds: float, now: float) -> None:
        if not 3 <= seconds <= 120:
            raise ValueError("a round lasts 3 to 120 seconds")
        with self._lock:
            if seconds <= self.late_s:
                raise ValueError(f"a round must last longer than the stream delay and grace ({self.late_s:g} s)")
            self.round_s = float(seconds)
            self.current.closes = max(now, self.current.opened + self.round_s)

    def set_mode(self, mode: Mode, now: float) -> list[RoundResult]:
        """Switch between voting rounds and anarchy; a round under way is decided now."""
        if mode not in ("rounds", "anarchy"):
            raise ValueError("mode is 'rounds' or 'anarchy'")
        with self._lock:
            out: list[RoundResult] = []
            if mode == self.mode:
                return out
            if self.mode == "rounds":
                for r in filter(None, (self.closing, self.current)):
                    out.append(self._finish(r, now))
                self.closing = None
            self.mode = mode
            self._last_switch = now
            self._mode_votes.clear()
            self._anarchy_queue.clear()
            self._anarchy_unscreened.clear()
            self.current = self._open(now) if mode == "rounds" else Round(self._round_no, now, now)
            return out

    # -- chat's vote between the modes
    def mode_vote(self, viewer: Viewer, mode: Mode, now: float) -> Outcome:
        """A viewer's `!anarchy` or `!democracy`: their latest one counts, for `mode_vote_window_s`."""
        if mode not in ("rounds", "anarchy"):
            raise ValueError("mode is 'rounds' or 'anarchy'")
        with self._lock:
            if not self.settings.mode_vote:
                return Outcome("mode_off")
            if self.locked:
                return Outcome("locked")
            self._mode_votes.pop(viewer.key, None)  # re-insert: the dict stays oldest first
            self._mode_votes[viewer.key] = (mode, now)
            return Outcome("mode_vote", None, self.current.number)

    def _meter(self, now: float) -> Meter:
        s = self.settings
        horizon = now - s.mode_vote_window_s
        while self._mode_votes:
            key, (_, at) = next(iter(self._mode_votes.items()))
            if at >= horizon:
                break
            del self._mode_votes[key]
        anarchy = sum(1 for m, _ in self._mode_votes.values() if m == "anarchy")
        return Meter(
            anarchy,
            len(self._mode_votes) - anarchy,
            s.mode_vote_threshold,
            s.mode_vote_min_voters,
            max(0.0, self._last_switch + s.mode_vote_cooldown_s - now),
        )

    def _mode_meter(self, now: float) -> list[RoundResult]:
        """Switch when one side holds the threshold share of enough viewers, after the cool-down."""
        if not self.settings.mode_vote or not self._mode_votes:
            return []
        m = self._meter(now)
        other: Mode = "anarchy" if self.mode == "rounds" else "rounds"
        side = m.anarchy if other == "anarchy" else m.democracy
        total = m.anarchy + m.democracy
        if m.cooldown_left_s > 0 or side < m.min_voters or side < m.threshold * total:
            return []
        out = self.set_mode(other, now)
        self._switches.append(ModeSwitch(other, now, m.anarchy, m.democracy))
        return out

    def take_switches(self) -> list[ModeSwitch]:
        """The switches chat decided since the last call (for the timeline)."""
        with self._lock:
            out, self._switches = self._switches, []
            return out

    def set_locked(self, locked: bool) -> None:
        with self._lock:
            self.locked = locked

    # -- views
    def snapshot(self, now: float) -> Snapshot:
        with self._lock:
            r = self.current
            live = [c for c in r.candidates if c.approved and c.screened]
            top = _top(live, self.top_n) if self.mode == "rounds" else []
            pending = [c for c in r.candidates if not c.approved and c.screened]
            return Snapshot(
                mode=self.mode,
                round=r.number,
                time_left=max(0.0, r.closes - now) if self.mode == "rounds" else 0.0,
                round_s=self.round_s,
                grace_s=self.late_s,
                locked=self.locked,
                approval=self.approval,
                candidates=tuple(_view(c) for c in top),
                total_candidates=len(live),
                voters=len(r.ballots),
                pending=tuple(_view(c) for c in pending[:50]),
                last=self.last,
                meter=self._meter(now) if self.settings.mode_vote else None,
            )

    # -- persistence
    def state(self, now: float) -> dict[str, Any]:
        """The round under way, as plain data for the timeline."""
        with self._lock:
            r = self.current
            return {
                "mode": self.mode,
                "round": r.number,
                "remaining_s": max(0.0, r.closes - now),
                "locked": self.locked,
                "round_s": self.round_s,
                "next_number": self._next_number,
                "next_id": self._next_id,
                "cooldown": dict(self._cooldown),
                "candidates": [
                    {
                        "id": c.id,
                        "number": c.number,
                        "text": c.text,
                        "approved": c.approved,
                        "priority": c.priority,
                        "at": c.at,
                        "submitters": [v.as_dict() for v in c.submitters],
                    }
                    for c in r.candidates
                ],
                "ballots": [
                    {"viewer": c.voters[k].as_dict(), "candidate": b.candidate.live().id, "at": b.at}
                    for k, b in r.ballots.items()
                    for c in (b.candidate.live(),)
                    if k in c.voters
                ],
            }

    def restore(self, state: dict[str, Any], now: float) -> None:  # JSON data, as `state` wrote it
        """Resume a round saved by `state` (after a restart)."""
        with self._lock:
            self.mode = state.get("mode", self.mode)
            self.locked = bool(state.get("locked", False))
            self.round_s = float(state.get("round_s", self.round_s))
            self._cooldown = {k: int(v) for k, v in state.get("cooldown", {}).items()}
            self._round_no = int(state["round"]) - 1
            self._next_number = max(self._next_number, int(state.get("next_number", 1)))
            self._next_id = max(self._next_id, int(state.get("next_id", 1)))
            r = self._open(now)
            r.closes = now + max(3.0, float(state.get("remaining_s", self.round_s)))
            by_id: dict[int, Candidate] = {}
            for c in state.get("candidates", []):
                subs = [Viewer.from_dict(v) for v in c["submitters"]]
                cand = Candidate(
                    int(c["id"]),
                    c["text"],
                    subs[0],
                    now,
                    approved=bool(c["approved"]),
                    priority=bool(c.get("priority")),
                    submitters=subs,
                    screened=self.screen is None,
                )
                if c.get("number") is not None:
                    cand.number = int(c["number"])
                    r.by_number[cand.number] = cand
                    self._next_number = max(self._next_number, cand.number + 1)
                self._next_id = max(self._next_id, cand.id + 1)
                r.candidates.append(cand)
                r.by_key[exact_key(cand.text)] = cand
                r.pending.append(cand)
                by_id[cand.id] = cand
            for b in state.get("ballots", []):
                voted = by_id.get(int(b["candidate"]))
                if voted is not None:
                    self._cast(r, Viewer.from_dict(b["viewer"]), voted, now)
            self.current, self.closing = r, None


def _vectors(prompts: list[Prompt]) -> np.ndarray | None:
    """The batch's embeddings as rows, for the safety screen (None without them)."""
    vectors = [p.vector for p in prompts if p.vector is not None]
    if not prompts or len(vectors) < len(prompts):
        return None
    return np.stack(vectors)


def _view(c: Candidate) -> CandidateView:
    return CandidateView(
        c.id,
        c.number,
        c.text,
        c.votes,
        tuple(v.name for v in c.voters.values()),
        c.author.name,
        c.author.platform,
        c.approved,
        c.held,
    )


def _verdict(v: ScreenVerdict | bool) -> ScreenVerdict:
    if v is True:
        return "admit"
    if v is False:
        return "refuse"
    return v
