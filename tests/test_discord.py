"""Discord: discord.py's real client, gateway, command tree, cogs, dynamic buttons
and HTTP, against a local Discord (tests/fake_discord.py) that checks on the
wire what Discord checks: where commands are offered, option types, mentions."""

from __future__ import annotations

import asyncio
import copy
import re

import pytest
from discord.http import Route

from streambot.audience.discord_bot import DiscordBot, render_result, render_round
from streambot.audience.events import Audience
from streambot.audience.moderation import Moderation
from streambot.config import DiscordSettings, ModerationSettings, RoleWeights, VotingSettings
from streambot.replay import VirtualClock
from streambot.store import Store
from streambot.viewer import Viewer
from streambot.voting import VotingEngine

from .fake_discord import (
    CHANNEL,
    EVERYONE,
    GUILD,
    MANAGE_MESSAGES,
    MOD_ROLE,
    OTHER,
    OTHER_OWNER,
    ROLE_MENTION,
    TOKEN,
    USER_MENTION,
    FakeDiscord,
    NotOffered,
    buttons_of,
    disabled_of,
    serving,
    user,
)
from .localserver import until

WALL0 = 1_800_000_000  # Unix time at the show clock's zero
ann, bob, cat, boss = user("11", "ann"), user("12", "bob"), user("13", "cat"), user("14", "boss")
mallory = user(OTHER_OWNER, "mallory")  # owns another server that added the bot


@pytest.fixture
async def fake_discord(monkeypatch):
    async with serving(monkeypatch) as server:
        yield server


def show(
    clock: VirtualClock, round_s: float = 10, grace_s: float = 1, store: Store | None = None, **voting
) -> Audience:
    engine = VotingEngine(VotingSettings(round_s=round_s, grace_s=grace_s, stream_delay_s=0, **voting), now=clock.t)
    return Audience(engine, Moderation(ModerationSettings(new_viewer_wait_s=0)), store=store, clock=clock)


def settings(**kw) -> DiscordSettings:
    return DiscordSettings(**{"enabled": True, "channels": [int(CHANNEL)], "guilds": [int(GUILD)], **kw})


class Running:
    """A bot running against the fake, closed (and its task awaited) on exit."""

    def __init__(self, bot: DiscordBot) -> None:
        self.bot = bot

    async def __aenter__(self) -> DiscordBot:
        self.task = asyncio.create_task(self.bot.run())
        await until(lambda: self.bot.state == "live")
        return self.bot

    async def __aexit__(self, *exc) -> None:
        await self.bot.close()
        await asyncio.wait_for(self.task, 10)
        assert self.bot.state == "closed"


def round_messages(fake: FakeDiscord) -> list[dict]:
    return [m for m in fake.messages.values() if m["channel_id"] == CHANNEL]


