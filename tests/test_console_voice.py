"""The console's push-to-talk against a real show: a clip uploaded as the page
uploads it (raw body, CSRF header, admin session), its transcript, and the
one-click confirm that puts the command in the round."""

from __future__ import annotations

import asyncio
import threading

import pytest

from .speech import needs_espeak, silence, speak, write_audio
from .test_console import TOKENS, act, client, login, show  # noqa: F401  (fixtures)


@pytest.fixture
def voice_commands() -> bool:
    return True  # the show loads its speech model


async def voice_ready(client) -> dict:  # noqa: F811
    """The status once the speech model has loaded (it loads once the show is on air)."""
    from streambot.console.core import CONSOLE

    service = client.server.app[CONSOLE].show.voice
    assert service is not None and await asyncio.to_thread(service.wait_ready, 300), "the speech model did not load"
    return await (await client.get("/api/voice")).json()


@needs_espeak
async def test_push_to_talk_transcribes_then_confirms(client, tmp_path):  # noqa: F811
    clip = write_audio(speak("prompt: a patrol finds the soldier", tmp_path), tmp_path / "ptt.webm").read_bytes()
    csrf = (await login(client))["csrf"]
    await voice_ready(client)
    r = await act(client, "POST", "/api/voice", csrf, data=clip, headers={"Content-Type": "audio/webm"})
    assert r.status == 200, await r.text()
    heard = await r.json()
    assert heard["command"] == "prompt" and "patrol" in heard["argument"] and heard["id"]
    app = client.server.app
    r = await act(client, "POST", f"/api/voice/{heard['id']}/confirm", csrf)
    body = await r.json()
    assert r.status == 200 and body["ok"] and body["kind"] == "new", body
    from streambot.console.core import CONSOLE

    await asyncio.to_thread(app[CONSOLE].show.audience.engine.pool)  # the safety screen, as the show's loop runs it
    snap = app[CONSOLE].show.audience.snapshot()
    candidates = snap.candidates + snap.pending  # a soldier in a world without war waits for a moderator
    assert any("patrol" in c.text and c.author.startswith("console:") and c.platform == "console" for c in candidates)
    r = await act(client, "POST", f"/api/voice/{heard['id']}/confirm", csrf)  # a clip goes in once
    assert r.status == 404


async def test_push_to_talk_refusals(client, tmp_path):  # noqa: F811
    csrf = (await login(client))["csrf"]
    status = await voice_ready(client)
    assert status["ready"] and not status["loading"]
    assert status["model"].startswith("Voice commands are ready: the speech model (the bundled tiny.en)")
    assert status["discord"].count(".") == 1
    long_clip = write_audio(silence(25), tmp_path / "long.wav", codec="pcm_s16le", rate=16_000).read_bytes()
    cases = [
        (b"not audio at all", 400, "That clip is not audio that can be decoded"),
        (long_clip, 400, "That clip is 25 s long; the limit is 20 s."),
        (bytes(2_000_001), 400, "That clip is larger than 2000 kB."),
        (b"", 400, "The clip is empty."),
    ]
    for data, status, message in cases:
        r = await act(client, "POST", "/api/voice", csrf, data=data)
        assert r.status == status and (await r.json())["error"].startswith(message)
    r = await act(client, "POST", "/api/voice/nope/confirm", csrf)
    assert r.status == 404 and "no such clip" in (await r.json())["error"]
    r = await client.post("/api/voice", data=b"x", headers={"Origin": str(client.make_url("/")).rstrip("/")})
    assert r.status == 403  # no CSRF token
    viewer_csrf = (await login(client, TOKENS.viewer, "vic"))["csrf"]
    r = await act(client, "POST", "/api/voice", viewer_csrf, data=b"x")
    assert r.status == 403  # a read-only session


# -- in a real browser: Chromium's fake microphone plays speech made by espeak-ng -------------------------


