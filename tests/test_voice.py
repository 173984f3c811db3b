"""Voice commands: the spoken grammar, decoding, utterance segmentation, the
bundled tiny.en model on speech made by espeak-ng, the bounded worker, and
spoken commands entering the round through the audience hub."""

from __future__ import annotations

import asyncio
import difflib
import json
import os
import threading
import time

import numpy as np
import pytest

from streambot.audience.events import Audience
from streambot.audience.moderation import Moderation
from streambot.audience.voice import (
    LOADING,
    SAMPLE_RATE,
    Segmenter,
    SpokenCommand,
    Transcriber,
    Utterance,
    VoiceError,
    VoiceService,
    VoiceWorker,
    decode,
    parse_spoken,
    resolve_model,
)
from streambot.config import ModerationSettings, VoiceSettings, VotingSettings
from streambot.viewer import Viewer
from streambot.voting import VotingEngine

from .conftest import run_cli
from .speech import commands_table, music, needs_espeak, noise, silence, speak, write_audio

# -- the grammar -------------------------------------------------------------------------------

GRAMMAR = [
    # what Whisper wrote, command, argument
    ("Prompt: a patrol finds the soldier.", "prompt", "a patrol finds the soldier"),
    ("prompt, a dragon lands on the castle", "prompt", "a dragon lands on the castle"),
    ("Um, prompt. A storm over the sea!", "prompt", "A storm over the sea"),
    ("Prompts a cat on a roof", "prompt", "a cat on a roof"),  # close enough to the wake word
    ("Prompt.", None, None),  # the wake word and no idea
    ("a patrol finds the soldier", None, None),  # no wake word: ignored, not submitted
    ("I prompt you to vote", None, None),  # the wake word must come first
    ("Vote 2.", "vote", 2),
    ("vote two", "vote", 2),
    ("Vote to.", "vote", 2),  # homophones
    ("vote too", "vote", 2),
    ("Vote for.", "vote", 4),
    ("vote for two", "vote", 2),  # "for" as a word
    ("Vote for 7", "vote", 7),
    ("vote number five", "vote", 5),
    ("Number three.", "vote", 3),
    ("number won", "vote", 1),
    ("No. 3", "vote", 3),
    ("no one", None, None),
    ("Vote twenty-one.", "vote", 21),
    ("vote twenty one please", "vote", 21),
    ("vote #12", "vote", 12),
    ("Vote for Sambin.", None, None),
    ("vote", None, None),
    ("vote 0", None, None),
    ("Mode 2.", None, None),
    ("Hello everyone, how are you?", None, None),
    ("", None, None),
]


@pytest.mark.parametrize(("text", "command", "argument"), GRAMMAR)
def test_spoken_grammar(text, command, argument):
    got = parse_spoken(text)
    assert (got.command, got.argument) == (command, argument)
    assert got.text == " ".join(text.split())


def test_a_configured_wake_phrase():
    assert parse_spoken("Hey world, a red moon rises", wake="hey world").as_dict() == {
        "text": "Hey world, a red moon rises",
        "command": "prompt",
        "argument": "a red moon rises",
    }
    assert parse_spoken("prompt: a red moon", wake="hey world").command is None


def test_model_resolution():
    assert resolve_model("").endswith("model")  # the bundled folder
    with pytest.raises(VoiceError, match="not a folder with a faster-whisper model.bin"):
        resolve_model("/nowhere/model")
    assert resolve_model("small.en") == "small.en"


def test_decode_refuses_what_is_not_audio(tmp_path):
    (tmp_path / "notes.txt").write_text("not a recording")
    with pytest.raises(VoiceError, match=r"notes\.txt is not audio that can be decoded"):
        decode(tmp_path / "notes.txt")
    with pytest.raises(VoiceError, match="no such file"):
        decode(tmp_path / "missing.ogg")
    write_audio(silence(3), tmp_path / "long.wav", codec="pcm_s16le", rate=16_000)
    with pytest.raises(VoiceError, match="is 3 s long; the limit is 2 s"):
        decode(tmp_path / "long.wav", max_s=2)


@pytest.mark.parametrize(("name", "codec", "rate"), [("a.wav", "pcm_s16le", 44_100), ("a.ogg", "libopus", 48_000)])
def test_decode_matches_faster_whisper_decode_audio(tmp_path, name, codec, rate):
    """The decoder here (PyAV, so faster-whisper is not imported to read a clip) against
    faster-whisper's own `decode_audio`: the same samples, to its 16-bit rounding."""
    from faster_whisper import decode_audio

    path = write_audio(np.concatenate([music(2.5), noise(1.0, 0.2)]) * 0.5, tmp_path / name, codec=codec, rate=rate)
    ours, theirs = decode(path), decode_audio(str(path), sampling_rate=SAMPLE_RATE)
    assert ours.dtype == np.float32 and ours.size == theirs.size, (ours.size, theirs.size)
    assert np.max(np.abs(ours - theirs)) < 2e-4 and np.max(np.abs(ours)) > 0.1