async def test_commands_buttons_round_messages_and_resume(fake_discord: FakeDiscord) -> None:
    clock = VirtualClock(0.0)
    audience = show(clock)
    bot = DiscordBot(audience, settings(update_s=1.0), TOKEN, wall=lambda: WALL0 + clock.t, tick_s=0.05)
    async with Running(bot):
        await fake_discord.wait_sockets(1)
        ws = fake_discord.sockets[0]
        await until(lambda: len(fake_discord.messages) == 1)  # the round's message, before any idea
        (message,) = fake_discord.messages.values()
        assert "No ideas yet" in message["content"] and f"<t:{WALL0 + 10}:R>" in message["content"]

        # slash commands go through discord.py's command tree
        asked = [
            await fake_discord.command(ws, ann, "prompt", {"idea": "a dragon"}),
            await fake_discord.command(ws, bob, "prompt", {"idea": "a castle"}),
            await fake_discord.command(ws, cat, "vote", {"number": 2}),
        ]
        assert [await fake_discord.reply(i) for i in asked] == ["Your idea is #1.", "Your idea is #2.", "Voted for #2."]
        assert all(r["data"]["flags"] == 64 for r in fake_discord.responses)  # ephemeral

        # the message shows them once the edit spacing allows
        clock.t = 1.0
        await until(lambda: len(buttons_of(fake_discord.messages[message["id"]])) == 2)
        message = fake_discord.messages[message["id"]]
        stale = copy.deepcopy(message)
        assert buttons_of(message) == ["streambot:vote:1:2", "streambot:vote:1:1"]
        assert "**#2** a castle" in message["content"] and f"<t:{WALL0 + 10}:R>" in message["content"]

        # a button press goes through discord.py's dynamic item dispatch
        pressed = await fake_discord.button(ws, ann, "streambot:vote:1:2", message)
        assert await fake_discord.reply(pressed) == "Voted for #2."
        assert [c.votes for c in audience.snapshot().candidates] == [3.0, 0.0]
        clock.t = 2.0
        await until(lambda: "3 votes" in fake_discord.messages[message["id"]]["content"])

        # moderators by role name; a member Discord shows /mod to, without the role, is refused
        lock = await fake_discord.command(ws, cat, "mod", sub="lock", permissions=MANAGE_MESSAGES)
        ban = await fake_discord.command(
            ws, boss, "mod", {"user": cat}, sub="ban", roles=[MOD_ROLE], permissions=MANAGE_MESSAGES
        )
        assert await fake_discord.reply(lock) == "Only moderators can do that."
        assert await fake_discord.reply(ban) == "Done: ban cat"
        assert not audience.engine.locked
        # the ban follows the account: a new name does not escape it
        assert audience.moderation.is_banned(Viewer("discord", "cat_renamed", id="13"))
        assert not audience.moderation.is_banned(Viewer("discord", "ann", id="11"))

        # the gateway asks for a reconnect: discord.py resumes the session
        await ws.send_json({"op": 7, "d": None})
        await fake_discord.wait_sockets(2)
        assert fake_discord.resumes and fake_discord.resumes[0]["session_id"] == "session-a"
        assert fake_discord.identifies == 1
        ws2 = fake_discord.sockets[1]

        # the round ends: the message closes with the winner, its buttons disabled
        clock.t = 11.5
        winner = audience.tick()
        assert winner.text == "a castle" and winner.votes == 2  # cat was banned: the vote went too
        await until(lambda: "on air: **a castle**" in fake_discord.messages[message["id"]]["content"])
        closed = fake_discord.messages[message["id"]]
        assert buttons_of(closed) == ["streambot:vote:1:2", "streambot:vote:1:1"]
        assert disabled_of(closed) == [True, True]
        assert [c["style"] for row in closed["components"] for c in row["components"]] == [3, 1]  # winner green
        raced = await fake_discord.button(ws2, ann, "streambot:vote:1:1", stale)  # a click that raced the edit
        assert await fake_discord.reply(raced) == "#1 was in the last round; vote for one of this round's ideas."
        await until(lambda: len(fake_discord.messages) == 2)  # round 2's message
        assert f"<t:{WALL0 + 20}:R>" in fake_discord.posts[-1]["content"]


async def test_commands_are_registered_only_where_they_belong(fake_discord: FakeDiscord) -> None:
    # What an older version registered: every command, /mod included, globally.
    fake_discord.register(
        "global", [{"name": n, "description": n, "type": 1, "options": []} for n in ("prompt", "vote", "now", "mod")]
    )
    audience = show(VirtualClock(0.0))
    async with Running(DiscordBot(audience, settings(), TOKEN)):
        await until(lambda: {GUILD, "global"} <= set(fake_discord.syncs[1:]))
        ws = fake_discord.sockets[0]
        assert fake_discord.commands["global"] == []  # the global /mod is gone
        commands = {c["name"]: c for c in fake_discord.commands[GUILD]}
        assert set(commands) == {"prompt", "vote", "now", "mod"}
        assert all(c["contexts"] == [0] and c["dm_permission"] is False for c in commands.values())
        mod = commands["mod"]
        assert mod["default_member_permissions"] == str(MANAGE_MESSAGES)
        subs = {o["name"]: o for o in mod["options"]}
        assert set(subs) == {"skip", "lock", "unlock", "ban", "unban"}
        for name in ("ban", "unban"):
            (opt,) = subs[name]["options"]
            assert (opt["name"], opt["type"], opt["required"]) == ("user", 6, True)  # a USER, not text

        # Discord offers /mod nowhere else: not to another server's owner, not in DMs,
        # not to a member without Manage Messages.
        with pytest.raises(NotOffered):
            await fake_discord.command(
                ws, mallory, "mod", {"user": ann}, sub="ban", guild=OTHER, permissions=MANAGE_MESSAGES
            )
        with pytest.raises(NotOffered):
            await fake_discord.command(ws, boss, "mod", sub="skip", guild=None)
        with pytest.raises(NotOffered):
            await fake_discord.command(ws, boss, "mod", sub="skip", roles=[MOD_ROLE])
        with pytest.raises(NotOffered):
            await fake_discord.command(ws, ann, "prompt", {"idea": "a dragon"}, guild=None)
        with pytest.raises(TypeError, match="USER"):  # a name typed as text is not how /mod ban is used
            await fake_discord.command(ws, boss, "mod", {"user": "cat"}, sub="ban", permissions=MANAGE_MESSAGES)
        skip = await fake_discord.command(ws, boss, "mod", sub="skip", roles=[MOD_ROLE], permissions=MANAGE_MESSAGES)
        assert await fake_discord.reply(skip) == "Done: skip"


