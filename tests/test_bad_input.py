"""Bad input at every door, generated: chat through the real Audience (no
exception, nothing lost, the round survives a save and a restart), config
files and custom world files (every refusal is one sentence naming the file
and the field), and the command line (never a traceback)."""

from __future__ import annotations

import json
import math
import re
import string
from pathlib import Path
from typing import Annotated, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from streambot.audience.events import Audience, ChatMessage, PromptEvent, ReplyKind, VoteEvent
from streambot.audience.moderation import Moderation
from streambot.config import ConfigError, ModerationSettings, Settings, VotingSettings, load_settings, load_world_file
from streambot.registry import WORLDS, Entry
from streambot.viewer import Viewer
from streambot.voting import VotingEngine
from streambot.world.base import WorldError
from streambot.world.sketch import SketchWorld

from .conftest import run_cli

# -- chat ---------------------------------------------------------------------------------

COMMANDS = [
    "!p ",
    "!prompt ",
    "!vote ",
    "!",
    "+",
    "!ban ",
    "!unban ",
    "!skip",
    "!lock",
    "!unlock",
    "!help",
    "!now",
    "!P ",
    "!VOTE",
    "! p ",
    "!p\u200b",
    "+-",
    "!1e9",
    "!0",
    "!-1",
    "!99999999999999999999",
]
wild = st.one_of(
    st.text(max_size=80),
    st.text(st.characters(min_codepoint=0x300, max_codepoint=0x36F), max_size=20),  # combining marks
    st.text(st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF), max_size=20),  # emoji
    st.sampled_from(
        [
            "\x00",
            "\u202e",
            "\u200b",
            "\ufeff",
            "\U000e0000",
            "\n",
            "\r\n",
            "\t",
            "@everyone",
            "https://x.example/?a=b",
            "<script>",
            "' OR 1=1 --",
            "%s%n",
            "{0}",
            "\\u0000",
        ]
    ),
    st.integers(-(10**20), 10**20).map(str),
)
lines = st.builds(lambda c, a, b: c + a + b, st.sampled_from(COMMANDS + [""]), wild, wild)
names = st.text(string.ascii_letters + string.digits + "_\u00e9\u4e2d", min_size=1, max_size=25)
roles = st.frozensets(st.sampled_from(["subscriber", "vip", "viewer"]))
platforms = st.sampled_from(["twitch", "discord", "local"])
message = st.tuples(platforms, names, roles, lines, st.floats(0, 0.5), st.text(string.hexdigits, max_size=8))


def audience() -> Audience:
    engine = VotingEngine(VotingSettings(round_s=120, grace_s=2, top_n=10, pool_embeddings=False), now=0.0)
    return Audience(engine, Moderation(ModerationSettings(new_viewer_wait_s=0)), clock=lambda: 0.0)


def comparable(state: dict) -> dict:
    """The round as saved, without the times a restore sets afresh."""
    return {
        "round": state["round"],
        "mode": state["mode"],
        "locked": state["locked"],
        "cooldown": state["cooldown"],
        "candidates": [{k: v for k, v in c.items() if k != "at"} for c in state["candidates"]],
        "ballots": sorted((json.dumps(b["viewer"], sort_keys=True), b["candidate"]) for b in state["ballots"]),
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(message, max_size=40), st.booleans())
def test_fuzzed_chat_never_raises_and_loses_nothing(messages, typed) -> None:
    a = audience()
    # a round already under way, that nobody in the crowd below may take away
    alice, bob = Viewer("twitch", "alice", id="1"), Viewer("discord", "bob", id="2")
    a.handle(PromptEvent(alice, "a quiet harbour at dawn"), 0.0)
    a.handle(VoteEvent(bob, 1), 0.0)
    now = 0.0
    for platform, name, rs, text, dt, mid in messages:
        now += dt
        viewer = Viewer(platform, "v_" + name, rs, id=mid)
        if typed and text.startswith("!p "):
            event = PromptEvent(viewer, text[3:], id=mid)
        elif typed and text.startswith("!vote ") and text[6:].strip().lstrip("-").isdigit():
            event = VoteEvent(viewer, int(text[6:].strip()[:18]), id=mid)
        else:
            event = ChatMessage(viewer, text, id=mid)
        reply = a.handle(event, now)
        assert reply.kind in get_args(ReplyKind)  # one of the answers the adapters know how to send
        assert "\n" not in reply.text or reply.kind == "help"
        if mid and platform != "local" and reply.kind in ("new", "voted"):
            a.retract_message(platform, mid + "x")  # a deletion of a message never seen: nothing happens
        a.tick(now)
    assert a.counts["messages"] == len(messages) + 2
    state = a.engine.state(now)
    kept = [c for c in state["candidates"] if c["text"] == "a quiet harbour at dawn"]
    assert len(kept) == 1, "the crowd cannot take a candidate away"
    voters = {
        (b["viewer"]["platform"], b["viewer"]["name"]) for b in state["ballots"] if b["candidate"] == kept[0]["id"]
    }
    assert {("twitch", "alice"), ("discord", "bob")} <= voters, "nor anyone's vote"
    # the round survives a save and a restart exactly
    saved = json.loads(json.dumps(state, allow_nan=False))
    b = audience()
    b.engine.restore(saved, now)
    assert comparable(b.engine.state(now)) == comparable(state)


