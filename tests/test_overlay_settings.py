"""The [overlay] settings: typed, validated once, with the defaults the show needs."""

from __future__ import annotations

import pytest

from streambot.config import ConfigError, load_settings


def test_the_overlay_is_burned_in_by_default():
    s = load_settings()
    assert s.overlay.burn_in is True and s.overlay.layout == "" and s.overlay.discord_invite == ""


def test_a_bad_overlay_setting_names_the_file_and_field(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('[overlay]\nburn_in = "maybe"\n')
    with pytest.raises(ConfigError, match=r"mine\.toml: field 'overlay\.burn_in'"):
        load_settings(f)
    f.write_text("[overlay]\nsparkle = true\n")
    with pytest.raises(ConfigError, match=r"field 'overlay\.sparkle' is not a known setting"):
        load_settings(f)


def test_overlay_settings_from_a_user_file(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('[overlay]\nburn_in = false\nlayout = "neon"\ndiscord_invite = "discord.gg/abc"\n')
    s = load_settings(f)
    assert (s.overlay.burn_in, s.overlay.layout, s.overlay.discord_invite) == (False, "neon", "discord.gg/abc")
