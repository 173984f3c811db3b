"""Deciding a round never waits for the sentence model, and nothing unscreened ever airs.

A round is decided on the caller's thread (the asyncio loop's tick, a skip from the
console). The safety screen may wait up to two minutes for a model still loading,
and a loaded model may be busy with the worker's batch; so at the close a candidate
the worker has not screened is left out, never screened there and then.

Real parts: the moderation layers (block lists, classifier, the shipped probe) and
the real sentence model behind a gate (`SlowEncoder`, a `SentenceEncoder`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from streambot.audience.events import Audience
from streambot.audience.moderation import Moderation
from streambot.audience.safety import ConceptProbe, ConceptTerms, Safety, load_classifier, load_concepts, load_senses
from streambot.config import ModerationSettings, VotingSettings
from streambot.embeddings import SentenceEncoder, get_embedder
from streambot.replay import VirtualClock
from streambot.voting import VotingEngine

DECIDED_WITHIN_S = 20.0  # a round decided without the model takes milliseconds; the model would hold it for minutes


class SlowEncoder:
    """The real sentence model behind a gate: `encode` waits until the gate opens."""

    def __init__(self, model: SentenceEncoder) -> None:
        self.model = model
        self.gate = threading.Event()
        self.calls = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        self.gate.wait(120)  # as long as the screen would wait for a model loading
        return self.model.encode(texts)


@pytest.fixture(scope="module")
def model() -> SentenceEncoder:
    embedder = get_embedder()
    assert embedder is not None
    return embedder


@pytest.fixture
def slow(model) -> Iterator[SlowEncoder]:
    enc = SlowEncoder(model)
    yield enc
    enc.gate.set()  # a close that did wait (a broken build) gets its answer and ends


def layers(embed: Callable[[list[str]], np.ndarray] | None) -> Safety:
    """The real layers; without `embed`, in a show whose sentence model is still loading."""
    concepts = load_concepts()
    return Safety(
        ConceptTerms(concepts),
        load_classifier(),
        ConceptProbe.load(),
        embed,
        senses=load_senses(concepts),
        model_pending=embed is None,
    )


def show(safety: Safety, embed: Callable[[list[str]], np.ndarray] | None) -> Audience:
    mod = Moderation(
        ModerationSettings(viewer_prompts_per_min=600, viewer_burst=100, global_prompts_per_min=60000),
        safety=safety,
    )
    engine = VotingEngine(
        VotingSettings(round_s=10, grace_s=1, stream_delay_s=0), now=0.0, embed=embed, screen=mod.screen
    )
    return Audience(engine, mod, clock=VirtualClock(0.0))


def finishes(call: Callable[[], object]) -> bool:
    """Whether `call` returns while the model is held back (run aside, so a wait fails the test)."""
    done = threading.Event()

    def run() -> None:
        call()
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done.wait(DECIDED_WITHIN_S)


def prompt(aud: Audience, name: str, text: str, at: float) -> None:
    reply = aud.chat("twitch", name, f"!p {text}", now=at)
    assert reply.screening, reply


@pytest.mark.parametrize("state", ["loading", "busy"])
def test_a_skip_never_waits_for_the_model(slow, state) -> None:
    safety = layers(None if state == "loading" else slow.encode)
    aud = show(safety, None if state == "loading" else slow.encode)
    prompt(aud, "ann", "a lighthouse in a storm", 1.0)
    assert aud.engine.has_pending()  # the worker has not reached it: the model is loading or busy

    skipped: list = []
    aud.subscribe(skipped.append)
    assert finishes(lambda: aud.skip_round(actor="console", now=2.0)), "the skip waited for the sentence model"
    assert slow.calls == 0
    (result,) = skipped
    assert result.skipped and result.winner is None and result.candidates == () and result.ballots == ()

    # The model comes; the worker finds nothing left to screen: the idea never shows.
    if state == "loading":
        safety.take_model(slow.encode)
    slow.gate.set()
    aud.screen_now()
    assert aud.engine.take_screened() == [] and aud.snapshot(3.0).candidates == ()


def test_an_unscreened_idea_never_airs_however_many_back_it(slow) -> None:
    slow.gate.set()
    aud = show(layers(slow.encode), slow.encode)
    results: list = []
    aud.subscribe(results.append)
    prompt(aud, "ann", "a castle on a hill", 1.0)
    aud.screen_now()  # the worker: screened and numbered
    assert [(c.text, c.number) for c in aud.snapshot(2.0).candidates] == [("a castle on a hill", 1)]

    slow.gate.clear()  # the model is busy from here on
    calls = slow.calls
    for name in ("bob", "cat", "dan"):  # three backers: more votes than the castle's one
        prompt(aud, name, "a lighthouse in a storm", 9.9)
    assert finishes(lambda: aud.tick(20.0)), "deciding the round waited for the sentence model"
    assert slow.calls == calls
    (result,) = results
    assert result.winner is not None and result.winner.text == "a castle on a hill"
    assert [c.text for c in result.candidates] == ["a castle on a hill"]
    assert {b.viewer.name for b in result.ballots} == {"ann"}

    slow.gate.set()
    aud.screen_now()
    aud.tick(40.0)
    assert all(r.winner is None for r in results[1:]) and all(not r.candidates for r in results[1:])