async def test_without_guilds_there_is_no_moderation(fake_discord: FakeDiscord) -> None:
    audience = show(VirtualClock(0.0), weights=RoleWeights(broadcaster=3, moderator=2))
    async with Running(DiscordBot(audience, settings(guilds=[]), TOKEN)):
        await until(lambda: "global" in fake_discord.syncs)
        ws = fake_discord.sockets[0]
        commands = {c["name"]: c for c in fake_discord.commands["global"]}
        assert set(commands) == {"prompt", "vote", "now"}  # no /mod for every server that adds the bot
        assert all(c["contexts"] == [0] for c in commands.values())
        # Anyone may play in any server, but a server's owner is a viewer like the others.
        asked = await fake_discord.command(ws, mallory, "prompt", {"idea": "a dragon"}, guild=OTHER)
        assert await fake_discord.reply(asked) == "Your idea is #1."
        (cand,) = audience.snapshot().candidates
        assert cand.votes == 1.0  # not the weight of the server's broadcaster


async def test_moderation_is_refused_outside_the_show_server(fake_discord: FakeDiscord) -> None:
    # Interactions Discord should never send, e.g. from a stale registration: still refused.
    audience = show(VirtualClock(0.0))
    async with Running(DiscordBot(audience, settings(), TOKEN)):
        ws = fake_discord.sockets[0]
        mod_id = next(c["id"] for c in fake_discord.commands[GUILD] if c["name"] == "mod")
        ban = {"name": "ban", "type": 1, "options": [{"name": "user", "type": 6, "value": "11"}]}
        resolved = {"users": {"11": ann}}
        # another server's owner, through a global /mod
        await fake_discord.interaction(
            ws,
            mallory,
            2,
            {"id": "77", "name": "mod", "type": 1, "options": [ban], "resolved": resolved},
            guild=OTHER,
            permissions=8,
        )
        # the show's guild command, arriving from another server
        await fake_discord.interaction(
            ws,
            mallory,
            2,
            {"id": mod_id, "name": "mod", "type": 1, "options": [ban], "resolved": resolved, "guild_id": GUILD},
            guild=OTHER,
            permissions=8,
        )
        # from a DM
        await fake_discord.interaction(
            ws,
            boss,
            2,
            {
                "id": mod_id,
                "name": "mod",
                "type": 1,
                "guild_id": GUILD,
                "options": [{"name": "skip", "type": 1, "options": []}],
            },
            guild=None,
        )
        await fake_discord.interaction(
            ws,
            ann,
            2,
            {"id": "78", "name": "prompt", "type": 1, "options": [{"name": "idea", "type": 3, "value": "a dragon"}]},
            guild=None,
        )
        await until(lambda: len(fake_discord.responses) == 4)
        assert sorted(r["data"]["content"] for r in fake_discord.responses) == [
            "Moderation works only in the show's own server.",
            "That command is not available here.",
            "streambot's commands work in the show's server.",
            "streambot's commands work in the show's server.",
        ]
        assert not audience.moderation.bans and audience.snapshot().round == 1
        assert audience.snapshot().candidates == ()


async def test_nobody_is_pinged(fake_discord: FakeDiscord) -> None:
    clock = VirtualClock(0.0)
    audience = show(clock)
    bot = DiscordBot(audience, settings(update_s=1.0), TOKEN, wall=lambda: WALL0 + clock.t, tick_s=0.05)
    async with Running(bot):
        ws = fake_discord.sockets[0]
        # whatever moderation lets through is shown safely: here, straight into the round
        audience.engine.submit(Viewer("discord", "ann", id="11"), "<@&412345678901234567> dance", 0.0)
        audience.engine.submit(Viewer("discord", "bob", id="12"), "<@!412345678901234568> waves @everyone", 0.0)
        assert await fake_discord.reply(await fake_discord.command(ws, cat, "vote", {"number": 2})) == "Voted for #2."
        clock.t = 1.0
        await until(lambda: any(len(buttons_of(m)) == 2 for m in round_messages(fake_discord)))
        (message,) = round_messages(fake_discord)
        content = message["content"]
        assert "412345678901234567" in content and "412345678901234568" in content  # shown, as text
        assert not USER_MENTION.search(content) and not ROLE_MENTION.search(content)
        clock.t = 11.5
        audience.tick()
        await until(lambda: "on air" in fake_discord.messages[message["id"]]["content"])
        assert "412345678901234568" in await fake_discord.reply(await fake_discord.command(ws, cat, "now"))
    sent = [m["content"] for m in fake_discord.messages.values()] + [
        r["data"]["content"] for r in fake_discord.responses
    ]
    assert not any(USER_MENTION.search(t) or ROLE_MENTION.search(t) or EVERYONE.search(t) for t in sent)
    # every message, edit and reply said "mention nobody" (the fixture checks each one)
    assert fake_discord.checked == len(fake_discord.posts) + len(fake_discord.edits) + len(fake_discord.responses)
    assert fake_discord.pinged == []