# -- segmentation (Silero VAD) ---------------------------------------------------------------------


def feed_in_frames(seg: Segmenter, audio: np.ndarray, frame: int = 320) -> list[np.ndarray]:
    """As a voice channel delivers it: 20 ms at a time."""
    out = []
    for i in range(0, audio.size, frame):
        out += seg.feed(audio[i : i + frame])
    return out


@needs_espeak
def test_segmenter_cuts_two_utterances_and_ignores_noise(tmp_path):
    a = speak("prompt: a patrol finds the soldier", tmp_path)
    b = speak("vote two", tmp_path)
    stream = np.concatenate([silence(1), a, silence(1.2), noise(1.0, 0.003), b, silence(1)])
    seg = Segmenter(silence_ms=500)
    utterances = feed_in_frames(seg, stream) + seg.end()
    assert len(utterances) == 2
    for got, said in zip(utterances, (a, b)):
        assert abs(got.size - said.size) < 0.6 * SAMPLE_RATE  # the speech, give or take its padding
    # the end of an utterance is found within silence_ms (plus one check) of its last word
    seg = Segmenter(silence_ms=500, check_s=0.25)
    fed = 0
    for i in range(0, a.size + SAMPLE_RATE, 320):
        chunk = np.concatenate([a, silence(1)])[i : i + 320]
        fed += chunk.size
        if seg.feed(chunk):
            break
    assert (fed - a.size) / SAMPLE_RATE < 0.5 + 0.25 + 0.05


def test_segmenter_hears_nothing_in_silence_and_noise():
    seg = Segmenter()
    assert feed_in_frames(seg, np.concatenate([silence(5), noise(5, 0.02)])) + seg.end() == []
    assert seg.pending_s < 1.0  # nothing piles up while nobody speaks


# -- the bundled model on synthetic speech ----------------------------------------------------------


@pytest.fixture(scope="module")
def transcriber():
    return Transcriber.load()  # the bundled tiny.en, CPU int8: no network


def word_error(got: str, want: str) -> float:
    g = parse_spoken(f"prompt {got}").argument or ""
    gw = [w.strip(".,!?").lower() for w in str(g).split()]
    ww = want.lower().split()
    m = difflib.SequenceMatcher(None, gw, ww)
    return 1 - sum(b.size for b in m.get_matching_blocks()) / max(len(ww), 1)


@needs_espeak
@pytest.mark.parametrize(("said", "command", "argument"), commands_table())
def test_the_bundled_model_hears_spoken_commands(transcriber, tmp_path, said, command, argument):
    text = transcriber.transcribe(speak(said, tmp_path))
    got = parse_spoken(text)
    assert got.command == command, text
    if command == "vote":
        assert got.argument == argument, text
    elif command == "prompt":
        # tiny.en on espeak-ng's voice drops the odd plural "s": at most one word in four may differ
        assert word_error(str(got.argument), argument) <= 0.25, text


@needs_espeak
def test_cli_transcribe_prints_the_command_as_json(tmp_path, cli_env):
    said = speak("vote twenty one", tmp_path)
    for name, codec in (("clip.ogg", "libopus"), ("clip.webm", "libopus")):
        write_audio(said, tmp_path / name, codec=codec)
        r = run_cli(["transcribe", str(tmp_path / name)], cli_env)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert (out["command"], out["argument"]) == ("vote", 21) and "21" in out["text"]
    (tmp_path / "bad.ogg").write_bytes(b"OggS not really")
    for path in (tmp_path / "bad.ogg", tmp_path / "missing.wav"):
        r = run_cli(["transcribe", str(path)], cli_env)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


# -- the worker ---------------------------------------------------------------------------------------


def collect(worker_or_service, n: int, timeout: float = 240.0):
    """A `done` callback and a way to wait for n results."""
    results, cond = [], threading.Condition()

    def done(heard, *_):
        with cond:
            results.append(heard)
            cond.notify_all()

    def wait():
        with cond:
            assert cond.wait_for(lambda: len(results) >= n, timeout), f"{len(results)} of {n}"
        return results

    return done, wait


