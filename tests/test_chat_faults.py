"""Chat connections that drop, in a running show with every adapter at once:
Twitch (tests/twitch_fake.py), Discord (tests/fake_discord.py) and the local
chat file. Each resumes by itself; while one is away the others keep
bringing prompts in and the broadcast keeps going."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from streambot.app import Show, ShowOptions, build_world
from streambot.audience.local import LocalChat
from streambot.config import load_settings, resolve_world

from .fake_discord import CHANNEL, GUILD, TOKEN, user
from .fake_discord import serving as discord_serving
from .localserver import until
from .twitch_fake import CLIENT_ID, CLIENT_SECRET
from .twitch_fake import serving as twitch_serving

SCOPES = ("user:read:chat", "user:write:chat", "user:bot", "channel:bot", "channel:moderate")


@pytest.fixture
async def platforms(monkeypatch):
    async with twitch_serving(monkeypatch) as twitch, discord_serving(monkeypatch) as discord:
        yield twitch, discord


def texts(show: Show) -> set[str]:
    return {c.text for c in show.audience.snapshot().candidates}


async def test_every_adapter_resumes_and_the_others_are_untouched(platforms, tmp_path, monkeypatch):
    twitch, discord = platforms
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    streamer = twitch.account("1001", "streamer")
    ann, bob, cat = (twitch.account(str(2000 + i), n) for i, n in enumerate(("ann", "bob", "cat"), 1))
    dee, eve, fay = user("21", "dee"), user("22", "eve"), user("23", "fay")
    token = twitch.user_token(streamer, SCOPES)
    chat = tmp_path / "chat.txt"
    chat.write_text("")
    settings = load_settings(
        None,
        {
            "stream": {"size": "320x180", "fps": 15, "bitrate_kbps": 300},
            "world": {"sketch": {"embedder": None}},
            "voting": {
                "round_s": 120,
                "top_n": 10,
                "pool_embeddings": False,
                "timeline": str(tmp_path / "timeline.sqlite3"),
            },
            # no sentence model: the safety screen would hold candidates while it loads
            "moderation": {"viewer_burst": 20, "viewer_prompts_per_min": 600, "semantic": False},
            "twitch": {
                "enabled": True,
                "client_id": CLIENT_ID,
                "channel": "streamer",
                "tokens_file": str(tmp_path / "twitch_tokens.json"),
            },
            "discord": {"enabled": True, "channels": [int(CHANNEL)], "guilds": [int(GUILD)]},
        },
    )
    secrets = {
        "twitch_client_secret": CLIENT_SECRET,
        "twitch_token": token[0],
        "twitch_refresh_token": token[1],
        "discord_token": TOKEN,
    }
    show = Show(
        settings,
        resolve_world("meadow"),
        build_world(settings),
        ShowOptions(outputs=[str(tmp_path / "show.flv")], chat_source=str(chat), secrets=secrets),
    )
    await asyncio.to_thread(show.open)
    running = asyncio.create_task(show.run())
    ticks = lambda: show.broadcast.clock.stats.ticks  # noqa: E731

    async def still_on_air() -> None:
        """The broadcast sends frames after the fault (at what pace: benchmarks/README.md)."""
        sent = ticks()
        await until(lambda: ticks() > sent and not running.done(), 20)

    try:
        try:
            await until(lambda: set(show.adapter_states().values()) == {"live"} and len(show.adapter_states()) == 3, 60)
        except TimeoutError:
            raise AssertionError(show.adapter_states()) from None
        await twitch.wait(lambda: twitch.live("channel.chat.message"))
        await discord.wait_sockets(1)

        async def from_discord(who: dict, idea: str) -> None:
            iid = await discord.command(discord.sockets[-1], who, "prompt", {"idea": idea})
            assert (await discord.reply(iid)).startswith("Your idea is #")

        def from_terminal(line: str) -> None:
            with chat.open("a") as f:
                f.write(line + "\n")

        await twitch.chat(streamer, ann, "!p a dragon from twitch")
        await from_discord(dee, "a castle from discord")
        from_terminal("!p a lantern from the terminal")
        await until(
            lambda: {"a dragon from twitch", "a castle from discord", "a lantern from the terminal"} <= texts(show), 20
        )

        # 1. Twitch's socket drops: Discord and the terminal go on as if nothing happened
        t0, since, identifies, created = ticks(), time.monotonic(), discord.identifies, len(twitch.created)
        dropped = twitch.session_of("channel.chat.message")
        await dropped.ws.close()
        await from_discord(eve, "a bridge of ice")
        from_terminal("!p a whale in the sky")
        await until(lambda: {"a bridge of ice", "a whale in the sky"} <= texts(show), 20)
        await twitch.wait(lambda: twitch.live("channel.chat.message") and len(twitch.created) > created, 30)
        await twitch.chat(streamer, bob, "!p a dragon returns from twitch")
        await until(lambda: "a dragon returns from twitch" in texts(show), 20)
        assert discord.identifies == identifies and not discord.resumes, "Discord's session was never touched"
        await still_on_air()

        # 2. Discord's gateway asks for a reconnect, then drops outright: Twitch and the terminal go on
        created, sockets = len(twitch.created), len(discord.sockets)
        await discord.sockets[-1].send_json({"op": 7, "d": None})
        await discord.wait_sockets(sockets + 1)
        await discord.sockets[-1].close()
        await twitch.chat(streamer, cat, "!p a storm over the sea")
        from_terminal("!p a fox in the snow")
        await until(lambda: {"a storm over the sea", "a fox in the snow"} <= texts(show), 20)
        await discord.wait_sockets(sockets + 2)
        await until(lambda: show.adapter_states()["DiscordBot"] == "live", 30)
        await from_discord(fay, "a castle returns from discord")
        await until(lambda: "a castle returns from discord" in texts(show), 20)
        assert len(discord.resumes) >= 1 and discord.identifies == identifies, "resumed, not logged in again"
        assert len(twitch.created) == created, "Twitch's subscription was never touched"
        await still_on_air()

        # 3. The terminal's chat file is rotated (and the old one cut short): the new one is read
        os.replace(chat, tmp_path / "chat.txt.1")
        (tmp_path / "chat.txt.1").write_text("")
        chat.write_text("!p after the rotation\n")
        await until(lambda: "after the rotation" in texts(show), 20)
        await twitch.chat(streamer, ann, "!vote 1")
        await until(lambda: show.audience.counts["votes"] >= 1, 20)

        # the broadcast went on throughout
        await still_on_air()
        print(f"broadcast during the faults: {(ticks() - t0) / (time.monotonic() - since):.1f} frames/s of 15")
        assert [o.state for o in show.broadcast.outputs] == ["live"]
        assert not running.done()
        assert set(show.adapter_states().values()) == {"live"}, show.adapter_states()
    finally:
        show.stop()
        await asyncio.wait_for(running, 60)


def test_a_followed_chat_file_survives_rotation_truncation_and_a_gap(tmp_path):
    """The terminal's chat file, read like `tail -F`."""
    path = tmp_path / "chat.txt"
    path.write_text("!p one\n")
    got: list[str] = []
    arrived = threading.Condition()
    loop = asyncio.new_event_loop()

    def on_line(user: str, text: str) -> None:
        with arrived:
            got.append(text)
            arrived.notify_all()

    def wait_for(n: int) -> list[str]:
        with arrived:
            assert arrived.wait_for(lambda: len(got) >= n, 10), got
            return list(got)

    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    reader = LocalChat(on_line, source=str(path))
    reader.start(loop)
    try:
        assert wait_for(1) == ["!p one"]
        with path.open("a") as f:
            f.write("!p two\n")
        assert wait_for(2)[-1] == "!p two"
        path.write_text("!p three\n")  # cut short and written again (same file)
        assert wait_for(3)[-1] == "!p three"
        os.replace(path, tmp_path / "chat.txt.1")  # rotated
        path.write_text("!p four\n")
        assert wait_for(4)[-1] == "!p four"
        path.unlink()  # gone for a while, then back
        Path(path).write_text("!p five\n")
        assert wait_for(5)[-1] == "!p five"
        assert reader.state == "live"
    finally:
        reader.close()
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()
