"""`streambot check` and start-up refuse a bad input with the same sentence:
the check lists, among its problems, exactly what `streambot run` would stop on."""

from __future__ import annotations

import pytest

from streambot.app import ShowOptions, check_inputs
from streambot.checks import INPUT_ERRORS, run_checks
from streambot.config import ConfigError, load_settings, resolve_world

# Each case: a settings file (TOML, {tmp} is a fresh folder) and the outputs, with one thing wrong.
CASES = {
    "timeline is a folder": ('[voting]\ntimeline = "{tmp}"\n', ["{tmp}/out.flv"]),
    "music folder missing": ('[audio]\nmusic_dir = "{tmp}/no-music"\n', ["{tmp}/out.flv"]),
    "overlay layout missing": ('[overlay]\nlayout = "{tmp}/nowhere.toml"\n', ["{tmp}/out.flv"]),
    "block list missing": ('[moderation]\nblock_lists = ["{tmp}/no-list.txt"]\n', ["{tmp}/out.flv"]),
    "twitch without a channel": ('[twitch]\nenabled = true\nclient_id = "abc"\n', ["{tmp}/out.flv"]),
    "discord without a token": ("[discord]\nenabled = true\n", ["{tmp}/out.flv"]),
    "an output that is no file kind": ("", ["{tmp}/out.txt"]),
    "an output in no folder": ("", ["{tmp}/nowhere/out.flv"]),
    "an ftp output": ("", ["ftp://example.com/live"]),
    "a stream key nobody set": ("", ["rtmp://127.0.0.1/live/{{stream_key}}"]),
    "no output": ("", []),
    "the world's own overlay layout missing": ('[world]\npreset = "{tmp}/mine.toml"\n', ["{tmp}/out.flv"]),
}
# A custom world whose file names an overlay layout that is not there.
WORLD = """name = "mine"
title = "Mine"
description = "A world of my own."
style = "watercolour"
beats = ["a quiet lake"]
overlay = "{tmp}/no-layout.toml"
"""


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    for name in ("STREAMBOT_STREAM_KEY", "TWITCH_STREAM_KEY", "STREAMBOT_DISCORD_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("case", list(CASES))
def test_check_and_start_up_refuse_a_bad_input_with_the_same_sentence(case, tmp_path, clean_env):
    toml, outputs = CASES[case]
    tmp = tmp_path / "case"
    tmp.mkdir()
    (tmp / "mine.toml").write_text(WORLD.format(tmp=tmp))
    cfg = tmp_path / "streambot.toml"
    # the timeline in the temporary folder unless the case names its own; voice off (its model is no input)
    base = f'[voting]\ntimeline = "{tmp_path / "t.sqlite3"}"\n' if "[voting]" not in toml else ""
    cfg.write_text(base + toml.format(tmp=tmp) + "[voice]\nenabled = false\n")
    outputs = [o.format(tmp=tmp) for o in outputs]
    settings = load_settings(cfg)
    spec = resolve_world(settings.world.preset)

    with pytest.raises(INPUT_ERRORS) as start:
        check_inputs(settings, spec, ShowOptions(outputs=outputs, chat_source=None))
    sentence = str(start.value)
    assert sentence.endswith(".") and "\n" not in sentence, sentence

    problems, _ = run_checks(lambda: settings, None, outputs)
    # the one problem; a GPU world's check also says what the machine lacks for it, after
    assert problems[:1] == [sentence], (case, problems)
    assert len(problems) == 1 or settings.world.backend != "sketch", problems


def test_a_world_table_is_refused_where_the_settings_load(tmp_path, clean_env):
    """A backend's own table is validated with the rest of the file (before any
    check runs), by that backend's model, and the sentence names the field."""
    cfg = tmp_path / "streambot.toml"
    cfg.write_text('[world]\nbackend = "stream"\n[world.stream]\nsteps = 99\n')
    with pytest.raises(ConfigError) as refused:
        load_settings(cfg)
    sentence = str(refused.value)
    assert "field 'world.stream.steps'" in sentence and "\n" not in sentence, sentence
