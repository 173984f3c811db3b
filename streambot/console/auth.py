"""Who may use the console: tokens, sessions, CSRF, origins, login limits.

Two tokens: the admin token (from STREAMBOT_ADMIN_TOKEN, else generated on
first run into a file only its owner can read) runs the show; the viewer
token gives read-only links (state, preview, the OBS overlay page). Logging
in with either sets a session cookie (HttpOnly, SameSite=Strict) bound to a
CSRF token the page sends back in `X-CSRF-Token` with every state-changing
request, which must also come from the console's own origin. Sessions are
kept across restarts (hashed, in an owner-only file) until they expire or
the admin revokes them. Scripts (Stream Deck, Streamer.bot, curl) send the
admin token as `Authorization: Bearer` instead: a browser never sends that
header by itself, so CSRF does not apply to it. Failed logins (and wrong
tokens) are limited per client address.

Both tokens are registered with `streambot.secrets`, so no log line carries
them; neither is ever written into a page or an API response except the
viewer link shown to the admin.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets as pysecrets
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from .. import paths
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
    path = paths.configured(token_file, paths.console_token_file())
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
    id: str  # the cookie's value; only its hash is stored
    role: Role
    actor: str  # who did it, for the timeline: "console:NAME"
    csrf: str
    expires: float  # wall-clock seconds (the session outlives a restart)
    created: float = 0.0
    key: str = ""  # the stored hash, also the public handle for revoking

    @property
    def handle(self) -> str:
        """A short name for the session in the console's list (not a credential)."""
        return self.key[:12]


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class Sessions:
    """Logged-in browsers, kept across restarts in an owner-only SQLite file.

    The file holds a hash of each session's cookie, never the cookie itself,
    so reading it does not let anyone in. Sessions expire after `ttl_s`; the
    admin can list and revoke them (`all_sessions`, `revoke`). The file is
    the only record, so a revocation holds for every console reading it.
    With `path=None` (tests, throwaway runs) they live in memory only.
    """

    def __init__(
        self, ttl_s: float, *, path: Path | None = None, max_sessions: int = 500, clock: Callable[[], float] = time.time
    ) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._clock = clock
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = _open_db(path)

    def _run(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._db is None:
                return []
            with self._db:
                return self._db.execute(sql, args).fetchall()

    def create(self, role: Role, actor: str) -> Session:
        sid = new_token()
        now = self._clock()
        s = Session(sid, role, actor, new_token(), now + self.ttl_s, now, _hash(sid))
        self._run("DELETE FROM sessions WHERE expires <= ?", (now,))
        self._run("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)", (s.key, role, actor, s.csrf, s.created, s.expires))
        # The oldest go first when there are too many.
        self._run(
            "DELETE FROM sessions WHERE key NOT IN "
            "(SELECT key FROM sessions ORDER BY created DESC, rowid DESC LIMIT ?)",
            (self.max_sessions,),
        )
        return s

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        rows = self._run(
            "SELECT key, role, actor, csrf, created, expires FROM sessions WHERE key = ? AND expires > ?",
            (_hash(sid), self._clock()),
        )
        if not rows:
            return None
        key, role, actor, csrf, created, expires = rows[0]
        return Session(sid, role, actor, csrf, expires, created, key)

    def drop(self, sid: str) -> None:
        self._run("DELETE FROM sessions WHERE key = ?", (_hash(sid),))

    def revoke(self, handle: str) -> bool:
        """End a session by its handle (from `all_sessions`)."""
        if len(handle) < 8 or not all(c in "0123456789abcdef" for c in handle):
            return False
        keys = self._run("SELECT key FROM sessions WHERE key LIKE ?", (handle + "%",))
        if len(keys) != 1:
            return False
        self._run("DELETE FROM sessions WHERE key = ?", (keys[0][0],))
        return True

    def all_sessions(self) -> list[Session]:
        """The sessions still valid, oldest first."""
        rows = self._run(
            "SELECT key, role, actor, csrf, created, expires FROM sessions WHERE expires > ? ORDER BY created",
            (self._clock(),),
        )
        return [
            Session("", role, actor, csrf, expires, created, key) for key, role, actor, csrf, created, expires in rows
        ]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __len__(self) -> int:
        return self._run("SELECT count(*) FROM sessions WHERE expires > ?", (self._clock(),))[0][0] if self._db else 0


def _open_db(path: Path | None) -> sqlite3.Connection:
    schema = (
        "CREATE TABLE IF NOT EXISTS sessions (key TEXT PRIMARY KEY, role TEXT NOT NULL, "
        "actor TEXT NOT NULL, csrf TEXT NOT NULL, created REAL NOT NULL, expires REAL NOT NULL)"
    )
    if path is None:
        db = sqlite3.connect(":memory:", check_same_thread=False)
        db.execute(schema)
        return db
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        elif stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(0o600)
        db = sqlite3.connect(path, check_same_thread=False, timeout=5)
        db.execute(schema)
        return db
    except (OSError, sqlite3.Error) as e:
        raise ConfigError(f"{path}: the console's sessions cannot be kept there ({e}).") from None


def csrf_ok(session: Session, header: str | None) -> bool:
    return header is not None and bool(header) and hmac.compare_digest(header.encode(), session.csrf.encode())


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
