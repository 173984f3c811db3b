"""Local chat: prompts typed on stdin, or one per line appended to a file.

These let the whole loop run with no credentials (the demo, tests, a
streamer trying things out). A followed file may be rotated, cut short or
made again; the reader picks up the new one by itself. Each line is handed to `on_line(user, text)` on
the asyncio loop; the reading happens in a daemon thread so the loop never
blocks on the terminal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

log = logging.getLogger(__name__)

OnLine = Callable[[str, str], None]


class LocalChat:
    platform = "local"

    def __init__(self, on_line: OnLine, *, source: str = "-", user: str = "streamer") -> None:
        self.on_line = on_line
        self.source = source  # "-" for stdin, else a file path to follow
        self.user = user
        self.state = "idle"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="local chat", daemon=True)
        self._thread.start()
        self.state = "live"

    def _deliver(self, line: str) -> None:
        text = line.strip()
        if text and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.on_line, self.user, text)

    def _run(self) -> None:
        if self.source != "-":
            self._follow(Path(self.source))
        else:
            try:
                for line in sys.stdin:
                    if self._stop.is_set():
                        break
                    self._deliver(line)
            except (OSError, ValueError) as e:
                log.warning("local chat stopped: %s", e)
        self.state = "closed"

    def _follow(self, path: Path) -> None:
        """Like `tail -F`: lines already there are read, then new ones as they
        come; a file that is replaced (log rotation), cut short or deleted and
        made again is read again from its start; a read error is retried."""
        f = None
        inode = None
        pending = ""
        failures = 0
        while not self._stop.is_set():
            try:
                if f is None:
                    try:
                        f = open(path, encoding="utf-8", errors="replace")
                    except FileNotFoundError:
                        self.state = "waiting"
                        self._stop.wait(0.2)
                        continue
                    inode, pending = os.fstat(f.fileno()).st_ino, ""
                    self.state = "live"
                chunk = f.readline()
                if chunk:
                    failures = 0
                    pending += chunk
                    if pending.endswith("\n"):
                        self._deliver(pending)
                        pending = ""
                    continue
                if self._replaced(path, f, inode):
                    log.info("local chat: %s was replaced or cut short; reading it from its start", path)
                    f.close()
                    f = None
                    continue
                self._stop.wait(0.1)
            except (OSError, ValueError) as e:
                failures += 1
                delay = min(30.0, 0.5 * 2 ** min(failures, 6))
                if failures == 1:
                    log.warning("local chat: reading %s failed (%s); retrying", path, e)
                self.state = "retrying"
                if f is not None:
                    f.close()
                    f = None
                self._stop.wait(delay)
        if f is not None:
            f.close()

    @staticmethod
    def _replaced(path: Path, f: TextIO, inode: int | None) -> bool:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return False  # deleted: the open file is read out until a new one appears
        # another file by that name (a new inode number, or ours unlinked: numbers are reused), or ours cut short
        return st.st_ino != inode or os.fstat(f.fileno()).st_nlink == 0 or st.st_size < f.tell()

    def close(self) -> None:
        self._stop.set()
        self.state = "closed"
