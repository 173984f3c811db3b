"""`kill -9` loses no more than the moment: a real `streambot run` killed
mid-round and started again against the same timeline resumes the world the
console switched to, the prompt on air, and the round with its candidates
and votes; the killed show's own processes do not outlive it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from .conftest import ShowProcess

pytestmark = pytest.mark.slow

ADMIN = "resume-test-admin-token-0123456789abcdef"


class Run(ShowProcess):
    """One `streambot run` with its console, its terminal read as it comes."""

    def __init__(self, env: dict, tmp: Path, name: str) -> None:
        super().__init__(
            [
                "run",
                "--config",
                str(tmp / "show.toml"),
                "--output",
                str(tmp / f"{name}.flv"),
                "--chat",
                str(tmp / "chat.txt"),
                "--size",
                "320x180",
                "--fps",
                "15",
                "--bitrate",
                "400",
            ],
            env,
        )
        assert self.url

    @property
    def lines(self) -> list[str]:
        return self.terminal.lines

    def wait_for(self, pattern: str, timeout: float) -> str:
        return self.terminal.wait_for(pattern, timeout).group(1)

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(
            self.url + path.lstrip("/"),
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def state(self) -> dict:
        return self.api("GET", "/api/state")


def until(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


def saved(db: Path, key: str) -> dict:
    """What the timeline holds now, read as a restart would."""
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError:
        row = None
    finally:
        conn.close()
    return json.loads(row[0]) if row else {}


def round_of(state: dict) -> tuple:
    return (
        state["round"]["number"],
        state["round"]["mode"],
        sorted((c["text"], c["votes"], c["author"]) for c in state["candidates"]),
    )


def test_kill_9_mid_round_resumes_world_prompt_and_round(tmp_path, cli_env):
    db = tmp_path / "timeline.sqlite3"
    # Rounds long enough that the kill lands mid-round; a story that does not move on
    # by itself while a slow machine starts the second show; no sentence model (not
    # what is tested): neither pooling nor the safety screen's semantic layer, which
    # would hold the candidates until it has loaded in the background.
    (tmp_path / "show.toml").write_text(
        f'[voting]\nround_s = 90.0\npool_embeddings = false\ntimeline = "{db}"\n'
        "[moderation]\nsemantic = false\n[director]\nbeat_interval_s = 600\n"
    )
    chat = tmp_path / "chat.txt"
    chat.write_text("")
    env = {**cli_env, "STREAMBOT_ADMIN_TOKEN": ADMIN}

    first = Run(env, tmp_path, "first")
    children: list[psutil.Process] = []
    try:
        first.api("POST", "/api/world", {"preset": "cyberpunk"})
        first.api("POST", "/api/force", {"text": "a neon dragon over the rooftops"})
        with chat.open("a") as f:  # the streamer types in the terminal's place: chat commands
            f.write("!p a rain of paper lanterns\n!p a tram made of light\n")
        before = until(
            lambda: (s := first.state())["candidates"] and len(s["candidates"]) == 2 and s, 60, "the candidates arrive"
        )
        assert before["world"]["name"] == "cyberpunk"
        assert before["on_air"]["text"] == "a neon dragon over the rooftops"
        # the timeline has it all (the round is saved every second)
        until(
            lambda: (
                saved(db, "world").get("preset") == "cyberpunk"
                and saved(db, "world").get("text") == "a neon dragon over the rooftops"
                and round_of_saved(saved(db, "round")) == round_of(before)
            ),
            20,
            "the timeline holds the round",
        )
        children = psutil.Process(first.proc.pid).children(recursive=True)
        assert children, "outputs and overlay drawing run in their own processes"
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
    finally:
        if first.proc.poll() is None:
            first.proc.kill()
            first.proc.wait(10)
    # what the killed show had started ends by itself (its pipes closed), not streaming on unseen
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [p.cmdline() for p in alive]

    second = Run(env, tmp_path, "second")
    try:
        after = until(lambda: (s := second.state())["candidates"] and s, 60, "the round comes back")
        assert after["world"]["name"] == "cyberpunk", "the world the console switched to"
        assert after["on_air"]["text"] == "a neon dragon over the rooftops"
        assert after["on_air"]["source"] == "console"
        assert round_of(after) == round_of(before), (round_of(after), round_of(before))
        assert 0 < after["round"]["time_left"] <= 90
    finally:
        code = second.stop()
    assert code == 0, "\n".join(second.lines[-30:])
    assert "Traceback" not in "\n".join(second.lines)


def round_of_saved(state: dict) -> tuple | None:
    """The saved round in the shape `round_of` gives the console's."""
    if not state:
        return None
    votes: dict[int, float] = {}
    for b in state.get("ballots", []):
        votes[b["candidate"]] = votes.get(b["candidate"], 0.0) + 1.0
    return (
        state["round"],
        state["mode"],
        sorted((c["text"], votes.get(c["id"], 0.0), c["submitters"][0]["name"]) for c in state["candidates"]),
    )
