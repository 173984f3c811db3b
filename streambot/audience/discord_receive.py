"""Discord voice receive with DAVE: per-speaker Opus in, utterances out.

discord-ext-voice-recv (pinned: 0.5.2a179) receives the voice channel's RTP,
removes the transport encryption and maps each SSRC to its speaker, but it
hands what is left to the Opus decoder as if it were Opus. Since Discord made
end-to-end encryption (DAVE) mandatory, what is left is DAVE ciphertext, and
the decoder answers "corrupted stream". This module is the whole fix, and it
patches nothing: `VoiceSink` asks the extension for the Opus payload instead
of PCM (`wants_opus`), removes the DAVE layer with the voice connection's own
`davey` session (the one discord.py 2.7 keeps to encrypt what it sends), and
decodes Opus itself with PyAV's decoder.

A DAVE frame ends in the magic marker 0xFAFA; frames without it are plain
Opus (the three-byte silence frame, and audio sent while a call is passing
from or to end-to-end encryption), and pass through as they are.

Each speaker has a `Segmenter` (Silero VAD). An utterance ends on silence,
when the speaker's client sends its silence frames (Discord clients send
five when a speaker stops), or when their packets stop coming for `idle_s`
(in case those frames were lost: long enough not to cut a speaker on network jitter).
The sink runs on the extension's router thread and a small endpoint thread;
finished utterances go to `on_utterance(user_id, audio, ended_at)`.

Two readings go past the libraries' documented surface, each because no public
one exists: the DAVE session on discord.py's voice connection
(`VoiceClient._connection`, which discord.py uses to encrypt what it sends and
exposes only its privacy code), and the extension's SSRC-to-speaker map for a
speaker not in the member cache (`VoiceRecvClient._get_id_from_ssrc`, which
the extension itself calls for the same purpose). Both are pinned versions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Protocol

import av
import discord
import numpy as np
from discord.ext import voice_recv

from .voice import SAMPLE_RATE, Segmenter

if TYPE_CHECKING:
    import davey

log = logging.getLogger(__name__)

OPUS_SILENCE = b"\xf8\xff\xfe"
DAVE_MAGIC = b"\xfa\xfa"
OPUS_RATE = 48_000

OnUtterance = Callable[[int, np.ndarray, float], object]

# discord-ext-voice-recv ships no types (no py.typed): what this module and
# `discord_voice` use of it, typed as its source has it.
if TYPE_CHECKING:

    class VoiceRecvClient(discord.VoiceClient):
        def listen(self, sink: VoiceSink) -> None: ...
        def is_listening(self) -> bool: ...
        def _get_id_from_ssrc(self, ssrc: int) -> int | None: ...

    class _Packet(Protocol):
        ssrc: int

    class VoiceData(Protocol):
        packet: _Packet

        @property
        def opus(self) -> bytes | None: ...

    class AudioSink:
        def __init__(self) -> None: ...
        @property
        def voice_client(self) -> VoiceRecvClient | None: ...

else:
    VoiceRecvClient = voice_recv.VoiceRecvClient
    VoiceData = voice_recv.VoiceData
    AudioSink = voice_recv.AudioSink


def dave_state(voice_client: discord.VoiceClient | None) -> tuple[davey.DaveSession | None, int]:
    """The DAVE session discord.py keeps on the voice connection, and its protocol version (0: none)."""
    connection = getattr(voice_client, "_connection", None)
    session: davey.DaveSession | None = getattr(connection, "dave_session", None)
    return session, int(getattr(connection, "dave_protocol_version", 0) or 0)


def open_dave(session: davey.DaveSession | None, protocol_version: int, user_id: int, payload: bytes) -> bytes | None:
    """The Opus frame inside a received payload; None when a DAVE frame cannot be decrypted."""
    if session is None or protocol_version == 0 or not payload.endswith(DAVE_MAGIC):
        return payload  # no end-to-end encryption, or a plain frame
    import davey

    try:
        return session.decrypt(user_id, davey.MediaType.audio, payload)
    except Exception:  # no key for this sender yet (a transition under way): drop the frame
        return None


@dataclass
class _Speaker:
    segmenter: Segmenter
    decoder: av.AudioCodecContext
    resampler: av.AudioResampler
    last_packet: float = 0.0
    last_speech: float = 0.0
    silent_frames: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class VoiceSink(AudioSink):
    """Per-speaker DAVE-decrypted, Opus-decoded, VAD-segmented audio."""

    def __init__(
        self,
        on_utterance: OnUtterance,
        *,
        silence_ms: int = 500,
        max_s: float = 15.0,
        threshold: float = 0.5,
        idle_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.on_utterance = on_utterance
        self.new_segmenter = partial(Segmenter, silence_ms=silence_ms, max_s=max_s, threshold=threshold)
        self.idle_s = idle_s
        self.clock = clock
        self.counts = {"packets": 0, "decrypted": 0, "undecryptable": 0, "unattributed": 0, "utterances": 0}
        self._speakers: dict[int, _Speaker] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._endpointer = threading.Thread(target=self._watch_idle, name="voice endpointer", daemon=True)
        self._endpointer.start()

    def wants_opus(self) -> bool:
        return True  # the payload, so the DAVE layer can come off before decoding

    def write(self, user: discord.Member | discord.User | None, data: VoiceData) -> None:
        payload = data.opus
        if payload is None:  # a packet the jitter buffer gave up on
            return
        self.counts["packets"] += 1
        user_id = user.id if user is not None else None
        if user_id is None and self.voice_client is not None:  # a speaker not in the member cache
            user_id = self.voice_client._get_id_from_ssrc(data.packet.ssrc)
        if user_id is None:  # the SSRC is not mapped to a speaker yet: no key, no name
            self.counts["unattributed"] += 1
            return
        self.feed(user_id, bytes(payload), *dave_state(self.voice_client))

    def feed(
        self, user_id: int, payload: bytes, session: davey.DaveSession | None = None, protocol_version: int = 0
    ) -> None:
        """One received payload from one speaker (the extension's thread, or a test)."""
        frame = open_dave(session, protocol_version, user_id, payload)
        if frame is None:
            self.counts["undecryptable"] += 1
            return
        if frame is not payload:
            self.counts["decrypted"] += 1
        speaker = self._speaker(user_id)
        now = self.clock()
        with speaker.lock:
            speaker.last_packet = now
            if frame == OPUS_SILENCE:
                speaker.silent_frames += 1
                if speaker.silent_frames == 3:  # the client's end-of-speech frames
                    self._emit(user_id, speaker.segmenter.end(), speaker.last_speech)
                return
            speaker.silent_frames = 0
            speaker.last_speech = now
            pcm = self._decode(speaker, frame)
            if pcm.size:
                self._emit(user_id, speaker.segmenter.feed(pcm), now)

    def _speaker(self, user_id: int) -> _Speaker:
        with self._lock:
            speaker = self._speakers.get(user_id)
            if speaker is None:
                decoder = av.CodecContext.create("opus", "r")
                decoder.sample_rate = OPUS_RATE
                decoder.layout = "stereo"
                resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
                speaker = self._speakers[user_id] = _Speaker(self.new_segmenter(), decoder, resampler)
            return speaker

    @staticmethod
    def _decode(speaker: _Speaker, frame: bytes) -> np.ndarray:
        try:
            frames = speaker.decoder.decode(av.Packet(frame))
        except av.error.FFmpegError:  # one corrupt frame is a 20 ms gap, not the end of the speaker
            return np.zeros(0, np.float32)
        out = [f.to_ndarray().reshape(-1) for fr in frames for f in speaker.resampler.resample(fr)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _emit(self, user_id: int, utterances: list[np.ndarray], ended_at: float) -> None:
        for audio in utterances:
            self.counts["utterances"] += 1
            try:
                self.on_utterance(user_id, audio, ended_at)
            except Exception:
                log.exception("voice: handing on an utterance failed")

    def _watch_idle(self) -> None:
        """A speaker whose packets stopped has stopped speaking."""
        while not self._stop.wait(0.1):
            self.flush_idle(self.clock())

    def flush_idle(self, now: float) -> None:
        with self._lock:
            speakers = list(self._speakers.items())
        for user_id, speaker in speakers:
            with speaker.lock:
                if speaker.last_packet and now - speaker.last_packet >= self.idle_s and speaker.segmenter.pending_s:
                    self._emit(user_id, speaker.segmenter.end(), speaker.last_speech)

    def cleanup(self) -> None:
        """The extension calls this when listening stops. Safe to call twice."""
        self._stop.set()
        self.flush_idle(float("inf"))
