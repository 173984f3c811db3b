"""Discord voice receive without Discord: speech Opus-encoded by PyAV's libopus,
wrapped as RTP with transport encryption (aead_xchacha20_poly1305_rtpsize, the
mode discord.py 2.7 negotiates), fed through discord-ext-voice-recv's real
reader and router into `VoiceSink`, transcribed by the bundled model, and into
the round attributed to the speaker; once as transport encryption only, once
end-to-end encrypted (DAVE) by the speaker's own davey session, keyed by a
test-side voice server (tests/dave_peer.py). Then the Cog in the bot against
the local Discord fake: voice messages from its CDN, /listen and /leave."""
from __future__ import annotations

import asyncio
import os
import struct

import av
import davey
import discord
import nacl.secret
import numpy as np
import pytest
import yarl
from aiohttp import web
from discord.ext import voice_recv
from discord.ext.voice_recv.reader import AudioReader
from discord.gateway import DiscordWebSocket
from discord.http import Route

from streambot.audience.discord_bot import DiscordBot
from streambot.audience.discord_receive import DAVE_MAGIC, OPUS_SILENCE, VoiceSink, open_dave
from streambot.audience.events import Audience, Viewer
from streambot.audience.moderation import Moderation
from streambot.audience.voice import Transcriber, VoiceService, VoiceWorker, discord_voice_note
from streambot.config import DiscordSettings, ModerationSettings, VoiceSettings, VotingSettings
from streambot.voting import VotingEngine

from .dave_peer import VoiceServer
from .localserver import until
from .speech import needs_espeak, speak, write_audio
from .test_discord import CHANNEL, GUILD, GUILD_DATA, MOD_ROLE, TOKEN, FakeDiscord, iso, user

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
    data = dict(GUILD_DATA, members=[{"user": user(str(ANN_ID), "ann"), "roles": [], "joined_at": "2024-01-01T00:00:00+00:00",
                                       "deaf": False, "mute": False, "flags": 0}])
    state.user = discord.ClientUser(state=state, data=user("901", "streambot"))
    guild = discord.Guild(data=data, state=state)
    channel = discord.VoiceChannel(state=state, guild=guild, data={
        "id": "250", "type": 2, "name": "stage", "position": 1, "permission_overwrites": [], "nsfw": False,
        "parent_id": None, "bitrate": 64000, "user_limit": 0, "rtc_region": None})
    vc = voice_recv.VoiceRecvClient(client, channel)
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
    bot, ann = davey.DaveSession(1, 901, 250), davey.DaveSession(1, ANN_ID, 250)
    VoiceServer(250).call(bot, ann)
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
        bot_session, ann_session = davey.DaveSession(1, 901, 250), davey.DaveSession(1, ANN_ID, 250)
        VoiceServer(250).call(bot_session, ann_session)
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
        await send_like_a_client(reader, [rtp(p, seq, box) for seq, p in enumerate(packets + [OPUS_SILENCE] * 5)],
                                 clock)
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


# -- the Cog against the local Discord fake: voice messages, /listen and /leave ---------------------

VOICE_MESSAGE_FLAG = 1 << 13


class FakeDiscordWithCdn(FakeDiscord):
    """The fake, plus a CDN route serving attachments."""

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, bytes] = {}
        self.app.router.add_get("/cdn/{name}", self.cdn)

    async def cdn(self, request: web.Request) -> web.Response:
        return web.Response(body=self.files[request.match_info["name"]], content_type="audio/ogg")

    async def voice_message(self, ws, who: dict, name: str, data: bytes, seconds: float) -> None:
        self.files[name] = data
        url = f"http://127.0.0.1:{self.port}/cdn/{name}"
        mid = str(next(self.ids))
        await self.dispatch(ws, "MESSAGE_CREATE", {
            "id": mid, "channel_id": CHANNEL, "guild_id": GUILD, "author": who, "content": "", "timestamp": iso(),
            "edited_timestamp": None, "tts": False, "mention_everyone": False, "mentions": [], "mention_roles": [],
            "embeds": [], "pinned": False, "type": 0, "flags": VOICE_MESSAGE_FLAG, "components": [],
            "member": {"roles": [], "joined_at": "2024-01-01T00:00:00+00:00", "deaf": False, "mute": False,
                       "flags": 0},
            "attachments": [{"id": str(next(self.ids)), "filename": "voice-message.ogg", "size": len(data),
                             "url": url, "proxy_url": url, "content_type": "audio/ogg", "duration_secs": seconds,
                             "waveform": "AAAAAAAAAAAA"}],
        })


@pytest.fixture
async def fake_discord_cdn(monkeypatch):
    server = FakeDiscordWithCdn()
    await server.start()
    monkeypatch.setattr(Route, "BASE", f"http://127.0.0.1:{server.port}/api/v10")
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(f"ws://127.0.0.1:{server.port}/gw"))
    yield server
    await server.stop()


@needs_espeak
async def test_voice_messages_and_listen_through_the_bot(fake_discord_cdn, tmp_path, transcriber):
    fake = fake_discord_cdn
    engine = VotingEngine(VotingSettings(round_s=60, grace_s=1, pool_embeddings=False), now=0.0)
    audience = Audience(engine, Moderation(ModerationSettings()), clock=lambda: 1.0)
    voice_settings = VoiceSettings(discord_voice_messages=True)
    service = VoiceService(VoiceWorker(transcriber.transcribe, warm_up=False), audience, settings=voice_settings)
    service.bind(asyncio.get_running_loop())
    bot = DiscordBot(audience, DiscordSettings(enabled=True, channels=[int(CHANNEL)], guilds=[int(GUILD)],
                                               update_s=30), TOKEN, voice=service)
    task = asyncio.create_task(bot.run())
    ann, boss = user("11", "ann"), user("14", "boss")
    try:
        await fake.wait_sockets(1)
        await until(lambda: bot.state == "live")
        _, commands = fake.synced[0]
        assert {"listen", "leave"} <= {c["name"] for c in commands}
        ws = fake.sockets[0]
        # a voice message, Opus in Ogg as Discord records them
        clip = write_audio(speak("prompt: a patrol finds the soldier", tmp_path), tmp_path / "vm.ogg")
        await fake.voice_message(ws, ann, "vm.ogg", clip.read_bytes(), 3.0)
        await until(lambda: any("Your idea is #1" in m["content"] for m in fake.messages.values()), 120)
        (c,) = audience.snapshot().candidates
        assert c.author == "ann" and "patrol" in c.text
        reply = next(m for m in fake.messages.values() if "Your idea is #1" in m["content"])
        assert reply["content"].startswith('Heard "')
        # a voice message that is not audio: one sentence back
        await fake.voice_message(ws, ann, "junk.ogg", b"OggS" + bytes(100), 1.0)
        await until(lambda: any("could not be decoded" in m["content"] or "not audio" in m["content"]
                                for m in fake.messages.values()), 60)
        # /listen and /leave: moderators only; a moderator outside a voice channel is told what to do
        for who, name, roles in ((ann, "listen", []), (boss, "listen", [MOD_ROLE]), (boss, "leave", [MOD_ROLE])):
            # guild commands: Discord names the guild in the command data
            await fake.interaction(ws, who, roles, 2, {"id": "1", "name": name, "type": 1, "guild_id": GUILD})
        await until(lambda: len(fake.responses) == 3)
        assert [r["data"]["content"] for r in fake.responses] == [
            "Only moderators can do that.", "Join a voice channel first (or set [voice] discord_channels).",
            "I am not in a voice channel here."]
    finally:
        await bot.close()
        await asyncio.wait_for(task, 10)
        service.close()
