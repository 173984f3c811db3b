"""The streamer's web console: an aiohttp app on the show's own loop.

One page (static/) for a phone or a desktop: a live preview of the outgoing
stream, what is on air, the round and its votes, every control (force a
prompt, skip, approve/reject, ban, switch world, round length, story pause,
mode, kill switch), health and recent logs; the JSON API it uses (/api, with
its OpenAPI document), /healthz, /metrics, and the OBS overlay page
(/overlay). The show is handed in; nothing here reaches for it globally.

The package imports its server (aiohttp's web server, the routes) only when
one of those names is first used: the command line reads the console's
address before the show starts, and the server comes up once it is on air.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .address import parse_address

if TYPE_CHECKING:
    from .auth import Tokens, load_tokens
    from .server import ConsoleServer, PreparedConsole, create_app, start_console

_LAZY = {
    "ConsoleServer": "server",
    "PreparedConsole": "server",
    "create_app": "server",
    "start_console": "server",
    "Tokens": "auth",
    "load_tokens": "auth",
}

__all__ = [
    "ConsoleServer",
    "PreparedConsole",
    "Tokens",
    "create_app",
    "load_tokens",
    "parse_address",
    "start_console",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
