"""What the overlay shows, as one small immutable value.

Built by the app from the voting snapshot and the director's on-air entry a
few times a second; the compositor redraws only when it changes (so the
countdown costs one redraw a second), and the console sends the same value,
as JSON, to the OBS browser-source page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

from ..onair import Directed


@dataclass(frozen=True)
class OverlayCandidate:
    number: int
    text: str
    votes: float
    share: float  # 0..1 of this round's votes, for the vote bar


@dataclass(frozen=True)
class OverlayState:
    title: str  # the world's title
    on_air: str | None  # the prompt on air now
    on_air_by: str | None  # who gave it (None for the world's own story)
    source: str  # "audience" | "story" | "console"
    mode: str  # "rounds" | "anarchy"
    round: int
    seconds_left: int  # whole seconds, so the overlay redraws once a second
    round_s: float
    locked: bool
    off_air: bool
    candidates: tuple[OverlayCandidate, ...]
    how_to_play: str
    discord_invite: str | None = None

    def to_json(self) -> dict[str, object]:
        return asdict(self)


# What the overlay reads from the voting snapshot and the director's on-air entry,
# described here so that the broadcast depends on neither.
class CandidateLike(Protocol):
    @property
    def number(self) -> int | None: ...
    @property
    def text(self) -> str: ...
    @property
    def votes(self) -> float: ...


class RoundLike(Protocol):
    @property
    def mode(self) -> str: ...
    @property
    def round(self) -> int: ...
    @property
    def time_left(self) -> float: ...
    @property
    def round_s(self) -> float: ...
    @property
    def locked(self) -> bool: ...
    @property
    def candidates(self) -> Sequence[CandidateLike]: ...


class OnAirLike(Protocol):
    @property
    def direction(self) -> Directed: ...


def build_overlay_state(
    snapshot: RoundLike | None,
    on_air: OnAirLike | None,
    title: str,
    *,
    off_air: bool = False,
    discord_invite: str | None = None,
) -> OverlayState:
    """From `Audience.snapshot()` and `Director.on_air` (either may be None)."""
    cands = tuple(snapshot.candidates) if snapshot is not None else ()
    total = sum(max(0.0, c.votes) for c in cands) or 1.0
    how = "!p your idea  ·  !vote N"
    if snapshot is not None and snapshot.mode == "anarchy":
        how = "!p your idea goes straight on air"
    if discord_invite:
        how += f"  ·  {discord_invite}"
    d = on_air.direction if on_air is not None else None
    return OverlayState(
        title=title,
        on_air=d.text if d else None,
        on_air_by=d.user if d and d.source != "story" else None,
        source=d.source if d else "story",
        mode=snapshot.mode if snapshot is not None else "rounds",
        round=snapshot.round if snapshot is not None else 0,
        seconds_left=max(0, math.ceil(snapshot.time_left)) if snapshot is not None else 0,
        round_s=snapshot.round_s if snapshot is not None else 0.0,
        locked=bool(snapshot.locked) if snapshot is not None else False,
        off_air=off_air,
        candidates=tuple(
            OverlayCandidate(c.number or i + 1, c.text, c.votes, max(0.0, c.votes) / total) for i, c in enumerate(cands)
        ),
        how_to_play=how,
        discord_invite=discord_invite,
    )