# -- config files -------------------------------------------------------------------------

SECTIONS = {
    name: list(model.model_fields) for name, model in ((n, type(getattr(Settings(), n))) for n in Settings.model_fields)
}
KEYS = sorted({k for fields in SECTIONS.values() for k in fields}) + ["colour", "fps ", "", "stream", "ünïcode"]
scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["1280x720", "0x0", "twitch", "rtmp://x/y/z", "veryfast", "anarchy"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.sampled_from(KEYS), scalars, max_size=2))


def toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def toml(doc: dict) -> str:
    """A small TOML writer for generated documents: scalars, arrays, inline and [section] tables."""
    out = [f"{toml_key(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for k, v in doc.items():
        if isinstance(v, dict):
            dotted = all(re.fullmatch(r"[A-Za-z0-9_-]+", part) for part in k.split("."))
            out.append(f"[{k if dotted else toml_key(k)}]")
            out += [f"{toml_key(kk)} = {toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(out) + "\n"


edits = st.lists(
    st.tuples(st.sampled_from(sorted(SECTIONS) + ["streem", "world.stream"]), st.sampled_from(KEYS), values),
    min_size=1,
    max_size=4,
)
SENTENCE = re.compile(r"^[^\n]+\.$")


def assert_one_sentence(message: str, path: Path) -> str:
    assert message.startswith(f"{path}: "), message  # names the file
    assert SENTENCE.match(message), message  # one line, one sentence
    assert "Traceback" not in message
    return message[len(f"{path}: ") :]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits)
def test_fuzzed_config_files_are_refused_in_one_sentence_naming_the_field(tmp_path, changes) -> None:
    doc: dict = {}
    for section, key, value in changes:
        table = doc.setdefault(section, {}) if section in SECTIONS else doc.setdefault(section, {})
        if isinstance(table, dict):
            table[key] = value
    path = tmp_path / "generated.toml"
    path.write_text(toml(doc), encoding="utf-8")
    try:
        load_settings(path)
    except ConfigError as e:
        rest = assert_one_sentence(str(e), path)
        m = re.match(r"(?:field '([^']*)'|not valid TOML)", rest)
        assert m, rest
        if m.group(1):  # the field is one the file holds
            head = m.group(1).split(".")[0]
            assert head in {k.split(".")[0] for k in doc} or head == "(top level)", (m.group(1), sorted(doc))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200))
def test_any_text_as_a_config_file_is_a_sentence_not_a_traceback(tmp_path, text) -> None:
    path = tmp_path / "typed.toml"
    path.write_text(text, encoding="utf-8")
    try:
        load_settings(path)
    except ConfigError as e:
        rest = assert_one_sentence(str(e), path)
        if rest.startswith("not valid TOML"):
            assert re.search(r"line \d+|end of document", rest), rest  # where the mistake is


class LanternSettings(BaseModel):
    """The settings model of a world config.py has never heard of."""

    model_config = ConfigDict(extra="forbid")

    glow: Annotated[float, Field(ge=0, le=1)] = 0.5


