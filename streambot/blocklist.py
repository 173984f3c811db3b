"""Block lists: terms matched against the usual evasions.

A text (already normalised, see `audience.moderation.normalise`) is read
several ways at once: lower-cased with accents removed and look-alike letters
folded to ASCII (`skeleton`), with symbols as separators and as letters
(leetspeak), repeated letters squeezed, one- and two-letter pieces joined
("f u c k"), and words masked with '*' ("f*ck"). Moderation's lists and the
safety layer's concept terms are both `BlockList`s.

Look-alike letters come from Unicode's confusables data as packaged by
`confusable_homoglyphs`.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

from .config import ConfigError


@lru_cache(maxsize=65536)
def fold_char(ch: str) -> str | None:
    """The ASCII letter or digit a character is confusable with, if any."""
    from confusable_homoglyphs.confusables import confusables_data

    for glyph in confusables_data.get(ch, ()):
        c = str(glyph["c"])
        if c.isascii() and c.isalnum():
            return c.lower()
    return None


_LEET = str.maketrans(
    {
        "0": "o",
        "1": "i",
        "3": "e",
        "4": "a",
        "5": "s",
        "7": "t",
        "8": "b",
        "9": "g",
        "@": "a",
        "$": "s",
        "!": "i",
        "|": "l",
        "+": "t",
        "(": "c",
        "€": "e",
        "£": "l",
    }
)
_NON_ALNUM = re.compile(r"[\W_]+")


@lru_cache(maxsize=65536)
def _skeleton_char(ch: str) -> str:
    if ch.isascii():
        return ch
    base = unicodedata.normalize("NFD", ch)
    base = "".join(c for c in base if not unicodedata.combining(c))
    out = []
    for c in base:
        f = c if c.isascii() else fold_char(c)
        out.append(f if f is not None else c)
    return "".join(out)


def skeleton(text: str) -> str:
    """Lower-case, accents removed, every look-alike folded to ASCII."""
    text = text.casefold()
    if not text.isascii():
        text = "".join(_skeleton_char(c) for c in text)
    return text


@lru_cache(maxsize=65536)
def squeeze(word: str) -> str:
    """Repeated letters collapsed: 'fuuuck' and 'fuck' share 'fuck'."""
    return "".join(k for k, _ in itertools.groupby(word))


def _letters_pattern(word: str) -> re.Pattern[str]:
    # Each run of a letter in the term must appear at least as often: 'ass'
    # matches 'asss' but not 'as'; 'nigger' does not match 'niger'.
    parts = [f"{re.escape(k)}{{{len(list(g))},}}" for k, g in itertools.groupby(word)]
    return re.compile("".join(parts))


def _masked_pattern(word: str) -> re.Pattern[str]:
    # 'f*ck', 'sh**', 'motherf***er': the first letter shown, any other hidden by '*'.
    return re.compile(re.escape(word[0]) + "".join(f"[{re.escape(c)}*]" for c in word[1:]))


def _words(text: str) -> list[str]:
    return [w for w in _NON_ALNUM.split(text) if w]


_MASKED = re.compile(r"[a-z0-9]+\*[a-z0-9*]*")


class _Form:
    """One reading of a prompt's words, prepared once for every list."""

    __slots__ = ("tokens", "squeezed", "runs", "solid", "solid_squeezed")

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.squeezed = [squeeze(t) for t in tokens]
        self.solid = "".join(tokens)
        self.solid_squeezed = squeeze(self.solid)
        # Runs of one- and two-letter pieces: "f u c k", "ni gg er".
        self.runs: list[list[str]] = []
        run: list[str] = []
        for t in itertools.chain(tokens, [""]):
            if t and len(t) <= 2:
                run.append(t)
                continue
            if len(run) > 1:
                self.runs.append(run)
            run = []


@lru_cache(maxsize=4096)
def _forms(text: str) -> tuple[tuple[_Form, ...], tuple[str, ...]]:
    """The readings of a normalised prompt, and any words masked with '*'."""
    s = skeleton(text)
    plain = _words(s)  # symbols as separators: "kill!" is "kill"
    forms = [_Form(plain)]
    leet = _words(s.translate(_LEET))  # symbols as letters: "sh!t", "a$$"
    if leet != plain:
        forms.append(_Form(leet))
    if "1" in s or "|" in s:  # 1 and | read as l rather than i
        forms.append(_Form(_words(s.replace("1", "l").replace("|", "l").translate(_LEET))))
    masked = tuple(_MASKED.findall(s)) if "*" in s else ()
    return tuple(forms), masked


