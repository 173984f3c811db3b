"""The recent log lines the console shows: a ring buffer fed by a logging
handler, every line passed through the secrets filter first."""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from typing import TypedDict

from ..secrets import RedactingFilter


class LogLine(TypedDict):
    seq: int  # counts up from 1: a page asks for the lines after the last it has
    t: float  # when, seconds since the epoch
    level: str  # "info", "warning", ...
    name: str  # the logger, without "streambot."
    msg: str


class LogBuffer(logging.Handler):
    def __init__(self, size: int = 500, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.addFilter(RedactingFilter())
        self.lines: deque[LogLine] = deque(maxlen=size)
        self._seq = itertools.count(1)
        self._lock_seq = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            with self._lock_seq:
                seq = next(self._seq)
            self.lines.append(
                {
                    "seq": seq,
                    "t": record.created,
                    "level": record.levelname.lower(),
                    "name": record.name.removeprefix("streambot."),
                    "msg": msg[:2000],
                }
            )
        except Exception:  # a log line must never break the caller
            self.handleError(record)

    def since(self, seq: int = 0, limit: int = 200) -> list[LogLine]:
        """Lines after `seq`, oldest first, at most `limit` (the newest)."""
        out = [line for line in list(self.lines) if line["seq"] > seq]
        return out[-limit:]

    def install(self, logger: logging.Logger | None = None) -> None:
        (logger or logging.getLogger()).addHandler(self)

    def uninstall(self, logger: logging.Logger | None = None) -> None:
        (logger or logging.getLogger()).removeHandler(self)
