"""Shared fixtures: a real nginx RTMP server on a free loopback port, a way to
run the real `streambot` command line in a subprocess, `streambot run` with its
console as a streamer starts it, and a `Show` put on air on the test's own loop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from streambot.devserver import RtmpServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI everything is installed, so a skipped test is a missing install step: fail it."""
    outcome = yield
    report = outcome.get_result()
    # GPU tests are the one exception: CI machines have no GPU; they run where one is lent.
    if (
        os.environ.get("CI")
        and report.skipped
        and not hasattr(report, "wasxfail")
        and item.get_closest_marker("gpu") is None
    ):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where everything it needs must be installed: {report.longrepr}"


@pytest.fixture
def rtmp_server(tmp_path):
    server = RtmpServer(workdir=tmp_path / "nginx")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cli_env(tmp_path):
    """An environment for CLI subprocesses: own state dir (log file), no stray secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMBOT_", "TWITCH_"))}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(args: list[str], env: dict, timeout: float = 180, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streambot.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        **kw,
    )


def interrupt(proc: subprocess.Popen) -> int:
    """Ctrl-C, as the streamer ends the show; its exit status (killed if it hangs)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    return proc.returncode


class Terminal:
    """A process's terminal (stderr), read as it comes, line by line."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._arrived = threading.Condition()
        self._ended = False
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            with self._arrived:
                self.lines.append(line.rstrip("\n"))
                self._arrived.notify_all()
        with self._arrived:
            self._ended = True
            self._arrived.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        """The first line matching `pattern`, once it is written (or the terminal closes)."""
        found: list[re.Match] = []

        def seen() -> bool:
            found[:] = [m for line in self.lines if (m := re.search(pattern, line))][:1]
            return bool(found) or self._ended

        with self._arrived:
            self._arrived.wait_for(seen, timeout)
        if not found:
            raise AssertionError(f"{pattern!r} never showed up:\n" + "\n".join(self.lines[-30:]))
        return found[0]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class ShowProcess:
    """A `streambot` command (`run`, `demo`) in a subprocess, as a streamer starts it
    with its console on a free port: its terminal, the console's address and the
    admin token it prints once."""

    def __init__(self, args: list[str], env: dict, stdin=subprocess.DEVNULL) -> None:
        self.env = env
        cmd = [sys.executable, "-m", "streambot.cli", *args, "--console", "127.0.0.1:0"]
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.terminal = Terminal(self.proc)

    @functools.cached_property
    def url(self) -> str:
        return self.terminal.wait_for(r"Console: (http://127\.0\.0\.1:\d+/)", 90).group(1)

    @functools.cached_property
    def token(self) -> str:
        """The admin token, on the line of its own that follows the console's address."""
        assert self.url
        return self.terminal.wait_for(r"^\s{6}(\S{40,})$", 5).group(1)

    def stop(self) -> int:
        return interrupt(self.proc)


@pytest.fixture
def show_process(cli_env) -> Callable[..., ShowProcess]:
    """Starts a `streambot` command with its console (`env` added to `cli_env`);
    every one started is stopped after the test, whatever happened."""
    started: list[ShowProcess] = []

    def start(*args: str, env: dict | None = None, stdin=subprocess.DEVNULL) -> ShowProcess:
        process = ShowProcess(list(args), {**cli_env, **(env or {})}, stdin)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@contextlib.asynccontextmanager
async def on_air(show, *, frames: int = 1, timeout: float = 60) -> AsyncIterator[asyncio.Task]:
    """`show` opened and running on this loop (as `streambot run` runs it) until
    its clock has sent `frames` frames; stopped and closed on the way out."""
    await asyncio.to_thread(show.open)
    running = asyncio.create_task(show.run(), name="show")
    try:
        async with asyncio.timeout(timeout):
            while show.broadcast.health().ticks < frames and not running.done():
                await asyncio.sleep(0.02)
        if running.done():
            running.result()  # the show's own error, if it stopped
            raise AssertionError("the show stopped before going on air")
        yield running
    finally:
        show.stop()
        await asyncio.wait_for(running, 60)
