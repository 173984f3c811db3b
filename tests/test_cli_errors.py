"""Bad input gets one clear sentence and a non-zero exit, never a traceback."""

from __future__ import annotations

import pytest

from streambot.devserver import free_port

from .conftest import run_cli


def _one_sentence(r):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("streambot:") or ln.startswith("Error")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_unknown_preset(cli_env, tmp_path):
    r = run_cli(["run", "--preset", "atlantis", "--output", str(tmp_path / "x.flv"), "--duration", "1"], cli_env)
    msg = _one_sentence(r)
    assert "atlantis" in msg and "meadow" in msg


@pytest.mark.parametrize("size", ["huge", "1281x720", "0x0", "99999x2"])
def test_invalid_size(cli_env, tmp_path, size):
    r = run_cli(["run", "--size", size, "--output", str(tmp_path / "x.flv"), "--duration", "1"], cli_env)
    assert "size" in _one_sentence(r)


def test_unreachable_rtmp_url(cli_env):
    url = f"rtmp://127.0.0.1:{free_port()}/live/test"
    r = run_cli(["run", "--output", url, "--duration", "1"], cli_env)
    msg = _one_sentence(r)
    assert "unreachable" in msg and "/live/test" not in msg  # the stream name is masked


def test_custom_world_missing_a_field(cli_env, tmp_path):
    world = tmp_path / "mine.toml"
    world.write_text('name = "mine"\ntitle = "Mine"\ndescription = "A world."\nbeats = ["one"]\n')
    r = run_cli(["run", "--preset", str(world), "--output", str(tmp_path / "x.flv"), "--duration", "1"], cli_env)
    msg = _one_sentence(r)
    assert "style" in msg and "mine.toml" in msg


def test_custom_world_runs(cli_env, tmp_path):
    world = tmp_path / "lagoon.toml"
    world.write_text(
        'name = "lagoon"\ntitle = "Lagoon"\ndescription = "A tropical lagoon."\n'
        'style = "tropical, bright"\nbeats = ["waves roll in", "a storm passes"]\n'
    )
    out = tmp_path / "lagoon.flv"
    r = run_cli(
        ["run", "--preset", str(world), "--output", str(out), "--duration", "1", "--size", "320x180", "--chat", "none"],
        cli_env,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert out.stat().st_size > 10_000


def test_bad_config_field_names_field_and_file(cli_env, tmp_path):
    cfg = tmp_path / "my.toml"
    cfg.write_text("[stream]\nfps = 500\n")
    r = run_cli(["run", "--config", str(cfg), "--output", str(tmp_path / "x.flv")], cli_env)
    msg = _one_sentence(r)
    assert "my.toml" in msg and "stream.fps" in msg


def test_missing_stream_key(cli_env):
    r = run_cli(["run", "--output", "twitch", "--duration", "1"], cli_env)
    assert "stream key" in _one_sentence(r).lower()


def test_check_explains_each_problem(cli_env, tmp_path):
    url = f"rtmp://127.0.0.1:{free_port()}/live/x"
    r = run_cli(["check", "--output", "twitch", "--output", url, "--world", "stream"], cli_env)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    problems = [ln for ln in r.stderr.splitlines() if ln.startswith("problem:")]
    text = "\n".join(problems).lower()
    assert "stream key" in text and "unreachable" in text and "gpu" in text


def test_check_passes_on_a_good_setup(cli_env, tmp_path, rtmp_server):
    r = run_cli(["check", "--output", rtmp_server.url("ok")], cli_env)
    assert r.returncode == 0, r.stderr
    assert "All checks passed." in r.stdout


def test_presets_lists_at_least_six_worlds(cli_env):
    r = run_cli(["presets", "--json"], cli_env)
    import json

    worlds = json.loads(r.stdout)
    assert len(worlds) >= 6
    assert {"cartoon", "war1944", "cyberpunk"} <= {w["name"] for w in worlds}
