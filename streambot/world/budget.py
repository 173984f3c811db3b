"""The GPU budget: how long the GPU world may be on air, and when it need not be.

A channel runs for hours, and its streamer pays for every hour the GPU world
renders. `GpuBudget` keeps that world on air only while it matters:

1. an accountant (`GpuMeter`) counts the wall seconds during which the GPU
   world's pictures are the ones going out, per day (the streamer's midnight:
   this machine's local time, or a configured time zone), and keeps them in
   the timeline, so a restart does not reset the day;
2. a policy (`GpuBudget.update`) sends the GPU world off air when the day's
   budget is spent, until the next day, or when Twitch has reported no viewers
   for `idle_after_s`; viewers coming back bring it back at once;
3. the viewer count is an input the Twitch adapter pushes (`set_viewers`);
   without Twitch it stays unknown, and an unknown audience never sends the
   GPU world away.

The switch itself is `ResilientWorld`'s: the sketch world that covers for a
failing backend covers for a GPU world on standby, with the same cross-fades.
The world calls `update` once per frame from its render thread, saying whether
the frame before was the GPU world's; the answer is why the GPU world should
stand by now (`BUDGET`, `NO_VIEWERS`), or None. Each switch is one log line
with its reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)

BUDGET = "budget"  # the day's GPU hours are used up
NO_VIEWERS = "no_viewers"  # Twitch has reported nobody watching for idle_after_s
SAVE_EVERY_S = 10.0  # counted seconds a crash may lose


class UsageLedger(Protocol):
    """Where the day's GPU seconds are kept between runs (streambot.store.Store)."""

    def gpu_seconds(self, day: str) -> float: ...
    def save_gpu_seconds(self, day: str, seconds: float) -> None: ...


class Days:
    """Which day it is for the budget, and when the next one begins: midnight in
    `timezone` (an IANA name), or in this machine's local time when it is empty."""

    def __init__(self, timezone: str = "", wall: Callable[[], float] = time.time) -> None:
        self.zone = ZoneInfo(timezone) if timezone else None
        self.name = timezone or "local time"
        self.wall = wall

    def _at(self, t: float) -> datetime:
        return datetime.fromtimestamp(t, self.zone) if self.zone else datetime.fromtimestamp(t).astimezone()

    def day(self, t: float | None = None) -> date:
        return self._at(self.wall() if t is None else t).date()

    def starts(self, day: date) -> float:
        """The Unix time that `day` begins (its midnight; DST-aware)."""
        midnight = datetime(day.year, day.month, day.day)
        return (midnight.replace(tzinfo=self.zone) if self.zone else midnight).timestamp()

    def next_start(self, t: float | None = None) -> float:
        return self.starts(self.day(t) + timedelta(days=1))


class GpuMeter:
    """Wall seconds the GPU world was on air, for the current day.

    `note(on_air)` says whether the GPU world's picture was going out since the
    last note; the interval is counted (split at midnight when it spans one)."""

    def __init__(self, days: Days, clock: Callable[[], float] = time.monotonic) -> None:
        self.days = days
        self.clock = clock
        self.ledger: UsageLedger | None = None
        self.day = days.day()
        self.used_s = 0.0
        self._last: float | None = None  # clock() at the last note
        self._unsaved = 0.0

    def resume(self, ledger: UsageLedger) -> None:
        """What the timeline holds for today (an earlier run's use), counted on from here."""
        self.ledger = ledger
        self.day = self.days.day()
        self.used_s += ledger.gpu_seconds(self.day.isoformat())
        self.save()

    def note(self, on_air: bool) -> bool:
        """Count the interval since the last note; True when a new day began."""
        now = self.clock()
        elapsed = 0.0 if self._last is None or not on_air else max(0.0, now - self._last)
        self._last = now
        today = self.days.day()
        new_day = today != self.day
        if new_day:
            # the part after midnight belongs to the new day
            after = min(elapsed, max(0.0, self.days.wall() - self.days.starts(today)))
            self.used_s += elapsed - after
            self.save()
            self.day = today
            self.used_s = self.ledger.gpu_seconds(today.isoformat()) if self.ledger is not None else 0.0
            elapsed = after
        self.used_s += elapsed
        self._unsaved += elapsed
        if self._unsaved >= SAVE_EVERY_S or (not on_air and self._unsaved > 0):
            self.save()  # every few seconds on air, and as soon as the GPU world leaves it
        return new_day

    def save(self) -> None:
        if self.ledger is not None:
            self.ledger.save_gpu_seconds(self.day.isoformat(), self.used_s)
        self._unsaved = 0.0


