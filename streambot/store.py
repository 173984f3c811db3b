"""The timeline: every round, its candidates and votes, its winner, when it
went on air; moderators' and the console's actions; bans; the round under
way, so that a restart resumes it; the GPU world's hours on air per day (the
GPU budget), so that a restart does not reset them.

SQLite in WAL mode. While the show runs, writes go through one writer thread
behind a bounded queue, so the asyncio loop never waits for the disk; reads
(the console, `streambot timeline`) use their own connection.

Times: each session (one run of the show) stores its wall-clock start and
the show clock's reading at that moment; everything else is stored as show
clock seconds, so chapters are exact even when the wall clock jumps.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import paths
from .onair import Latest

if TYPE_CHECKING:
    from .onair import OnAir
    from .voting import RoundResult

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY, started_wall REAL NOT NULL, started_clock REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rounds (
    id INTEGER PRIMARY KEY, session INTEGER NOT NULL, number INTEGER NOT NULL,
    mode TEXT NOT NULL, opened REAL NOT NULL, closed REAL NOT NULL,
    winner TEXT, winner_user TEXT, winner_platform TEXT, winner_votes REAL,
    skipped INTEGER NOT NULL DEFAULT 0, blocked INTEGER NOT NULL DEFAULT 0, aired REAL
);
CREATE INDEX IF NOT EXISTS rounds_session ON rounds (session, number);
CREATE TABLE IF NOT EXISTS candidates (
    round INTEGER NOT NULL, cid INTEGER NOT NULL, number INTEGER, text TEXT NOT NULL,
    author TEXT NOT NULL, platform TEXT NOT NULL, votes REAL NOT NULL, approved INTEGER NOT NULL,
    PRIMARY KEY (round, cid)
);
CREATE TABLE IF NOT EXISTS votes (
    round INTEGER NOT NULL, user TEXT NOT NULL, platform TEXT NOT NULL,
    cid INTEGER NOT NULL, weight REAL NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (round, platform, user)
);
CREATE TABLE IF NOT EXISTS on_air (
    id INTEGER PRIMARY KEY, session INTEGER NOT NULL, at REAL NOT NULL,
    text TEXT NOT NULL, source TEXT NOT NULL, user TEXT
);
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY, session INTEGER, at REAL NOT NULL,
    actor TEXT NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS bans (
    key TEXT PRIMARY KEY, actor TEXT NOT NULL, at_wall REAL NOT NULL, name TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS gpu_usage (day TEXT PRIMARY KEY, seconds REAL NOT NULL);
"""


def resolve_path(configured: str) -> Path:
    return paths.configured(configured, paths.timeline_file())


# One write, run by the writer thread inside a transaction; what it returns is unused (a cursor).
_Write = Callable[[sqlite3.Connection], object]


class StoreError(Exception):
    """The timeline cannot be opened or read; worded as one sentence."""


def _connect(path: Path | str) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


