"""The terminal's own chat: `streambot run` reads the streamer's lines on
stdin. A plain line goes on air at once, through moderation; a `!` command
goes through the audience like a viewer's, with the broadcaster's rights.
The real command line, its stdin a pipe, its log read line by line; every
step waits for the line that says it happened."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import pytest

from .conftest import ROOT, interrupt

pytestmark = pytest.mark.slow


class Terminal:
    """`streambot run --chat -` with the test at its keyboard."""

    def __init__(self, args: list[str], env: dict) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streambot.cli", "run", "--chat", "-", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._seen = 0
        self._arrived = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            with self._arrived:
                self.lines.append(line.rstrip("\n"))
                self._arrived.notify_all()
        with self._arrived:
            self._arrived.notify_all()

    def type(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, pattern: str, timeout: float = 120) -> re.Match:
        """The next log line (after the last one expected) that matches."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for i in range(self._seen, len(self.lines)):
                    if m := re.search(pattern, self.lines[i]):
                        self._seen = i + 1
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"{pattern!r} never showed up:\n" + "\n".join(self.lines[-30:]))
                self._arrived.wait(left)


def test_lines_typed_in_the_terminal_steer_the_show(tmp_path, cli_env):
    config = tmp_path / "show.toml"
    config.write_text(
        "[voting]\nround_s = 20\nstream_delay_s = 0\ngrace_s = 0\npool_embeddings = false\n"
        f'timeline = "{tmp_path / "t.sqlite3"}"\n'
        "[moderation]\nclassifier = false\nsemantic = false\n"
        "[director]\nbeat_interval_s = 600\n"
    )
    term = Terminal(
        [
            "--config",
            str(config),
            "--output",
            str(tmp_path / "show.flv"),
            "--size",
            "320x180",
            "--fps",
            "15",
            "--bitrate",
            "300",
            "--no-console",
        ],
        cli_env,
    )
    try:
        term.expect(r"on air \(story\)")
        # a plain line: on air now, credited to the streamer
        term.type("a lighthouse in a storm")
        term.expect(r"on air \(console, streamer\): a lighthouse in a storm")
        # moderation still applies to the streamer's own lines
        term.type("fuck this")
        term.expect(r"streamer: that prompt can't go on air \(moderation\)")
        # chat commands, as a viewer would type them, with the broadcaster's rights
        term.type("!p a dragon over the bay")
        term.expect(r"chat: Your idea is #1\.")
        term.type("!lock")
        term.expect(r"chat: Done: lock")
        for line in ("!p a castle made of ice", "!vote 1"):
            term.type(line)
            term.expect(r"chat: Prompts and votes are locked right now\.")
        term.type("!unlock")
        term.expect(r"chat: Done: unlock")
        # the round ends and the streamer's idea wins it, as a viewer's would
        term.expect(r"on air \(audience, streamer\): a dragon over the bay")
        assert not any("on air" in line and "fuck" in line for line in term.lines)
    finally:
        code = interrupt(term.proc)
    assert code == 0, "\n".join(term.lines[-30:])
    assert "Traceback" not in "\n".join(term.lines)