@dataclass(frozen=True)
class BudgetStatus:
    """What the console and the metrics show about the GPU budget."""

    active: bool  # False: the world on air uses no GPU, so there is nothing to count
    world: str  # the GPU world's name
    day: str  # the budget's day, ISO date
    timezone: str
    used_s: float  # GPU-world seconds on air today
    budget_s: float | None  # None: no daily limit
    resets_in_s: float  # until the next day
    viewers: int | None  # as Twitch last said; None: unknown
    idle_after_s: float | None  # None: never leaves for lack of viewers
    idle_in_s: float | None  # while nobody watches: seconds until the GPU world leaves
    standby: str | None  # BUDGET | NO_VIEWERS: why the fallback world is on air instead
    why: str | None  # the same, as a sentence

    def to_json(self) -> dict[str, object]:
        def r(x: float | None, nd: int) -> float | None:
            return None if x is None else round(x, nd)

        return {
            "active": self.active,
            "world": self.world,
            "day": self.day,
            "timezone": self.timezone,
            "used_s": round(self.used_s, 1),
            "used_h": round(self.used_s / 3600, 3),
            "budget_h": r(self.budget_s and self.budget_s / 3600, 3),
            "left_h": r(self.budget_s and max(0.0, self.budget_s - self.used_s) / 3600, 3),
            "resets_in_s": round(self.resets_in_s),
            "viewers": self.viewers,
            "idle_after_s": r(self.idle_after_s, 1),
            "idle_in_s": r(self.idle_in_s, 1),
            "standby": self.standby,
            "why": self.why,
        }


def _hours(seconds: float) -> str:
    h = seconds / 3600
    return f"{h:.2g} h" if h < 10 else f"{h:.0f} h"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class GpuBudget:
    """The GPU world's time on air: counted, and limited by the day's budget and the audience."""

    def __init__(
        self,
        *,
        active: bool,
        world: str = "GPU",
        daily_gpu_hours: float = 0.0,
        idle_after_s: float = 0.0,
        timezone: str = "",
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """`active`: the backend is a GPU world (`World.gpu`); `daily_gpu_hours` 0 and
        `idle_after_s` 0 each turn their limit off; `clock` times intervals, `wall` finds the day."""
        self.active = active
        self.world = world
        self.budget_s = daily_gpu_hours * 3600 or None
        self.idle_after_s = idle_after_s or None
        self.clock = clock
        self.meter = GpuMeter(Days(timezone, wall), clock)
        self._lock = threading.Lock()
        self._viewers: int | None = None
        self._nobody_since: float | None = None  # clock() since Twitch has said 0 viewers
        self._standby: str | None = None

    # -- inputs --------------------------------------------------------------------------
    def resume(self, ledger: UsageLedger) -> None:
        """Today's use so far from the timeline; from now on it is kept there."""
        with self._lock:
            self.meter.resume(ledger)

    def set_viewers(self, count: int | None) -> None:
        """Twitch's viewer count (any thread); None: unknown (no Twitch, or it cannot say)."""
        with self._lock:
            if count is not None and count <= 0:
                count = 0
                if self._nobody_since is None:
                    self._nobody_since = self.clock()
            else:
                self._nobody_since = None
            self._viewers = count

    # -- the decision, once per frame (the render thread) -------------------------------------
    def update(self, gpu_on_air: bool) -> str | None:
        """Count the frame interval just past; why the GPU world should stand by now, or None."""
        if not self.active:
            return None
        with self._lock:
            self.meter.note(gpu_on_air)
            standby = self._decide()
            if standby != self._standby:
                self._log_switch(self._standby, standby)
                self._standby = standby
            return standby

    def _decide(self) -> str | None:
        if self.budget_s is not None and self.meter.used_s >= self.budget_s:
            return BUDGET  # until the day changes (the meter then starts the new day's count)
        if (
            self.idle_after_s is not None
            and self._nobody_since is not None
            and self.clock() - self._nobody_since >= self.idle_after_s
        ):
            return NO_VIEWERS
        return None

    def _why(self, standby: str | None) -> str | None:
        if standby == BUDGET:
            assert self.budget_s is not None
            return f"today's GPU budget of {_hours(self.budget_s)} is used up, until midnight ({self.meter.days.name})"
        if standby == NO_VIEWERS:
            assert self.idle_after_s is not None
            return f"Twitch has reported no viewers for {_duration(self.idle_after_s)}"
        return None

    def _log_switch(self, was: str | None, now: str | None) -> None:
        if now is not None:
            log.info("the %s world leaves the air, the sketch world takes over: %s", self.world, self._why(now))
            return
        if was == BUDGET:
            why = f"a new day ({self.meter.day.isoformat()}) and its GPU budget"
        elif self._viewers:
            why = f"{self._viewers} viewer{'s' if self._viewers != 1 else ''} on Twitch"
        else:
            why = "the viewer count is unknown (Twitch cannot say)"
        log.info("the %s world is back on air: %s", self.world, why)

    # -- reading ---------------------------------------------------------------------------
    def status(self) -> BudgetStatus:
        with self._lock:
            m = self.meter
            now = self.clock()
            idle_in = None
            if (
                self.active
                and self.idle_after_s is not None
                and self._nobody_since is not None
                and self._standby is None
            ):
                idle_in = max(0.0, self.idle_after_s - (now - self._nobody_since))
            return BudgetStatus(
                active=self.active,
                world=self.world,
                day=m.day.isoformat(),
                timezone=m.days.name,
                used_s=m.used_s,
                budget_s=self.budget_s,
                resets_in_s=max(0.0, m.days.next_start() - m.days.wall()),
                viewers=self._viewers,
                idle_after_s=self.idle_after_s,
                idle_in_s=idle_in,
                standby=self._standby,
                why=self._why(self._standby),
            )

    def close(self) -> None:
        """Keep what was counted (the world calls it when it closes)."""
        with self._lock:
            self.meter.save()
