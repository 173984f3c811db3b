"""Discord voice receive without Discord: speech Opus-encoded by PyAV's libopus,
wrapped as RTP with transport encryption (aead_xchacha20_poly1305_rtpsize, the
mode discord.py 2.7 negotiates), fed through discord-ext-voice-recv's real
reader and router into `VoiceSink`, transcribed by the bundled model, and into
the round attributed to the speaker; once as transport encryption only, once
end-to-end encrypted (DAVE) by the speaker's own davey session, keyed by a
test-side voice server (tests/dave_peer.py). Then the voice Cogs in the bot
against the local Discord (tests/fake_discord.py): voice messages through the
gateway and its CDN, /listen and /leave offered and refused as /mod is, and
the intents the bot asks for with and without voice."""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import threading

import av
import davey
import discord
import nacl.secret
import numpy as np
import pytest
import yarl
from discord.ext import voice_recv
from discord.ext.voice_recv.reader import AudioReader

from streambot.audience.discord_bot import DiscordBot
from streambot.audience.discord_receive import DAVE_MAGIC, OPUS_SILENCE, VoiceSink, open_dave
from streambot.audience.events import Audience
from streambot.audience.moderation import Moderation
from streambot.audience.voice import LOADING, Transcriber, VoiceService, VoiceWorker, discord_voice_note
from streambot.config import ModerationSettings, VoiceSettings, VotingSettings
from streambot.viewer import Viewer
from streambot.voting import VotingEngine

from .dave_peer import VoiceServer
from .fake_discord import (
    ADMINISTRATOR,
    BOT,
    GUILD,
    GUILD_MESSAGES,
    GUILD_VOICE_STATES,
    GUILDS,
    GUILDS_INTENT,
    MANAGE_MESSAGES,
    MESSAGE_CONTENT,
    MOD_ROLE,
    OTHER,
    OTHER_OWNER,
    TOKEN,
    VOICE_CHANNEL,
    FakeDiscord,
    NotOffered,
    serving,
    user,
)
from .localserver import until
from .speech import needs_espeak, silence, speak, write_audio
from .test_discord import Running, settings

SSRC, ANN_ID = 4242, 11
MODE = "aead_xchacha20_poly1305_rtpsize"


def opus_packets(audio16k: np.ndarray) -> list[bytes]:
    """20 ms Opus frames, 48 kHz stereo, as a Discord client sends them."""
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format, enc.bit_rate = 48_000, "stereo", "s16", 64_000
    frame = av.AudioFrame.from_ndarray(audio16k.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
    frame.sample_rate = 16_000
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=48_000, frame_size=960)
    out = []
    for f in resampler.resample(frame) + resampler.resample(None):
        out += [bytes(p) for p in enc.encode(f)]
    return out + [bytes(p) for p in enc.encode(None)]


def rtp(payload: bytes, seq: int, box: nacl.secret.Aead, ssrc: int = SSRC) -> bytes:
    """An RTP packet in the rtpsize AEAD mode: the header and the extension's
    first word are authenticated, the extension body and the payload encrypted,
    a 4-byte nonce counter appended."""
    header = struct.pack(">BBHII", 0x90, 0x78, seq & 0xFFFF, (seq * 960) & 0xFFFFFFFF, ssrc)
    ext_header = b"\xbe\xde" + struct.pack(">H", 1)
    ext_body = bytes([0x10, 0x7F, 0x00, 0x00])  # one element: audio level
    nonce = struct.pack(">I", seq)
    sealed = box.encrypt(ext_body + payload, header + ext_header, nonce + bytes(20)).ciphertext
    return header + ext_header + sealed + nonce


