"""Keeping a chat adapter connected: one session after another until the show closes it.

A chat adapter's session (log in, subscribe, listen) runs until `closing` is
set or it fails. `stay_connected` runs it again after a failure, waiting as
tenacity's `wait` strategy says; the wait is cut short by `closing`, so a
close never waits out a back-off. A session that failed after running for
`healthy_s` had been working: the next one starts a fresh back-off instead of
the long wait the last outage had reached. Nothing but cancellation leaves
this loop, so a failing platform never takes the show down with it.

The back-off schedule and the stop rule are tenacity's (`AsyncRetrying`); what
is left here is only what tenacity cannot know: when the show is closing, and
when a session counts as having worked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.wait import WaitBaseT

Session = Callable[[], Awaitable[None]]


async def stay_connected(
    session: Session,
    *,
    closing: asyncio.Event,
    wait: WaitBaseT,
    before_sleep: Callable[[RetryCallState], None] | None = None,
    on_drop: Callable[[Exception], None] | None = None,
    healthy_s: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> None:
    """Run `session` until `closing` is set; never raises but `CancelledError`.

    `before_sleep` hears of each failure before its wait (`state.next_action.sleep`
    says how long); `on_drop` of a failure after a healthy run, which is retried at
    once. `sleep` defaults to a wait that `closing` ends early.
    """

    async def pause(seconds: float) -> None:
        try:
            await asyncio.wait_for(closing.wait(), seconds)
        except TimeoutError:
            pass

    async def once() -> None:
        started = clock()
        try:
            await session()
        except Exception as e:
            if closing.is_set():
                return  # the close ended it
            if clock() - started < healthy_s:
                raise
            if on_drop is not None:
                on_drop(e)

    while not closing.is_set():
        # A fresh AsyncRetrying, and so a fresh back-off, after each session that worked.
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            wait=wait,
            sleep=sleep or pause,
            before_sleep=before_sleep,
            reraise=True,
        ):
            with attempt:
                if not closing.is_set():
                    await once()