class BlockList:
    """Terms from one or more lists, matched against evasions.

    A line is a word or a phrase; `*word` also matches inside other words
    ('*fuck' catches 'motherfucker'); `?word` is tagged "hold" (a word whose
    common meaning is harmless: a prompt with it waits for a moderator);
    `!phrase` is an exception, read as if it were not there ('!moby dick');
    `#` starts a comment. A term may carry a tag (a safety category):
    `tags(text)` says which tags a text hits, in one pass however many there are.
    """

    def __init__(self, terms: Iterable[str] = (), tag: str = "") -> None:
        self._words: dict[str, list[tuple[re.Pattern[str], str]]] = {}
        self._phrases: dict[str, list[tuple[tuple[str, ...], str]]] = {}  # first word -> squeezed phrases
        self._spelled: dict[str, list[tuple[re.Pattern[str], str]]] = {}  # phrases spelled out letter by letter
        self._inside: dict[str, list[tuple[re.Pattern[str], str]]] = {}
        self._plain: list[tuple[str, str]] = []  # single words and inside terms, for masked spellings
        self._masks: list[tuple[re.Pattern[str], bool, str]] | None = None
        self._exceptions: list[str] = []
        self._except: re.Pattern[str] | None = None
        self.size = 0
        for t in terms:
            self.add(t, tag)

    def add(self, term: str, tag: str = "") -> None:
        term = term.split("#", 1)[0].strip()
        if term.startswith("!"):
            words = _words(skeleton(term[1:]))
            if words:
                self._exceptions.append(r"\W+".join(map(re.escape, words)))
                self._except = re.compile(r"\b(?:" + "|".join(self._exceptions) + r")\b")
            return
        if term.startswith("?"):
            term, tag = term[1:], tag or "hold"
        inside = term.startswith("*")
        words = _words(skeleton(term.lstrip("*")))
        if not words:
            return
        self.size += 1
        if len(words) > 1:
            phrase = tuple(squeeze(w) for w in words)
            self._phrases.setdefault(phrase[0], []).append((phrase, tag))
            self._spelled.setdefault(squeeze("".join(words)), []).append((_letters_pattern("".join(words)), tag))
            return
        self._plain.append((("*" if inside else "") + words[0], tag))
        self._masks = None
        table = self._inside if inside else self._words
        table.setdefault(squeeze(words[0]), []).append((_letters_pattern(words[0]), tag))

    @classmethod
    def from_files(cls, paths: Iterable[Path], extra: Iterable[str] = ()) -> BlockList:
        bl = cls()
        for path in paths:
            try:
                with open(path, encoding="utf-8") as f:
                    for line in f:
                        bl.add(line)
            except FileNotFoundError:
                raise ConfigError(f"{path}: the block list does not exist.") from None
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError(f"{path}: the block list cannot be read ({e}).") from None
        for t in extra:
            bl.add(t)
        return bl

    def _token_hits(self, token: str, squeezed: str) -> Iterator[str]:
        for pattern, tag in self._words.get(squeezed, ()):
            if pattern.fullmatch(token):
                yield tag

    def _run_hits(self, run: list[str]) -> Iterator[str]:
        # Any stretch of the run may be the word: "s h i t a", "a f u c k".
        for i in range(len(run) - 1):
            for j in range(i + 2, min(len(run), i + 12) + 1):
                joined = "".join(run[i:j])
                yield from self._token_hits(joined, squeeze(joined))
        if self._spelled:
            solid = "".join(run)
            squeezed = squeeze(solid)
            for w, entries in self._spelled.items():
                if w in squeezed:
                    yield from (tag for pattern, tag in entries if pattern.search(solid))

    def _hits(self, form: _Form) -> Iterator[str]:
        words = self._words
        for t, sq in zip(form.tokens, form.squeezed):
            if sq in words:
                yield from self._token_hits(t, sq)
        for run in form.runs:
            yield from self._run_hits(run)
        if self._phrases:
            squeezed = form.squeezed
            for i, first in enumerate(squeezed):
                if first in self._phrases:
                    for phrase, tag in self._phrases[first]:
                        if tuple(squeezed[i : i + len(phrase)]) == phrase:
                            yield tag
        for w, entries in self._inside.items():
            if w in form.solid_squeezed:
                yield from (tag for pattern, tag in entries if pattern.search(form.solid))

    def _masked_hits(self, masked: tuple[str, ...]) -> Iterator[str]:
        if self._masks is None:
            self._masks = [(_masked_pattern(w.lstrip("*")), w.startswith("*"), tag) for w, tag in self._plain]
        for m in masked:
            for pattern, inside, tag in self._masks:
                if (pattern.search(m) if inside else pattern.fullmatch(m)) is not None:
                    yield tag

    def without_exceptions(self, text: str) -> str:
        """The text with the list's exceptions taken out (for every word-level layer)."""
        return self._except.sub(" ", skeleton(text)) if self._except is not None else text

    def _all_hits(self, text: str) -> Iterator[str]:
        forms, masked = _forms(self.without_exceptions(text))
        for f in forms:
            yield from self._hits(f)
        if masked:
            yield from self._masked_hits(masked)

    def matches(self, text: str) -> bool:
        """Whether text (already normalised) holds a blocked term."""
        if not self.size:
            return False
        return next(self._all_hits(text), None) is not None

    def tags(self, text: str) -> set[str]:
        """The tags of every term the text (already normalised) holds."""
        return set(self._all_hits(text)) if self.size else set()