def voice_client(key: bytes, dave_session=None, dave_version: int = 0) -> voice_recv.VoiceRecvClient:
    """A real VoiceRecvClient on a real (offline) client whose guild caches ann."""
    client = discord.Client(intents=discord.Intents.all())
    state = client._connection
    data = dict(
        GUILDS[GUILD],
        members=[
            {
                "user": user(str(ANN_ID), "ann"),
                "roles": [],
                "joined_at": "2024-01-01T00:00:00+00:00",
                "deaf": False,
                "mute": False,
                "flags": 0,
            }
        ],
    )
    state.user = discord.ClientUser(state=state, data=user("901", "streambot"))
    guild = discord.Guild(data=data, state=state)
    vc = voice_recv.VoiceRecvClient(client, guild.get_channel(int(VOICE_CHANNEL)))
    vc._connection.mode = MODE
    vc._connection.secret_key = list(key)
    vc._connection.dave_session = dave_session
    vc._connection.dave_protocol_version = dave_version
    vc._add_ssrc(ANN_ID, SSRC)  # what the extension does on the SPEAKING opcode
    return vc


class SenderClock:
    """The sender's time (20 ms a packet): the sink's idle detection follows the
    stream, not this machine's scheduling stalls."""

    def __init__(self) -> None:
        self.sent = 0

    def __call__(self) -> float:
        return self.sent * 0.02


