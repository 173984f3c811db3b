"""The streamer's web console: an aiohttp app on the show's own loop.

One page (static/) for a phone or a desktop: a live preview of the outgoing
stream, what is on air, the round and its votes, every control (force a
prompt, skip, approve/reject, ban, switch world, round length, story pause,
mode, kill switch), health and recent logs; the JSON API it uses (/api, with
its OpenAPI document), /healthz, /metrics, and the OBS overlay page
(/overlay). The show is handed in; nothing here reaches for it globally.
"""

from __future__ import annotations

from .auth import Tokens, load_tokens
from .server import ConsoleServer, create_app, parse_address, start_console

__all__ = ["ConsoleServer", "Tokens", "create_app", "load_tokens", "parse_address", "start_console"]
