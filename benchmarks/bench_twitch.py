"""Twitch: how long the chat adapter takes over a revoked subscription and a 429.

    python benchmarks/bench_twitch.py            # the figures the README quotes
    python benchmarks/bench_twitch.py --json     # the same, machine-readable

The real adapter (twitchio's own client) against the strict local Twitch the
tests use (tests/twitch_fake.py), `--repeat` times each, wall-clock:

1. renew_ms: Twitch revokes the chat subscription (`user_removed`) until a new
   one is live on the same socket (budget 10 s: chat is deaf meanwhile);
2. drop_ms: a chat reply refused with a 429 whose `Ratelimit-Reset` is 120 s
   away, until `send` gives up (budget 5 s: it must not wait for the reset);
3. retry_ms: the same with the reset 1 s away, until the retried reply is
   sent (about 1 s: Twitch's own pacing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streambot.replay import VirtualClock
from tests import twitch_fake as tf
from tests.test_twitch import SCOPES, audience_at, running, twitch_chat


async def once(tmp: Path) -> dict:
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        async with tf.serving(mp) as fake:
            streamer = fake.account("1001", "streamer")
            chat = twitch_chat(audience_at(VirtualClock(0.0)), fake.user_token(streamer, SCOPES), tmp)
            async with running(chat, fake):
                t = time.perf_counter()
                await fake.revoke("channel.chat.message", "user_removed")
                await fake.wait(lambda: fake.live("channel.chat.message"), timeout=60)
                out["renew_ms"] = (time.perf_counter() - t) * 1000
                fake.throttle("chat/messages", refusals=1, reset_in=120.0)
                t = time.perf_counter()
                assert not await chat.send("dropped")
                out["drop_ms"] = (time.perf_counter() - t) * 1000
                fake.throttle("chat/messages", refusals=1, reset_in=1.0)
                t = time.perf_counter()
                assert await chat.send("retried")
                out["retry_ms"] = (time.perf_counter() - t) * 1000
    return out


def run_once() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(once(Path(tmp)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    runs = [run_once() for _ in range(args.repeat)]
    figures = {
        k: {"median": round(statistics.median(r[k] for r in runs), 1), "max": round(max(r[k] for r in runs), 1)}
        for k in runs[0]
    }
    figures["budget_ms"] = {"renew_ms": 10_000, "drop_ms": 5_000}
    print(json.dumps(figures, indent=1 if args.json else None))


if __name__ == "__main__":
    main()