async def test_round_message_is_edited_only_when_votes_change(fake_discord: FakeDiscord) -> None:
    clock = VirtualClock(0.0)
    audience = show(clock, round_s=10, grace_s=2)
    # The bot's own loop runs once at start; the test drives `refresh` on the show's clock.
    bot = DiscordBot(audience, settings(update_s=3.0), TOKEN, wall=lambda: WALL0 + clock.t, tick_s=3600)
    async with Running(bot):
        await until(lambda: bot.refreshes >= 1)
        edit_times: dict[str, list[float]] = {}

        async def step(to: float) -> None:
            clock.t = to
            audience.tick()
            before = len(fake_discord.edits)
            await bot.refresh()
            for e in fake_discord.edits[before:]:
                edit_times.setdefault(e["id"], []).append(to)

        # round 1: nobody plays; the countdown runs on the clients, so no edit at all
        for i in range(1, 20):
            await step(i * 0.5)
        (first,) = fake_discord.messages
        assert edit_times == {} and f"<t:{WALL0 + 10}:R>" in fake_discord.messages[first]["content"]

        # round 2: a new prompt or vote every half second
        await step(10.0)
        assert edit_times == {} and len(fake_discord.posts) == 2
        second = list(fake_discord.messages)[-1]
        ideas = ["a dragon", "a castle", "a storm"]
        for i, t in enumerate(x * 0.5 for x in range(21, 40)):
            name = f"viewer{i}"
            if i < 3:
                audience.chat("discord", name, f"!p {ideas[i]}", now=t)
            else:
                audience.chat("discord", name, f"!vote {1 + i % 3}", now=t)
            await step(t)
        assert edit_times[first] == [12.0]  # round 1 closed when its result came, after the grace period
        times = edit_times[second]
        assert len(times) == 3 and all(b - a >= 3.0 for a, b in zip(times, times[1:]))
        assert times[0] >= 13.0  # three seconds after the message was posted
        contents = [e["content"] for e in fake_discord.edits if e["id"] == second]
        assert len(set(contents)) == len(contents)  # every edit showed something new
        assert all(f"<t:{WALL0 + 20}:R>" in c for c in contents)  # the same end throughout

        # its result comes after the grace period; then it closes, once
        for t in (20.0, 20.5, 21.0, 21.5, 22.0, 22.5):
            await step(t)
        assert len(edit_times[second]) == 4 and edit_times[second][-1] == 22.0
        assert "on air" in fake_discord.messages[second]["content"]


async def test_restart_closes_the_round_message_left_open(fake_discord: FakeDiscord, tmp_path) -> None:
    path = tmp_path / "timeline.sqlite3"
    clock = VirtualClock(0.0)
    store = Store(path)
    audience = show(clock, store=store)
    bot = DiscordBot(audience, settings(update_s=1.0), TOKEN, store=store, wall=lambda: WALL0 + clock.t, tick_s=0.05)
    task = asyncio.create_task(bot.run())
    await fake_discord.wait_sockets(1)
    ws = fake_discord.sockets[0]
    for who, idea in ((ann, "a dragon"), (bob, "a castle")):
        await fake_discord.reply(await fake_discord.command(ws, who, "prompt", {"idea": idea}))
    clock.t = 2.0
    await until(lambda: any(len(buttons_of(m)) == 2 for m in round_messages(fake_discord)))
    seen = bot.refreshes
    await until(lambda: bot.refreshes > seen)  # the refresh that made that edit has saved its ids
    (left,) = fake_discord.messages
    # the process dies: no goodbye, the message stays open
    await audience.close()  # what the show saves every second
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    store.close()
    assert disabled_of(fake_discord.messages[left]) == [False, False]

    # the next run resumes round 1 from the timeline
    clock2 = VirtualClock(100.0)
    store2 = Store(path)
    audience2 = show(clock2, store=store2)
    assert audience2.resume() and audience2.snapshot().round == 1
    bot2 = DiscordBot(
        audience2, settings(update_s=1.0), TOKEN, store=store2, wall=lambda: WALL0 + clock2.t, tick_s=0.05
    )
    try:
        async with Running(bot2):
            await until(lambda: len(fake_discord.messages) == 2)
            old = fake_discord.messages[left]
            assert disabled_of(old) == [True, True]  # closed at once
            assert "goes on in a new message below" in old["content"]
            new = list(fake_discord.messages)[-1]
            voted = await fake_discord.command(fake_discord.sockets[-1], cat, "vote", {"number": 2})
            assert await fake_discord.reply(voted) == "Voted for #2."
            clock2.t = 200.0
            audience2.tick()
            # both show the result: the old one too
            for mid in (left, new):
                await until(lambda mid=mid: "on air: **a castle**" in fake_discord.messages[mid]["content"])
                assert disabled_of(fake_discord.messages[mid]) == [True, True]
    finally:
        store2.close()

    # a run that finds a message of a round that is not going on closes it as well
    store3 = Store(path)
    saved = store3.load_state("discord")
    last = list(fake_discord.messages)[-1]
    assert [m["message"] for m in saved["messages"]] == [int(last)]
    clock3 = VirtualClock(0.0)
    bot3 = DiscordBot(show(clock3, store=store3), settings(), TOKEN, store=store3, tick_s=0.05)
    try:
        async with Running(bot3):
            await until(lambda: "ended when the show restarted" in fake_discord.messages[last]["content"])
            assert all(disabled_of(fake_discord.messages[last]))
    finally:
        store3.close()


