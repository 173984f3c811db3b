"""The console against a real show: the sketch world at 320x180 streaming to a
file, a new one for each test, on the test's event loop as `streambot run`
runs it; each test builds the console app around it and talks to it through
aiohttp's test client."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import stat
import time

import aiohttp
import pytest
from PIL import Image

from streambot import secrets as secret_store
from streambot.app import Show, ShowOptions, build_world
from streambot.config import ConfigError, load_settings, resolve_world
from streambot.console import Tokens, create_app, load_tokens, parse_address
from streambot.console.auth import COOKIE, CSRF_HEADER
from streambot.console.preview import Preview
from streambot.console.routes import ROUTES

from .conftest import on_air

TOKENS = Tokens.generate()
STREAM_KEY = "live_123456789_FakeStreamKeyForTests"  # never to be seen anywhere


def settings_for(tmp, *, voice: bool = False, **console):
    over = {
        "voice": {"enabled": voice},  # the speech model takes seconds to load: only where a test speaks
        "stream": {"size": "320x180", "fps": 15, "bitrate_kbps": 400},
        "world": {"sketch": {"embedder": None}},  # keyword matching: no sentence model to load
        "moderation": {"semantic": False},  # nor for the safety screen: a show per test starts in seconds
        "audio": {"enabled": True},
        "voting": {"pool_embeddings": False, "round_s": 120, "grace_s": 2, "timeline": str(tmp / "timeline.sqlite3")},
        "console": {"login_attempts": 3, "login_window_s": 60, **console},
    }
    return load_settings(None, over)


@pytest.fixture
def voice_commands() -> bool:
    """Whether the show loads its speech model (tests/test_console_voice.py says yes)."""
    return False


@pytest.fixture
async def show(tmp_path, monkeypatch, voice_commands):
    """A show of its own for each test (what one test switches, a kill switch
    left on, never reaches the next), on the test's loop as `streambot run` runs it."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    secret_store.register(STREAM_KEY)
    settings = settings_for(tmp_path, voice=voice_commands)
    # the output's file name carries the "stream key": every place that names it must mask it
    show = Show(
        settings,
        resolve_world(settings.world.preset),
        build_world(settings),
        ShowOptions(
            outputs=[str(tmp_path / f"{STREAM_KEY}.flv")], chat_source=None, secrets={"stream_key": STREAM_KEY}
        ),
    )
    logger = logging.getLogger("streambot")
    old_level = logger.level
    logger.setLevel(logging.INFO)  # the console's log panel shows INFO lines
    try:
        async with on_air(show):
            yield show
    finally:
        logger.setLevel(old_level)


@pytest.fixture
async def client(show, aiohttp_client):
    return await aiohttp_client(create_app(show, show.settings.console, tokens=TOKENS, background=False))


@pytest.fixture
async def live_client(show, aiohttp_client):
    return await aiohttp_client(create_app(show, show.settings.console, tokens=TOKENS))


def origin(client) -> str:
    return str(client.make_url("/")).rstrip("/")


async def login(client, token=TOKENS.admin, name="alice") -> dict:
    r = await client.post("/login", json={"token": token, "name": name}, headers={"Origin": origin(client)})
    assert r.status == 200, await r.text()
    return await r.json()


async def act(client, method, path, csrf, **kw):
    headers = {CSRF_HEADER: csrf, "Origin": origin(client), **kw.pop("headers", {})}
    return await client.request(method, path, headers=headers, **kw)


async def until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


# -- logging in ------------------------------------------------------------------------------


