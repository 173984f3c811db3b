"""The generated music: a small band for each world's style, following the story.

A `Style` is an arrangement written down as data: tempo, key, mode, a chord
progression and parts (drums, bass, chords, arpeggio, melody, drone,
sparkle), each with a rhythm on a sixteenth-note grid and the intensity from
which it plays. A world's `[music]` table chooses a style and may tune it
(tempo, key, mode, which parts, the melody's instrument, energy).

The `Band` keeps the beat (the beat is the integral of a tempo that glides, so
it never jumps), composes one bar at a time, plays each note as its pitch's
tone under the note's own envelope (see synth.py: tones are kept per pitch
and rendered a quarter second at a time, so no block pays for a whole held
chord; a short note is shaped whole once and kept, as a drum is) and mixes
the parts with a reverb and an echo send. Melodies are made per world from a seed: a two-bar motif, repeated
over the changes, a second motif for contrast, a cadence home; repetition is
what makes a tune stick.

The story's mood (storm, battle, calm, night, celebration), read from the
prompt text, is applied at the next bar line: the intensity moves over two
bars (parts enter or drop out, notes play harder or softer), the tempo glides,
and key and mode change for the notes that start from then on while the
sounding ones ring out through their own release. Nothing is ever cut, so a
change can neither click nor jump.

Why these libraries: the band needs sample-exact control of note starts,
envelopes and tempo, which is a few lines of numpy per instrument (synth.py);
scipy gives the filters; the studio effects (reverb, tempo echo) are small
networks on numpy (effects.py), because the maintained Python plugin
library that has them is built on JUCE and GPLv3, and streambot is MIT. A
synthesis server such as pyo or SuperCollider would own its own clock and
audio device, and a MIDI library (mido, pretty_midi) would add a file format
between the arrangement and the notes without saving any code.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from ..config import MUSIC_LEADS, MUSIC_MODES, MUSIC_ROLES, MUSIC_STYLES, MusicSettings
from .effects import Echo, Reverb
from .synth import ADSR, CHUNK, INSTRUMENTS, Signal, Tone, drum_kit, hz

N = TypeVar("N")  # what a pattern's note carries: a rhythm's character, a motif's degree

NOTES = {
    "C": 0,
    "C#": 1,
    "Db": 1,
    "D": 2,
    "D#": 3,
    "Eb": 3,
    "E": 4,
    "Fb": 4,
    "E#": 5,
    "F": 5,
    "F#": 6,
    "Gb": 6,
    "G": 7,
    "G#": 8,
    "Ab": 8,
    "A": 9,
    "A#": 10,
    "Bb": 10,
    "B": 11,
    "Cb": 11,
    "B#": 0,
}
NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MODES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
}
DARKER = {
    "major": "minor",
    "lydian": "dorian",
    "mixolydian": "dorian",
    "dorian": "minor",
    "minor": "minor",
    "phrygian": "phrygian",
}
BRIGHTER = {
    "minor": "major",
    "dorian": "mixolydian",
    "phrygian": "minor",
    "major": "major",
    "lydian": "lydian",
    "mixolydian": "major",
}


# -- the story's mood ------------------------------------------------------------------------


@dataclass(frozen=True)
class Mood:
    name: str
    intensity: float | None  # None: the style's own energy
    tempo: float  # a factor on the style's tempo
    shade: str  # "", "dark" or "bright": the mode moves that way
    transpose: int  # semitones


MOODS = {
    m.name: m
    for m in (
        Mood("neutral", None, 1.0, "", 0),
        Mood("calm", 0.2, 0.92, "", 0),
        Mood("night", 0.3, 0.9, "dark", 0),
        Mood("storm", 0.8, 1.04, "dark", 0),
        Mood("battle", 1.0, 1.1, "dark", 0),
        Mood("celebration", 0.9, 1.08, "bright", 2),
    )
}

_MOOD_WORDS = {
    "battle": r"battles?|war|wars|warfare|fight\w*|attack\w*|combat|explo(?:de|des|sion|sions)|artillery|"
    r"army|armies|soldiers?|siege|invasion|invad\w+|duel|clash\w*|bomb\w*|gunfire|guns?|"
    r"charg(?:e|es|ing)|swords?|chase|round begins|warriors?|tanks?|missiles?|roars?|roaring",
    "storm": r"\w*storms?|\w*storming|thunder\w*|lightning|hurricanes?|tornado\w*|typhoons?|blizzards?|gales?|"
    r"tempest\w*|downpour|monsoon|cyclones?|squalls?|pours|pouring|heavy rain|acid rain|floods?|torrential",
    "celebration": r"celebrat\w*|party|parties|fireworks?|festivals?|carnival|parades?|victory|victorious|"
    r"wedding|confetti|balloons?|rainbows?|danc\w+|cheer\w*|birthday|feast|triumph\w*|"
    r"jubilant|joy\w*|disco",
    "night": r"night\w*|midnight|moon\w*|starry|stars|dark|darkness|blackout|nocturnal|dusk|shadows?|"
    r"searchlights?|owls?",
    "calm": r"calm\w*|peace\w*|quiet\w*|serene|serenity|gentl\w*|tranquil\w*|still|mist\w*|sleep\w*|lazy|"
    r"soft\w*|breeze|relax\w*|drift\w*|dawn|sunrise|golden hour|meditat\w*|lull\w*",
}
_MOOD_RE = {name: re.compile(rf"\b(?:{words})\b", re.IGNORECASE) for name, words in _MOOD_WORDS.items()}
_PRIORITY = ("battle", "storm", "celebration", "night", "calm")  # a tie goes to the stronger mood


def mood_of(text: str) -> str:
    """The mood a prompt asks for, or "neutral": the mood with the most words in
    it, ties going to the stronger one ("a thunderstorm at night" is a storm)."""
    counts = {name: len(_MOOD_RE[name].findall(text or "")) for name in _PRIORITY}
    best = max(_PRIORITY, key=lambda name: (counts[name], -_PRIORITY.index(name)))
    return best if counts[best] else "neutral"


# -- the arrangement as data -------------------------------------------------------------------


@dataclass(frozen=True)
class DrumLine:
    drum: str
    steps: str  # one bar: X accent, x hit, o ghost, . rest
    enter: float = 0.0
    level: float = 1.0
    every: int = 1  # plays on bars where bar % every == at (a crash each phrase, a fill before it)
    at: int = 0


@dataclass(frozen=True)
class Part:
    role: str  # one of MUSIC_ROLES
    instrument: str
    rhythm: str  # X/x/o (or R 3 5 8 for a bass) start a note, - holds it, . rests; `bars` bars long
    octave: int  # MIDI number of the C below the part's tonic
    level: float
    enter: float = 0.0  # the intensity from which it plays
    pan: float = 0.0
    reverb: float = 0.15
    echo: float = 0.0
    bars: int = 1
    voicing: str = "triad"  # chords: triad | seventh | root; arpeggios: up | updown
    lines: tuple[DrumLine, ...] = ()


@dataclass(frozen=True)
class Style:
    name: str
    tempo: float
    key: str
    mode: str
    beats: int  # per bar
    progression: tuple[int, ...]  # the chords as scale degrees (0 = the tonic)
    parts: tuple[Part, ...]
    energy: float  # the intensity at rest
    bars_per_chord: int = 1
    melody: tuple[str, ...] = ()  # two-bar rhythms of the motifs (A, B)
    room: float = 0.6  # reverb size
    echo_beats: float = 0.75
    gain: float = 1.0  # brings the style near the loudness target before the leveller

    @property
    def steps(self) -> int:
        return self.beats * 4


_ = "."


def _bar(beats: int, *hits: tuple[int, str]) -> str:
    s = [_] * (beats * 4)
    for i, c in hits:
        s[i] = c
    return "".join(s)


def _held(steps: int) -> str:
    return "x" + "-" * (steps - 1)


STYLES: dict[str, Style] = {
    s.name: s
    for s in (
        Style(
            "pad",
            60,
            "A",
            "major",
            4,
            (0, 3, 5, 4),
            bars_per_chord=2,
            energy=0.3,
            room=0.8,
            gain=0.72,
            melody=("x-------x---x---x-------x-------", "x---x---x-------x---x---x-------"),
            parts=(
                Part("chords", "pad", _held(32), 48, 0.8, bars=2, voicing="seventh", reverb=0.35),
                Part("bass", "pad", "R" + "-" * 31, 36, 0.45, enter=0.15, bars=2, reverb=0.2),
                Part("sparkle", "pluck", _held(16), 72, 0.3, enter=0.35, reverb=0.5, echo=0.3),
                Part("melody", "flute", "", 72, 0.35, enter=0.75, reverb=0.4, echo=0.2),
                Part(
                    "drums",
                    "",
                    "",
                    0,
                    0.5,
                    lines=(
                        DrumLine("timpani", "X.......x.......", enter=0.65, level=0.7),
                        DrumLine("crash", "X...............", enter=0.9, level=0.35, every=4),
                    ),
                ),
            ),
        ),
        Style(
            "bouncy",
            132,
            "F",
            "major",
            4,
            (0, 5, 3, 4),
            energy=0.6,
            room=0.35,
            gain=0.7,
            melody=("x.x.x...x.xxx...x...x.x.x-------", "x.x.x.x.x-..x...x.x.x.x.x---...."),
            parts=(
                Part(
                    "drums",
                    "",
                    "",
                    0,
                    0.75,
                    lines=(
                        DrumLine("kick", "X.......X.......", level=0.9),
                        DrumLine("clap", "....X.......X...", enter=0.25, level=0.55),
                        DrumLine("wood", "..x...x...x...x.", enter=0.4, level=0.35),
                        DrumLine("hat", "x.x.x.x.x.x.x.x.", enter=0.55, level=0.3),
                        DrumLine("tom", "........X.x.XxXx", enter=0.7, level=0.5, every=4, at=3),
                        DrumLine("crash", "X...............", enter=0.85, level=0.35, every=4),
                    ),
                ),
                Part("bass", "bass_round", "R.......5.......", 36, 0.7),
                Part("chords", "mallet", "....x.......x...", 60, 0.4, enter=0.1, pan=0.3),
                Part("melody", "lead", "", 72, 0.5, enter=0.15, pan=-0.15, reverb=0.12, echo=0.1),
            ),
        ),
        Style(
            "march",
            96,
            "D",
            "minor",
            4,
            (0, 5, 3, 4),
            energy=0.55,
            room=0.75,
            gain=0.48,
            melody=("x..x.xx.x-------x..x.xx.x---x...", "x-----x.x.x.x---x-----x.x-------"),
            parts=(
                Part(
                    "drums",
                    "",
                    "",
                    0,
                    0.75,
                    reverb=0.25,
                    lines=(
                        DrumLine("timpani", "X.......X.......", level=0.8),
                        DrumLine("snare", "X..xX.x.X..xX.xx", enter=0.3, level=0.45),
                        DrumLine("kick", "X.......X.......", enter=0.55, level=0.6),
                        DrumLine("snare", "........xxxxXXXX", enter=0.6, level=0.4, every=4, at=3),
                        DrumLine("crash", "X...............", enter=0.85, level=0.4, every=4),
                    ),
                ),
                Part("chords", "brass", _held(16), 48, 0.55, reverb=0.35),
                Part("bass", "strings", "R-------5-------", 36, 0.6, enter=0.15),
                Part("melody", "brass", "", 60, 0.5, enter=0.55, reverb=0.3),
            ),
        ),
        Style(
            "synthwave",
            100,
            "A",
            "minor",
            4,
            (0, 5, 2, 6),
            energy=0.6,
            room=0.7,
            gain=0.51,
            melody=("x---x---x-x-x---x-------x-x-x---", "x-x-x-x-x-------x---x---x-------"),
            parts=(
                Part(
                    "drums",
                    "",
                    "",
                    0,
                    0.75,
                    reverb=0.2,
                    lines=(
                        DrumLine("kick808", "X...X...X...X...", enter=0.25, level=0.85),
                        DrumLine("clap", "....X.......X...", enter=0.3, level=0.55),
                        DrumLine("hat", "..x...x...x...x.", enter=0.4, level=0.35),
                        DrumLine("hat", "x.x.x.x.x.x.x.x.", enter=0.75, level=0.2),
                        DrumLine("crash", "X...............", enter=0.85, level=0.35, every=4),
                    ),
                ),
                Part("bass", "bass_saw", "R.R.8.R.R.R.8.R.", 36, 0.6),
                Part("arp", "arp", "xxxxxxxxxxxxxxxx", 60, 0.3, pan=0.25, reverb=0.25, echo=0.35),
                Part("chords", "strings", _held(16), 48, 0.4, enter=0.1, voicing="seventh", pan=-0.2, reverb=0.4),
                Part("melody", "lead_saw", "", 60, 0.4, enter=0.7, reverb=0.3, echo=0.25),
            ),
        ),
        Style(
            "drone",
            56,
            "C",
            "minor",
            4,
            (0, 5, 3, 6),
            bars_per_chord=2,
            energy=0.35,
            room=0.92,
            gain=0.64,
            parts=(
                Part("drone", "drone", _held(32), 36, 0.65, bars=2, reverb=0.45),
                Part("chords", "pad", _held(32), 48, 0.45, bars=2, reverb=0.5),
                Part("sparkle", "bell", _held(16), 72, 0.3, enter=0.15, reverb=0.6, echo=0.4),
                Part(
                    "drums",
                    "",
                    "",
                    0,
                    0.6,
                    reverb=0.35,
                    lines=(
                        DrumLine("tom", "X..x............", enter=0.6, level=0.6),
                        DrumLine("timpani", "X...............", enter=0.8, level=0.6, every=2),
                    ),
                ),
            ),
        ),
        Style(
            "drive",
            140,
            "E",
            "minor",
            4,
            (0, 5, 6, 0),
            energy=0.7,
            room=0.45,
            gain=0.54,
            melody=("x.x.x.x.x---x.x.x.x.x.x.x---x...", "x---x---x.x.x---x---x---x-------"),
            parts=(
                Part(
                    "drums",
                    "",
                    "",
                    0,
                    0.8,
                    lines=(
                        DrumLine("kick", "X.....X.X.....X.", level=0.9),
                        DrumLine("snare", "....X.......X...", enter=0.2, level=0.6),
                        DrumLine("hat", "x.x.x.x.x.x.x.x.", enter=0.35, level=0.3),
                        DrumLine("open_hat", "..............x.", enter=0.6, level=0.3),
                        DrumLine("tom", "............XxXx", enter=0.6, level=0.5, every=4, at=3),
                        DrumLine("crash", "X...............", enter=0.75, level=0.35, every=4),
                    ),
                ),
                Part("bass", "bass_saw", "R.R.R.R.R.R.R.R.", 36, 0.6),
                Part("chords", "power", "X..X..X...X.X...", 48, 0.45, enter=0.3, voicing="root", pan=0.2),
                Part("melody", "lead_saw", "", 60, 0.4, enter=0.6, pan=-0.2, reverb=0.2, echo=0.15),
            ),
        ),
        Style(
            "modal",
            84,
            "D",
            "lydian",
            3,
            (0, 1, 0, 5),
            energy=0.45,
            room=0.8,
            gain=0.47,
            melody=("x-----x.x.x.x-----x-----", "x.x.x.x-----x---x---x---"),
            parts=(
                Part("arp", "pluck", "x.x.x.x.x.x.", 60, 0.4, voicing="updown", pan=0.2, reverb=0.35),
                Part("chords", "strings", _held(12), 48, 0.4, pan=-0.2, reverb=0.4),
                Part("melody", "flute", "", 72, 0.4, enter=0.25, reverb=0.35, echo=0.15),
                Part("bass", "strings", "R-----------", 36, 0.4, enter=0.4),
                Part("sparkle", "bell", _held(12), 84, 0.2, enter=0.5, reverb=0.6, echo=0.3),
                Part(
                    "drums",
                    "",
                    "",
                    0,
                    0.6,
                    reverb=0.3,
                    lines=(
                        DrumLine("timpani", "X.....x.....", enter=0.65, level=0.6),
                        DrumLine("crash", "X...........", enter=0.85, level=0.35, every=4),
                    ),
                ),
            ),
        ),
    )
}


def _check_catalogue() -> None:
    """The catalogue matches what a [music] table may name, and every rhythm fits its bars."""
    assert set(STYLES) == set(MUSIC_STYLES) and set(MODES) == set(MUSIC_MODES)
    assert set(MUSIC_LEADS) <= set(INSTRUMENTS)
    for style in STYLES.values():
        assert len(style.melody) in (0, 2) and all(len(m) == 2 * style.steps for m in style.melody), style.name
        for p in style.parts:
            assert p.role in MUSIC_ROLES and (p.role == "drums" or p.instrument in INSTRUMENTS), (style.name, p)
            assert p.role in ("drums", "melody") or len(p.rhythm) == style.steps * p.bars, (style.name, p.role)
            assert all(len(line.steps) == style.steps for line in p.lines), (style.name, p.role)


_check_catalogue()


def style_for(music: MusicSettings) -> Style:
    """The world's style with its [music] table's tuning applied."""
    base = STYLES[music.style]
    parts = base.parts
    if music.instruments is not None:
        parts = tuple(p for p in parts if p.role in music.instruments)
    if music.lead is not None:
        parts = tuple(replace(p, instrument=music.lead) if p.role == "melody" else p for p in parts)
    return replace(
        base,
        parts=parts,
        tempo=music.tempo if music.tempo is not None else base.tempo,
        key=music.key or base.key,
        mode=music.mode or base.mode,
        energy=music.energy if music.energy is not None else base.energy,
    )


# -- playing it ---------------------------------------------------------------------------------


@dataclass
class Event:
    beat: float  # when, in beats from the start
    part: int
    note: float | str  # a MIDI number, or a drum's name
    beats: float  # how long the key is held
    velocity: float
    gate: int = 0  # the same in samples, fixed when the bar is composed


@dataclass
class Voice:
    sound: Tone | Signal  # a whole short note or drum, or a pitch's tone
    envelope: ADSR | None  # shapes a long note's tone block by block; None: the sound as it is
    length: int  # samples it sounds for
    gate: int  # samples the key is held
    start: int  # the first sample of this block it plays in
    part: int
    velocity: float
    pos: int = 0


def _in_bar(pattern: Sequence[tuple[int, int, N]], bar: int, bars: int, steps: int) -> list[tuple[int, int, int, N]]:
    """The notes of a pattern `bars` bars long (step, length, what) that sound in
    `bar`, the pattern starting again on its first bar: (index in the pattern,
    step in the bar, length, what)."""
    offset = (bar % bars) * steps
    return [(k, st - offset, ln, x) for k, (st, ln, x) in enumerate(pattern) if offset <= st < offset + steps]


def onsets(rhythm: str) -> list[tuple[int, int, str]]:
    """(step, length in steps, the character) of every note in a rhythm."""
    out = []
    for i, c in enumerate(rhythm):
        if c in "-.":
            continue
        length = 1
        while i + length < len(rhythm) and rhythm[i + length] == "-":
            length += 1
        out.append((i, length, c))
    return out


ACCENT = {"X": 1.0, "x": 0.78, "o": 0.45}
RENDER_BUDGET_S = 0.006  # CPU a block may spend rendering the first chunks of coming notes
SHORT_NOTE = 48_000  # samples: notes no longer are shaped whole and kept per gate, like drums
TONE_BYTES = 64 << 20  # rendered tones kept for the next time their pitch is played
NOTE_BYTES = 16 << 20  # shaped short notes kept


class Band:
    """Plays one style, block by block; `set_mood` may be called from any thread."""

    def __init__(self, style: Style, *, rate: int = 48_000, seed: int = 0, mood: str = "neutral") -> None:
        self.style = style
        self.rate = rate
        self.rng = np.random.default_rng(seed)
        self.kit = drum_kit(rate)
        self._tones: OrderedDict[tuple[str, float], Tone] = OrderedDict()  # the least recently played first
        self._notes: OrderedDict[tuple[str, float, int], Signal] = OrderedDict()  # short notes, shaped
        self.rendered = 0  # samples of tone rendered so far: the band's work, besides mixing
        self.beat = 0.0
        self.mood = MOODS["neutral"]
        self._pending: str | None = mood
        self.tempo = style.tempo
        self._tempo_target = style.tempo
        self.intensity = style.energy
        self._intensity_target = style.energy
        self.mode = style.mode
        self.tonic = NOTES[style.key]
        self._next_bar = 0
        self._events: deque[Event] = deque()
        self._ahead: deque[Event] = deque()  # composed notes whose first chunk is not rendered yet
        self._voices: list[Voice] = []
        self._motifs = [self._motif(r) for r in style.melody]
        self._reverb = Reverb(style.room, rate)
        self._echo = Echo(style.echo_beats * 60 / style.tempo, 0.35, rate) if any(p.echo for p in style.parts) else None
        # Parts -> left, right (constant-power pan), reverb send, echo send; the style's gain folded in.
        self._routing = (
            np.array(
                [
                    [np.cos((p.pan + 1) * np.pi / 4) * np.sqrt(2) for p in style.parts],
                    [np.sin((p.pan + 1) * np.pi / 4) * np.sqrt(2) for p in style.parts],
                    [p.reverb for p in style.parts],
                    [p.echo for p in style.parts],
                ]
            )
            * style.gain
        ).astype(np.float32)

    # -- the story ----------------------------------------------------------------------------
    def set_mood(self, mood: str) -> None:
        """The tempo starts to glide at once; the rest from the next bar composed
        (bars are composed one ahead, so that their notes are ready in time)."""
        if mood not in MOODS:
            raise ValueError(f"no mood named {mood!r}")
        self._pending = mood
        self._tempo_target = self.style.tempo * MOODS[mood].tempo

    def status(self) -> dict[str, object]:
        return {
            "style": self.style.name,
            "mood": self.mood.name,
            "tempo": round(self.tempo, 1),
            "key": NAMES[self.tonic % 12],
            "mode": self.mode,
            "intensity": round(self.intensity, 2),
        }

    def _apply_mood(self, name: str) -> None:
        self._pending = None
        mood = MOODS[name]
        s = self.style
        self.mood = mood
        self._intensity_target = s.energy if mood.intensity is None else mood.intensity
        self._tempo_target = s.tempo * mood.tempo
        self.mode = {"dark": DARKER, "bright": BRIGHTER}.get(mood.shade, {}).get(s.mode, s.mode)
        self.tonic = NOTES[s.key] + mood.transpose

    # -- one block ----------------------------------------------------------------------------------
    def render(self, n: int) -> NDArray[np.float32]:
        """The next `n` stereo samples, float32, shape (2, n)."""
        # 1. the beat: tempo glides to its target over about a bar; the beat is its integral
        bar_s = self.style.beats * 60 / self.tempo
        t0 = self.tempo
        t1 = t0 + (self._tempo_target - t0) * (1 - np.exp(-n / (bar_s * self.rate)))
        tempo = t0 + (t1 - t0) * np.arange(1, n + 1) / n
        beats = self.beat + np.cumsum(tempo) / (60 * self.rate)
        self.tempo, end = t1, float(beats[-1])
        # 2. compose a bar ahead, so its long notes can be rendered before they sound
        while self._next_bar * self.style.beats < end + self.style.beats:
            self._compose(self._next_bar)
            self._next_bar += 1
        # 3. start the notes that fall in this block
        while self._events and self._events[0].beat < end:
            ev = self._events.popleft()
            self._voices.append(self._voice(ev, int(np.searchsorted(beats, ev.beat))))
        self.beat = end
        # 4. render coming notes (a long one's first chunk) within a small budget,
        # so a chord's first block does not pay for all its notes at once
        spent = time.thread_time()
        while self._ahead and time.thread_time() - spent < RENDER_BUDGET_S:
            self._prepare(self._ahead.popleft())
        grown = self.rendered
        out = self._mix(n)
        if self.rendered != grown:
            self._forget()
        return out

    def _mix(self, n: int) -> NDArray[np.float32]:
        parts = np.zeros((len(self.style.parts), n), np.float32)
        alive = []
        for v in self._voices:
            k = min(n - v.start, v.length - v.pos)
            into = parts[v.part, v.start : v.start + k]
            if v.envelope is not None:  # a long note: its tone under its envelope
                assert isinstance(v.sound, Tone)
                shape = v.envelope.values(v.pos, k, v.gate, self.rate)
                shape *= np.float32(v.velocity)
                into += shape * self._read(v.sound, v.pos, k)
            elif isinstance(v.sound, Tone):  # a one-shot: its tone is the note
                into += v.velocity * self._read(v.sound, v.pos, k)
            else:
                into += v.velocity * v.sound[v.pos : v.pos + k]
            v.pos += k
            v.start = 0
            if v.pos < v.length:
                alive.append(v)
        self._voices = alive
        left, right, reverb_in, echo_in = self._routing @ parts
        if self._echo is not None:
            echo = self._echo.process(echo_in)
            reverb_in += 0.5 * echo
            left += 0.5 * echo
            right += 0.5 * echo
        out = self._reverb.process(reverb_in)  # a new array: the dry parts are added into it
        out *= np.float32(0.45 * self.style.gain)
        out[0] += left
        out[1] += right
        return out

    def _voice(self, ev: Event, start: int) -> Voice:
        if isinstance(ev.note, str):
            drum = self.kit[ev.note]
            return Voice(drum, None, len(drum), len(drum), start, ev.part, ev.velocity)
        inst = INSTRUMENTS[self.style.parts[ev.part].instrument]
        length = inst.length(ev.gate, self.rate)
        if inst.envelope is not None and length <= SHORT_NOTE:
            return Voice(self._short(ev), None, length, ev.gate, start, ev.part, ev.velocity)
        tone = self._tone(ev)
        sound = tone.whole() if inst.envelope is None else None  # a one-shot played before: its samples
        return Voice(tone if sound is None else sound, inst.envelope, length, ev.gate, start, ev.part, ev.velocity)

    def _read(self, tone: Tone, i0: int, k: int) -> Signal:
        self.rendered += tone.ensure(i0 + k)
        return tone.read(i0, k)

    def _prepare(self, ev: Event) -> None:
        inst = INSTRUMENTS[self.style.parts[ev.part].instrument]
        if inst.envelope is not None and inst.length(ev.gate, self.rate) <= SHORT_NOTE:
            self._short(ev)
        else:
            self.rendered += self._tone(ev).ensure(CHUNK)

    def _short(self, ev: Event) -> Signal:
        """A short note whole: its tone under its envelope, kept for the next time
        this pitch is held this long."""
        inst = INSTRUMENTS[self.style.parts[ev.part].instrument]
        key = (inst.name, float(ev.note), ev.gate)
        note = self._notes.get(key)
        if note is None:
            assert isinstance(inst.envelope, ADSR)
            length = inst.length(ev.gate, self.rate)
            note = self._read(self._tone(ev), 0, length) * inst.envelope.values(0, length, ev.gate, self.rate)
            self._notes[key] = note
        else:
            self._notes.move_to_end(key)
        return note

    def _tone(self, ev: Event) -> Tone:
        """The tone of the note's instrument at its pitch, kept from the last time it was played."""
        key = (self.style.parts[ev.part].instrument, float(ev.note))
        tone = self._tones.get(key)
        if tone is None:
            tone = self._tones[key] = Tone(INSTRUMENTS[key[0]], hz(key[1]), self.rate)
        else:
            self._tones.move_to_end(key)
        return tone

    def _forget(self) -> None:
        """Drop the least recently played tones and notes past their memory budgets
        (a playing voice keeps its own until it ends). Kept by hand rather than in a
        cachetools cache: a tone grows as it plays, and such a cache sizes an entry
        once, when it is stored."""
        for kept, budget in ((self._tones, TONE_BYTES), (self._notes, NOTE_BYTES)):
            total = sum(t.nbytes for t in kept.values())
            while total > budget and len(kept) > 1:
                total -= kept.popitem(last=False)[1].nbytes

    # -- composing --------------------------------------------------------------------------------------
    def _compose(self, bar: int) -> None:
        if self._pending is not None:
            self._apply_mood(self._pending)
        self.intensity += (self._intensity_target - self.intensity) * 0.6  # most of the way in two bars
        s = self.style
        degree = s.progression[(bar // s.bars_per_chord) % len(s.progression)]
        events: list[Event] = []
        for i, part in enumerate(s.parts):
            if self.intensity + 1e-6 < part.enter:
                continue
            level = part.level * (0.75 + 0.25 * self.intensity)
            events.extend(self._part_bar(i, part, bar, degree, level))
        events.sort(key=lambda e: e.beat)
        seconds = 60 / self._tempo_target * self.rate * 0.92
        for e in events:
            if isinstance(e.note, str):
                continue
            inst = INSTRUMENTS[self.style.parts[e.part].instrument]
            e.gate = max(1, round(e.beats * seconds))
            if inst.envelope is not None and inst.length(e.gate, self.rate) <= SHORT_NOTE:
                # a short note in whole 10 ms: a mood's tempo does not make each one new
                q = self.rate // 100
                e.gate = max(q, round(e.gate / q) * q)
                if (inst.name, float(e.note), e.gate) not in self._notes:
                    self._ahead.append(e)
            elif (inst.name, float(e.note)) not in self._tones:
                self._ahead.append(e)
        self._events.extend(events)

    def _midi(self, part: Part, degree: int) -> float:
        scale = MODES[self.mode]
        tonic = part.octave + self.tonic % 12 - (12 if self.tonic % 12 > 6 else 0)
        return tonic + scale[degree % 7] + 12 * (degree // 7)

    def _part_bar(self, i: int, part: Part, bar: int, degree: int, level: float) -> list[Event]:
        s = self.style
        step = 0.25  # beats: a sixteenth
        base = bar * s.beats
        out: list[Event] = []
        if part.role == "drums":
            for line in part.lines:
                if self.intensity + 1e-6 < line.enter or bar % line.every != line.at:
                    continue
                for st, _, c in onsets(line.steps):
                    vel = level * line.level * ACCENT.get(c, 0.8) * (0.92 + 0.16 * self.rng.random())
                    out.append(Event(base + st * step, i, line.drum, step, vel))
            return out
        if part.role == "melody":
            return self._melody(i, bar, degree, level)
        if part.role == "sparkle":
            chord = (degree, degree + 2, degree + 4, degree + 7)
            for _ in range(self.rng.poisson(0.8 + 2.0 * self.intensity)):
                st = int(self.rng.integers(0, s.steps))
                note = self._midi(part, int(self.rng.choice(chord)))
                out.append(Event(base + st * step, i, note, 2.0, level * (0.5 + 0.5 * self.rng.random())))
            return out
        root = degree if degree < 4 else degree - 7
        arp_tones = [root + d for d in (0, 2, 4, 7, 9, 11)]
        if part.voicing == "updown":
            arp_tones += arp_tones[-2:0:-1]
        for k, st, length, c in _in_bar(onsets(part.rhythm), bar, part.bars, s.steps):
            beat = base + st * step
            vel = level * ACCENT.get(c, 0.85)
            if part.role == "chords":
                degrees = {
                    "root": (root,),
                    "triad": (root, root + 2, root + 4),
                    "seventh": (root, root + 2, root + 4, root + 6),
                }[part.voicing]
                out.extend(
                    Event(beat, i, self._midi(part, d), length * step, vel / len(degrees) ** 0.5) for d in degrees
                )
            elif part.role == "bass":
                d = {"3": root + 2, "5": root + 4, "8": root + 7}.get(c, root)
                out.append(Event(beat, i, self._midi(part, d), length * step, level))
            elif part.role == "arp":
                d = arp_tones[k % len(arp_tones)]
                out.append(Event(beat, i, self._midi(part, d), length * step, vel))
            elif part.role == "drone":
                out.extend(Event(beat, i, self._midi(part, d), length * step, vel) for d in (0, 4))
        return out

    def _motif(self, rhythm: str) -> list[tuple[int, int, int]]:
        """(step, length, degree from the chord's root) of a two-bar motif: chord
        tones on the strong beats, steps and small leaps between them."""
        notes: list[tuple[int, int, int]] = []
        prev = int(self.rng.choice([0, 2, 4]))
        for st, length, _ in onsets(rhythm):
            strong = st % 8 == 0
            if notes and strong:
                tones = [d for d in (-3, 0, 2, 4, 7) if abs(d - prev) <= 4] or [0]
                prev = int(self.rng.choice(tones))
            elif notes:
                prev = int(np.clip(prev + self.rng.choice([-2, -1, -1, 1, 1, 2]), -3, 8))
            notes.append((st, length, prev))
        return notes

    def _melody(self, i: int, bar: int, degree: int, level: float) -> list[Event]:
        """An eight-bar tune: A over the first changes, A again, B, then A with a
        cadence home."""
        if not self._motifs:
            return []
        s = self.style
        phrase = bar % 8
        motif = self._motifs[1] if phrase in (4, 5) else self._motifs[0]
        mine = _in_bar(motif, bar, 2, s.steps)
        part = s.parts[i]
        out = []
        for k, (_, st, length, d) in enumerate(mine):
            if phrase == 7 and k == len(mine) - 1:
                d = 0
            out.append(
                Event(
                    bar * s.beats + st * 0.25,
                    i,
                    self._midi(part, degree + d),
                    length * 0.25,
                    level * (1.0 if st % 4 == 0 else 0.85),
                )
            )
        return out
