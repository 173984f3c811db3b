"""Default paths: the XDG base directories on Linux, where an existing install
keeps its files. The expected paths are written out from the XDG Base Directory
specification ($XDG_*_HOME, else ~/.config, ~/.local/share, ~/.local/state),
not taken from the code under test; the files are read back through the
features that use them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from streambot import paths
from streambot.audience.events import Audience
from streambot.audience.moderation import Moderation
from streambot.audience.twitch import TwitchChat
from streambot.config import ConsoleSettings, ModerationSettings, TwitchSettings, VotingSettings, load_secrets
from streambot.console.auth import load_tokens
from streambot.console.server import sessions_file
from streambot.store import resolve_path
from streambot.voting import VotingEngine

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the XDG layout is Linux's")

XDG = ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A home folder with no XDG variables set: the spec's defaults apply."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in XDG:
        monkeypatch.delenv(var, raising=False)
    for var in ("STREAMBOT_STREAM_KEY", "TWITCH_STREAM_KEY", "STREAMBOT_ADMIN_TOKEN", "STREAMBOT_VIEWER_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_defaults_are_the_xdg_folders_under_home(home: Path) -> None:
    assert paths.secrets_file() == home / ".config/streambot/secrets.toml"
    assert paths.twitch_tokens_file() == home / ".config/streambot/twitch_tokens.json"
    assert paths.console_token_file() == home / ".config/streambot/console_token"
    assert sessions_file(ConsoleSettings()) == home / ".config/streambot/console_sessions.sqlite3"
    assert resolve_path("") == home / ".local/share/streambot/timeline.sqlite3"
    assert paths.worlds_dir() == home / ".local/share/streambot/worlds"
    assert paths.log_file() == home / ".local/state/streambot/streambot.log"


def test_xdg_variables_move_them(home: Path, tmp_path, monkeypatch) -> None:
    for var, sub in zip(XDG, ("cfg", "data", "state")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    assert paths.secrets_file() == tmp_path / "cfg/streambot/secrets.toml"
    assert resolve_path("") == tmp_path / "data/streambot/timeline.sqlite3"
    assert paths.log_file() == tmp_path / "state/streambot/streambot.log"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")  # the spec: a relative path is ignored
    assert paths.secrets_file() == home / ".config/streambot/secrets.toml"


def test_a_setting_that_names_a_path_wins(home: Path) -> None:
    assert resolve_path("~/shows/timeline.db") == home / "shows/timeline.db"
    assert sessions_file(ConsoleSettings(sessions_file="/srv/s.sqlite3")) == Path("/srv/s.sqlite3")


def test_an_existing_installs_files_are_found(home: Path) -> None:
    """Files left where earlier versions wrote them are read by the features that use them."""
    config = home / ".config" / "streambot"
    config.mkdir(parents=True)
    (config / "secrets.toml").write_text('stream_key = "live_existing_key_123"\n')
    (config / "console_token").write_text("an-existing-admin-token-0123456789abcdef\n")
    (config / "twitch_tokens.json").write_text(
        '{"1001": {"user_id": "1001", "token": "saved-token-0123456789", "refresh": "saved-refresh-0123456789"}}'
    )

    assert load_secrets()["stream_key"] == "live_existing_key_123"
    tokens = load_tokens("", {})
    assert tokens.admin == "an-existing-admin-token-0123456789abcdef" and not tokens.created
    assert tokens.admin_file == config / "console_token"
    audience = Audience(
        VotingEngine(VotingSettings()), Moderation(ModerationSettings(classifier=False, semantic=False))
    )
    chat = TwitchChat(audience, TwitchSettings(enabled=True, client_id="x", channel="streamer"), {})
    assert chat.tokens_file == config / "twitch_tokens.json"
    assert chat._saved_tokens() == ("saved-token-0123456789", "saved-refresh-0123456789")