@needs_espeak
def test_noise_silence_music_and_a_monologue_give_no_command(transcriber, tmp_path):
    text = (
        "The valley was quiet in the morning. Farmers walked along the river and talked about "
        "the weather, the harvest and the market in the town beyond the hills. "
    )
    monologue = speak(text * 36, tmp_path, speed=175)
    assert monologue.size > 4.5 * 60 * SAMPLE_RATE  # about five minutes
    worker = VoiceWorker(transcriber.transcribe, capacity=3, warm_up=False)
    utterances = []
    for audio in (silence(10), noise(10, 0.05), music(12), monologue):
        seg = Segmenter(max_s=15)
        utterances += feed_in_frames(seg, audio, 1600) + seg.end()
    assert len(utterances) >= 20  # the monologue is cut at max_utterance_s
    done, wait = collect(worker, len(utterances))
    for u in utterances:
        worker.submit(Utterance(Viewer("discord", "talker"), u, 0.0, done))
    results = wait()
    worker.close()
    assert worker.counts["dropped"] >= len(utterances) - 4  # a burst: the queue keeps the newest
    assert worker.counts["failed"] == 0
    heard = [r for r in results if r.command is not None]
    assert heard and all(r.command.command is None for r in heard), [r.command for r in heard]


@needs_espeak
def test_a_burst_of_50_utterances_keeps_the_newest(transcriber, tmp_path):
    clips = [speak(said, tmp_path) for said in ("vote two", "number four")]  # from the labelled set
    gate = threading.Event()

    def slow_start(audio):  # the first clip is under way while the burst arrives
        gate.wait(60)
        return transcriber.transcribe(audio)

    worker = VoiceWorker(slow_start, capacity=8, warm_up=False)
    done, wait = collect(worker, 50)
    for i in range(50):
        worker.submit(Utterance(Viewer("discord", f"viewer{i}"), clips[i % 2], 0.0, done))
    gate.set()
    results = wait()
    worker.close()
    transcribed = [r for r in results if r.command is not None]
    dropped = [r for r in results if r.error == "dropped"]
    # at most the clip already taken plus the queue's 8 are transcribed; the rest are dropped, oldest first
    assert len(transcribed) <= 9 and len(dropped) == 50 - len(transcribed) == worker.counts["dropped"]
    names = {r.utterance.viewer.name for r in transcribed}
    assert {f"viewer{i}" for i in range(42, 50)} <= names
    assert all(
        r.command.command == "vote" and r.command.argument == (2 if int(r.utterance.viewer.name[6:]) % 2 == 0 else 4)
        for r in transcribed
    ), [r.command for r in transcribed]


# -- the model loading in a process of its own ---------------------------------------------------------


def test_the_worker_refuses_while_the_model_loads_then_hears():
    """Until `ready` returns, every clip is answered at once with "loading" (none is queued
    to wait for a model that may take long); then clips are transcribed."""
    loaded = threading.Event()
    said: list[int] = []
    worker = VoiceWorker(
        lambda audio: said.append(audio.size) or "vote two", warm_up=False, ready=lambda: loaded.wait(60) and None
    )
    done, wait = collect(worker, 2)
    worker.submit(Utterance(Viewer("console", "ann"), silence(1), 0.0, done))
    assert worker.state == "loading" and not worker.wait_ready(0.05)
    loaded.set()
    assert worker.wait_ready(60) and worker.state == "ready"
    worker.submit(Utterance(Viewer("console", "ann"), silence(2), 0.0, done))
    first, second = wait()
    worker.close()
    assert first.command is None and first.error == "loading"
    assert second.command == SpokenCommand("vote two", "vote", 2)
    assert said == [2 * SAMPLE_RATE], "the clip refused while loading is never transcribed later"


@needs_espeak
def test_the_speech_model_process_hears_what_the_model_here_hears(transcriber, tmp_path):
    """The show's model is in a child process; a clip through it gives what the model in this
    process gives (the same tiny.en, the same options), and while it loads a clip is refused."""
    engine = VotingEngine(VotingSettings(round_s=60, grace_s=1, pool_embeddings=False), now=0.0)
    audience = Audience(engine, Moderation(ModerationSettings()), clock=lambda: 1.0)
    service = VoiceService.from_settings(VoiceSettings(), audience)
    try:
        assert service.state == "loading"  # returns at once: a process start alone takes longer than this
        clip = speak("vote number four", tmp_path)
        done, wait = collect(service.worker, 1)
        service.worker.submit(Utterance(Viewer("console", "ann"), clip, 0.0, done))
        (early,) = wait()
        assert early.error == "loading" and LOADING.startswith("The speech model is still loading")
        assert service.wait_ready(300) and service.state == "ready"
        assert service.model is not None and service.model._proc.pid != os.getpid()
        for said in ("vote number four", "prompt: a patrol finds the soldier"):
            clip = speak(said, tmp_path)
            assert service.model.transcribe(clip) == transcriber.transcribe(clip)
    finally:
        service.close()
    assert not service.model._proc.is_alive()
    service.close()  # twice is safe


