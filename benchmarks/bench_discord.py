"""Discord requests an hour for the round message, at round_s = 10.

    python benchmarks/bench_discord.py            # the figures the README quotes
    python benchmarks/bench_discord.py --json     # the same, machine-readable

The real bot (discord.py's client, the round-message loop) runs against the
local Discord the tests use (tests/fake_discord.py), which counts every message
create and edit. The show's clock is virtual: one simulated hour of rounds
(round_s = 10, grace_s = 2, update_s = 3, the defaults) is driven in half-second
steps, ticking the rounds and refreshing the round messages at each step, so
the hour takes seconds. Two audiences:

- busy: something changes every half second (three prompts, then a vote from
  a new viewer each step), the worst case for edits;
- quiet: nobody plays.

Reported per channel: messages posted, edits, and the most requests in any
five seconds (Discord's per-channel message bucket is commonly 5 per 5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yarl  # noqa: E402
from discord.gateway import DiscordWebSocket  # noqa: E402
from discord.http import Route  # noqa: E402

from streambot.audience.discord_bot import DiscordBot  # noqa: E402
from streambot.audience.events import Audience  # noqa: E402
from streambot.audience.moderation import Moderation  # noqa: E402
from streambot.config import DiscordSettings, ModerationSettings, VotingSettings  # noqa: E402
from streambot.replay import VirtualClock  # noqa: E402
from streambot.voting import VotingEngine  # noqa: E402
from tests.fake_discord import CHANNEL, GUILD, TOKEN, FakeDiscord  # noqa: E402

IDEAS = ["a dragon lands", "the castle glows", "a storm rolls in"]


async def simulate(
    audience_kind: str, *, seconds: float, round_s: float, grace_s: float, update_s: float, step: float = 0.5
) -> dict:
    fake = FakeDiscord()
    await fake.start()
    Route.BASE = f"http://127.0.0.1:{fake.port}/api/v10"
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"ws://127.0.0.1:{fake.port}/gw")
    clock = VirtualClock(0.0)
    engine = VotingEngine(VotingSettings(round_s=round_s, grace_s=grace_s), now=0.0)
    audience = Audience(engine, Moderation(ModerationSettings()), clock=clock)
    settings = DiscordSettings(enabled=True, channels=[int(CHANNEL)], guilds=[int(GUILD)], update_s=update_s)
    # The bot's own loop runs once at start (tick_s of an hour); the steps below drive it.
    bot = DiscordBot(audience, settings, TOKEN, wall=lambda: 1_800_000_000 + clock.t, tick_s=3600)
    task = asyncio.create_task(bot.run())
    started = time.perf_counter()
    try:
        async with asyncio.timeout(30):
            while bot.refreshes < 1:
                await asyncio.sleep(0.01)
        at: list[float] = [0.0] * (len(fake.posts) + len(fake.edits))  # virtual time of each request
        for i in range(1, int(seconds / step) + 1):
            t = clock.t = i * step
            if audience_kind == "busy":
                s = audience.snapshot(t)
                k = int(round((t % round_s) / step))
                if k < len(IDEAS):
                    audience.chat("discord", f"p{s.round}_{k}", f"!p {IDEAS[k]} {s.round}", now=t)
                elif s.candidates:
                    audience.chat(
                        "discord", f"v{s.round}_{k}", f"!vote {s.candidates[k % len(s.candidates)].number}", now=t
                    )
            audience.tick(t)
            before = len(fake.posts) + len(fake.edits)
            await bot.refresh()
            at += [t] * (len(fake.posts) + len(fake.edits) - before)
        window = max((sum(1 for u in at if a <= u < a + 5.0) for a in at), default=0)
        hours = seconds / 3600
        return {
            "audience": audience_kind,
            "simulated_s": seconds,
            "round_s": round_s,
            "grace_s": grace_s,
            "update_s": update_s,
            "rounds": engine.snapshot(clock.t).round - 1,
            "messages_per_hour": round(len(fake.posts) / hours),
            "edits_per_hour": round(len(fake.edits) / hours),
            "requests_per_hour": round((len(fake.posts) + len(fake.edits)) / hours),
            "max_requests_in_5s": window,
            "violations": len(fake.violations),
            "wall_s": round(time.perf_counter() - started, 1),
        }
    finally:
        await bot.close()
        await asyncio.wait_for(task, 10)
        await fake.stop()


async def main_async(args) -> list[dict]:
    out = []
    for kind in ("busy", "quiet"):
        print(f"simulating {args.seconds:g} s of a {kind} audience ...", file=sys.stderr, flush=True)
        out.append(
            await simulate(
                kind, seconds=args.seconds, round_s=args.round_s, grace_s=args.grace_s, update_s=args.update_s
            )
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--seconds", type=float, default=3600.0, help="simulated time (default: one hour)")
    p.add_argument("--round-s", type=float, default=10.0)
    p.add_argument("--grace-s", type=float, default=2.0)
    p.add_argument("--update-s", type=float, default=3.0)
    args = p.parse_args()
    results = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(
            f"{r['audience']:>5}: {r['rounds']} rounds of {r['round_s']:g} s in {r['simulated_s'] / 3600:g} h "
            f"(update_s {r['update_s']:g}): {r['messages_per_hour']} messages + {r['edits_per_hour']} edits "
            f"= {r['requests_per_hour']} requests an hour per channel; at most {r['max_requests_in_5s']} "
            f"in any 5 s; {r['violations']} violations ({r['wall_s']} s)"
        )


if __name__ == "__main__":
    main()
