"""The console's push-to-talk against a real show: a clip uploaded as the page
uploads it (raw body, CSRF header, admin session), its transcript, and the
one-click confirm that puts the command in the round."""
from __future__ import annotations

import pytest

from .speech import needs_espeak, silence, speak, write_audio
from .test_console import TOKENS, act, client, login, show  # noqa: F401  (fixtures)


@needs_espeak
async def test_push_to_talk_transcribes_then_confirms(client, tmp_path):  # noqa: F811
    clip = write_audio(speak("prompt: a patrol finds the soldier", tmp_path), tmp_path / "ptt.webm").read_bytes()
    csrf = (await login(client))["csrf"]
    r = await act(client, "POST", "/api/voice", csrf, data=clip, headers={"Content-Type": "audio/webm"})
    assert r.status == 200, await r.text()
    heard = await r.json()
    assert heard["command"] == "prompt" and "patrol" in heard["argument"] and heard["id"]
    app = client.server.app
    r = await act(client, "POST", f"/api/voice/{heard['id']}/confirm", csrf)
    body = await r.json()
    assert r.status == 200 and body["ok"] and body["kind"] == "new", body
    from streambot.console.core import CONSOLE

    candidates = app[CONSOLE].show.audience.snapshot().candidates
    assert any("patrol" in c.text and c.author.startswith("console:") and c.platform == "console" for c in candidates)
    r = await act(client, "POST", f"/api/voice/{heard['id']}/confirm", csrf)  # a clip goes in once
    assert r.status == 404


async def test_push_to_talk_refusals(client, tmp_path):  # noqa: F811
    csrf = (await login(client))["csrf"]
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
