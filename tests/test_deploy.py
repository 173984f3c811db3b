"""The deployment files, checked by outside tools (no Docker engine needed):
hadolint for the Dockerfile, the Compose Specification's JSON schema for
compose.yaml; and the structured log format they run with."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from streambot.cli import cli

from .conftest import ROOT, run_cli


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(ROOT / ".venv" / "bin")) or shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def _dockerfile() -> list[str]:
    """Instructions with continuation lines joined, comments dropped."""
    out: list[str] = []
    cur = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        cur += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            if cur.strip():
                out.append(cur.strip())
            cur = ""
    return out


def test_hadolint_accepts_the_dockerfile():
    r = subprocess.run([_tool("hadolint"), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_compose_file_follows_the_compose_specification():
    r = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(ROOT / "compose.yaml")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_image_runs_unprivileged_with_state_on_volumes_and_a_healthcheck():
    ins = _dockerfile()
    final = ins[max(i for i, x in enumerate(ins) if x.startswith("FROM ")) :]
    users = [x.split()[1] for x in final if x.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    env = " ".join(x for x in final if x.startswith("ENV "))
    volumes = json.loads(next(x for x in final if x.startswith("VOLUME "))[len("VOLUME ") :])
    for var in ("HF_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        value = env.split(f"{var}=", 1)[1].split()[0]
        assert any(value.startswith(v) for v in volumes), (var, value, volumes)
    health = next(x for x in final if x.startswith("HEALTHCHECK "))
    assert "/healthz" in health
    from streambot.console.server import ROUTES  # the server imports every module that registers a route

    assert any(r.path == "/healthz" and r.access == "public" for r in ROUTES.routes)
    # Both build variants exist: a CUDA runtime base and a CPU-only one.
    bases = [x.split()[1] for x in ins if x.startswith("FROM ") and " AS " in x]
    assert any(b.startswith("nvidia/cuda:") and "runtime" in b for b in bases)
    assert any(b.startswith("python:") for b in bases)


@pytest.mark.parametrize("where", ["dockerfile", "compose"])
def test_the_commands_the_files_run_are_valid_streambot_commands(where):
    if where == "dockerfile":
        cmd = json.loads(next(x for x in _dockerfile() if x.startswith("CMD "))[len("CMD ") :])
    else:
        compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
        cmd = compose["services"]["streambot"]["command"]
    # click parses every option exactly as the program would, without running it.
    with cli.make_context("streambot", list(cmd), resilient_parsing=False) as ctx:
        sub = cli.get_command(ctx, cmd[0])
        assert sub is not None, f"streambot has no command {cmd[0]!r}"
        parsed = sub.make_context(cmd[0], list(cmd[1:]), parent=ctx)  # a bad option raises here
    assert parsed.command is sub and not parsed.args, parsed.args


def test_json_logs_are_one_object_a_line(cli_env, tmp_path):
    r = run_cli(
        [
            "run",
            "--output",
            str(tmp_path / "o.flv"),
            "--duration",
            "1.5",
            "--chat",
            "none",
            "--no-console",
            "--log-format",
            "json",
        ],
        cli_env,
    )
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines
    for ln in lines:
        rec = json.loads(ln)
        assert {"time", "level", "logger", "message"} <= rec.keys(), rec
    assert any("on air" in json.loads(ln)["message"] for ln in lines)


def test_json_logs_redact_secrets_in_messages_and_tracebacks():
    code = (
        "import logging; from streambot import secrets; from streambot.cli import setup_logging\n"
        "secrets.register('live_0123456789abcdef')\n"
        "setup_logging('info', 'json')\n"
        "log = logging.getLogger('streambot.t')\n"
        "log.info('url rtmp://x/app/%s', 'live_0123456789abcdef')\n"
        "try:\n    raise RuntimeError('key live_0123456789abcdef refused')\n"
        "except RuntimeError:\n    log.exception('failed')\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"XDG_STATE_HOME": "/nonexistent/state", "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr
    recs = [json.loads(ln) for ln in r.stderr.splitlines() if ln.strip()]
    assert len(recs) == 2
    assert "live_0123456789abcdef" not in r.stderr
    assert "********" in recs[0]["message"]
    assert "RuntimeError" in json.dumps(recs[1])  # the traceback is kept, redacted
