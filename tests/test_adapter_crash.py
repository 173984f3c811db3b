"""A chat adapter that crashes (its loop ends by an error it did not foresee)
in a running show: the console's health says so, its log panel says why
(with no secret in it), /metrics counts it, and the broadcast and the other
chat go on. The show is real (sketch world, file output, the console app
through aiohttp's test client); only the crashing adapter is the test's."""

from __future__ import annotations

import asyncio
import inspect

from streambot.app import Show, ShowOptions, build_world
from streambot.config import load_settings, resolve_world
from streambot.console import Tokens, create_app

TOKENS = Tokens.generate()


class BrittleChat:
    """An adapter with a bug: it connects, then its platform's library raises
    something its loop does not catch (the message echoes a credential)."""

    def __init__(self) -> None:
        self.state = "idle"
        self.fail = asyncio.Event()

    async def run(self) -> None:
        self.state = "live"
        await self.fail.wait()
        raise RuntimeError(f"unexpected frame 0x8f after 'Authorization: Bearer {TOKENS.admin}'")

    async def close(self) -> None:
        self.state = "closed"


async def until(check, timeout: float = 60.0):
    """Look at `check()` (awaited when it is a coroutine) until it gives something true; that value."""
    async with asyncio.timeout(timeout):
        while True:
            value = check()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(0.05)


async def test_a_crashed_adapter_is_reported_on_the_console(tmp_path, monkeypatch, aiohttp_client):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    settings = load_settings(
        None,
        {
            "stream": {"size": "320x180", "fps": 15, "bitrate_kbps": 300},
            "world": {"sketch": {"embedder": None}},
            "voting": {"round_s": 120, "pool_embeddings": False, "timeline": str(tmp_path / "timeline.sqlite3")},
            "moderation": {"classifier": False, "semantic": False},
        },
    )
    chat = tmp_path / "chat.txt"
    chat.write_text("")
    brittle = BrittleChat()
    show = Show(
        settings,
        resolve_world("meadow"),
        build_world(settings),
        ShowOptions(outputs=[str(tmp_path / "show.flv")], chat_source=str(chat), adapters=(brittle,)),
    )
    await asyncio.to_thread(show.open)
    running = asyncio.create_task(show.run())
    client = await aiohttp_client(create_app(show, settings.console, tokens=TOKENS, background=False))
    auth = {"Authorization": f"Bearer {TOKENS.admin}"}

    async def get(path: str):
        r = await client.get(path, headers=auth)
        assert r.status == 200, (path, r.status)
        return await (r.json() if path.startswith("/api/") else r.text())

    async def adapters() -> dict[str, str]:
        return {a["name"]: a["state"] for a in (await get("/api/health"))["adapters"]}

    async def crashed() -> dict | None:
        states = await adapters()
        return states if states.get("BrittleChat") == "crashed" else None

    try:
        await until(lambda: brittle.state == "live")
        assert (await adapters())["BrittleChat"] == "live"
        brittle.fail.set()
        states = await until(crashed)
        assert states[f"local:{chat}"] == "live", states  # the other chat is untouched
        # why, in the console's log panel, with the credential masked
        lines = [entry["msg"] for entry in await get("/api/logs")]
        said = [m for m in lines if "BrittleChat chat crashed" in m]
        assert len(said) == 1 and "RuntimeError: unexpected frame 0x8f" in said[0], lines[-10:]
        assert TOKENS.admin not in "".join(lines)
        assert 'streambot_chat_adapter_state{adapter="BrittleChat",state="crashed"} 1.0' in await get("/metrics")
        # the show goes on: frames keep coming and the terminal's chat still brings prompts in
        ticks = (await get("/api/health"))["ticks"]
        with chat.open("a") as f:
            f.write("!p a lantern after the crash\n")
        await until(lambda: "a lantern after the crash" in {c.text for c in show.audience.snapshot().candidates})

        async def ticking() -> bool:
            return (await get("/api/health"))["ticks"] >= ticks + 15

        await until(ticking)
        assert not running.done()
    finally:
        show.stop()
        await asyncio.wait_for(running, 60)
