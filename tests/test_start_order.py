"""Start-up in two phases, through the real command line: every input is
checked before anything connects, so a mistake is one sentence and the RTMP
server (nginx) never sees a connection; a failure while connecting closes
everything opened so far. And the worlds and chat platforms come from one
registry: the choices, the help, and a world added from outside the package."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from streambot.devserver import RtmpServer, free_port

from .conftest import ROOT, run_cli
from .media import decode_frames

KEY = "live_123456789_SecretStreamKey"
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING) ")


@pytest.fixture
def ingest(tmp_path):
    """nginx with its RTMP module, logging every client that connects."""
    server = RtmpServer(workdir=tmp_path / "nginx", log_connections=True)
    server.start()
    assert within(10, lambda: server.connections == 1), "the server's own start-up probe is logged"
    yield server
    server.stop()


def one_sentence(r, *, after_log: bool = False) -> str:
    """The refusal: one line, one sentence, no traceback. `after_log`: the connect
    phase had begun, so the log's own lines (the world started, ...) come first."""
    assert r.returncode != 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr + r.stdout, r.stderr[-3000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not (after_log and LOG_LINE.match(ln))]
    assert len(lines) == 1, r.stderr[-3000:]
    assert lines[0].startswith("streambot: ") and lines[0][-1] in ".?", lines[0]
    return lines[0]


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def _timeline_a_folder(tmp: Path) -> tuple[list[str], str]:
    (tmp / "timeline.d").mkdir()
    return ["--config", str(write(tmp / "c.toml", f'[voting]\ntimeline = "{tmp / "timeline.d"}"\n'))], "timeline"


def _timeline_unwritable(tmp: Path) -> tuple[list[str], str]:
    # Below a regular file: no folder can be made there, whoever runs the test (root included).
    write(tmp / "a-file", "not a folder")
    cfg = write(tmp / "c.toml", f'[voting]\ntimeline = "{tmp / "a-file" / "timeline.sqlite3"}"\n')
    return ["--config", str(cfg)], "timeline"


def _block_list_broken(tmp: Path) -> tuple[list[str], str]:
    mine = write(tmp / "mine.txt", b"dragon\n\xff\xfe\xfa not text\n")
    cfg = write(tmp / "c.toml", f'[moderation]\nblock_lists = ["default.txt", "{mine}"]\n')
    return ["--config", str(cfg)], "mine.txt"


def _block_list_missing(tmp: Path) -> tuple[list[str], str]:
    cfg = write(tmp / "c.toml", f'[moderation]\nblock_lists = ["default.txt", "{tmp / "gone.txt"}"]\n')
    return ["--config", str(cfg)], "gone.txt"


def _world_file_bad(tmp: Path) -> tuple[list[str], str]:
    world = write(tmp / "mine.toml", 'name = "mine"\ntitle = "Mine"\ndescription = "A world."\nbeats = ["one"]\n')
    return ["--preset", str(world)], "style"


def _world_settings_bad(tmp: Path) -> tuple[list[str], str]:
    cfg = write(tmp / "c.toml", "[world.sketch]\nrender_scale = 7\n")
    return ["--config", str(cfg)], "render_scale"


def _music_folder_missing(tmp: Path) -> tuple[list[str], str]:
    cfg = write(tmp / "c.toml", f'[audio]\nmusic_dir = "{tmp / "no-music"}"\n')
    return ["--config", str(cfg)], "music_dir"


def _layout_missing(tmp: Path) -> tuple[list[str], str]:
    cfg = write(tmp / "c.toml", f'[overlay]\nlayout = "{tmp / "gone-layout.toml"}"\n')
    return ["--config", str(cfg)], "gone-layout.toml"


def _twitch_without_channel(tmp: Path) -> tuple[list[str], str]:
    cfg = write(tmp / "c.toml", '[twitch]\nenabled = true\nclient_id = "abc"\n')
    return ["--config", str(cfg)], "channel"


def _discord_without_token(tmp: Path) -> tuple[list[str], str]:
    cfg = write(tmp / "c.toml", "[discord]\nenabled = true\n")
    return ["--config", str(cfg)], "Discord bot token"


