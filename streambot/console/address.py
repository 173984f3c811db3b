"""The console's HOST:PORT, read without the web server: the command line
checks it before anything starts, and the server is imported only once the
show is on air."""

from __future__ import annotations

from ..config import ConfigError


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 as [::1]:8080); one sentence when it is not."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--console {text!r} is not HOST:PORT, e.g. 127.0.0.1:8080.")
    return host, int(port)
