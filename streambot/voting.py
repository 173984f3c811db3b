"""Voting rounds: candidates, one vote per viewer per round, a winner.

A round lasts `round_s`; prompts and votes come in; when it ends the next
round opens at once, while votes for the old one still count for `grace_s`
(viewers see the stream seconds late). Then the old round is decided: most
weighted votes, ties to the earlier candidate, never a viewer still cooling
down from their last win. Near-duplicate prompts are pooled into one
candidate shown under its first wording: identical wording at once, similar
ideas in batches (`pool()`, sentence embeddings off the asyncio loop).

A new candidate is hidden (not in the snapshot, not votable, cannot win)
until the `screen` handed in (moderation's semantic layer) has passed it;
that happens in the same worker batch as pooling, on the same embeddings.
A refused candidate is dropped with its votes and counted as blocked.

In `anarchy` mode there are no rounds: each accepted prompt goes on air by
itself, rate-limited per viewer and overall, once screened.

The engine is synchronous and takes `now` from its caller, so the live app,
the replay and the tests drive it on their own clocks. Its methods are
thread-safe; `pool()` may run in a worker thread.
"""
from __future__ import annotations

import heapq
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .audience.events import Viewer
from .audience.moderation import RateLimiter, skeleton
from .config import VotingSettings

log = logging.getLogger(__name__)

Mode = Literal["rounds", "anarchy"]
# texts, their embeddings (None when pooling has none) -> whether each may be shown
Screen = Callable[[list[str], "np.ndarray | None"], list[bool]]

# -- pooling -------------------------------------------------------------------

# Words that carry no idea of their own in a prompt ("make it rain" is "rain").
_STOP = frozenset("""
a an the it its of in on at to into onto from with and or but is are be been being was
were this that these those some any please pls plz make makes made let lets turn turns
add adds spawn spawns summon summons create creates bring brings put start starts become
becomes get gets show shows give have has appear appears happen happens now more very so
just suddenly everyone everybody everything there here then up down out all i we you
""".split())
_SUFFIXES = ("ings", "ing", "ions", "ion", "ies", "es", "ed", "ly", "s")
_TOKEN = re.compile(r"[a-z0-9]+")


def content_words(text: str) -> frozenset[str]:
    """The idea's words, crudely stemmed: 'aliens invade' ~ 'alien invasion'."""
    out = set()
    for w in _TOKEN.findall(skeleton(text)):
        if w in _STOP:
            continue
        for s in _SUFFIXES:
            if w.endswith(s) and len(w) - len(s) >= 3:
                w = w[: -len(s)]
                break
        out.add(w[:5])
    return frozenset(out)


def exact_key(text: str) -> str:
    return " ".join(_TOKEN.findall(skeleton(text)))


class Pooler:
    """Decides whether two prompts are the same idea.

    With sentence embeddings: cosine >= `threshold` when one prompt's content
    words hold the other's ('spawn a dragon' ~ 'dragon'), else >= `reworded`
    ('build a giant tower' ~ 'a huge tower gets built'). Swapping one content
    word ('cats everywhere' / 'dogs everywhere') usually scores high but is a
    different idea, hence the second bar. Thresholds were tuned on
    tests/data/pool_pairs.jsonl. Without embeddings: same content words.
    """

    def __init__(self, embed: Callable[[list[str]], np.ndarray] | None,
                 threshold: float = 0.7, reworded: float = 0.9) -> None:
        self.embed = embed
        self.threshold = threshold
        self.reworded = reworded

    def same(self, cos: float, a: frozenset[str], b: frozenset[str]) -> bool:
        if self.embed is None:
            return bool(a) and a == b
        return cos >= self.reworded or (cos >= self.threshold and (a <= b or b <= a))


# -- the round -------------------------------------------------------------------