class Store:
    def __init__(
        self,
        path: Path | str,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        background: bool = True,
        session: bool = True,
    ) -> None:
        self.path = Path(path) if str(path) != ":memory:" else path
        self.clock = clock
        self.wall = wall
        try:
            if isinstance(self.path, Path):
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._read = _connect(self.path)
            self._read.executescript(SCHEMA)
            if "name" not in {r[1] for r in self._read.execute("PRAGMA table_info(bans)")}:
                # A timeline from before bans held platform accounts: the name they were banned under.
                self._read.execute("ALTER TABLE bans ADD COLUMN name TEXT NOT NULL DEFAULT ''")
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"{path}: the timeline cannot be opened ({e}).") from None
        # ":memory:" is one database per connection: share the one there is.
        self._write = self._read if str(path) == ":memory:" else _connect(self.path)
        self._lock = threading.Lock()
        self.session: int | None = None
        if session:
            cur = self._read.execute(
                "INSERT INTO sessions (started_wall, started_clock) VALUES (?, ?)", (wall(), clock())
            )
            self.session = cur.lastrowid
        # Actions written so far (a count, bumped once each is committed): the console sends
        # the timeline when it changes instead of reading it on a timer.
        self.timeline_changes: Latest[int] = Latest()
        self._actions_written = 0
        self._queue: queue.Queue[_Write | None] | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._queue = queue.Queue(maxsize=10_000)
            self._thread = threading.Thread(target=self._writer, name="timeline writer", daemon=True)
            self._thread.start()

    # -- writing -----------------------------------------------------------------
    def _submit(self, fn: _Write) -> None:
        if self._queue is None:
            with self._lock:
                self._run(fn)
            return
        try:
            self._queue.put(fn, timeout=0.05)
        except queue.Full:
            log.warning("timeline writer is behind; an entry was dropped")

    def _run(self, fn: _Write) -> None:
        try:
            self._write.execute("BEGIN")
            fn(self._write)
            self._write.execute("COMMIT")
        except sqlite3.Error:
            log.exception("timeline write failed")
            try:
                self._write.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def _writer(self) -> None:
        assert self._queue is not None
        while True:
            fn = self._queue.get()
            if fn is None:
                return
            self._run(fn)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every write so far is on disk."""
        if self._queue is None:
            return
        done = threading.Event()
        self._submit(lambda _c: done.set())
        done.wait(timeout)

    def close(self) -> None:
        """Finish pending writes and close. Safe to call twice."""
        if self._queue is not None and self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(10)
        for conn in {id(self._write): self._write, id(self._read): self._read}.values():
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def record_round(self, result: RoundResult) -> None:
        session = self.session
        w = result.winner

        def write(c: sqlite3.Connection) -> None:
            cur = c.execute(
                "INSERT INTO rounds (session, number, mode, opened, closed, winner, winner_user,"
                " winner_platform, winner_votes, skipped, blocked) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    session,
                    result.round,
                    result.mode,
                    result.opened,
                    result.closed,
                    w.text if w else None,
                    w.user if w else None,
                    w.platform if w else None,
                    w.votes if w else None,
                    int(result.skipped),
                    result.blocked,
                ),
            )
            rid = cur.lastrowid
            c.executemany(
                "INSERT OR REPLACE INTO candidates VALUES (?,?,?,?,?,?,?,?)",
                [
                    (rid, v.id, v.number, v.text, v.author, v.platform, v.votes, int(v.approved))
                    for v in result.candidates
                ],
            )
            c.executemany(
                "INSERT OR REPLACE INTO votes VALUES (?,?,?,?,?,?)",
                [
                    (rid, b.viewer.name, b.viewer.platform, b.candidate.live().id, b.weight, b.at)
                    for b in result.ballots
                    if b.viewer is not None
                ],
            )

        self._submit(write)

    def record_on_air(self, entry: OnAir, *, state: dict[str, Any] | None = None, state_key: str = "world") -> None:
        """One thing went on air: one write for the whole event. Its row in
        `on_air`; for a winner, when its round aired (the chapters); for a
        forced prompt, the action and who took it; and `state`, what a
        restart needs to pick the show up, when given."""
        at, session = self.clock(), self.session
        value = json.dumps(state) if state is not None else None

        def write(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO on_air (session, at, text, source, user) VALUES (?,?,?,?,?)",
                (session, at, entry.text, entry.source, entry.user),
            )
            if entry.round is not None:
                c.execute(
                    "UPDATE rounds SET aired = ? WHERE id = (SELECT max(id) FROM rounds"
                    " WHERE session IS ? AND number = ? AND winner = ?)",
                    (at, session, entry.round, entry.text),
                )
            if entry.actor is not None:
                c.execute(
                    "INSERT INTO actions (session, at, actor, action, detail) VALUES (?,?,?,?,?)",
                    (session, at, entry.actor, "force", entry.text),
                )
            if value is not None:
                c.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (state_key, value))

        self._submit(write)
        if entry.actor is not None:
            self._submit(self._action_written)

    def log_action(self, actor: str, action: str, detail: str = "") -> None:
        args = (self.session, self.clock(), actor, action, detail)
        self._submit(
            lambda c: c.execute("INSERT INTO actions (session, at, actor, action, detail) VALUES (?,?,?,?,?)", args)
        )
        self._submit(self._action_written)

    def _action_written(self, _c: sqlite3.Connection) -> None:
        """After an action's write has committed (the writer runs in order): readers see it now."""
        self._actions_written += 1
        self.timeline_changes.publish(self._actions_written)

    def add_ban(self, key: str, actor: str, name: str = "") -> None:
        """`key` is "platform:name", "*:name" or "platform:id"; `name`, for an id, the name it was banned under."""
        args = (key, actor, self.wall(), name)
        self._submit(
            lambda c: c.execute("INSERT OR REPLACE INTO bans (key, actor, at_wall, name) VALUES (?,?,?,?)", args)
        )

    def remove_ban(self, key: str) -> None:
        self._submit(lambda c: c.execute("DELETE FROM bans WHERE key = ?", (key,)))

    def save_state(self, state: dict[str, Any], key: str = "round") -> None:
        value = json.dumps(state)
        self._submit(lambda c: c.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, value)))

    def save_gpu_seconds(self, day: str, seconds: float) -> None:
        """The GPU world's time on air on `day` (ISO date, the budget's time zone), as counted so far."""
        args = (day, float(seconds))
        self._submit(lambda c: c.execute("INSERT OR REPLACE INTO gpu_usage (day, seconds) VALUES (?, ?)", args))

    # -- reading -----------------------------------------------------------------
    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        try:
            with self._lock:
                self._read.row_factory = sqlite3.Row
                return self._read.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path}: the timeline cannot be read ({e}).") from None

    def bans(self) -> list[str]:
        return [r["key"] for r in self._query("SELECT key FROM bans ORDER BY key")]

    def ban_names(self) -> dict[str, str]:
        return {r["key"]: r["name"] for r in self._query("SELECT key, name FROM bans WHERE name != ''")}

    def load_state(self, key: str = "round") -> dict[str, Any] | None:
        rows = self._query("SELECT value FROM state WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else None

    def gpu_seconds(self, day: str) -> float:
        rows = self._query("SELECT seconds FROM gpu_usage WHERE day = ?", (day,))
        return float(rows[0]["seconds"]) if rows else 0.0

    def sessions(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._query("SELECT * FROM sessions ORDER BY id")]

    def last_session(self, *, with_rounds: bool = True) -> int | None:
        sql = "SELECT max(session) AS s FROM rounds" if with_rounds else "SELECT max(id) AS s FROM sessions"
        rows = self._query(sql)
        return rows[0]["s"] if rows and rows[0]["s"] is not None else None

    def rounds(self, session: int | None = None) -> list[dict[str, Any]]:
        """The rounds of a session (the last one with rounds by default), with
        their candidates and votes."""
        session = session if session is not None else self.last_session()
        if session is None:
            return []
        out = []
        for r in self._query("SELECT * FROM rounds WHERE session = ? ORDER BY id", (session,)):
            d = dict(r)
            d["candidates"] = [
                dict(c)
                for c in self._query(
                    "SELECT cid, number, text, author, platform, votes, approved FROM candidates"
                    " WHERE round = ? ORDER BY votes DESC, cid",
                    (r["id"],),
                )
            ]
            d["votes"] = [
                dict(v)
                for v in self._query(
                    "SELECT user, platform, cid, weight, at FROM votes WHERE round = ? ORDER BY at", (r["id"],)
                )
            ]
            out.append(d)
        return out

    def actions(self, limit: int = 40) -> list[dict[str, Any]]:
        """This session's latest actions, newest first: at (clock), actor, action, detail."""
        rows = self._query(
            "SELECT at, actor, action, detail FROM actions WHERE session IS ? ORDER BY id DESC LIMIT ?",
            (self.session, limit),
        )
        return [dict(r) for r in rows]

    def last_on_air(self) -> dict[str, Any] | None:
        rows = self._query("SELECT text, source, user FROM on_air ORDER BY id DESC LIMIT 1")
        return dict(rows[0]) if rows else None

    def chapters(self, session: int | None = None) -> list[tuple[float, str]]:
        """(seconds since the session began, winning prompt) for every aired winner."""
        session = session if session is not None else self.last_session()
        if session is None:
            return []
        rows = self._query(
            "SELECT r.aired, r.closed, r.winner, s.started_clock FROM rounds r"
            " JOIN sessions s ON s.id = r.session"
            " WHERE r.session = ? AND r.winner IS NOT NULL ORDER BY r.id",
            (session,),
        )
        return [
            (max(0.0, (r["aired"] if r["aired"] is not None else r["closed"]) - r["started_clock"]), r["winner"])
            for r in rows
        ]


def hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