async def test_login_sets_a_strict_httponly_session_cookie(client):
    r = await client.post("/login", json={"token": TOKENS.admin, "name": "alice"}, headers={"Origin": origin(client)})
    assert r.status == 200
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith(COOKIE + "=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    data = await r.json()
    assert data["role"] == "admin" and data["actor"] == "console:alice" and len(data["csrf"]) >= 32
    me = await (await client.get("/api/session")).json()
    assert me == {"role": "admin", "actor": "console:alice", "csrf": data["csrf"]}


async def test_the_login_form_redirects_to_the_console(client):
    r = await client.post("/login", data={"token": "nope-nope-nope-nope"}, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/login?e=bad"
    r = await client.get("/", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/login"
    r = await client.post("/login", data={"token": TOKENS.admin, "name": "bob"}, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/"
    page = await client.get("/")
    assert page.status == 200 and "text/html" in page.headers["Content-Type"]
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and f"ws://{client.make_url('/').raw_authority}" in csp
    assert page.headers["X-Frame-Options"] == "DENY"


async def test_failed_logins_are_rate_limited_per_address(client):
    for _ in range(3):  # login_attempts = 3
        r = await client.post("/login", json={"token": "wrong-token-wrong-token"})
        assert r.status == 401
    r = await client.post("/login", json={"token": "wrong-token-wrong-token"})
    assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
    # while over the limit even the right token is refused: guessing gains nothing
    r = await client.post("/login", json={"token": TOKENS.admin})
    assert r.status == 429
    # a wrong token in a link counts the same
    r = await client.get("/api/state", params={"token": "wrong-token-wrong-token"})
    assert r.status == 429
    metrics = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKENS.viewer}"})
    assert r.status == 429 and metrics.status == 429  # the same address, the same limit


async def test_login_from_another_site_is_refused(client):
    r = await client.post("/login", json={"token": TOKENS.admin}, headers={"Origin": "https://evil.example"})
    assert r.status == 403 and COOKIE not in r.headers.get("Set-Cookie", "")


# -- every state-changing endpoint is guarded ----------------------------------------------------


def state_changing():
    out = []
    for r in ROUTES.routes:
        if r.method in ("POST", "DELETE", "PUT", "PATCH") and r.access != "public":
            path = r.path.replace("{id}", "1").replace("{user}", "someone")
            out.append(pytest.param(r.method, path, id=f"{r.method} {r.path}"))
    return out


BODIES = {
    "/api/force": {"text": "a dark stormy night"},
    "/api/bans": {"user": "someone"},
    "/api/world": {"preset": "arena"},
    "/api/round-length": {"seconds": 30},
    "/api/story": {"paused": True},
    "/api/mode": {"mode": "anarchy"},
    "/api/lock": {"locked": True},
    "/api/kill-switch": {"on": True},
    "/api/music": {"on": False},
}


@pytest.mark.parametrize("method,path", state_changing())
async def test_every_state_changing_endpoint_refuses_without_token_csrf_or_own_origin(client, show, method, path):
    before = (
        show.off_air,
        show.spec.name,
        show.director.on_air.direction.text,
        show.audience.snapshot().mode,
        show.audio_status()["music_on"],
    )
    body = BODIES.get(path, {})
    own = origin(client)
    # 1. no session, a forged one
    r = await client.request(method, path, json=body, headers={"Origin": own})
    assert r.status == 401
    r = await client.request(
        method, path, json=body, headers={"Origin": own}, cookies={COOKIE: "forged-session-forged-session"}
    )
    assert r.status == 401
    # a script's bearer token must be the admin's: a wrong one, or the viewer's, changes nothing
    if path != "/logout":
        r = await client.request(method, path, json=body, headers={"Authorization": "Bearer " + "x" * 43})
        assert r.status == 401
        r = await client.request(method, path, json=body, headers={"Authorization": f"Bearer {TOKENS.viewer}"})
        assert r.status == 403
    csrf = (await login(client))["csrf"]
    # 2. no CSRF token, a wrong one
    r = await client.request(method, path, json=body, headers={"Origin": own})
    assert r.status == 403 and "CSRF" in (await r.json())["error"]
    r = await client.request(method, path, json=body, headers={"Origin": own, CSRF_HEADER: "x" * 43})
    assert r.status == 403
    # 3. from another site, or from nowhere
    r = await client.request(method, path, json=body, headers={CSRF_HEADER: csrf, "Origin": "https://evil.example"})
    assert r.status == 403 and "Cross-site" in (await r.json())["error"]
    r = await client.request(
        method, path, json=body, headers={CSRF_HEADER: csrf, "Referer": "https://evil.example/page"}
    )
    assert r.status == 403
    r = await client.request(method, path, json=body, headers={CSRF_HEADER: csrf})
    assert r.status == 403
    # 4. a read-only session with everything right
    client.session.cookie_jar.clear()
    viewer = await login(client, TOKENS.viewer)
    if path != "/logout":
        r = await act(client, method, path, viewer["csrf"], json=body)
        assert r.status == 403 and "read-only" in (await r.json())["error"]
    after = (
        show.off_air,
        show.spec.name,
        show.director.on_air.direction.text,
        show.audience.snapshot().mode,
        show.audio_status()["music_on"],
    )
    assert after == before


# -- reading, for viewers too -------------------------------------------------------------------------


async def test_viewer_links_are_read_only(client):
    r = await client.get("/api/state", params={"token": TOKENS.viewer})
    assert r.status == 200 and "candidates" in await r.json()
    # the admin token never goes in a URL (history, proxies' logs): refused there
    assert (await client.get("/api/state", params={"token": TOKENS.admin})).status == 401
    assert (await client.get("/api/state", headers={"Authorization": f"Bearer {TOKENS.admin}"})).status == 200
    assert (await client.get("/api/logs", params={"token": TOKENS.viewer})).status == 403
    assert (await client.get("/api/share", params={"token": TOKENS.viewer})).status == 403
    assert (await client.get("/api/state")).status == 401
    # the link trades its token for a session and leaves the address bar
    r = await client.get("/", params={"token": TOKENS.viewer}, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/"
    me = await (await client.get("/api/session")).json()
    assert me["role"] == "viewer"


async def test_the_obs_overlay_page_its_files_and_socket(client, show):
    v = {"token": TOKENS.viewer}
    assert (await client.get("/overlay")).status == 401
    page = await client.get("/overlay", params=v)
    assert page.status == 200 and '<base href="/overlay/">' in await page.text()
    assert "X-Frame-Options" not in page.headers
    for name in ("obs.js", "obs.css"):
        assert (await client.get(f"/overlay/{name}")).status == 200
    assert (await client.get("/overlay/../console/auth.py")).status == 404
    assert (await client.get("/overlay/secrets.toml")).status == 404
    layout = await (await client.get("/overlay/layout.json", params=v)).json()
    assert {"now", "vote", "help", "style", "fonts", "coverage"} <= set(layout)
    font = await client.get(f"/overlay/fonts/{layout['fonts']['primary']}")
    assert font.status == 200 and font.headers["Content-Type"] == "font/ttf"
    async with client.ws_connect("/ws/overlay", params=v) as ws:
        msg = json.loads((await ws.receive(timeout=5)).data)
    assert set(msg) == set(show.overlay_state().to_json())
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        await client.ws_connect("/ws/overlay", params=v, headers={"Origin": "https://evil.example"})
    assert e.value.status == 403


async def test_healthz_and_metrics(client):
    r = await client.get("/healthz")
    assert r.status == 200 and (await r.json())["status"] == "ok"
    assert (await client.get("/metrics")).status == 401
    r = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKENS.viewer}"})
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
    text = await r.text()
    for name in (
        "streambot_output_fps",
        "streambot_generator_fps",
        "streambot_late_frames_total",
        "streambot_repeated_frames_total",
        "streambot_bitrate_kbps",
        "streambot_output_up{",
        "streambot_output_reconnects_total{",
        "streambot_off_air",
        "streambot_loudness_short_term_lufs",
        "streambot_music_on",
        "process_cpu_seconds_total",
        "streambot_skipped_frames_total",
        "streambot_encoder_preset{",
    ):
        assert name in text, name


async def test_the_openapi_document_covers_every_api_route(client):
    r = await client.get("/api/openapi.json")
    assert r.status == 200
    doc = await r.json()
    assert doc["openapi"].startswith("3.") and doc["paths"]
    served = set()
    for route in client.app.router.routes():
        path = route.resource.canonical if route.resource else ""
        api = path.startswith(("/api/", "/ws/")) or path in ("/healthz", "/metrics")
        if route.method in ("POST", "DELETE") or (api and route.method != "HEAD"):
            served.add((route.method.lower(), path))
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served <= documented, served - documented
    for p, ops in doc["paths"].items():
        for m, op in ops.items():
            assert op["summary"] and "200" in op["responses"], (m, p)
            if m in ("post", "delete") and op["x-access"] != "public":
                assert op["security"] == [{"session": [], "csrf": []}, {"bearer": []}], (m, p)
    force = doc["paths"]["/api/force"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert force["required"] == ["text"]


# -- the controls, recorded with who ----------------------------------------------------------------


async def test_the_controls_change_the_show_and_the_timeline_says_who(client, show, tmp_path):
    csrf = (await login(client, name="alice"))["csrf"]
    aud = show.audience

    async def ok(method, path, **kw):
        r = await act(client, method, path, csrf, **kw)
        assert r.status == 200, await r.text()
        return await r.json()

    out = await ok("POST", "/api/force", json={"text": "a dark stormy night"})
    assert show.director.on_air.direction.text == "a dark stormy night"
    assert out["state"]["on_air"] == {
        **out["state"]["on_air"],
        "text": "a dark stormy night",
        "by": "console:alice",
        "source": "console",
    }
    assert isinstance(out["frame"], int)
    r = await act(client, "POST", "/api/force", csrf, json={"text": "   "})
    assert r.status == 400
    round_no = aud.snapshot().round
    await ok("POST", "/api/round/skip")
    assert aud.snapshot().round == round_no + 1
    await ok("POST", "/api/round-length", json={"seconds": 45})
    assert aud.snapshot().round_s == 45
    assert (await act(client, "POST", "/api/round-length", csrf, json={"seconds": 2})).status == 400
    r = await act(client, "POST", "/api/round-length", csrf, json={"seconds": 5})  # votes count 7 s after a round
    assert r.status == 400 and "stream delay" in (await r.json())["error"]
    assert out["state"]["meter"] is None  # chat's mode vote is off by default
    await ok("POST", "/api/story", json={"paused": True})
    assert show.director.story_paused
    await ok("POST", "/api/story", json={"paused": False})
    await ok("POST", "/api/mode", json={"mode": "anarchy"})
    assert aud.snapshot().mode == "anarchy"
    await ok("POST", "/api/mode", json={"mode": "rounds"})
    await ok("POST", "/api/bans", json={"user": "Troll", "platform": "twitch"})
    assert "twitch:troll" in aud.moderation.bans
    assert "twitch:troll" in (await (await client.get("/api/state")).json())["bans"]
    await ok("DELETE", "/api/bans/twitch:troll")
    assert "twitch:troll" not in aud.moderation.bans
    await ok("POST", "/api/lock", json={"locked": True})
    assert aud.snapshot().locked
    await ok("POST", "/api/lock", json={"locked": False})
    out = await ok("POST", "/api/kill-switch", json={"on": True})
    assert show.off_air and aud.snapshot().locked and out["state"]["off_air"]
    await ok("POST", "/api/kill-switch", json={"on": False})
    assert not show.off_air and not aud.snapshot().locked
    out = await ok("POST", "/api/music", json={"on": False})
    assert out["state"]["music_on"] is False and show.audio_status()["music_on"] is False
    assert (await act(client, "POST", "/api/music", csrf, json={"on": "loud"})).status == 400
    await ok("POST", "/api/music", json={"on": True})
    assert show.audio_status()["music_on"] is True
    await ok("POST", "/api/world", json={"preset": "arena"})
    assert show.spec.name == "arena"
    assert await until(lambda: show.audio_status().get("style") == "drive"), "the music follows the world"
    custom = (
        'name = "glasshouse"\ntitle = "The Glasshouse"\ndescription = "A greenhouse the size of a city."\n'
        'style = "soft daylight"\nbeats = ["fog on the glass", "sprinklers start"]\n'
    )
    await ok("POST", "/api/world", json={"toml": custom})
    assert show.spec.name == "glasshouse"
    r = await act(client, "POST", "/api/world", csrf, json={"toml": 'name = "x"\n'})
    assert r.status == 400 and "missing the required field" in (await r.json())["error"]
    r = await act(client, "POST", "/api/world", csrf, json={"preset": "nowhere"})
    assert r.status == 400 and "no preset named" in (await r.json())["error"]
    await ok("POST", "/api/world", json={"preset": "meadow"})
    await ok("POST", "/api/round-length", json={"seconds": 120})

    wanted = {
        "login",
        "force",
        "skip",
        "round_length",
        "pause story",
        "resume story",
        "mode",
        "ban",
        "unban",
        "lock",
        "unlock",
        "kill switch on",
        "kill switch off",
        "switch world",
        "music off",
        "music on",
    }

    def recorded():
        return {a["action"] for a in show.store._query("SELECT action FROM actions WHERE actor = 'console:alice'")}

    assert await until(lambda: wanted <= recorded()), wanted - recorded()
    timeline = await (await client.get("/api/timeline")).json()
    assert timeline[0]["actor"] == "console:alice"


async def test_approval_mode_approve_and_reject(client, show):
    csrf = (await login(client))["csrf"]
    engine = show.audience.engine
    engine.approval = True
    try:
        for user, text in (("bob", "a red balloon"), ("eve", "a giant squid")):
            show.audience.chat("twitch", user, f"!p {text}")
        await asyncio.to_thread(engine.pool)  # the screen runs before a candidate can wait for approval
        state = await (await client.get("/api/state")).json()
        pending = {p["text"]: p["id"] for p in state["pending"]}
        assert {"a red balloon", "a giant squid"} <= set(pending)
        r = await act(client, "POST", f"/api/candidates/{pending['a red balloon']}/approve", csrf)
        assert r.status == 200
        r = await act(client, "POST", f"/api/candidates/{pending['a giant squid']}/reject", csrf)
        assert r.status == 200
        state = (await r.json())["state"]
        assert "a red balloon" in [c["text"] for c in state["candidates"]]
        assert "a giant squid" not in [c["text"] for c in state["candidates"] + state["pending"]]
        assert (await act(client, "POST", "/api/candidates/999/approve", csrf)).status == 404
        assert (await act(client, "POST", "/api/candidates/abc/approve", csrf)).status == 400
    finally:
        engine.approval = False


# -- the live sockets and the preview ------------------------------------------------------------------


async def test_preview_frames_arrive_as_small_jpegs(live_client, show):
    await login(live_client)
    assert show.broadcast.frame_observer is not None
    async with live_client.ws_connect("/ws/preview") as ws:
        sizes = []
        for _ in range(3):  # how many a second: `preview_frames` in `streambot bench` (benchmarks/README.md)
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.BINARY and msg.data[:2] == b"\xff\xd8"
            sizes.append(Image.open(io.BytesIO(msg.data)).size)
    assert sizes == [(320, 180)] * 3  # never wider than the stream itself


async def test_the_state_socket_pushes_state_health_and_logs(live_client, show):
    csrf = (await login(live_client))["csrf"]
    async with live_client.ws_connect("/ws/state") as ws:
        seen: dict[str, dict] = {}
        first = json.loads((await ws.receive(timeout=5)).data)
        assert first["type"] == "hello" and first["role"] == "admin"
        await act(live_client, "POST", "/api/force", csrf, json={"text": "fireworks over the hills"})
        async with asyncio.timeout(30):  # a wait for what is pushed, not a bound on when
            while not {"state", "health", "logs", "timeline", "forced", "measured"} <= set(seen):
                msg = json.loads((await ws.receive()).data)
                seen.setdefault(msg["type"], msg)
                if msg["type"] == "state" and msg["on_air"]["text"] == "fireworks over the hills":
                    seen["forced"] = msg
                if msg["type"] == "health" and msg["audio"]["short_term_lufs"] is not None:
                    seen["measured"] = msg  # a new show: its first 3 s of sound measured
    assert {"state", "health", "logs", "timeline", "forced", "measured"} <= set(seen)
    h = seen["measured"]
    for key in (
        "output_fps",
        "generator_fps",
        "late_frames",
        "repeated_frames",
        "skipped_frames",
        "encoder",
        "bitrate_kbps",
        "outputs",
        "adapters",
        "prompt_to_pixel_ms",
        "system",
    ):
        assert key in h, key
    assert h["system"]["memory_mb"] > 0 and h["outputs"][0]["state"] == "live"
    # the loudness meter: what goes out, measured (EBU R128), near the streaming target
    audio = h["audio"]
    assert audio["source"] == "generated" and audio["problem"] is None
    assert -24 < audio["short_term_lufs"] < -8 and -30 < audio["momentary_lufs"] < -5


async def test_the_timeline_is_sent_when_an_action_is_recorded_not_read_on_a_timer(live_client, show, monkeypatch):
    """The console reads the timeline when the show says it recorded something; the
    health messages, which come once a second, pass without another read."""
    csrf = (await login(live_client))["csrf"]
    reads = []
    timeline = show.timeline

    def counted(limit: int = 40):
        reads.append(limit)
        return timeline(limit)

    monkeypatch.setattr(show, "timeline", counted)
    async with live_client.ws_connect("/ws/state") as ws:

        async def next_of(kind: str, latest: str | None = None) -> dict:
            """The next message of `kind` (a timeline whose newest action is `latest`)."""
            async with asyncio.timeout(30):  # a wait for what is pushed, not a bound on when
                while True:
                    msg = json.loads((await ws.receive()).data)
                    if msg["type"] == kind and (latest is None or msg["actions"][0]["action"] == latest):
                        return msg

        await next_of("timeline")  # the whole timeline, when the page connects
        await act(live_client, "POST", "/api/force", csrf, json={"text": "a kite over the dunes"})
        pushed = await next_of("timeline", "force")
        assert pushed["actions"][0]["detail"] == "a kite over the dunes"
        read = len(reads)
        for _ in range(3):
            await next_of("health")
        assert len(reads) == read, "the timeline was read again with nothing recorded"
        await act(live_client, "POST", "/api/story", csrf, json={"paused": True})
        await next_of("timeline", "pause story")


async def test_viewers_get_no_log_lines(live_client):
    await login(live_client, TOKENS.viewer)
    async with live_client.ws_connect("/ws/state") as ws:
        types = set()
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            try:
                types.add(json.loads((await ws.receive(timeout=1)).data)["type"])
            except TimeoutError:
                break
    assert "state" in types and "health" in types
    assert "logs" not in types and "timeline" not in types


class Untouchable:
    """A frame the clock thread must not read, copy or convert: any use of it fails."""

    def __getattribute__(self, name):
        raise AssertionError(f"the clock thread used the frame ({name})")


async def test_the_preview_keeps_a_reference_on_the_clock_thread_and_encodes_later():
    """What `observe` costs the clock thread per call is a figure of
    benchmarks/bench_preview.py; here what keeps it cheap: it never touches a
    frame, keeps every Nth only while someone watches, and the worker encodes the newest."""
    import av
    import numpy as np

    p = Preview((64, 36), 30, fps=5)
    assert p.every == 6 and p.size == (64, 36)
    assert Preview((1280, 720), 30, fps=5).size == (480, 270)

    def grey(i: int):
        return av.VideoFrame.from_ndarray(np.full((36, 64, 3), i, np.uint8), format="rgb24")

    p.active = True
    for i in range(60, 120):
        p.observe(i, grey(i) if i % p.every == 0 else Untouchable())
    p.active = False
    for i in range(120, 180):
        p.observe(i, Untouchable())  # nobody watching: none of these is kept
    published: asyncio.Queue[bytes] = asyncio.Queue()
    worker = asyncio.create_task(p.run(lambda: True, published.put_nowait))
    try:
        jpeg = await asyncio.wait_for(published.get(), 10)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    shown = np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"), np.float32)
    assert abs(shown.mean() - 114) < 2, shown.mean()  # the newest kept frame: 114, not 108 nor a later one


# -- secrets -------------------------------------------------------------------------------------------


async def test_the_stream_key_and_admin_token_appear_nowhere(live_client, show, caplog):
    caplog.set_level(logging.INFO)
    csrf = (await login(live_client))["csrf"]
    logging.getLogger("streambot.test").info("the key is %s and the token is %s", STREAM_KEY, TOKENS.admin)
    await act(live_client, "POST", "/api/force", csrf, json={"text": f"a sign that says {STREAM_KEY}"})
    await live_client.post("/login", json={"token": TOKENS.admin + "x"})  # a failed login is logged
    bodies = []
    for path in (
        "/",
        "/login",
        "/static/console.js",
        "/static/console.css",
        "/api/state",
        "/api/health",
        "/api/logs",
        "/api/timeline",
        "/api/presets",
        "/api/session",
        "/api/openapi.json",
        "/healthz",
        "/metrics",
        "/overlay",
        "/overlay/layout.json",
    ):
        r = await live_client.get(path)
        assert r.status == 200, path
        bodies.append(await r.text())
    async with live_client.ws_connect("/ws/state") as ws:
        for _ in range(5):
            bodies.append((await ws.receive(timeout=5)).data)
    share = await (await live_client.get("/api/share")).json()
    bodies.append(json.dumps(share))
    assert TOKENS.viewer in share["viewer"]  # the one secret the admin may see: the viewer link
    everything = "\n".join(bodies)
    assert "the key is ********" in everything  # the log line, masked
    for secret in (STREAM_KEY, TOKENS.admin):
        assert secret not in everything
        assert secret not in "\n".join(r.getMessage() for r in caplog.records)
    # the health panel names the output without the key
    health = await (await live_client.get("/api/health")).json()
    assert "********" in health["outputs"][0]["name"]


# -- tokens on disk --------------------------------------------------------------------------------------


def test_the_admin_token_is_generated_once_and_kept_owner_only(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("STREAMBOT_VIEWER_TOKEN", raising=False)
    first = load_tokens("", {})
    path = tmp_path / "streambot" / "console_token"
    assert first.created and first.admin_file == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.with_name("console_token_viewer").stat().st_mode) == 0o600
    again = load_tokens("", {})
    assert not again.created and (again.admin, again.viewer) == (first.admin, first.viewer)
    path.chmod(0o644)
    load_tokens("", {})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    env = load_tokens("", {"admin_token": "from-the-environment-1234"})
    assert env.admin == "from-the-environment-1234" and env.admin_file is None and not env.created
    assert secret_store.redact("x from-the-environment-1234 y") == "x ******** y"
    with pytest.raises(ConfigError, match="at least 16"):
        load_tokens("", {"admin_token": "short"})


def test_console_addresses():
    assert parse_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    for bad in ("8080", "localhost", "host:port", ":80", "h:70000"):
        with pytest.raises(ConfigError, match="HOST:PORT"):
            parse_address(bad)


def test_a_bad_console_address_stops_the_cli_with_one_sentence(cli_env, tmp_path):
    from .conftest import run_cli

    out = run_cli(["run", "-o", str(tmp_path / "x.flv"), "--console", "localhost", "--chat", "none"], cli_env, 60)
    assert out.returncode == 2
    assert out.stderr.strip() == "streambot: --console 'localhost' is not HOST:PORT, e.g. 127.0.0.1:8080."


async def test_a_taken_port_is_one_sentence_and_the_default_one_falls_back(show, monkeypatch, capsys):
    import socket

    from streambot.console import ConsoleServer, start_console

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        app = create_app(show, show.settings.console, tokens=TOKENS, background=False)
        with pytest.raises(ConfigError, match=rf"cannot listen on 127.0.0.1:{port} .*--no-console"):
            await ConsoleServer(app, "127.0.0.1", port).start()
        # the configured default taken (another show?): any free port, said on the terminal
        monkeypatch.setattr(show.settings.console, "port", port)
        server = await start_console(show, f"127.0.0.1:{port}", secrets={})
        try:
            assert server.url.startswith("http://127.0.0.1:") and f":{port}/" not in server.url
            err = capsys.readouterr().err
            assert f"port {port} is taken" in err and f"Console: {server.url}" in err
            async with aiohttp.ClientSession() as s, s.get(server.url + "healthz") as r:
                assert r.status == 200
        finally:
            await server.stop()


# -- scripts (Stream Deck, Streamer.bot, curl) ---------------------------------------------------------


async def test_the_admin_token_as_bearer_drives_the_show_without_csrf(client, show):
    """No cookie, no CSRF token, no Origin: what curl sends. The timeline says who."""
    auth = {"Authorization": f"Bearer {TOKENS.admin}"}
    try:
        r = await client.post("/api/story", json={"paused": True}, headers=auth)
        assert r.status == 200, await r.text()
        assert show.director.story_paused is True
        me = await (await client.get("/api/session", headers=auth)).json()
        assert me == {"role": "admin", "actor": "console:admin", "csrf": None}
        show.store.flush()  # the timeline writes in its own thread
        assert any(a["actor"] == "console:admin" and a["action"] == "pause story" for a in show.store.actions(limit=20))
    finally:
        r = await client.post("/api/story", json={"paused": False}, headers=auth)
        assert r.status == 200 and show.director.story_paused is False


# -- sessions outlive a restart ------------------------------------------------------------------------


async def test_sessions_survive_a_restart_until_revoked(show, aiohttp_client, tmp_path):
    settings = show.settings.console.model_copy(update={"sessions_file": str(tmp_path / "s.sqlite3")})
    first = await aiohttp_client(create_app(show, settings, tokens=TOKENS, background=False))
    csrf = (await login(first, name="bob"))["csrf"]
    cookie = first.session.cookie_jar.filter_cookies(first.make_url("/"))[COOKIE].value
    await first.close()  # the console stops (a restart)
    # the file keeps a hash of the session, never the cookie itself, and only its owner may read it
    assert cookie.encode() not in (tmp_path / "s.sqlite3").read_bytes()
    assert stat.S_IMODE((tmp_path / "s.sqlite3").stat().st_mode) == 0o600

    second = await aiohttp_client(create_app(show, settings, tokens=TOKENS, background=False))
    second.session.cookie_jar.update_cookies({COOKIE: cookie})
    me = await second.get("/api/session")
    assert me.status == 200 and (await me.json())["actor"] == "console:bob"
    r = await act(second, "POST", "/api/story", csrf, json={"paused": False})  # the same CSRF token still works
    assert r.status == 200
    # the streamer revokes it from another login
    other = await aiohttp_client(create_app(show, settings, tokens=TOKENS, background=False))
    other_csrf = (await login(other, name="alice"))["csrf"]
    listed = (await (await other.get("/api/sessions")).json())["sessions"]
    bob = next(s for s in listed if s["actor"] == "console:bob")
    assert not bob["current"] and any(s["current"] for s in listed)
    r = await act(other, "DELETE", f"/api/sessions/{bob['id']}", other_csrf)
    assert r.status == 200 and all(s["actor"] != "console:bob" for s in (await r.json())["sessions"])
    assert (await second.get("/api/session")).status == 401
    r = await act(other, "DELETE", f"/api/sessions/{bob['id']}", other_csrf)
    assert r.status == 404


def test_sessions_expire_on_the_wall_clock(tmp_path):
    from streambot.console.auth import Sessions

    now = [1_000_000.0]
    sessions = Sessions(60, path=tmp_path / "s.sqlite3", clock=lambda: now[0])
    s = sessions.create("admin", "console:ann")
    assert sessions.get(s.id) is not None
    now[0] += 59
    reopened = Sessions(60, path=tmp_path / "s.sqlite3", clock=lambda: now[0])
    assert reopened.get(s.id) is not None
    now[0] += 2
    assert reopened.get(s.id) is None and reopened.all_sessions() == []
    assert Sessions(60, path=tmp_path / "s.sqlite3", clock=lambda: now[0]).all_sessions() == []