async def send_like_a_client(reader: AudioReader, packets: list[bytes], clock: SenderClock | None = None) -> None:
    """One packet every 20 ms, as a client sends them (the extension's jitter
    buffer holds ten: a burst faster than real time would overflow it)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i, packet in enumerate(packets):
        await asyncio.sleep(max(0.0, start + i * 0.02 - loop.time()))
        reader.callback(packet)
        if clock is not None:
            clock.sent += 1


def start_reader(sink, vc) -> AudioReader:
    reader = AudioReader(sink, vc)
    sink._voice_client = vc
    reader.packet_router.start()
    reader.event_router.start()
    return reader


def test_readiness_says_so_in_one_sentence():
    ok, sentence = discord_voice_note()
    assert ok and sentence.count(".") == 1 and "DAVE" in sentence


def test_plain_frames_pass_and_undecryptable_dave_frames_are_dropped():
    class NoKey:
        def decrypt(self, user_id, media_type, packet):
            raise ValueError("DecryptionFailed(NoValidCryptorFound)")

    frame = b"\x78" + bytes(40)
    assert open_dave(None, 0, 1, frame + DAVE_MAGIC) == frame + DAVE_MAGIC  # no E2EE: untouched
    assert open_dave(NoKey(), 1, 1, OPUS_SILENCE) == OPUS_SILENCE  # plain frames pass
    assert open_dave(NoKey(), 1, 1, frame + DAVE_MAGIC) is None
    heard = []
    sink = VoiceSink(lambda *a: heard.append(a))
    for _ in range(50):
        sink.feed(ANN_ID, frame + DAVE_MAGIC, NoKey(), 1)
    sink.cleanup()
    assert sink.counts["undecryptable"] == 50 and heard == []


@pytest.fixture(scope="module")
def transcriber():
    return Transcriber.load()


def test_two_local_davey_sessions_agree_on_keys():
    bot, ann = davey.DaveSession(1, 901, int(VOICE_CHANNEL)), davey.DaveSession(1, ANN_ID, int(VOICE_CHANNEL))
    VoiceServer(int(VOICE_CHANNEL)).call(bot, ann)
    assert bot.ready and ann.ready and bot.epoch == ann.epoch == 1
    frame = b"\x78" + bytes(range(60))
    sealed = ann.encrypt_opus(frame)
    assert sealed.endswith(DAVE_MAGIC) and frame not in sealed
    assert open_dave(bot, 1, ANN_ID, sealed) == frame
    assert open_dave(bot, 1, 12, sealed) is None  # not ann's key: dropped, never decoded as Opus


@needs_espeak
@pytest.mark.parametrize("dave", [False, True], ids=["transport only", "DAVE"])
async def test_speech_through_the_receive_path_enters_the_round(tmp_path, transcriber, dave):
    said = speak("prompt: a patrol finds the soldier", tmp_path)
    packets = opus_packets(np.concatenate([said, np.zeros(4000, np.float32)]))
    bot_session = None
    if dave:  # the speaker's client encrypts every frame end to end; the bot holds the group's keys
        bot_session = davey.DaveSession(1, 901, int(VOICE_CHANNEL))
        ann_session = davey.DaveSession(1, ANN_ID, int(VOICE_CHANNEL))
        VoiceServer(int(VOICE_CHANNEL)).call(bot_session, ann_session)
        packets = [ann_session.encrypt_opus(p) for p in packets]
        assert all(p.endswith(DAVE_MAGIC) for p in packets)
    key = os.urandom(32)
    box = nacl.secret.Aead(key)
    engine = VotingEngine(VotingSettings(round_s=60, grace_s=1, pool_embeddings=False), now=0.0)
    audience = Audience(engine, Moderation(ModerationSettings()), clock=lambda: 1.0)
    service = VoiceService(VoiceWorker(transcriber.transcribe, warm_up=False), audience)
    loop = asyncio.get_running_loop()
    service.bind(loop)
    vc = voice_client(key, bot_session, 1 if dave else 0)
    done = asyncio.Event()
    utterances = []

    def on_utterance(user_id, audio, ended_at):  # the sink's thread: the cog resolves the member on the loop
        utterances.append(audio)
        member = vc.guild.get_member(user_id)
        viewer = Viewer("discord", member.name, frozenset({"viewer"}), str(member.id))
        service.hear(viewer, audio, ended_at, done=lambda heard, reply: loop.call_soon(done.set))

    clock = SenderClock()
    sink = VoiceSink(on_utterance, clock=clock)
    reader = start_reader(sink, vc)
    try:
        await send_like_a_client(
            reader, [rtp(p, seq, box) for seq, p in enumerate(packets + [OPUS_SILENCE] * 5)], clock
        )
        await asyncio.wait_for(done.wait(), 120)
    finally:
        reader.packet_router.stop()
        reader.event_router.stop()
        sink.cleanup()
        service.close()
    assert sink.counts["unattributed"] == 0 and sink.counts["undecryptable"] == 0
    if dave:
        assert sink.counts["decrypted"] >= len(packets) - 3  # every speech frame, give or take a late one
    else:
        assert sink.counts["decrypted"] == 0
    (utterance,) = utterances
    assert abs(utterance.size - said.size) < 0.6 * 16_000
    (c,) = audience.snapshot().candidates
    assert c.author == "ann" and c.platform == "discord"
    assert "patrol" in c.text and "soldier" in c.text


# -- the Cogs in the bot against the local Discord: voice messages, /listen and /leave ---------------

ann, boss = user(str(ANN_ID), "ann"), user("14", "boss")
mallory = user(OTHER_OWNER, "mallory")  # owns another server that added the bot
VOICE_INTENTS = GUILDS_INTENT | GUILD_VOICE_STATES
VOICE_MESSAGE_INTENTS = VOICE_INTENTS | GUILD_MESSAGES | MESSAGE_CONTENT


@pytest.fixture
async def fake_discord(monkeypatch):
    # the app's page enables the Message Content intent, as the README tells the streamer to
    async with serving(monkeypatch, privileged=MESSAGE_CONTENT) as server:
        yield server


@pytest.fixture
async def voice_show(transcriber):
    """Start a show with voice: `(audience, service) = voice_show(VoiceSettings(...))`."""
    services = []

    def make(voice: VoiceSettings) -> tuple[Audience, VoiceService]:
        engine = VotingEngine(VotingSettings(round_s=60, grace_s=1, pool_embeddings=False), now=0.0)
        audience = Audience(engine, Moderation(ModerationSettings()), clock=lambda: 1.0)
        service = VoiceService(VoiceWorker(transcriber.transcribe, warm_up=False), audience, settings=voice)
        service.bind(asyncio.get_running_loop())
        services.append(service)
        return audience, service

    yield make
    for service in services:
        service.close()


@needs_espeak
async def test_voice_messages_and_listen_through_the_bot(fake_discord: FakeDiscord, tmp_path, voice_show, caplog):
    fake = fake_discord
    audience, service = voice_show(VoiceSettings(discord_voice_messages=True))
    async with Running(DiscordBot(audience, settings(update_s=30), TOKEN, voice=service)):
        await until(lambda: {GUILD, "global"} <= set(fake.syncs))
        assert fake.syncs[0] == GUILD
        assert {"listen", "leave"} <= {c["name"] for c in fake.commands[GUILD]}
        assert fake.intents == VOICE_MESSAGE_INTENTS
        ws = fake.sockets[0]
        # a text message to the bot: there are no prefix commands, so nothing happens
        await fake.post(ws, ann, f"<@{BOT['id']}> help")
        # a voice message, Opus in Ogg as Discord records them, through MESSAGE_CREATE and the CDN
        clip = write_audio(speak("prompt: a patrol finds the soldier", tmp_path), tmp_path / "vm.ogg")
        sent = await fake.voice_message(ws, ann, clip.read_bytes(), 3.0)
        await until(lambda: any("Your idea is #1" in m["content"] for m in fake.messages.values()), 120)
        (c,) = audience.snapshot().candidates
        assert c.author == "ann" and "patrol" in c.text
        reply = next(m for m in fake.messages.values() if "Your idea is #1" in m["content"])
        assert reply["content"].startswith('Heard "')
        (body,) = [p for p in fake.posts if "Your idea is #1" in p["content"]]
        assert str(body["message_reference"]["message_id"]) == sent["id"]  # a reply to the voice message
        (attachment,) = sent["attachments"]
        assert fake.downloads == [yarl.URL(attachment["url"]).path]
        # a voice message that is not audio: one sentence back
        junk = await fake.voice_message(ws, ann, b"OggS" + bytes(100), 1.0)
        await until(
            lambda: any(
                "could not be decoded" in m["content"] or "not audio" in m["content"] for m in fake.messages.values()
            ),
            60,
        )
        assert str(fake.posts[-1]["message_reference"]["message_id"]) == junk["id"]
        # /listen and /leave: moderators only; a moderator outside a voice channel is told what to do.
        # Discord shows them to members who may Manage Messages: ann may, but is no moderator.
        asked = [
            await fake.command(ws, who, name, roles=roles, permissions=MANAGE_MESSAGES)
            for who, name, roles in ((ann, "listen", []), (boss, "listen", [MOD_ROLE]), (boss, "leave", [MOD_ROLE]))
        ]
        assert [await fake.reply(i) for i in asked] == [
            "Only moderators can do that.",
            "Join a voice channel first (or set [voice] discord_channels).",
            "I am not in a voice channel here.",
        ]
        assert fake.voice_requests == []
    assert len(audience.snapshot().candidates) == 1  # nothing else entered the round
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_voice_messages_and_listen_say_the_model_is_loading(fake_discord: FakeDiscord, tmp_path) -> None:
    """The speech model loads once the show is on air: until it has, a voice message is
    answered, and /listen refused, with one sentence saying so; then both work."""
    fake = fake_discord
    engine = VotingEngine(VotingSettings(round_s=60, grace_s=1, pool_embeddings=False), now=0.0)
    audience = Audience(engine, Moderation(ModerationSettings()), clock=lambda: 1.0)
    loaded = threading.Event()  # the model's load, held until the test lets it finish
    worker = VoiceWorker(lambda audio: "vote two", warm_up=False, ready=lambda: loaded.wait(60) and None)
    service = VoiceService(worker, audience, settings=VoiceSettings(discord_voice_messages=True))
    service.bind(asyncio.get_running_loop())
    try:
        async with Running(DiscordBot(audience, settings(update_s=30), TOKEN, voice=service)):
            await until(lambda: {GUILD, "global"} <= set(fake.syncs))
            ws = fake.sockets[0]
            clip = write_audio(silence(1.0), tmp_path / "vm.ogg")
            sent = await fake.voice_message(ws, ann, clip.read_bytes(), 1.0)
            await until(lambda: any(m["content"] == LOADING for m in fake.messages.values()), 60)
            assert str(fake.posts[-1]["message_reference"]["message_id"]) == sent["id"]
            asked = await fake.command(ws, boss, "listen", roles=[MOD_ROLE], permissions=MANAGE_MESSAGES)
            assert await fake.reply(asked) == LOADING
            loaded.set()
            assert await asyncio.to_thread(worker.wait_ready, 60)
            asked = await fake.command(ws, boss, "listen", roles=[MOD_ROLE], permissions=MANAGE_MESSAGES)
            assert await fake.reply(asked) == "Join a voice channel first (or set [voice] discord_channels)."
        assert fake.voice_requests == [] and not audience.snapshot().candidates
    finally:
        service.close()


async def test_listen_and_leave_are_offered_and_refused_as_mod_is(fake_discord: FakeDiscord, voice_show) -> None:
    fake = fake_discord
    audience, service = voice_show(VoiceSettings())
    async with Running(DiscordBot(audience, settings(), TOKEN, voice=service)):
        await until(lambda: {GUILD, "global"} <= set(fake.syncs))
        ws = fake.sockets[0]
        assert fake.commands["global"] == []  # nothing for every server that adds the bot
        commands = {c["name"]: c for c in fake.commands[GUILD]}
        for name in ("listen", "leave"):
            assert commands[name]["contexts"] == [0] and commands[name]["dm_permission"] is False
            assert commands[name]["default_member_permissions"] == str(MANAGE_MESSAGES)
            # Discord offers them nowhere else: not to another server's owner, not in DMs,
            # not to a moderator by role without Manage Messages.
            with pytest.raises(NotOffered):
                await fake.command(ws, mallory, name, guild=OTHER, permissions=MANAGE_MESSAGES)
            with pytest.raises(NotOffered):
                await fake.command(ws, boss, name, guild=None)
            with pytest.raises(NotOffered):
                await fake.command(ws, boss, name, roles=[MOD_ROLE])

        # Interactions Discord should never send, e.g. from a stale registration: still refused.
        listen = {"id": commands["listen"]["id"], "name": "listen", "type": 1, "guild_id": GUILD}
        leave = {"id": commands["leave"]["id"], "name": "leave", "type": 1, "guild_id": GUILD}
        from_dm = await fake.interaction(ws, boss, 2, listen, guild=None)
        leave_from_dm = await fake.interaction(ws, boss, 2, leave, guild=None)
        from_other = await fake.interaction(ws, mallory, 2, listen, guild=OTHER, permissions=ADMINISTRATOR)
        leave_from_other = await fake.interaction(ws, mallory, 2, leave, guild=OTHER, permissions=ADMINISTRATOR)
        global_other = await fake.interaction(
            ws, mallory, 2, {"id": "77", "name": "listen", "type": 1}, guild=OTHER, permissions=ADMINISTRATOR
        )
        assert [await fake.reply(i) for i in (from_dm, leave_from_dm, from_other, leave_from_other, global_other)] == [
            "streambot's commands work in the show's server.",
            "streambot's commands work in the show's server.",
            "Voice commands are not turned on in this server.",
            "Voice commands are not turned on in this server.",
            "That command is not available here.",
        ]
        assert fake.voice_requests == []
        # without voice messages the bot neither asks for nor gets members' messages
        assert fake.intents == VOICE_INTENTS


async def test_without_guilds_there_is_no_listen(fake_discord: FakeDiscord, voice_show, caplog) -> None:
    fake = fake_discord
    audience, service = voice_show(VoiceSettings())
    async with Running(DiscordBot(audience, settings(guilds=[]), TOKEN, voice=service)):
        await until(lambda: "global" in fake.syncs)
        ws = fake.sockets[0]
        assert {c["name"] for c in fake.commands["global"]} == {"prompt", "vote", "now"}
        assert "no /listen" in caplog.text
        with pytest.raises(NotOffered):
            await fake.command(ws, mallory, "listen", guild=OTHER, permissions=MANAGE_MESSAGES)
        # even a /listen registered by an older version is refused: no server is the show's
        stale = await fake.interaction(
            ws, mallory, 2, {"id": "77", "name": "listen", "type": 1}, guild=OTHER, permissions=ADMINISTRATOR
        )
        assert await fake.reply(stale) == "That command is not available here."
        assert fake.voice_requests == []


async def test_listen_joins_the_moderators_voice_channel(fake_discord: FakeDiscord, voice_show) -> None:
    fake = fake_discord
    audience, service = voice_show(VoiceSettings())
    async with Running(DiscordBot(audience, settings(), TOKEN, voice=service)):
        ws = fake.sockets[0]
        await fake.voice_state(ws, boss, VOICE_CHANNEL, roles=[MOD_ROLE])  # the moderator is in a voice channel
        listen = await fake.command(ws, boss, "listen", roles=[MOD_ROLE], permissions=MANAGE_MESSAGES)
        # the bot asks Discord to join that channel, not deafened (it has to hear); the voice server
        # Discord names cannot be reached from here, and the moderator is told so in one sentence
        assert await fake.reply(listen) == "I could not join stage (ClientConnectorError)."
        assert fake.voice_requests[0] == {
            "guild_id": GUILD,
            "channel_id": VOICE_CHANNEL,
            "self_mute": False,
            "self_deaf": False,
        }
        await until(lambda: len(fake.voice_requests) == 2)
        assert fake.voice_requests[1]["channel_id"] is None  # and it leaves again, not half joined
        leave = await fake.command(ws, boss, "leave", roles=[MOD_ROLE], permissions=MANAGE_MESSAGES)
        assert await fake.reply(leave) == "I am not in a voice channel here."
    assert audience.snapshot().candidates == ()


@pytest.mark.parametrize(
    ("voice", "intents"),
    [
        (None, GUILDS_INTENT),
        (VoiceSettings(), VOICE_INTENTS),
        (VoiceSettings(discord_voice_messages=True), VOICE_MESSAGE_INTENTS),
    ],
    ids=["no voice", "voice", "voice messages"],
)
async def test_the_bot_asks_for_the_intents_voice_needs(fake_discord: FakeDiscord, voice_show, voice, intents) -> None:
    audience, service = voice_show(voice or VoiceSettings())
    bot = DiscordBot(audience, settings(), TOKEN, voice=service if voice is not None else None)
    async with Running(bot):
        assert fake_discord.intents == intents  # the privileged Message Content only for voice messages


async def test_voice_messages_without_the_message_content_intent_say_so(monkeypatch, voice_show, caplog) -> None:
    audience, service = voice_show(VoiceSettings(discord_voice_messages=True))
    async with serving(monkeypatch) as fake:  # a new app: no privileged intent enabled on its page
        bot = DiscordBot(audience, settings(), TOKEN, voice=service)
        task = asyncio.create_task(bot.run())
        await until(lambda: bot.state == "retrying")
        assert fake.refused_intents == [VOICE_MESSAGE_INTENTS] and fake.sockets == []
        assert (
            "discord refused the Message Content intent that voice messages need: enable it on the bot's page "
            "in the developer portal, or set [voice] discord_voice_messages = false; retrying in 300 s"
        ) in caplog.text
        await bot.close()
        await asyncio.wait_for(task, 10)
