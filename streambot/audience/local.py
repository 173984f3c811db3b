"""Local chat: prompts typed on stdin, or one per line appended to a file.

These let the whole loop run with no credentials (the demo, tests, a
streamer trying things out). Each line is handed to `on_line(user, text)` on
the asyncio loop; the reading happens in a daemon thread so the loop never
blocks on the terminal.
"""
from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

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
        try:
            if self.source == "-":
                for line in sys.stdin:
                    if self._stop.is_set():
                        break
                    self._deliver(line)
            else:
                self._follow(Path(self.source))
        except (OSError, ValueError) as e:
            log.warning("local chat stopped: %s", e)
        self.state = "closed"

    def _follow(self, path: Path) -> None:
        """Like `tail -f`: lines already there are read, then new ones as they come."""
        while not path.exists() and not self._stop.is_set():
            time.sleep(0.2)
        with open(path, encoding="utf-8", errors="replace") as f:
            pending = ""
            while not self._stop.is_set():
                chunk = f.readline()
                if not chunk:
                    time.sleep(0.1)
                    continue
                pending += chunk
                if pending.endswith("\n"):
                    self._deliver(pending)
                    pending = ""

    def close(self) -> None:
        self._stop.set()
        self.state = "closed"
