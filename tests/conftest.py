"""Shared fixtures: a real nginx RTMP server on a free loopback port, and a
way to run the real `streambot` command line in a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
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
    if (os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail")
            and item.get_closest_marker("gpu") is None):
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
        [sys.executable, "-m", "streambot.cli", *args], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw,
    )
