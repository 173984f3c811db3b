"""What a viewer is told after the fact, on the platforms' own terms, against the local
Twitch and Discord: a prompt the safety screen refuses once it was "being checked", a
vote for a number of a round already decided, and /vote's option as Discord bounds it.

Real parts: twitchio and discord.py against tests/twitch_fake.py and tests/fake_discord.py,
the real moderation layers (block lists, classifier, the shipped probe and sentence model).
"""

from __future__ import annotations

import asyncio

import pytest

from streambot.audience.discord_bot import DiscordBot
from streambot.audience.events import CHECKING, REFUSED, Audience
from streambot.audience.moderation import Moderation
from streambot.audience.safety import (
    ConceptProbe,
    ConceptTerms,
    Safety,
    load_classifier,
    load_concepts,
    load_senses,
)
from streambot.config import ModerationSettings, VotingSettings
from streambot.replay import VirtualClock
from streambot.voting import VotingEngine

from .fake_discord import GUILD, TOKEN, user
from .localserver import until
from .test_discord import (
    Running,
    fake_discord,  # noqa: F401  (the local Discord, as a fixture)
    settings,
)
from .test_twitch import SCOPES, fake, running, settled, twitch_chat  # noqa: F401  (fake: the local Twitch)

GORE = "a butcher chopping up a human body"  # the block lists and the classifier let it by; the probe refuses it


def open_moderation(**kw) -> Moderation:
    return Moderation(
        ModerationSettings(
            viewer_prompts_per_min=600, viewer_burst=100, global_prompts_per_min=60000, global_burst=10000
        ),
        **kw,
    )


def screened_audience(clock: VirtualClock, mod: Moderation) -> Audience:
    engine = VotingEngine(VotingSettings(round_s=10, grace_s=1, stream_delay_s=0), now=clock.t, screen=mod.screen)
    return Audience(engine, mod, clock=clock)


async def test_twitch_answers_a_late_refusal_and_a_stale_vote_once(fake, tmp_path) -> None:  # noqa: F811
    streamer = fake.account("1001", "streamer")
    ann, bob, cat, dan, eve = (
        fake.account(str(2001 + i), n) for i, n in enumerate(("ann", "bob", "cat", "dan", "eve"))
    )
    clock = VirtualClock(0.0)
    audience = screened_audience(clock, open_moderation())
    chat = twitch_chat(audience, fake.user_token(streamer, SCOPES), tmp_path)

    def replies() -> list[tuple[str, str]]:
        return [(m["reply_parent_message_id"], m["message"]) for m in fake.sent if m.get("reply_parent_message_id")]

    async with running(chat, fake):
        gory = await fake.chat(streamer, ann, f"!p {GORE}")
        rude = await fake.chat(streamer, bob, "!p sh1t")
        await fake.chat(streamer, cat, "!p a lighthouse in a storm")
        await settled(fake, audience, streamer, 3)
        await fake.wait(lambda: len(replies()) == 1)
        assert replies() == [(rude, REFUSED)]  # refused inline: answered at once
        audience.screen_now()  # the pooling worker: the probe refuses the gory one after the fact
        await fake.wait(lambda: len(replies()) == 2)
        assert replies()[1] == (gory, REFUSED)
        assert [c.text for c in audience.snapshot().candidates] == ["a lighthouse in a storm"]

        clock.t = 11.5
        assert audience.tick().text == "a lighthouse in a storm"  # round 1 decided: #1 is retired
        late = await fake.chat(streamer, dan, "!vote 1")
        await fake.chat(streamer, dan, "!1")  # the same viewer, the same stale round: told once
        await fake.chat(streamer, eve, "!vote 77")  # never a number: nothing to explain
        await settled(fake, audience, streamer, 3)
        await fake.wait(lambda: len(replies()) == 3 and any("is on air" in m["message"] for m in fake.sent))
        assert replies()[2] == (late, "#1 was in the last round; vote for one of this round's ideas.")
        assert all(REFUSED not in m["message"] for m in fake.sent if not m.get("reply_parent_message_id"))
    assert len(replies()) == 3
    assert chat.reply_limit.amount == 10  # half of Twitch's 20 per 30 s: the round message keeps its room


