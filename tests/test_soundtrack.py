"""The soundtrack: each world's own music, the story's mood without clicks, the
streamer's playlist, a feed that never keeps the clock waiting, and failures
that leave the weather playing. Loudness against FFmpeg is in test_loudness.py."""

from __future__ import annotations

import math
import threading
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from streambot.broadcast.audio import Soundtrack
from streambot.broadcast.audio_feed import AudioFeed
from streambot.broadcast.loudness import LoudnessMeter
from streambot.broadcast.music import STYLES, Band, mood_of, style_for
from streambot.broadcast.playlist import Playlist, check_folder
from streambot.broadcast.synth import CHUNK, INSTRUMENTS, hz
from streambot.config import ConfigError, MusicSettings, list_presets, load_world_file, music_of
from streambot.world.base import Ambience

from .conftest import ROOT, run_cli

RATE = 48_000
STILL = Ambience(wind=0.0, rain=0.0)


def render(source, seconds: float, block: int = 4800, **kw) -> np.ndarray:
    return np.concatenate([source.render(block, **kw) for _ in range(round(seconds * RATE / block))], axis=1)


def loudness(x: np.ndarray) -> float:
    m = LoudnessMeter()
    m.add(x)
    return m.integrated


def dominant_hz(x: np.ndarray) -> float:
    mono = x.mean(axis=0)
    spec = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return float(np.fft.rfftfreq(len(mono), 1 / RATE)[spec.argmax()])


# -- every world its own music ----------------------------------------------------------------------


def test_every_preset_names_the_music_that_fits_it():
    styles = {spec.name: music_of(spec).style for spec in list_presets()}
    assert styles == {
        "meadow": "pad",
        "cartoon": "bouncy",
        "war1944": "march",
        "cyberpunk": "synthwave",
        "deepspace": "drone",
        "arena": "drive",
        "fantasy": "modal",
    }
    tempos = {name: style_for(music_of(spec)).tempo for spec in list_presets() for name in [spec.name]}
    assert tempos["cartoon"] > tempos["meadow"] and tempos["arena"] > tempos["deepspace"]
    roles = {name: {p.role for p in STYLES[s].parts} for name, s in styles.items()}
    assert {"drums", "chords", "melody"} <= roles["war1944"]  # drums and brass-like pads
    assert {"arp", "bass"} <= roles["cyberpunk"]
    assert "drone" in roles["deepspace"] and "drums" in roles["arena"] and "melody" in roles["cartoon"]
    assert STYLES["modal"].mode == "lydian"


@pytest.mark.parametrize("style", sorted(STYLES))
def test_each_style_plays_music_that_changes_with_its_chords(style):
    band = Band(STYLES[style], seed=1)
    x = render(band, 24.0)
    assert np.isfinite(x).all()
    assert -25 < loudness(x) < -9, "every style is calibrated near the loudness target"
    bar = round(STYLES[style].beats * 60 / STYLES[style].tempo * RATE)
    chords = STYLES[style].bars_per_chord * bar
    # different chords sound different: the spectra of the first two chord spans differ
    a, b = (np.abs(np.fft.rfft(x[0, i * chords : (i + 1) * chords][:bar])) for i in (1, 2))
    assert np.corrcoef(a, b)[0, 1] < 0.98


def test_a_world_file_tunes_its_music_and_bad_values_are_one_sentence(tmp_path):
    world = tmp_path / "lagoon.toml"
    base = 'name = "lagoon"\ntitle = "Lagoon"\ndescription = "A lagoon."\nstyle = "tropical"\nbeats = ["waves"]\n'
    world.write_text(
        base + '[music]\nstyle = "synthwave"\ntempo = 120\nkey = "C#"\nmode = "dorian"\n'
        'instruments = ["bass", "arp"]\nlead = "flute"\nenergy = 0.4\n'
    )
    style = style_for(music_of(load_world_file(world)))
    assert (style.name, style.tempo, style.key, style.mode, style.energy) == ("synthwave", 120, "C#", "dorian", 0.4)
    assert {p.role for p in style.parts} == {"bass", "arp"}
    world.write_text(base)
    assert music_of(load_world_file(world)).style == "pad"  # a world without [music] gets the calm pad
    for table, words in (
        ('style = "polka"', "'music.style'"),
        ('key = "H"', "note name like C"),
        ("tempo = 900", "'music.tempo'"),
        ("drums = true", "not a known setting"),
    ):
        world.write_text(base + f"[music]\n{table}\n")
        with pytest.raises(ConfigError) as e:
            load_world_file(world)
        assert str(e.value).startswith(str(world)) and words in str(e.value), str(e.value)
        assert str(e.value).count(".") >= 1 and "\n" not in str(e.value)


