"""Secret values (stream key, tokens) and their removal from anything printed.

Every secret is registered once when it is loaded; `redact` replaces each
occurrence in a string, and `RedactingFilter` does the same for every log
record, so a URL with a stream key in it can be logged safely.
"""

from __future__ import annotations

import logging
import re
import threading

_lock = threading.Lock()
_secrets: set[str] = set()
MASK = "********"


def register(value: str | None) -> None:
    # Very short values would mask ordinary words; real keys are long.
    if value and len(value) >= 6:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    with _lock:
        values = sorted(_secrets, key=len, reverse=True)
    for v in values:
        if v in text:
            text = text.replace(v, MASK)
    return text


def mask_url(url: str) -> str:
    """A URL fit for a log line: secrets removed, user:password too, and the
    last path segment of an RTMP URL (where ingest servers take the key)."""
    url = redact(url)
    url = re.sub(r"(://)[^/@\s]+@", r"\1" + MASK + "@", url)
    if url.startswith(("rtmp://", "rtmps://")):
        url = re.sub(r"^(rtmps?://[^/]+/.+/)[^/?]+", r"\1" + MASK, url)
        url = re.sub(r"\?.*$", "?" + MASK, url)
    return url


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg)
        if clean != msg or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
