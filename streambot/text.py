"""Untrusted text made plain: the one set of rules every reader of chat applies.

Chat arrives with control characters, bidi overrides, zero-width tricks,
fillers that draw nothing, zalgo floods and emoji sequences. Commands,
moderation and the overlay (burned in, and the OBS page) all read it by these
rules, stated in Unicode's own terms so that Unicode's data decides, not a
hand-kept list:

1. Normalised: NFKC where text is matched (commands, moderation: full-width
   `！２` is `!2`), NFC where it is drawn (styled letters keep their style when a
   font has them).
2. White space (the `White_Space` property) and control characters (`Cc`)
   separate words: each run of them becomes one space, none at either end.
3. What draws nothing goes: default-ignorable code points (zero-width spaces
   and joiners, bidi controls (UAX #9's `Bidi_Control`), variation selectors,
   tags, the Hangul fillers, the grapheme joiner), every other format
   character (`Cf`), lone surrogates (`Cs`) and the blank braille pattern.
   The text/emoji presentation selectors VS15/VS16 after a character stay;
   where text is drawn, so does the zero-width joiner between two pictographs
   (`Extended_Pictographic`), which makes 👨‍👩‍👧 one picture.
4. Private-use and unassigned code points (`Co`, `Cn`) mean nothing shared:
   gone where text is matched, kept where it is drawn (the overlay shows '?').
5. At most `MAX_MARKS` non-spacing or enclosing marks (`Mn`, `Me`) on a base,
   none without one: enough for any language, not for zalgo.
6. The result is in its normal form again (a dropped character may have kept
   two marks apart), so cleaning twice changes nothing.

`regex` answers the property questions; results are cached per character.
The OBS page (overlays/obs.js) states the same rules with JavaScript's
Unicode property escapes, and one test holds both to the same answers.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from typing import Literal

import regex

MAX_MARKS = 2  # combining marks kept per base character

Form = Literal["NFC", "NFKC"]

# One Unicode version for every property: regex's tables (unicodedata's are Python's own, often older).
_CONTROL = regex.compile(r"\p{Cc}")
_IGNORABLE = regex.compile(r"[\p{Default_Ignorable_Code_Point}\p{Cf}\p{Cs}]")
_UNDEFINED_RE = regex.compile(r"[\p{Co}\p{Cn}]")
_COMBINING = regex.compile(r"[\p{Mn}\p{Me}]")
_WHITE = regex.compile(r"\p{White_Space}")
_PICTOGRAPH = regex.compile(r"\p{Extended_Pictographic}")
_EMOJI_TAIL = regex.compile(r"[\p{Extended_Pictographic}\p{Emoji_Modifier}\uFE0F]")
_ZWJ = "\u200d"
_PRESENTATION = ("\ufe0e", "\ufe0f")  # VS15 text, VS16 emoji
_BLANKS = frozenset("\u2800")  # draws nothing, yet a symbol by category: braille pattern blank

# what a character is to the cleaner
_KEEP, _DROP, _SPACE, _MARK, _UNDEFINED, _JOINER, _SELECTOR = range(7)
_ASCII_CONTROLS = dict.fromkeys([*range(0x09), *range(0x0E, 0x20), 0x7F], " ")  # Cc that are not White_Space


@lru_cache(maxsize=65536)
def _kind(ch: str) -> int:
    if _WHITE.match(ch):
        return _SPACE
    if ch == _ZWJ:
        return _JOINER
    if ch in _PRESENTATION:
        return _SELECTOR
    if _CONTROL.match(ch):
        return _SPACE
    if _IGNORABLE.match(ch) or ch in _BLANKS:
        return _DROP
    if _UNDEFINED_RE.match(ch):
        return _UNDEFINED
    if _COMBINING.match(ch):
        return _MARK
    return _KEEP


def clean(text: str, *, drawn: bool) -> str:
    """`text` by the module's rules, for drawing or for matching: one line, words one space apart."""
    if text.isascii():
        return " ".join(text.translate(_ASCII_CONTROLS).split())
    form: Form = "NFC" if drawn else "NFKC"
    text = unicodedata.normalize(form, text)
    keep_undefined = drawn
    out: list[str] = []
    marks = 0
    for i, ch in enumerate(text):
        kind = _kind(ch)
        if kind == _KEEP or (kind == _UNDEFINED and keep_undefined):
            out.append(ch)
            marks = 0
        elif kind == _SPACE:
            if out and out[-1] != " ":
                out.append(" ")
            marks = 0
        elif kind == _MARK:
            if out and out[-1] != " " and marks < MAX_MARKS:
                out.append(ch)
                marks += 1
        elif kind == _SELECTOR:
            if out and out[-1] != " ":
                out.append(ch)
        elif kind == _JOINER:
            if drawn and out and _EMOJI_TAIL.match(out[-1]) and i + 1 < len(text) and _PICTOGRAPH.match(text[i + 1]):
                out.append(ch)
    if out and out[-1] == " ":
        out.pop()
    return unicodedata.normalize(form, "".join(out))


def for_matching(text: str) -> str:
    """What the viewer meant to type: for commands, block lists, pooling."""
    return clean(text, drawn=False)


def for_display(text: str) -> str:
    """What may be drawn: for the overlay and the OBS page."""
    return clean(text, drawn=True)