# -- notes rendered as they play ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(INSTRUMENTS))
def test_a_tone_rendered_chunk_by_chunk_is_the_tone_rendered_whole(name):
    """Oscillator phases, vibrato, filter states and noise run on across chunks,
    and a note's envelope computed block by block is the envelope computed whole."""
    inst = INSTRUMENTS[name]
    n = int(1.3 * RATE)
    for pitch in (40, 76):
        whole = inst.tone(hz(pitch), RATE)(0, n)
        render, pieces, i = inst.tone(hz(pitch), RATE), [], 0
        for k in [1, 777, 4800, 12_000, 3] * 20:
            if i >= n:
                break
            pieces.append(render(i, min(k, n - i)))
            i += k
        np.testing.assert_allclose(np.concatenate(pieces), whole, atol=1e-6, err_msg=f"{name} at {pitch}")
    if inst.envelope is not None:
        gate = RATE // 2
        length = inst.length(gate, RATE)
        shape = inst.envelope.values(0, length, gate, RATE)
        cut = [0, 1, 1000, 4800, gate - 7, gate + 5, length - 100, length]
        np.testing.assert_allclose(
            np.concatenate([inst.envelope.values(a, b - a, gate, RATE) for a, b in zip(cut, cut[1:])]), shape, atol=1e-6
        )
        assert shape.max() <= 1.0 and shape[0] < 0.05 and shape[-1] == 0.0, "from near zero, back to zero"


def test_a_held_chord_is_rendered_as_it_plays_and_once_per_pitch_whatever_the_tempo():
    """Seventh chords held two bars (8 s, and a 2 s release): the first block
    renders a chunk of this chord's four notes and the next one's, not 40 s of
    pad; playing the progression again renders nothing; a slower mood in the
    same key only extends the tones, it does not render them again."""
    style = style_for(MusicSettings(style="pad", instruments=["chords"]))
    band = Band(style, seed=0)
    band.render(4800)
    assert 0 < band.rendered <= 8 * (CHUNK + 4800)
    cycle = round(len(style.progression) * style.bars_per_chord * style.beats * 60 / style.tempo * RATE / 4800)
    per_block = [band.rendered]
    for _ in range(cycle):
        before = band.rendered
        band.render(4800)
        per_block.append(band.rendered - before)
    assert max(per_block) <= 8 * (CHUNK + 4800)
    render(band, cycle * 4800 / RATE)  # the last chord's release, into the second pass
    first = band.rendered
    render(band, cycle * 4800 / RATE)
    assert band.rendered == first, "the same chords again: every tone was kept"
    band.set_mood("calm")  # 8 % slower, same key and mode
    render(band, 2 * cycle * 4800 / RATE)
    assert band.status()["key"] == "A" and band.status()["mood"] == "calm"
    assert band.rendered - first < 0.25 * first, (band.rendered - first, first)


# -- the story's mood -----------------------------------------------------------------------------------