async def test_twitch_replies_stay_within_their_share_and_a_quiet_bot_says_nothing(fake, tmp_path) -> None:  # noqa: F811
    streamer, ann = fake.account("1001", "streamer"), fake.account("2001", "ann")
    audience = screened_audience(VirtualClock(0.0), open_moderation())
    chat = twitch_chat(audience, fake.user_token(streamer, SCOPES), tmp_path)
    async with running(chat, fake):
        asked = [await fake.chat(streamer, ann, f"!p sh1t number {i}") for i in range(14)]
        await settled(fake, audience, streamer, 14)
        await fake.wait(lambda: len(fake.sent) == 10)
        assert [m["reply_parent_message_id"] for m in fake.sent] == asked[:10]
        assert await chat.send("the round message still goes out")  # 11 of Twitch's 20
    quiet = twitch_chat(
        screened_audience(VirtualClock(0.0), open_moderation()),
        fake.user_token(streamer, SCOPES),
        tmp_path,
        reply=False,
    )
    before = len(fake.sent)
    async with running(quiet, fake):
        await fake.chat(streamer, ann, "!p sh1t")
        await settled(fake, quiet.audience, streamer, 1)
        assert not await quiet.reply_to(asked[0], REFUSED)
    assert len(fake.sent) == before


def loading_safety() -> Safety:
    """The real layers in a show whose sentence model is still loading: candidates wait."""
    concepts = load_concepts()
    return Safety(
        ConceptTerms(concepts),
        load_classifier(),
        ConceptProbe.load(),
        None,
        senses=load_senses(concepts),
        model_pending=True,
    )


async def test_discord_edits_being_checked_once_the_screen_has_spoken(fake_discord) -> None:  # noqa: F811
    from streambot.embeddings import get_embedder

    embedder = get_embedder()
    assert embedder is not None
    safety = loading_safety()
    clock = VirtualClock(1.0)
    audience = screened_audience(clock, open_moderation(safety=safety))
    worker = asyncio.create_task(audience.run(lambda w: None, interval=0.05))
    bot = DiscordBot(audience, settings(), TOKEN, tick_s=0.05)
    try:
        async with Running(bot):
            await fake_discord.wait_sockets(1)
            ws = fake_discord.sockets[0]
            asked = [
                await fake_discord.command(ws, user(str(30 + i), f"v{i}"), "prompt", {"idea": idea})
                for i, idea in enumerate([GORE, "a lighthouse in a storm"])
            ]
            # Discord wants an answer within 3 s: past 2 s the viewer hears it is being checked
            assert [await fake_discord.reply(i) for i in asked] == [CHECKING, CHECKING]
            assert fake_discord.edited == {}
            safety.take_model(embedder.encode)  # the model is there: the worker screens the batch
            await until(lambda: all(i in fake_discord.edited for i in asked), timeout=30)
            assert [fake_discord.edited[i] for i in asked] == [[REFUSED], ["Your idea is #1."]]
            assert [c.text for c in audience.snapshot().candidates] == ["a lighthouse in a storm"]
    finally:
        await audience.close()
        await worker


async def test_discord_vote_is_bounded_as_discord_bounds_options(fake_discord) -> None:  # noqa: F811
    clock = VirtualClock(0.0)
    engine = VotingEngine(VotingSettings(round_s=10, grace_s=1, stream_delay_s=0), now=0.0)
    audience = Audience(engine, open_moderation(), clock=clock)
    async with Running(DiscordBot(audience, settings(), TOKEN, tick_s=0.05)):
        await fake_discord.wait_sockets(1)
        ws = fake_discord.sockets[0]
        (vote,) = [c for c in fake_discord.commands[GUILD] if c["name"] == "vote"]
        (number,) = vote["options"]
        assert number["min_value"] == 1 and number.get("max_value", 2**53 - 1) == 2**53 - 1 and number["autocomplete"]
        ann = user("41", "ann")
        with pytest.raises(ValueError):  # Discord's client does not send it
            await fake_discord.command(ws, ann, "vote", {"number": 0})
        for i, idea in enumerate(["a dragon", "a castle", "a comet"]):
            await fake_discord.command(ws, user(str(50 + i), f"p{i}"), "prompt", {"idea": idea})
        await until(lambda: len(audience.snapshot().candidates) == 3)
        assert await fake_discord.autocomplete(ws, ann, "vote", "number", "") == [
            {"name": "#1 a dragon", "value": 1},
            {"name": "#2 a castle", "value": 2},
            {"name": "#3 a comet", "value": 3},
        ]
        assert await fake_discord.autocomplete(ws, ann, "vote", "number", "2") == [{"name": "#2 a castle", "value": 2}]
        # a number past the old 9999 is a real candidate after a long show: it must still be votable
        big = await fake_discord.command(ws, ann, "vote", {"number": 12_345})
        assert await fake_discord.reply(big) == "There is no #12345 this round."
