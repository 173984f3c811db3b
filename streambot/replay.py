"""Replay a recorded chat log through the real moderation and voting.

No model, no network, virtual time: the clock jumps from message to message
and to every round boundary in between, so a one-hour log replays in a
moment and the same log always gives the same rounds. One JSON object per
round is written out (`RoundResult.to_json`).

Input: JSON Lines, one message per line:
    {"t": 12.5, "platform": "twitch", "user": "ann", "text": "!p a dragon", "roles": ["subscriber"]}
`t` is seconds from the start of the log; `platform` defaults to "local" and
`roles` to none (a plain viewer).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .audience.events import ROLES, Audience, ChatMessage
from .config import Settings
from .viewer import Viewer
from .voting import RoundResult

PLATFORMS = ("twitch", "discord", "local")
POOL_S = 0.1  # how often the live show's worker pools and screens (`Audience.run`'s interval)
_ROLE_ALIASES = {"mod": "moderator", "sub": "subscriber", "owner": "broadcaster", "streamer": "broadcaster"}


class ReplayError(Exception):
    """A problem with the chat log, worded as one sentence."""


@dataclass(frozen=True, slots=True)
class ChatLine:
    t: float
    platform: str
    user: str
    text: str
    roles: frozenset[str]


def parse_line(raw: str, where: str) -> ChatLine | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        d = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ReplayError(f"{where}: not valid JSON ({e.msg}).") from None
    if not isinstance(d, dict):
        raise ReplayError(f"{where}: expected a JSON object with t, user and text.")
    t = d.get("t")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
        raise ReplayError(f"{where}: 't' must be a number of seconds, 0 or more.")
    platform = d.get("platform", "local")
    if platform not in PLATFORMS:
        raise ReplayError(f"{where}: 'platform' must be one of {', '.join(PLATFORMS)}.")
    user = d.get("user")
    if not isinstance(user, str) or not user.strip():
        raise ReplayError(f"{where}: 'user' must be a non-empty string.")
    text = d.get("text")
    if not isinstance(text, str):
        raise ReplayError(f"{where}: 'text' must be a string.")
    roles = d.get("roles", [])
    if roles is None:
        roles = []
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise ReplayError(f"{where}: 'roles' must be a list of strings.")
    norm = set()
    for r in roles:
        r = _ROLE_ALIASES.get(r.lower(), r.lower())
        if r not in ROLES:
            raise ReplayError(f"{where}: unknown role {r!r}; use {', '.join(ROLES)}.")
        norm.add(r)
    return ChatLine(float(t), platform, user.strip(), text, frozenset(norm))


def read_chat(path: Path | str) -> list[ChatLine]:
    """Every message of a chat log, in time order."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = [c for i, raw in enumerate(f, 1) if (c := parse_line(raw, f"{path} line {i}"))]
    except FileNotFoundError:
        raise ReplayError(f"{path}: no such file.") from None
    except IsADirectoryError:
        raise ReplayError(f"{path}: is a directory, not a chat log.") from None
    except UnicodeDecodeError:
        raise ReplayError(f"{path}: not UTF-8 text.") from None
    except OSError as e:
        raise ReplayError(f"{path}: cannot be read ({e.strerror}).") from None
    lines.sort(key=lambda c: c.t)  # stable: equal times keep their order
    return lines


class VirtualClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def run(lines: Iterable[ChatLine], audience: Audience, clock: VirtualClock) -> Iterator[RoundResult]:
    """Feed the messages at their times; yield each round as it is decided."""
    results: list[RoundResult] = []
    audience.subscribe(results.append)
    engine = audience.engine
    # The live show's worker pools and screens new candidates every POOL_S, before the
    # tick that may decide their round; until then they are hidden (a vote for one is
    # not counted), and a round decided first leaves them out.
    pending_since: float | None = None

    def advance(to: float) -> Iterator[RoundResult]:
        nonlocal pending_since
        while True:
            due = math.inf if pending_since is None else pending_since + POOL_S
            deadline = engine.next_deadline() if engine.mode == "rounds" else math.inf
            step = min(due, deadline)
            if step > to:
                break
            clock.t = max(clock.t, step)
            if step == due:
                engine.pool()
                pending_since = None
            else:
                audience.tick(clock.t)
                yield from _drain(results)
        clock.t = max(clock.t, to)
        audience.tick(clock.t)
        yield from _drain(results)

    for line in lines:
        yield from advance(line.t)
        audience.handle(ChatMessage(Viewer(line.platform, line.user, line.roles), line.text), clock.t)
        if pending_since is None and engine.has_pending():
            pending_since = clock.t
        if engine.mode == "anarchy":  # a screened prompt goes on air at the next tick
            engine.pool()
            pending_since = None
            audience.tick(clock.t)
            yield from _drain(results)
    # Finish every round that saw anything: the open one and one in its grace period.
    while engine.mode == "rounds":
        busy = (
            engine.closing is not None or engine.current.candidates or engine.current.ballots or engine.current.blocked
        )
        if not busy:
            break
        yield from advance(engine.next_deadline())
    audience.tick(clock.t)
    yield from _drain(results)


def _drain(results: list[RoundResult]) -> Iterator[RoundResult]:
    while results:
        yield results.pop(0)


def replay(lines: list[ChatLine], settings: Settings, out: IO[str], *, embeddings: bool = True) -> int:
    """Write one JSON line per round to `out`; returns the number of rounds."""
    clock = VirtualClock(0.0)
    audience = Audience.from_settings(settings, clock=clock, embeddings=embeddings)
    n = 0
    for result in run(lines, audience, clock):
        out.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
        n += 1
    out.flush()
    return n
