"""Where streambot keeps its files on this machine: every default path, in one place.

The folders come from platformdirs, each operating system's own. On Linux they
are the XDG base directories, the folders streambot has always used, so the
files of an existing install are found where they are:

| folder | holds | on Linux |
| --- | --- | --- |
| config | secrets.toml, twitch_tokens.json, console_token, console_sessions.sqlite3 | `$XDG_CONFIG_HOME/streambot`, else `~/.config/streambot` |
| data | timeline.sqlite3, worlds/ (custom worlds from the console) | `$XDG_DATA_HOME/streambot`, else `~/.local/share/streambot` |
| state | streambot.log | `$XDG_STATE_HOME/streambot`, else `~/.local/state/streambot` |
| cache | start-up caches (see streambot/cache.py); deleting it is safe | `$XDG_CACHE_HOME/streambot`, else `~/.cache/streambot` |

Every path is worked out when asked for, not at import, so the environment a
test or a service manager sets is the one that counts. A path a setting names
(`tokens_file = "~/bot/tokens.json"`) is taken as given, `~` expanded.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "streambot"


def config_dir() -> Path:
    return platformdirs.user_config_path(APP, appauthor=False)


def data_dir() -> Path:
    return platformdirs.user_data_path(APP, appauthor=False)


def state_dir() -> Path:
    return platformdirs.user_state_path(APP, appauthor=False)


def cache_dir() -> Path:
    return platformdirs.user_cache_path(APP, appauthor=False)


def secrets_file() -> Path:
    return config_dir() / "secrets.toml"


def twitch_tokens_file() -> Path:
    return config_dir() / "twitch_tokens.json"


def console_token_file() -> Path:
    return config_dir() / "console_token"


def console_sessions_file() -> Path:
    return config_dir() / "console_sessions.sqlite3"


def timeline_file() -> Path:
    return data_dir() / "timeline.sqlite3"


def worlds_dir() -> Path:
    return data_dir() / "worlds"


def log_file() -> Path:
    return state_dir() / "streambot.log"


def configured(path: str | os.PathLike[str] | None, default: Path) -> Path:
    """The path a setting names (`~` expanded), or `default` when it names none."""
    return Path(os.path.expanduser(path)) if path else default