def test_the_mood_of_a_prompt_against_a_labelled_set():
    rows = [
        line.rstrip("\n").split("\t")
        for line in (ROOT / "tests/data/moods.tsv").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert len(rows) >= 40
    wrong = [(text, want, mood_of(text)) for text, want in rows if mood_of(text) != want]
    assert not wrong, wrong


def _max_step(x: np.ndarray, before: np.ndarray | None = None) -> float:
    """The largest sample-to-sample step, from `before`'s last sample on."""
    if before is not None:
        x = np.concatenate([before[:, -1:], x], axis=1)
    return float(np.abs(np.diff(x, axis=1)).max())


def test_a_mood_shifts_tempo_intensity_and_key_within_two_bars_without_a_click():
    """Soft tonal parts only (a saw's own edge or a drum's noise is steep, so they
    would hide a click): a switch to 'celebration' moves the key up a tone, the
    tempo up and the intensity up; the waveform's largest sample-to-sample step
    stays that of the music before it, so no note was cut."""
    style = style_for(MusicSettings(style="pad", tempo=120, instruments=["chords", "bass"]))
    band = Band(style, seed=2)
    bar_s = style.beats * 60 / style.tempo
    before = render(band, 4.5 * bar_s)  # mid-chord: a note cut now would be heard
    assert band.status()["mood"] == "neutral" and band.status()["key"] == "A"
    band.set_mood("celebration")
    after = render(band, 3.5 * bar_s)
    s = band.status()
    assert s["mood"] == "celebration" and s["key"] == "B" and s["mode"] == "major"
    assert s["tempo"] >= 0.97 * style.tempo * 1.08  # most of the glide within three bars
    assert s["intensity"] >= 0.75
    assert _max_step(after, before) <= 1.25 * _max_step(before), (_max_step(after, before), _max_step(before))
    assert dominant_hz(after[:, -RATE:]) != pytest.approx(dominant_hz(before[:, -RATE:]), rel=0.02)
    # the tempo glided: the beat went on without a jump, a little faster than before
    assert 8 * style.beats < band.beat < 8 * style.beats * 1.08
    band.set_mood("night")
    render(band, 3 * bar_s)
    assert band.status()["mode"] == "minor" and band.status()["key"] == "A"


def test_a_world_switch_and_the_music_switch_fade_without_a_click():
    track = Soundtrack(MusicSettings(style="pad", instruments=["chords"]), seed=3)
    before = render(track, 10.0, ambience=STILL)
    track.set_world_music(MusicSettings(style="drone", instruments=["chords"]))
    switch = render(track, 4.0, ambience=STILL)
    assert track.status()["style"] == "drone"
    after = render(track, 10.0, ambience=STILL)
    # the crossfade is no steeper than either world's music on its own
    assert _max_step(switch, before) <= 1.2 * max(_max_step(before), _max_step(after))
    track.set_music(False)
    fade = render(track, 2.0, ambience=STILL)
    gone = render(track, 1.0, ambience=STILL)
    assert np.abs(gone).max() == 0.0, "music off and no weather: silence"
    assert _max_step(fade, after) <= 1.2 * _max_step(after)
    track.set_music(True)
    back = render(track, 3.0, ambience=STILL)
    assert np.sqrt(np.mean(back[:, -RATE:] ** 2)) > 0.02


def test_the_weather_plays_under_the_music_and_alone_when_it_is_off():
    stormy = Ambience(wind=0.9, rain=0.9)
    track = Soundtrack(MusicSettings(style="pad"), seed=4, music_on=False)
    x = render(track, 6.0, ambience=stormy)
    assert -40 < loudness(x[:, 3 * RATE :]) < -18, "the weather alone sits well under the music"
    assert track.status()["source"] == "generated" and track.status()["music_on"] is False


# -- never silent by accident, never late -------------------------------------------------------------


def test_a_failing_music_generator_leaves_the_weather_and_says_why():
    """A world whose band names an instrument there is none of: the band fails
    at its first note, mid-stream, and the weather plays on."""

    def style_of(music: MusicSettings):
        style = style_for(music)
        if music.style != "drive":
            return style
        return replace(
            style,
            parts=tuple(p if p.role == "drums" else replace(p, instrument="oscillator bank") for p in style.parts),
        )

    track = Soundtrack(MusicSettings(style="bouncy"), seed=5, style_of=style_of)
    windy = Ambience(wind=0.8, rain=0.3)
    render(track, 2.0, ambience=windy)
    assert track.status()["source"] == "generated" and track.status()["problem"] is None
    track.set_world_music(MusicSettings(style="drive"))  # a world switch: the new world's band
    x = render(track, 4.0, ambience=windy)
    status = track.status()
    assert "music generator stopped" in status["problem"] and "oscillator bank" in status["problem"], status
    assert status["source"] == "none"
    assert np.sqrt(np.mean(x[:, -RATE:] ** 2)) > 0.005, "the weather goes on"


class _HeldTrack:
    """A track the test holds back, to make the producer late on purpose."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.rendered = 0

    def render(self, n, ambience=None):
        if self.rendered >= 3:
            self.go.wait()
        self.rendered += 1
        t = np.arange(self.rendered * n - n, self.rendered * n) / RATE
        return np.stack([0.3 * np.sin(2 * np.pi * 233 * t)] * 2).astype(np.float32)

    def status(self):
        return {"music_on": True, "source": "generated"}


def test_the_feed_never_waits_for_a_late_producer_and_joins_the_gap_without_a_click():
    track = _HeldTrack()
    feed = AudioFeed(track, lambda: Ambience(wind=0.5), depth=2)
    feed.start(ready_timeout=10)
    try:
        got: list[np.ndarray] = []
        done = threading.Event()

        def clock():  # what the clock thread does each tick: take its samples, now
            for _ in range(15):
                got.append(feed.read(1600))
            done.set()

        threading.Thread(target=clock, daemon=True).start()
        assert done.wait(10), "read() waited for the producer"
        x = np.concatenate(got, axis=1)
        assert x.shape == (2, 15 * 1600)
        assert feed.late >= 1 and feed.status()["late_blocks"] == feed.late
        # 3 blocks of the tone, then the weather: no step larger than the tone's own slope allows
        assert _max_step(x) < 2 * (2 * np.pi * 233 / RATE * 0.3) + 0.02
        assert np.abs(x[:, -1600:]).max() > 0, "the gap is filled with the weather, not silence"
    finally:
        track.go.set()
        feed.close()


# -- the streamer's own music ------------------------------------------------------------------------------


def make_tone(path: Path, hz: float, seconds: float, amplitude: float, codec: str) -> Path:
    """A sine encoded with PyAV (mp3, opus in ogg, flac, wav...)."""
    rate = 48_000 if codec == "libopus" else 44_100
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.layout = "stereo"
        c.start_encoding()
        fmt = s.codec_context.format
        size = s.codec_context.frame_size or 1024
        for i in range(0, int(seconds * rate), size):
            t = (i + np.arange(size)) / rate
            x = np.stack([amplitude * np.sin(2 * np.pi * hz * t)] * 2)
            dtype, scale = {
                "s16": (np.int16, 32767),
                "s32": (np.int32, 2**31 - 1),
                "flt": (np.float32, 1),
                "dbl": (np.float64, 1),
            }[fmt.packed.name]
            data = (x * scale).astype(dtype)
            frame = av.AudioFrame.from_ndarray(
                data if fmt.is_planar else data.T.reshape(1, -1), format=fmt.name, layout="stereo"
            )
            frame.sample_rate = rate
            frame.pts = i
            frame.time_base = Fraction(1, rate)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


@pytest.fixture
def music_dir(tmp_path):
    d = tmp_path / "music"
    d.mkdir()
    make_tone(d / "a.mp3", 330, 6.0, 0.5, "libmp3lame")
    make_tone(d / "b.ogg", 550, 6.0, 0.05, "libopus")  # 20 dB quieter
    make_tone(d / "c.wav", 880, 6.0, 0.3, "pcm_s16le")
    (d / "broken.mp3").write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x10" + bytes(range(256)) * 20)
    (d / "cover.jpg").write_bytes(b"\xff\xd8\xff not audio")
    (d / ".hidden.mp3").write_bytes(b"")
    return d


def test_check_names_each_file_it_cannot_play_in_one_sentence(music_dir, tmp_path):
    good, problems = check_folder(music_dir)
    assert [p.name for p in good] == ["a.mp3", "b.ogg", "c.wav"]
    assert len(problems) == 1 and problems[0].startswith(f"{music_dir / 'broken.mp3'} cannot be played: ")
    assert problems[0].endswith(".") and "\n" not in problems[0]
    assert check_folder(tmp_path / "nowhere")[1] == [f"The music folder {tmp_path / 'nowhere'} does not exist."]


def test_streambot_check_lists_the_music_it_cannot_play(music_dir, tmp_path, cli_env):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f'[audio]\nmusic_dir = "{music_dir}"\n')
    r = run_cli(["check", "--config", str(cfg), "--output", str(tmp_path / "out.flv")], cli_env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"problem: {music_dir / 'broken.mp3'} cannot be played: " in r.stderr
    assert "3 file(s) will play" in r.stdout and "Traceback" not in r.stderr


def test_the_playlist_shuffles_crossfades_and_evens_out_loudness(music_dir):
    playlist = Playlist(music_dir, crossfade_s=1.0, target_lufs=-15.0, seed=1)
    x = render(playlist, 34.0)
    assert playlist.failed == {"broken.mp3": playlist.failed["broken.mp3"]}
    # 100 ms windows: no gap anywhere (crossfades, not silences, between tracks)
    windows = x[0, : x.shape[1] // 4800 * 4800].reshape(-1, 4800)
    assert np.sqrt((windows**2).mean(axis=1)).min() > 0.01
    # which tone plays, second by second: every track once per pass, never twice in a row
    seq = [
        min((330, 550, 880), key=lambda f: abs(f - dominant_hz(x[:, i : i + RATE // 2])))
        for i in range(0, x.shape[1] - RATE // 2, RATE // 2)
    ]
    runs = [f for i, f in enumerate(seq) if i == 0 or f != seq[i - 1]]
    assert set(runs[:3]) == {330, 550, 880} and all(a != b for a, b in zip(runs, runs[1:]))
    # in a crossfade both tracks sound at once
    change = next(i for i in range(1, len(seq)) if seq[i] != seq[i - 1]) * (RATE // 2)
    mid = x[0, change - RATE // 4 : change + RATE // 4]
    spec = np.abs(np.fft.rfft(mid * np.hanning(len(mid))))
    bins = np.fft.rfftfreq(len(mid), 1 / RATE)
    peaks = {f: spec[np.abs(bins - f).argmin()] for f in (330, 550, 880)}
    assert sorted(peaks.values())[-2] > 0.1 * max(peaks.values()), peaks
    # the quiet recording (20 dB down) comes out near the others
    levels = {}
    for f in (330, 550, 880):
        idx = [i for i, g in enumerate(seq) if g == f][2:5]
        levels[f] = loudness(np.concatenate([x[:, i * RATE // 2 : (i + 1) * RATE // 2] for i in idx], axis=1))
    assert max(levels.values()) - min(levels.values()) < 6.0, levels
    playlist.close()


def test_a_folder_with_nothing_playable_falls_back_to_the_generated_music(tmp_path):
    d = tmp_path / "empty-ish"
    d.mkdir()
    (d / "broken.mp3").write_bytes(b"nothing here")
    track = Soundtrack(MusicSettings(style="bouncy"), seed=6, playlist=Playlist(d))
    x = render(track, 3.0, ambience=STILL)
    status = track.status()
    assert status["source"] == "generated" and "generated music plays instead" in status["problem"]
    assert np.sqrt(np.mean(x[:, -RATE:] ** 2)) > 0.02


def test_music_folder_that_does_not_exist_stops_the_show_with_one_sentence(tmp_path, cli_env):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f'[audio]\nmusic_dir = "{tmp_path / "nope"}"\n')
    r = run_cli(
        [
            "run",
            "--config",
            str(cfg),
            "--output",
            str(tmp_path / "o.flv"),
            "--duration",
            "1",
            "--chat",
            "none",
            "--no-console",
        ],
        cli_env,
    )
    assert r.returncode == 2
    want = f"streambot: [audio] music_dir: the folder {tmp_path / 'nope'} does not exist."
    assert r.stderr.strip().splitlines()[-1] == want


def test_the_loudness_meter_reads_the_standards_test_signal():
    """EBU Tech 3341, test 1: a stereo 1 kHz sine at -23 dBFS reads -23.0 LUFS (+-0.1)
    momentary, short-term and integrated."""
    t = np.arange(20 * RATE) / RATE
    x = np.stack([10 ** (-23 / 20) * np.sin(2 * np.pi * 1000 * t)] * 2)
    m = LoudnessMeter()
    for i in range(0, x.shape[1], 1600):  # fed in ticks, not hops: the hop bookkeeping must hold
        m.add(x[:, i : i + 1600])
    assert m.integrated == pytest.approx(-23.0, abs=0.1)
    assert m.momentary == pytest.approx(-23.0, abs=0.1) and m.short_term == pytest.approx(-23.0, abs=0.1)
    assert not math.isfinite(LoudnessMeter().integrated)
