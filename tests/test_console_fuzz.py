"""The console's API fuzzed from outside: schemathesis generates requests from
the console's own OpenAPI document and checks every answer against it (status
codes, content types, response schemas, no server errors), logged out and
logged in, against a real `streambot run`. The stream must stay up."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

from streambot.devserver import free_port

from .conftest import ROOT

ADMIN = "fuzz-admin-token-0123456789abcdef"


def _get(url: str, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, {}


@pytest.fixture
def console(cli_env, tmp_path):
    port = free_port()
    env = {**cli_env, "STREAMBOT_ADMIN_TOKEN": ADMIN}
    config = tmp_path / "c.toml"
    config.write_text(
        '[stream]\nsize = "320x180"\nfps = 15\nbitrate_kbps = 400\n'
        "[audio]\nenabled = false\n"
        "[voting]\npool_embeddings = false\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streambot.cli",
            "run",
            "--config",
            str(config),
            "--output",
            str(tmp_path / "o.flv"),
            "--chat",
            "none",
            "--console",
            f"127.0.0.1:{port}",
        ],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if _get(base + "/healthz")[0] == 200:
                break
        except OSError:
            pass
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"the show did not come up: {proc.stderr.read()}")
    yield base
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def _schemathesis(base: str, tmp_path, *headers: str, exclude: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    st = shutil.which("schemathesis", path=os.path.dirname(sys.executable)) or shutil.which("schemathesis")
    if st is None:
        pytest.skip("schemathesis is not installed")
    cmd = [
        st,
        "run",
        f"{base}/api/openapi.json",
        "--url",
        base,
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance,response_headers_conformance",
        "--max-examples",
        os.environ.get("STREAMBOT_FUZZ_EXAMPLES", "10"),
        "--seed",
        "1",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--wait-for-schema",
        "60",
        "--no-color",
        "--warnings",
        "off",
        "--generation-deterministic",
    ]
    for h in headers:
        cmd += ["--header", h]
    for path in exclude:
        cmd += ["--exclude-path", path]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)


def _frames(base: str) -> float:
    status, body = _get(base + "/healthz")
    assert status == 200, "the stream went down during the fuzzing"
    return body["output_fps"]


@pytest.mark.slow
def test_logged_out_every_answer_follows_the_document(console, tmp_path):
    r = _schemathesis(console, tmp_path)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert _frames(console) > 0


@pytest.mark.slow
def test_logged_in_every_answer_follows_the_document(console, tmp_path):
    # a real login: the session cookie and its CSRF token, sent from the console's own origin
    req = urllib.request.Request(
        console + "/login",
        data=json.dumps({"token": ADMIN, "name": "fuzz"}).encode(),
        headers={"Content-Type": "application/json", "Origin": console},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        csrf = json.loads(resp.read())["csrf"]
        cookie = resp.headers["Set-Cookie"].split(";", 1)[0]
    r = _schemathesis(
        console,
        tmp_path,
        f"Cookie: {cookie}",
        f"X-CSRF-Token: {csrf}",
        f"Origin: {console}",
        # logging out, or revoking the session the stateful phase just listed,
        # would end the fuzzing's own session (both are fuzzed logged out)
        exclude=("/logout", "/api/sessions/{id}"),
    )
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    # the fuzzing changed the show (worlds, kill switch, modes...): it is still streaming
    assert _frames(console) > 0
    status, me = _get(console + "/api/session", {"Cookie": cookie})
    assert status == 200 and me["actor"] == "console:fuzz"