BAD_INPUTS = [
    _timeline_a_folder,
    _timeline_unwritable,
    _block_list_broken,
    _block_list_missing,
    _world_file_bad,
    _world_settings_bad,
    _music_folder_missing,
    _layout_missing,
    _twitch_without_channel,
    _discord_without_token,
]


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=lambda f: f.__name__.strip("_"))
def test_a_bad_input_stops_the_start_before_any_connection(ingest, cli_env, tmp_path, bad):
    args, named = bad(tmp_path)
    cli_env["STREAMBOT_STREAM_KEY"] = KEY
    r = run_cli(
        [
            "run",
            *args,
            "--output",
            f"rtmp://127.0.0.1:{ingest.port}/live/{{stream_key}}",
            "--duration",
            "30",
            "--chat",
            "none",
            "--no-console",
        ],
        cli_env,
        timeout=120,
    )
    msg = one_sentence(r)
    assert r.returncode == 2, msg
    assert named in msg, msg
    assert KEY not in r.stderr + r.stdout
    assert ingest.connections == 1, f"the RTMP server saw a connection before the input was checked: {msg}"


def test_a_console_address_in_use_stops_the_start_before_any_connection(ingest, cli_env, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        r = run_cli(
            ["run", "--output", ingest.url("show"), "--duration", "30", "--chat", "none", "--console", address],
            cli_env,
            timeout=120,
        )
    msg = one_sentence(r)
    assert r.returncode == 2 and address in msg, msg
    assert ingest.connections == 1, msg


def test_an_unreachable_output_is_one_sentence_with_its_key_masked(cli_env, tmp_path):
    cli_env["STREAMBOT_STREAM_KEY"] = KEY
    r = run_cli(
        [
            "run",
            "--output",
            f"rtmp://127.0.0.1:{free_port()}/live/{{stream_key}}",
            "--duration",
            "5",
            "--chat",
            "none",
            "--no-console",
        ],
        cli_env,
        timeout=120,
    )
    msg = one_sentence(r, after_log=True)
    assert "unreachable" in msg, msg
    assert KEY not in r.stderr + r.stdout


def within(seconds: float, condition) -> bool:
    """Whether `condition()` holds now or turns true within `seconds` (nginx logs
    a disconnect, and the kernel reaps a process, a moment after the fact)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)  # polling: neither nginx's log nor /proc can be waited on
    return True


def _processes_with(marker: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker.encode() in environ:
            found.append(f"{pid}: {cmd[:120]}")
    return found


def test_a_failure_while_connecting_closes_everything_opened(ingest, cli_env, tmp_path):
    """One destination goes live, the other (a file output that cannot be
    written: a folder in its place) refuses: the start stops, and the world,
    the timeline, every child process and the live connection are closed."""
    marker = f"startorder-{uuid.uuid4().hex}"
    cli_env["STREAMBOT_TEST_RUN"] = marker  # inherited by every process the show starts
    timeline = tmp_path / "timeline.sqlite3"
    cfg = write(tmp_path / "c.toml", f'[voting]\ntimeline = "{timeline}"\n')
    (tmp_path / "out.flv").mkdir()
    r = run_cli(
        [
            "run",
            "--config",
            str(cfg),
            "--output",
            ingest.url("show"),
            "--output",
            str(tmp_path / "out.flv"),
            "--duration",
            "30",
            "--size",
            "320x180",
            "--chat",
            "none",
            "--no-console",
        ],
        cli_env,
        timeout=180,
    )
    msg = one_sentence(r, after_log=True)
    assert "out.flv" in msg, msg
    assert ingest.connections >= 2, "the connect phase was reached: the RTMP output connected"
    # The timeline was opened for the show and closed properly: SQLite removes its
    # write-ahead log when the last connection closes, and leaves it when a process just exits.
    assert timeline.exists() and not Path(f"{timeline}-wal").exists(), "the timeline was not closed"

    def closed() -> bool:
        log = (ingest.dir / "error.log").read_text()
        return log.count(" client connected ") == log.count(" disconnect, client") and not _processes_with(marker)

    assert within(10, closed), (_processes_with(marker), "a connection or a process of the show outlived it")


# -- the registry: worlds and chat platforms by name ------------------------------------------


def test_the_help_lists_every_world_and_chat_platform_with_a_line_each(cli_env):
    r = run_cli(["run", "--help"], cli_env, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for name in ("sketch", "stream", "video", "terminal", "twitch", "discord"):
        described = [ln for ln in lines if ln.strip().startswith(name + " ") and len(ln.split()) > 3]
        assert len(described) == 1, (name, r.stdout)
    assert "[sketch|stream|video]" in " ".join(r.stdout.split()), r.stdout


def test_an_unknown_world_names_the_ones_there_are(cli_env, tmp_path):
    r = run_cli(["run", "--world", "hologram", "--output", str(tmp_path / "x.flv")], cli_env, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (error,) = [ln for ln in r.stderr.splitlines() if ln.startswith("Error")]
    assert "hologram" in error and all(n in error for n in ("sketch", "stream", "video")), error
    cfg = write(tmp_path / "c.toml", '[world]\nbackend = "hologram"\n')
    r = run_cli(["run", "--config", str(cfg), "--output", str(tmp_path / "x.flv")], cli_env, timeout=60)
    msg = one_sentence(r)
    assert "world.backend" in msg and "hologram" in msg and "sketch, stream, video" in msg, msg


ADD_A_WORLD = """
import sys
from streambot.registry import WORLDS, Entry

WORLDS.register(Entry("flat", "one flat colour", "tests.flat_world:create_world"))
from streambot.cli import main

sys.argv = ["streambot", *sys.argv[1:]]
main()
"""


def test_a_world_added_in_its_own_module_runs_without_touching_the_app(cli_env, tmp_path):
    from .flat_world import COLOUR

    out = tmp_path / "flat.flv"
    cfg = write(tmp_path / "c.toml", "[overlay]\nburn_in = false\n")
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            ADD_A_WORLD,
            "run",
            "--world",
            "flat",
            "--config",
            str(cfg),
            "--output",
            str(out),
            "--duration",
            "1",
            "--size",
            "320x180",
            "--chat",
            "none",
            "--no-console",
        ],
        check=False,
        cwd=ROOT,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    frames = list(decode_frames(out, step=5))
    assert frames
    for _, f in frames:
        assert np.abs(np.median(f.reshape(-1, 3), axis=0) - COLOUR).max() < 8, np.median(f.reshape(-1, 3), axis=0)


SKETCH_ONLY = """
import json, sys
from streambot.app import build_world
from streambot.checks import check_world_settings
from streambot.config import load_settings
import streambot.cli

settings = load_settings(None)
check_world_settings(settings)
world = build_world(settings)
print(json.dumps({"world": world.name, "torch": "torch" in sys.modules, "diffusers": "diffusers" in sys.modules}))
world.close()
"""


def test_the_sketch_world_is_built_without_loading_torch(cli_env):
    r = subprocess.run(
        [sys.executable, "-c", SKETCH_ONLY],
        check=False,
        cwd=ROOT,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out == {"world": "sketch", "torch": False, "diffusers": False}, out


def test_check_names_the_world_and_each_chat_platform_and_what_is_wrong(cli_env, tmp_path):
    cfg = write(tmp_path / "c.toml", '[twitch]\nenabled = true\nclient_id = "abc"\n[discord]\nenabled = true\n')
    cli_env["STREAMBOT_DISCORD_TOKEN"] = "discord-token-never-shown"
    r = run_cli(["check", "--config", str(cfg), "--output", str(tmp_path / "x.flv")], cli_env, timeout=180)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    problems = [ln for ln in r.stderr.splitlines() if ln.startswith("problem:")]
    assert problems == ["problem: [twitch] channel is empty: name the broadcaster's login."], r.stderr
    notes = r.stdout.splitlines()
    assert any(n.startswith("ok: world backend 'sketch': ") for n in notes), r.stdout
    assert any(n.startswith("ok: chat: discord: ") for n in notes), r.stdout
    assert not any("chat: twitch" in n for n in notes), r.stdout
    assert "discord-token-never-shown" not in r.stdout + r.stderr
