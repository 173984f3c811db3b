"""Chat throughput and round-close latency, on one core.

    python benchmarks/bench_chat.py            # the figures the README quotes
    python benchmarks/bench_chat.py --json     # the same, machine-readable

1. Throughput: a realistic chat mix (votes in all their spellings, prompts
   with near-duplicates and some blocked, ordinary chatter, hostile junk) from
   20,000 accounts, through parse, moderation and tally (`Audience.handle`),
   in virtual time with the engine ticking every 100 ms. Moderation is the
   real one: block lists, concept terms and the offensive-language classifier
   inline (`--block-lists-only` leaves the last two out, for comparison).
   Sentence embeddings and the semantic safety check are not on this path:
   they run once per batch of new candidates in `pool()`, in a worker thread.
2. Round close: a round with 1,000 candidates (already pooled) and 20,000
   votes, from `tick()` to `Director.submit` returning.
3. Pooling cost per round (informational): one `pool()` batch of 1,000 new
   candidates through the sentence model, when it is installed.

Targets (from the issue): >= 20,000 messages/s with p99 < 1 ms per message;
round close < 50 ms with 1,000 candidates.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streambot.audience.events import Audience, ChatMessage  # noqa: E402
from streambot.audience.moderation import Moderation  # noqa: E402
from streambot.config import ModerationSettings, VotingSettings  # noqa: E402
from streambot.director import Director  # noqa: E402
from streambot.viewer import Viewer  # noqa: E402
from streambot.voting import VotingEngine  # noqa: E402
from streambot.world.base import Frame, World  # noqa: E402
from streambot.worldspec import WorldSpec  # noqa: E402

IDEAS = [
    "a dragon attacks the castle",
    "make it snow",
    "a giant robot walks by",
    "night falls",
    "a rainbow over the sea",
    "aliens invade",
    "the trees catch fire",
    "a whale flies across the sky",
    "everyone starts dancing",
    "a volcano erupts",
    "pirate ship sails in",
    "a storm rolls in",
]


def make_messages(n: int, seed: int = 1) -> list[tuple[Viewer, str]]:
    rng = random.Random(seed)
    roles = [frozenset(), frozenset({"subscriber"}), frozenset({"vip"}), frozenset()]
    viewers = [Viewer("twitch", f"viewer{i}", roles[i % 4]) for i in range(20_000)]
    out = []
    for _ in range(n):
        v = rng.choice(viewers)
        r = rng.random()
        if r < 0.55:
            k = rng.randint(1, 6)
            text = rng.choice([f"!{k}", f"+{k}", f"!vote {k}", f"!{k} \U000e0000"])
        elif r < 0.75:
            idea = rng.choice(IDEAS)
            text = "!p " + rng.choice([idea, idea.upper() + "!!", f"{idea} please", f"{idea} {rng.randint(1, 999)}"])
        elif r < 0.78:
            text = "!p " + rng.choice(["sh1t everywhere", "f u c k", "kill yourself", "p0rn"])
        elif r < 0.95:
            text = rng.choice(["lol", "PogChamp", "this is so cool", "KEKW KEKW", "hello chat", "what is this"])
        else:
            text = rng.choice(
                [
                    "!p " + "z\u0301\u0302\u0303" * 40,
                    "!p " + "\U0001f600" * 300,
                    "!p \u202eevil\u202c " * 20,
                    "x" * 2000,
                    "!p a\x00b\u200bc",
                ]
            )
        out.append((v, text))
    return out


def throughput(n: int, safety: bool = True, show_limits: bool = False) -> dict:
    """`show_limits`: the show's default prompt limits, chat arriving at the soak's 200 a
    second (virtual time): most prompts are past the global limit, as in a busy show."""
    engine = VotingEngine(VotingSettings(round_s=10, stream_delay_s=5, grace_s=2), now=0.0)
    limits = (
        {}
        if show_limits
        else {
            "viewer_prompts_per_min": 600,
            "viewer_burst": 100,
            "global_prompts_per_min": 60000,
            "global_burst": 10000,
        }
    )
    mod = Moderation(ModerationSettings(**limits, semantic=False))
    if not safety:
        mod.safety = None
    aud = Audience(engine, mod, clock=lambda: 0.0)
    msgs = make_messages(n)
    for v, text in msgs[:2000]:  # warm caches the way a running show has them
        aud.handle(ChatMessage(v, text), 0.0)
    rate = 200.0 if show_limits else 20_000.0  # virtual seconds advance as if chat arrived at this rate
    costs = []
    clock = time.perf_counter_ns
    t_all = clock()
    next_tick = 0.1
    for i, (v, text) in enumerate(msgs):
        now = i / rate
        if now >= next_tick:
            aud.tick(now)
            next_tick += 0.1
        t0 = clock()
        aud.handle(ChatMessage(v, text), now)
        costs.append(clock() - t0)
    elapsed = (clock() - t_all) / 1e9
    costs.sort()
    return {
        "messages": n,
        "messages_per_s": round(n / elapsed),
        "handle_only_messages_per_s": round(n / (sum(costs) / 1e9)),
        "p50_us": round(costs[len(costs) // 2] / 1e3, 2),
        "p99_us": round(costs[int(len(costs) * 0.99)] / 1e3, 2),
        "max_us": round(costs[-1] / 1e3, 1),
        "counts": dict(aud.counts),
    }


class _StubWorld(World):
    def start(self, spec, size, fps, seed=0) -> None:
        pass

    def render(self) -> Frame:
        raise NotImplementedError

    @property
    def frame_size(self) -> tuple[int, int]:
        return (64, 64)


def round_close(candidates: int = 1000, votes: int = 20_000, repeats: int = 15) -> dict:
    spec = WorldSpec("bench", "Bench", "a bench world", "plain", ("the world waits",))
    director = Director(_StubWorld(), spec)
    times = []
    for rep in range(repeats):
        engine = VotingEngine(VotingSettings(round_s=10, stream_delay_s=5, grace_s=2), now=0.0)
        aud = Audience(
            engine, Moderation(ModerationSettings(global_burst=10000, global_prompts_per_min=60000)), clock=lambda: 0.0
        )
        for i in range(candidates):
            engine.submit(Viewer("twitch", f"author{i}"), f"idea {i} of round {rep}", 1.0)
        engine.pool()  # done during the round, in a worker thread, in the app
        rng = random.Random(rep)
        for i in range(votes):
            engine.vote(Viewer("twitch", f"voter{i}"), rng.randint(1, candidates), 5.0)
        t0 = time.perf_counter()
        winner = aud.tick(17.0)  # round 1 ends at 10 s; its votes count until 10 + 5 + 2
        director.submit(winner.text, source="audience", user=winner.user)
        times.append((time.perf_counter() - t0) * 1e3)
    return {
        "candidates": candidates,
        "votes": votes,
        "median_ms": round(statistics.median(times), 2),
        "max_ms": round(max(times), 2),
    }


def pooling(candidates: int = 1000) -> dict | None:
    from streambot.embeddings import get_embedder

    embedder = get_embedder()
    if embedder is None:
        return None
    engine = VotingEngine(VotingSettings(), now=0.0, embed=embedder.encode)
    rng = random.Random(3)
    for i in range(candidates):
        engine.submit(Viewer("twitch", f"a{i}"), f"{rng.choice(IDEAS)} number {i}", 1.0)
    embedder.encode(["warm up"])
    t0 = time.perf_counter()
    merged = engine.pool()
    return {"candidates": candidates, "batch_ms": round((time.perf_counter() - t0) * 1e3, 1), "merged": merged}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--no-pooling", action="store_true", help="skip the sentence-model batch")
    ap.add_argument(
        "--block-lists-only", action="store_true", help="moderation without the concept terms and the classifier"
    )
    ap.add_argument(
        "--show-limits",
        action="store_true",
        help="the show's default prompt limits, chat at 200 msg/s (the soak's rate) in virtual time",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    result = {
        "throughput": throughput(args.messages, safety=not args.block_lists_only, show_limits=args.show_limits),
        "round_close": round_close(),
        "pooling": None if args.no_pooling else pooling(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    t, r, p = result["throughput"], result["round_close"], result["pooling"]
    print(
        f"chat throughput  {t['messages_per_s']:>9,} msg/s (loop incl. ticks), "
        f"{t['handle_only_messages_per_s']:,} msg/s in handle(); "
        f"p50 {t['p50_us']} us, p99 {t['p99_us']} us, max {t['max_us']} us over {t['messages']:,} messages"
    )
    print(
        f"round close      {r['median_ms']} ms median, {r['max_ms']} ms max "
        f"({r['candidates']} candidates, {r['votes']:,} votes, tick -> director.submit)"
    )
    if p:
        print(
            f"pooling batch    {p['batch_ms']} ms for {p['candidates']} new candidates "
            f"({p['merged']} merged; once per batch, in a worker thread)"
        )


if __name__ == "__main__":
    main()