async def test_failure_is_retried_not_raised(fake_discord: FakeDiscord, monkeypatch) -> None:
    # An API that answers 404 to everything: login fails, the bot waits and retries.
    monkeypatch.setattr(Route, "BASE", f"http://127.0.0.1:{fake_discord.port}/nothing-here")
    bot = DiscordBot(show(VirtualClock(0.0)), DiscordSettings(), TOKEN)
    task = asyncio.create_task(bot.run())
    await until(lambda: bot.state == "retrying")
    assert not task.done()
    await bot.close()
    await asyncio.wait_for(task, 10)
    assert bot.state == "closed"


async def test_rejected_token_waits_five_minutes_and_is_never_logged(fake_discord: FakeDiscord, caplog) -> None:
    token = "another-bot-token-9876543210"
    bot = DiscordBot(show(VirtualClock(0.0)), DiscordSettings(), token)
    task = asyncio.create_task(bot.run())
    await until(lambda: bot.state == "retrying")
    assert "discord rejected the bot token; retrying in 300 s" in caplog.text
    assert token not in caplog.text and fake_discord.identifies == 0
    await bot.close()
    await asyncio.wait_for(task, 10)


MENTION = re.compile(USER_MENTION.pattern + "|" + ROLE_MENTION.pattern + "|" + EVERYONE.pattern)


def test_render_round_and_result() -> None:
    engine = VotingEngine(VotingSettings(top_n=10), now=0.0)
    audience = Audience(engine, Moderation(ModerationSettings(new_viewer_wait_s=0)), clock=lambda: 3.0)
    text, buttons = render_round(audience.snapshot(), WALL0 + 10)
    assert "No ideas yet" in text and buttons == [] and "<t:1800000010:R>" in text
    audience.chat("discord", "ann", "!p a *bold* dragon")
    text, buttons = render_round(audience.snapshot(), WALL0 + 10)
    assert "\\*bold\\*" in text and buttons == [(1, "#1 a *bold* dragon")]
    # mentions of every kind, straight into the engine (past the block lists), show as text
    for i, t in enumerate(
        [
            "@everyone look",
            "@here now",
            "<@123456789012345678> hi",
            "<@!123456789012345678> yo",
            "<@&123456789012345678> go",
        ]
    ):
        engine.submit(Viewer("discord", f"v{i}"), t, 3.0)
    text, _ = render_round(audience.snapshot(), WALL0 + 10)
    assert not MENTION.search(text) and "123456789012345678" in text and "everyone" in text
    # ten candidates of 500 characters still fit Discord's 2,000
    for i in range(4):
        engine.submit(Viewer("discord", f"w{i}"), f"{i} " + "long words " * 50, 3.0)
    text, buttons = render_round(audience.snapshot(), WALL0 + 10)
    assert len(text) <= 2000 and len(buttons) == 10 and all(len(label) <= 80 for _, label in buttons)
    results = []
    audience.subscribe(results.append)
    audience.tick(20.0)
    (result,) = results
    closed = render_result(1, result)
    assert len(closed) <= 2000 and not MENTION.search(closed) and "on air" in closed
    with pytest.raises(ValueError, match="token"):
        DiscordBot(audience, DiscordSettings(), "")