def test_a_show_closed_while_the_model_loads_ends_it_at_once_and_quietly(caplog):
    with caplog.at_level("INFO", logger="streambot.audience.voice"):
        service = VoiceService.from_settings(VoiceSettings())
        assert service.state == "loading" and service.model is not None
        started = time.monotonic()
        service.close()
    assert time.monotonic() - started < 1.5, "a loading model is terminated, not waited for"
    assert not service.model._proc.is_alive() and not service.worker._thread.is_alive()
    assert service.state == "off" and not caplog.records, caplog.text  # the show's end is no failure


def test_a_model_that_cannot_load_turns_voice_off_with_one_line(tmp_path, caplog):
    folder = tmp_path / "broken-model"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"not a ctranslate2 model")  # found, but it does not load
    with caplog.at_level("INFO", logger="streambot.audience.voice"):
        service = VoiceService.from_settings(VoiceSettings(model=str(folder)))
        try:
            assert not service.wait_ready(300) and service.state == "off"
            done, wait = collect(service.worker, 1)
            service.worker.submit(Utterance(Viewer("console", "ann"), silence(1), 0.0, done))
            assert wait()[0].error == "off"
        finally:
            service.close()
    lines = [r for r in caplog.records if r.name == "streambot.audience.voice"]
    assert len(lines) == 1 and lines[0].levelname == "ERROR", [r.getMessage() for r in lines]
    assert lines[0].getMessage().startswith("voice commands are off: The speech model") and "\n" not in lines[0].msg
    with pytest.raises(VoiceError, match="not a folder with a faster-whisper model.bin"):
        VoiceService.from_settings(VoiceSettings(model=str(tmp_path / "nowhere")))  # said at once, no process


# -- into the round -------------------------------------------------------------------------------------


@needs_espeak
async def test_spoken_commands_enter_the_round_like_typed_ones(transcriber, tmp_path):
    engine = VotingEngine(VotingSettings(round_s=60, grace_s=1, pool_embeddings=False), now=0.0)
    audience = Audience(engine, Moderation(ModerationSettings(block_words=["balloon"])), clock=lambda: 1.0)
    service = VoiceService(VoiceWorker(transcriber.transcribe, warm_up=False), audience)
    service.bind(asyncio.get_running_loop())
    replies: list = []
    finished = asyncio.Event()

    def done(heard, reply):
        replies.append((heard, reply))
        if len(replies) == 3:
            finished.set()

    ann = Viewer("discord", "ann", frozenset({"viewer"}), "11")
    bob = Viewer("console", "console:bob", frozenset({"broadcaster"}))
    service.hear(ann, speak("prompt: a patrol finds the soldier", tmp_path), done=done)
    await asyncio.wait_for(_until(lambda: len(replies) == 1), 120)  # the prompt first, then the vote for it
    service.hear(bob, speak("vote number one", tmp_path), done=done)
    service.hear(bob, speak("prompt: a red balloon floats away", tmp_path), done=done)
    await asyncio.wait_for(finished.wait(), 240)
    service.close()
    (c,) = audience.snapshot().candidates
    assert word_error(c.text, "a patrol finds the soldier") <= 0.25 and c.author == "ann"
    assert replies[0][1].kind == "new" and replies[0][1].number == c.number
    # moderation is the typed prompt's: the blocked word never reaches the round
    assert [r.kind for _, r in replies[1:]] in (["voted", "blocked"], ["unknown", "blocked"])
    assert audience.counts["blocked"] == 1


async def _until(pred):
    while not pred():
        await asyncio.sleep(0.05)


def test_spoken_command_as_json():
    assert SpokenCommand("vote to", "vote", 2).as_dict() == {"text": "vote to", "command": "vote", "argument": 2}


def test_check_says_whether_voice_is_ready(tmp_path, cli_env):
    r = run_cli(["check", "--output", str(tmp_path / "out.flv")], cli_env)
    assert r.returncode == 0, r.stderr
    assert "ok: voice commands are ready: the speech model (the bundled tiny.en) is on this machine." in r.stdout
    (tmp_path / "my.toml").write_text('[voice]\nmodel = "/nowhere/whisper"\n')
    r = run_cli(["check", "--output", str(tmp_path / "out.flv"), "--config", str(tmp_path / "my.toml")], cli_env)
    assert r.returncode == 1
    assert (
        "problem: [voice] model '/nowhere/whisper' is not a folder with a faster-whisper model.bin in it." in r.stderr
    )
