"""Who may use the console: tokens, sessions, CSRF, origins, login limits.

Two tokens: the admin token (from STREAMBOT_ADMIN_TOKEN, else generated on
first run into a file only its owner can read) runs the show; the viewer
token gives read-only links (state, preview, the OBS overlay page). Logging
in with either sets a session cookie (HttpOnly, SameSite=Strict) bound to a
CSRF token the page sends back in `X-CSRF-Token` with every state-changing
request, which must also come from the console's own origin. Failed logins
(and wrong `?token=` links) are limited per client address.

Both tokens are registered with `streambot.secrets`, so no log line carries
them; neither is ever written into a page or an API response except the
viewer link shown to the admin.
"""
from __future__ import annotations

import hmac
import logging
import os
import secrets as pysecrets
import stat
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from .. import secrets as secret_store
from ..config import ConfigError

log = logging.getLogger(__name__)

Role = Literal["viewer", "admin"]
Access = Literal["public", "viewer", "admin"]

COOKIE = "streambot_session"
CSRF_HEADER = "X-CSRF-Token"
MIN_TOKEN_LENGTH = 16


# -- tokens --------------------------------------------------------------------------

@dataclass(frozen=True)
class Tokens:
    admin: str
    viewer: str
    admin_file: Path | None = None  # where the admin token lives (None: from the environment)
    created: bool = False  # the admin token was generated just now: show it once

    def __post_init__(self) -> None:
        for name, value in (("admin", self.admin), ("viewer", self.viewer)):
            if len(value) < MIN_TOKEN_LENGTH:
                raise ConfigError(f"The console's {name} token must be at least {MIN_TOKEN_LENGTH} characters long.")
        if hmac.compare_digest(self.admin, self.viewer):
            raise ConfigError("The console's viewer token must differ from the admin token.")
        secret_store.register(self.admin)
        secret_store.register(self.viewer)

    def role_of(self, token: str | None) -> Role | None:
        """Which role a presented token grants (constant-time comparisons)."""
        if not token:
            return None
        given = token.encode()
        is_admin = hmac.compare_digest(given, self.admin.encode())
        is_viewer = hmac.compare_digest(given, self.viewer.encode())
        return "admin" if is_admin else "viewer" if is_viewer else None

    @classmethod
    def generate(cls) -> Tokens:
        """Fresh random tokens (tests, throwaway runs)."""
        return cls(new_token(), new_token())


def new_token() -> str:
    return pysecrets.token_urlsafe(32)


def default_token_file() -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return base / "streambot" / "console_token"


def _read_or_create(path: Path) -> tuple[str, bool]:
    """The token in `path`, or a new one written there with mode 0600."""
    try:
        if path.exists():
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                path.chmod(0o600)
                log.warning("%s was readable by others; it is owner-only now", path)
            token = path.read_text(encoding="utf-8").strip()
            if token:
                return token, False
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        token = new_token()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token + "\n")
        return token, True
    except OSError as e:
        raise ConfigError(f"{path}: the console token cannot be read or written ({e.strerror}).") from None


def load_tokens(token_file: str, found_secrets: dict[str, str]) -> Tokens:
    """The admin token from the environment (or secrets file), else from its
    file, generated on first run; the viewer token likewise, beside it."""
    path = Path(os.path.expanduser(token_file)) if token_file else default_token_file()
    admin = found_secrets.get("admin_token")
    created = False
    admin_file: Path | None = None
    if not admin:
        admin, created = _read_or_create(path)
        admin_file = path
    viewer = os.environ.get("STREAMBOT_VIEWER_TOKEN") or found_secrets.get("viewer_token")
    if not viewer:
        viewer, _ = _read_or_create(path.with_name(path.name + "_viewer"))
    return Tokens(admin, viewer, admin_file, created)


# -- sessions ------------------------------------------------------------------------

@dataclass
class Session:
    id: str
    role: Role
    actor: str  # who did it, for the timeline: "console:NAME"
    csrf: str
    expires: float


class Sessions:
    """Logged-in browsers, in memory: a restart logs everyone out."""

    def __init__(self, ttl_s: float, *, max_sessions: int = 500, clock=time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._clock = clock
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def create(self, role: Role, actor: str) -> Session:
        s = Session(new_token(), role, actor, new_token(), self._clock() + self.ttl_s)
        self._by_id[s.id] = s
        while len(self._by_id) > self.max_sessions:
            self._by_id.popitem(last=False)
        return s

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        s = self._by_id.get(sid)
        if s is None:
            return None
        if s.expires <= self._clock():
            del self._by_id[sid]
            return None
        return s

    def drop(self, sid: str) -> None:
        self._by_id.pop(sid, None)

    def __len__(self) -> int:
        return len(self._by_id)


def csrf_ok(session: Session, header: str | None) -> bool:
    return bool(header) and hmac.compare_digest(header.encode(), session.csrf.encode())


# -- origins -------------------------------------------------------------------------

def same_origin(origin: str | None, referer: str | None, own: str, allowed: list[str]) -> bool:
    """A state-changing request must say where it comes from, and that must be
    the console itself (or an origin the streamer allowed)."""
    candidates = [origin] if origin else []
    if not candidates and referer:
        parts = urlsplit(referer)
        candidates = [f"{parts.scheme}://{parts.netloc}"]
    if not candidates or candidates[0] == "null":
        return False
    o = candidates[0].rstrip("/").lower()
    return o == own.lower() or o in (a.lower() for a in allowed)


# -- failed logins ----------------------------------------------------------------------

class LoginLimiter:
    """At most `attempts` failed logins per client address in `window_s` (a
    moving window, from the `limits` library); while over, even the right
    token is refused, so guessing gains nothing."""

    def __init__(self, attempts: int, window_s: int) -> None:
        self._item = RateLimitItemPerSecond(attempts, window_s)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def retry_after(self, client: str) -> int | None:
        """Seconds to wait, or None when this client may try now."""
        if self._limiter.test(self._item, client):
            return None
        reset = self._limiter.get_window_stats(self._item, client).reset_time
        return max(1, int(reset - time.time()) + 1)

    def failed(self, client: str) -> None:
        self._limiter.hit(self._item, client)