@needs_espeak
@pytest.mark.slow
def test_push_to_talk_in_a_real_browser(tmp_path, show_process):
    import json
    import subprocess

    import numpy as np

    from .conftest import ROOT
    from .test_console_browser import CHROMIUM, DRIVER, HAVE_PLAYWRIGHT, NODE

    if NODE is None or CHROMIUM is None or not HAVE_PLAYWRIGHT:
        pytest.skip("needs node, chromium and playwright-core (see test_console_browser)")
    said = speak("prompt: a patrol finds the soldier", tmp_path)
    # Chromium loops the file: silence after the phrase, and the button is let go in it
    wav = write_audio(
        np.concatenate([silence(0.3), said, silence(3.0)]), tmp_path / "mic.wav", codec="pcm_s16le", rate=48_000
    )
    console = show_process(
        "run",
        "--output",
        str(tmp_path / "show.flv"),
        "--size",
        "320x180",
        "--fps",
        "10",
        "--chat",
        "none",
        "--duration",
        "240",
    )
    url, token = console.url, console.token
    # The show goes on air before the sentence model has loaded (in the background); until it
    # has, new ideas wait hidden for the safety screen. Speak once the screen can judge them.
    console.terminal.wait_for(r"the sentence model is ready", 600)
    console.terminal.wait_for(r"the speech model is ready", 600)  # and the page's line says so (voice_e2e.mjs)
    cfg = {
        "url": url,
        "token": token,
        "out": str(tmp_path),
        "wav": str(wav),
        "chromium": CHROMIUM,
        "hold_ms": int((0.3 + said.size / 16_000 + 1.0) * 1000),
    }
    driver = subprocess.run(
        [NODE, str(DRIVER.with_name("voice_e2e.mjs")), json.dumps(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    results = json.loads((tmp_path / "voice-results.json").read_text())
    report = {k: results.get(k) for k in ("failed", "heard_text", "status", "seen")}
    assert driver.returncode == 0 and not results.get("failed"), (
        report,
        driver.stderr[-3000:],
        console.terminal.text[-3000:],
    )
    assert results["errors"] == [], results["errors"]
    assert "bundled tiny.en" in results["ready"] and results["recording_label"].startswith("Listening")
    assert results["upload_status"] == 200 and results["upload_type"].startswith(("audio/webm", "audio/ogg"))
    assert "patrol" in results["heard_text"].lower() and results["heard_command"].startswith("Prompt: ")
    assert results["confirm_status"] == 200
    # in the round at once, or (a soldier in a world without war) held until the streamer approved it
    assert results["status"].startswith("Your idea is #") or (
        results["held"] == 1 and results["status"] == "Your idea waits for a moderator."
    ), results["status"]
    # then it is in the round, or a round closed meanwhile and it went on air
    state = results["state"]
    mine = [c for c in state["candidates"] if c["author"] == "console:mic"]
    if mine:
        assert "patrol" in mine[0]["text"] and mine[0]["platform"] == "console", mine
    else:
        aired = state["on_air"] if state["on_air"]["by"] == "console:mic" else state["last"]
        assert aired and "patrol" in aired["text"], (results["seen"], state["on_air"], state["last"])


async def test_push_to_talk_says_the_model_is_loading_until_it_is_ready(client, show, tmp_path):  # noqa: F811
    """The speech model loads once the show is on air; meanwhile the Voice card's line and a
    clip's answer say so in one sentence, and the card turns ready when it has loaded."""
    from streambot.audience.voice import LOADING, VoiceService, VoiceWorker

    loaded = threading.Event()  # the model's load, held until the test lets it finish
    worker = VoiceWorker(lambda audio: "vote two", warm_up=False, ready=lambda: loaded.wait(60) and None)
    running, show.voice = show.voice, VoiceService(worker, show.audience, settings=show.settings.voice)
    show.voice.bind(asyncio.get_running_loop())
    try:
        csrf = (await login(client))["csrf"]
        status = await (await client.get("/api/voice")).json()
        assert (status["ready"], status["loading"], status["model"]) == (False, True, LOADING)
        clip = write_audio(silence(1), tmp_path / "ptt.wav", codec="pcm_s16le", rate=16_000).read_bytes()
        r = await act(client, "POST", "/api/voice", csrf, data=clip)
        assert r.status == 409 and (await r.json())["error"] == LOADING
        loaded.set()
        assert await asyncio.to_thread(worker.wait_ready, 60)
        status = await (await client.get("/api/voice")).json()
        assert status["ready"] and not status["loading"] and status["model"].startswith("Voice commands are ready")
        r = await act(client, "POST", "/api/voice", csrf, data=clip)
        assert r.status == 200 and (await r.json())["command"] == "vote"
    finally:
        show.voice.close()
        show.voice = running
