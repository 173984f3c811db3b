"""The chat adapters' reconnect loop (tenacity underneath): the back-off it
waits, the fresh start after a session that worked, a close that cuts a wait
short, and a loop that never raises. A scripted session and a virtual clock;
the waits are recorded, not slept."""

from __future__ import annotations

import asyncio

import pytest
from tenacity import wait_exponential

from streambot.audience.reconnect import stay_connected


class Script:
    """A session that runs for given (virtual) seconds and then fails, or closes the show."""

    def __init__(self, closing: asyncio.Event, runs: list[float]) -> None:
        self.closing = closing
        self.runs = list(runs)
        self.t = 0.0
        self.waits: list[float] = []
        self.sessions = 0

    def clock(self) -> float:
        return self.t

    async def session(self) -> None:
        self.sessions += 1
        if not self.runs:
            self.closing.set()
            return
        self.t += self.runs.pop(0)
        raise ConnectionError("dropped")

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.t += seconds


async def run(runs: list[float], **kw) -> Script:
    closing = asyncio.Event()
    s = Script(closing, runs)
    await asyncio.wait_for(
        stay_connected(
            s.session,
            closing=closing,
            wait=wait_exponential(multiplier=1, max=8),
            clock=s.clock,
            sleep=s.sleep,
            healthy_s=60,
            **kw,
        ),
        5,
    )
    return s


async def test_failures_back_off_exponentially_up_to_the_cap() -> None:
    s = await run([1.0] * 6)
    assert s.waits == [1, 2, 4, 8, 8, 8]
    assert s.sessions == 7


async def test_a_session_that_worked_starts_a_fresh_back_off() -> None:
    drops = []
    s = await run([1.0, 1.0, 1.0, 120.0, 1.0, 1.0], on_drop=drops.append)
    # three quick failures back off 1, 2, 4; a healthy two minutes reconnects at once and starts again at 1
    assert s.waits == [1, 2, 4, 1, 2]
    assert len(drops) == 1 and isinstance(drops[0], ConnectionError)


async def test_before_sleep_is_told_the_wait() -> None:
    told = []
    await run([1.0, 1.0], before_sleep=lambda st: told.append((type(st.outcome.exception()), st.next_action.sleep)))
    assert told == [(ConnectionError, 1), (ConnectionError, 2)]


async def test_a_close_cuts_the_wait_short_and_nothing_is_raised() -> None:
    closing = asyncio.Event()
    started = asyncio.Event()

    async def failing() -> None:
        started.set()
        raise RuntimeError("no")

    waits: list[float] = []
    task = asyncio.create_task(
        stay_connected(
            failing,
            closing=closing,
            wait=wait_exponential(multiplier=600),
            before_sleep=lambda st: waits.append(st.next_action.sleep),
        )
    )
    await asyncio.wait_for(started.wait(), 5)
    closing.set()
    assert await asyncio.wait_for(task, 60) is None  # ended by the close, not after the 600 s back-off
    assert waits == [600], "the close came during the back-off"


async def test_a_failure_caused_by_the_close_is_not_retried() -> None:
    closing = asyncio.Event()
    calls = 0

    async def session() -> None:
        nonlocal calls
        calls += 1
        closing.set()
        raise ConnectionResetError("closed under it")

    await asyncio.wait_for(stay_connected(session, closing=closing, wait=wait_exponential()), 5)
    assert calls == 1


async def test_cancellation_goes_through() -> None:
    closing = asyncio.Event()

    async def forever() -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(stay_connected(forever, closing=closing, wait=wait_exponential()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