@dataclass(eq=False, slots=True)
class Candidate:
    id: int  # arrival order within the round; ties go to the lower
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
    words: frozenset[str] = frozenset()
    vector: np.ndarray | None = None
    screened: bool = True  # False: hidden until the safety screen has passed it

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
    blocked: int = 0
    next_id: int = 1
    next_number: int = 1
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

    def to_json(self) -> dict:
        """The replay's line: round, winner, candidates (text, votes, users), blocked."""
        def num(v: float) -> float | int:
            return int(v) if float(v).is_integer() else round(v, 3)

        return {
            "round": self.round,
            "winner": self.winner.text if self.winner else None,
            "candidates": [
                {"text": c.text, "votes": num(c.votes), "users": list(c.users)}
                for c in self.candidates
            ],
            "blocked": self.blocked,
        }


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the overlay, the console and `!now` show. Read-only."""
    mode: Mode
    round: int
    time_left: float
    round_s: float
    grace_s: float
    locked: bool
    approval: bool
    candidates: tuple[CandidateView, ...]  # the top N, numbered, most votes first
    total_candidates: int
    voters: int
    pending: tuple[CandidateView, ...]  # awaiting approval (console only)
    last: RoundResult | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one prompt or vote."""
    status: Literal[
        "new", "pooled", "queued", "voted", "changed", "unknown", "locked",
        "anarchy", "rate_limited", "closed",
    ]
    number: int | None = None
    round: int = 0


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
        screen: Screen | None = None,
    ) -> None:
        s = self.settings = settings or VotingSettings()
        self.mode: Mode = s.mode
        self.round_s = s.round_s
        self.grace_s = s.grace_s
        self.top_n = s.top_n
        self.cooldown_rounds = s.cooldown_rounds
        self.weights = s.weights.model_dump()
        self.approval = approval
        self.locked = False
        self.pooler = Pooler(embed, s.pool_threshold, s.pool_threshold_reworded)
        self.screen = screen
        self._anarchy_unscreened: list[Winner] = []
        self._lock = threading.RLock()
        self._cooldown: dict[str, int] = {}  # viewer key -> last round they cannot win
        self._round_no = 0
        self.current: Round = self._open(now)
        self.closing: Round | None = None  # ended, still taking late votes
        self.last: RoundResult | None = None
        self._anarchy_viewer = RateLimiter(1.0 / max(s.anarchy_viewer_interval_s, 1e-6), 1)
        self._anarchy_global = RateLimiter(1.0 / max(s.anarchy_global_interval_s, 1e-6), 1)
        self._anarchy_queue: list[Winner] = []

    # -- rounds
    def _open(self, at: float) -> Round:
        self._round_no += 1
        return Round(self._round_no, at, at + self.round_s)

    def weight(self, viewer: Viewer) -> float:
        roles = viewer.roles or frozenset(("viewer",))
        return max((self.weights.get(r, self.weights["viewer"]) for r in roles), default=1.0)

    def next_deadline(self) -> float:
        """The next time `tick` has something to do (rounds mode)."""
        with self._lock:
            if self.closing is not None:
                return min(self.current.closes, self.closing.closes + self.grace_s)
            return self.current.closes

    def tick(self, now: float) -> list[RoundResult]:
        """Close rounds whose time is up; decide those whose grace has passed."""
        out: list[RoundResult] = []
        with self._lock:
            if self.mode == "anarchy":
                if self._anarchy_unscreened:  # no worker ran (a replay): screen here
                    self._screen_anarchy(self._take_anarchy())
                while self._anarchy_queue:
                    w = self._anarchy_queue.pop(0)
                    out.append(self._anarchy_result(w, now))
                return out
            while True:
                if self.closing is not None and now >= self.closing.closes + self.grace_s:
                    out.append(self._finish(self.closing, self.closing.closes + self.grace_s))
                    self.closing = None
                elif now >= self.current.closes:
                    if self.closing is not None:  # only when grace was raised mid-round
                        out.append(self._finish(self.closing, now))
                    ended = self.current
                    start = ended.closes if now - ended.closes < self.round_s else now
                    self.closing, self.current = ended, self._open(start)
                else:
                    return out

    def _ballot_round(self, now: float) -> Round:
        if self.closing is not None and now < self.closing.closes + self.grace_s:
            return self.closing
        return self.current

    # -- prompts and votes
    def submit(self, viewer: Viewer, text: str, now: float, *, priority: bool = False) -> Outcome:
        """A moderated prompt; the viewer's vote goes with it."""
        with self._lock:
            if self.locked:
                return Outcome("locked")
            if self.mode == "anarchy":
                return self._anarchy_submit(viewer, text, now)
            r = self.current
            key = exact_key(text)
            cand = r.by_key.get(key)
            if cand is not None:
                cand = cand.live()
                cand.submitters.append(viewer)
                self._cast(r, viewer, cand, now)
                return Outcome("pooled", cand.number, r.number)
            cand = Candidate(
                r.next_id, text, viewer, now, approved=not self.approval,
                priority=priority, submitters=[viewer], words=content_words(text),
                screened=self.screen is None,
            )
            r.next_id += 1
            if cand.approved:
                self._number(r, cand)
            r.candidates.append(cand)
            r.by_key[key] = cand
            r.pending.append(cand)
            self._cast(r, viewer, cand, now)
            return Outcome("new", cand.number, r.number)

    def vote(self, viewer: Viewer, number: int, now: float, *, round_no: int | None = None) -> Outcome:
        """A vote for candidate `number`; with `round_no` (a Discord button) only in that round."""
        with self._lock:
            if self.mode == "anarchy":
                return Outcome("anarchy")
            r = self._ballot_round(now)
            if round_no is not None and round_no != r.number:
                return Outcome("closed", number, r.number)
            cand = r.by_number.get(number)
            if cand is None or not cand.live().screened:
                return Outcome("unknown", number, r.number)
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
        cand.number = r.next_number
        r.by_number[cand.number] = cand
        r.next_number += 1

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
        """Take back the votes of viewers (a ban); their lone candidates go too."""
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
                    if all(viewer_key_match(v.key) for v in c.submitters):
                        self._drop(r, c)
        return removed

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
            pooled, r.pooled, r.vectors = r.pooled, [], None
            for c in pooled:
                if c is not cand:
                    self._add_pooled(r, c)

    # -- pooling near-duplicates
    def pool(self) -> int:
        """Compare new candidates with the round's others; merge the same ideas.

        The embedding runs outside the lock, so this can be called from a worker
        thread while chat keeps coming in. Returns how many were merged.
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
        vectors = None
        if self.pooler.embed is not None:
            try:
                vectors = self.pooler.embed([c.text for _, c in batch])
            except Exception:  # a broken model must not stop voting: pool by words
                log.exception("sentence embedding failed; pooling by words this round")
        verdicts = self._screen([c for _, c in batch], vectors)
        merged = 0
        with self._lock:
            for i, (r, cand) in enumerate(batch):
                if r.done or cand.merged_into is not None or cand not in r.candidates:
                    continue
                if not verdicts[i]:
                    self._refuse(r, cand)
                    continue
                cand.screened = True
                cand.vector = None if vectors is None else vectors[i]
                target = self._most_similar(r, cand)
                if target is not None:
                    self._merge(r, cand, target)
                    merged += 1
                else:
                    self._add_pooled(r, cand)
        return merged

    def _screen(self, cands: list[Candidate], vectors: np.ndarray | None) -> list[bool]:
        """The safety screen's verdicts for candidates not yet screened (True: may be shown)."""
        if self.screen is None:
            return [True] * len(cands)
        todo = [i for i, c in enumerate(cands) if not c.screened]
        out = [True] * len(cands)
        if todo:
            sub = None if vectors is None else vectors[todo]
            for i, ok in zip(todo, self.screen([cands[i].text for i in todo], sub)):
                out[i] = bool(ok)
        return out

    def _refuse(self, r: Round, cand: Candidate) -> None:
        """A candidate the screen refused: gone, with its votes, counted as blocked."""
        self._drop(r, cand)
        r.by_key = {k: c for k, c in r.by_key.items() if c.live() is not cand}
        r.blocked += 1

    def has_pending(self) -> bool:
        """Whether `pool()` has work: candidates to pool or screen."""
        with self._lock:
            return bool(self._anarchy_unscreened) or any(
                r.pending for r in (self.current, self.closing) if r is not None)

    @staticmethod
    def _add_pooled(r: Round, cand: Candidate) -> None:
        n = len(r.pooled)
        r.pooled.append(cand)
        if cand.vector is None:
            return
        if r.vectors is None:
            r.vectors = np.zeros((64, cand.vector.shape[0]), np.float32)
        if n >= r.vectors.shape[0]:
            grown = np.zeros((r.vectors.shape[0] * 2, r.vectors.shape[1]), np.float32)
            grown[:n] = r.vectors[:n]
            r.vectors = grown
        r.vectors[n] = cand.vector

    def _most_similar(self, r: Round, cand: Candidate) -> Candidate | None:
        others = r.pooled
        if not others:
            return None
        if cand.vector is not None and r.vectors is not None:
            sims = r.vectors[: len(others)] @ cand.vector  # rows without a vector score 0
            best = np.argpartition(-sims, min(4, len(others) - 1))[:5] if len(others) > 5 else np.arange(len(others))
            for j in sorted(best, key=lambda j: (-sims[j], j)):
                if self.pooler.same(float(sims[j]), cand.words, others[j].words):
                    return others[j]
            return None
        for c in others:
            if cand.words and cand.words == c.words:
                return c
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
            self._pool_now(r)
        r.done = True
        winner: Winner | None = None
        ranked = sorted((c for c in r.candidates if c.screened), key=lambda c: (-c.votes, c.id))
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
        result = RoundResult(
            r.number, r.opened, closed, winner, tuple(_view(c) for c in ranked),
            r.blocked, r.skipped, "rounds", tuple(r.ballots.values()),
        )
        self.last = result
        return result

    def _pool_now(self, r: Round) -> None:
        """Pool what is left at the close, synchronously (usually nothing)."""
        pending, r.pending = r.pending, []
        vectors = None
        if self.pooler.embed is not None:
            try:
                vectors = self.pooler.embed([c.text for c in pending])
            except Exception:
                log.exception("sentence embedding failed; pooling by words this round")
        verdicts = self._screen(pending, vectors)
        for i, cand in enumerate(pending):
            if cand.merged_into is not None or cand not in r.candidates:
                continue
            if not verdicts[i]:
                self._refuse(r, cand)
                continue
            cand.screened = True
            cand.vector = None if vectors is None else vectors[i]
            target = self._most_similar(r, cand)
            if target is not None:
                self._merge(r, cand, target)
            else:
                self._add_pooled(r, cand)

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
            for w, ok in zip(prompts, verdicts):
                if ok:
                    self._anarchy_queue.append(w)
                else:
                    self.current.blocked += 1
            del self._anarchy_queue[:-5]

    def _anarchy_result(self, w: Winner, now: float) -> RoundResult:
        view = CandidateView(1, None, w.text, w.votes, (w.user,), w.user, w.platform, True)
        blocked, self.current.blocked = self.current.blocked, 0
        result = RoundResult(w.round, now, now, w, (view,), blocked, False, "anarchy")
        self.last = result
        return result

    # -- the console's controls
    def skip(self, now: float) -> list[RoundResult]:
        """End the round (and one in its grace period) with no winner."""
        with self._lock:
            out = []
            for r in filter(None, (self.closing, self.current)):
                r.skipped = True
                out.append(self._finish(r, now))
            self.closing = None
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
                    cand.approved = True
                    self._number(r, cand)
            else:
                self._drop(r, cand)
                r.by_key = {k: c for k, c in r.by_key.items() if c.live() is not cand}
            return _view(cand)

    def set_round_length(self, seconds: float, now: float) -> None:
        if not 3 <= seconds <= 120:
            raise ValueError("a round lasts 3 to 120 seconds")
        with self._lock:
            self.round_s = float(seconds)
            self.grace_s = min(self.grace_s, self.round_s / 2)
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
            self._anarchy_queue.clear()
            self._anarchy_unscreened.clear()
            self.current = self._open(now) if mode == "rounds" else Round(self._round_no, now, now)
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
                grace_s=self.grace_s,
                locked=self.locked,
                approval=self.approval,
                candidates=tuple(_view(c) for c in top),
                total_candidates=len(live),
                voters=len(r.ballots),
                pending=tuple(_view(c) for c in pending[:50]),
                last=self.last,
            )

    # -- persistence
    def state(self, now: float) -> dict:
        """The round under way, as plain data for the timeline."""
        with self._lock:
            r = self.current
            return {
                "mode": self.mode,
                "round": r.number,
                "remaining_s": max(0.0, r.closes - now),
                "locked": self.locked,
                "round_s": self.round_s,
                "cooldown": dict(self._cooldown),
                "candidates": [
                    {
                        "id": c.id, "number": c.number, "text": c.text, "approved": c.approved,
                        "priority": c.priority, "at": c.at,
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

    def restore(self, state: dict, now: float) -> None:
        """Resume a round saved by `state` (after a restart)."""
        with self._lock:
            self.mode = state.get("mode", self.mode)
            self.locked = bool(state.get("locked", False))
            self.round_s = float(state.get("round_s", self.round_s))
            self._cooldown = {k: int(v) for k, v in state.get("cooldown", {}).items()}
            self._round_no = int(state["round"]) - 1
            r = self._open(now)
            r.closes = now + max(3.0, float(state.get("remaining_s", self.round_s)))
            by_id: dict[int, Candidate] = {}
            for c in state.get("candidates", []):
                subs = [Viewer.from_dict(v) for v in c["submitters"]]
                cand = Candidate(
                    int(c["id"]), c["text"], subs[0], now, approved=bool(c["approved"]),
                    priority=bool(c.get("priority")), submitters=subs, words=content_words(c["text"]),
                    screened=self.screen is None,
                )
                if c.get("number") is not None:
                    cand.number = int(c["number"])
                    r.by_number[cand.number] = cand
                    r.next_number = max(r.next_number, cand.number + 1)
                r.next_id = max(r.next_id, cand.id + 1)
                r.candidates.append(cand)
                r.by_key[exact_key(cand.text)] = cand
                r.pending.append(cand)
                by_id[cand.id] = cand
            for b in state.get("ballots", []):
                cand = by_id.get(int(b["candidate"]))
                if cand is not None:
                    self._cast(r, Viewer.from_dict(b["viewer"]), cand, now)
            self.current, self.closing = r, None


def _view(c: Candidate) -> CandidateView:
    return CandidateView(
        c.id, c.number, c.text, c.votes, tuple(v.name for v in c.voters.values()),
        c.author.name, c.author.platform, c.approved,
    )