def test_a_new_world_brings_its_own_settings_table(tmp_path, monkeypatch) -> None:
    """A world registered with its settings model gets its [world.NAME] table validated
    when the settings are loaded, with no field added to config.py."""
    lantern = Entry(
        "lantern", "a world of lanterns", "tests.flat_world:create_world", settings=f"{__name__}:LanternSettings"
    )
    monkeypatch.setitem(WORLDS._entries, "lantern", lantern)
    good = tmp_path / "good.toml"
    good.write_text("[world]\nbackend = 'lantern'\n[world.lantern]\nglow = 0.8\n", encoding="utf-8")
    world = load_settings(good).world
    assert (world.backend, world.table("lantern"), world.table("sketch")) == ("lantern", {"glow": 0.8}, {})
    for text, field in [
        ("[world.lantern]\nglow = 3\n", "field 'world.lantern.glow' input should be less than or equal to 1"),
        ("[world.lantern]\nshine = 1\n", "field 'world.lantern.shine' is not a known setting"),
        ("[world.lanturn]\nglow = 0.8\n", "field 'world.lanturn' is not a known setting"),
    ]:
        bad = tmp_path / "bad.toml"
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError) as e:
            load_settings(bad)
        assert assert_one_sentence(str(e.value), bad) == field + "."


# -- custom world files -------------------------------------------------------------------

GOOD_WORLD = {
    "name": "lagoon",
    "title": "Lagoon",
    "description": "A tropical lagoon.",
    "style": "bright",
    "beats": ["waves roll in"],
    "sketch": {"scene": "a lagoon at noon", "params": {"rain": 0.2}},
}
world_edits = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "name",
                "title",
                "description",
                "style",
                "beats",
                "sketch",
                "sketch.scene",
                "sketch.params",
                "sketch.params.rain",
                "sketch.params.nonsense",
                "sketch.extra",
                "other",
            ]
        ),
        st.one_of(values, st.just(None)),
    ),
    max_size=4,
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(world_edits)
def test_fuzzed_world_files_load_or_say_why_and_never_crash_the_world(tmp_path, changes) -> None:
    doc = json.loads(json.dumps(GOOD_WORLD))
    for where, value in changes:
        *parents, leaf = where.split(".")
        table = doc
        for p in parents:
            table = table.setdefault(p, {}) if isinstance(table.get(p, {}), dict) else None
            if table is None:
                break
        if table is None:
            continue
        if value is None:
            table.pop(leaf, None)
        else:
            table[leaf] = value
    path = tmp_path / "world.toml"
    path.write_text(
        toml({k: v for k, v in doc.items() if k != "sketch"})
        + (
            toml({"sketch": doc["sketch"]})
            if isinstance(doc.get("sketch"), dict)
            else f"sketch = {toml_value(doc['sketch'])}\n"
            if "sketch" in doc
            else ""
        ),
        encoding="utf-8",
    )
    try:
        spec = load_world_file(path)
    except ConfigError as e:
        rest = assert_one_sentence(str(e), path)
        assert re.match(r"(field '[^']+'|the world file is missing the required field '[^']+'|not valid TOML)", rest), (
            rest
        )
        return
    # what loads, the sketch world can start with (or refuse in one sentence)
    world = SketchWorld(embedder=None, background=False)
    try:
        world.start(spec, (64, 36), 30)
        world.render()
    except WorldError as e:
        assert SENTENCE.match(str(e)) and "sketch" in str(e), str(e)
    finally:
        world.close()


# -- the command line -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, field",
    [
        ("[stream]\nsize = 1280\n", "stream.size"),
        ("[voting]\nround_s = nan\n", "voting.round_s"),
        ("[voting]\ngrace_s = 9\nround_s = 5\n", "grace_s"),
        ("[world]\nbackend = 'sketch'\n[world.sketch]\ncolour = 'blue'\n", "world.sketch"),
        ("[stream\nfps = 30\n", "line 1"),
        ("stream = 5\n", "stream"),
    ],
)
def test_the_cli_says_what_is_wrong_in_one_sentence(cli_env, tmp_path, text, field) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    r = run_cli(
        [
            "run",
            "--config",
            str(cfg),
            "--output",
            str(tmp_path / "x.flv"),
            "--duration",
            "1",
            "--chat",
            "none",
            "--no-console",
        ],
        cli_env,
    )
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr + r.stdout
    (line,) = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert line.startswith("streambot: ") and field in line and line.endswith("."), line
