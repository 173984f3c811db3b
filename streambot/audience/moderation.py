"""Moderation: nothing bad goes on air.

Every prompt passes `Moderation.check_prompt` before it can become a
candidate: it is normalised (Unicode NFKC, control, zero-width and bidi
characters removed, look-alike letters folded, URLs and @mentions dropped,
whitespace collapsed, length capped), matched against the block lists after
undoing the usual evasions (spacing, leetspeak, repeated letters, accents,
homoglyphs), checked by the inline safety layers (concept terms and the
offensive-language classifier, `audience.safety`), and rate-limited per
viewer and overall. A new candidate then waits, hidden, for the semantic
layer (`Moderation.screen`, run by the voting engine's pooling worker).
Slang is judged as what it means ("seggs" as "sex", config/moderation/slang.txt).
A listed word that is only the name of an animal, a plant or a place to
WordNet ("blue-footed boobies", "pussy willow") is held rather than refused.
A prompt the layers are unsure of is held for a moderator (`held`), or
refused where `moderation.hold = "refuse"` (no moderator watching).
Refused and held prompts are counted by layer and category, logged without
their text, and never echoed.

Look-alike letters come from Unicode's confusables data as packaged by
`confusable_homoglyphs`; the cleaning rules are `streambot.text`'s.
"""
from __future__ import annotations

import itertools
import logging
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cachetools import FIFOCache, LRUCache

from ..config import CONFIG_DIR, ConfigError, ModerationSettings
from ..text import for_matching
from .events import Viewer

if TYPE_CHECKING:
    import numpy as np

    from ..world.base import WorldSpec
    from .safety import Finding, Safety

log = logging.getLogger(__name__)

MODERATION_DIR = CONFIG_DIR / "moderation"

Reason = Literal["ok", "empty", "blocked", "banned", "rate_limited", "new_viewer"]
ScreenVerdict = Literal["admit", "hold", "refuse"]

# -- normalisation -------------------------------------------------------------

_URL = re.compile(
    r"(?:[a-z][a-z0-9+.\-]*://|www\.)\S*"  # scheme:// or www.
    r"|\b[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.(?:[a-z]{2,6})(?::\d+)?/\S*"  # host.tld/path
    r"|\b[a-z0-9\-]{2,}(?:\.[a-z0-9\-]+)*\.(?:com|net|org|io|gg|tv|ly|me|co|xyz|ru|de|uk|app|dev|link|info|biz)\b",
    re.IGNORECASE,
)
_MENTION = re.compile(r"(?<![\w@])@\w[\w.\-]*")
@lru_cache(maxsize=65536)
def fold_char(ch: str) -> str | None:
    """The ASCII letter or digit a character is confusable with, if any."""
    from confusable_homoglyphs.confusables import confusables_data

    for glyph in confusables_data.get(ch, ()):
        c = glyph["c"]
        if c.isascii() and c.isalnum():
            return c.lower()
    return None


def _is_latin_letter(ch: str) -> bool:
    return ch.isalpha() and (ch.isascii() or 0xC0 <= ord(ch) < 0x250)


def _fold_mixed_word(word: str) -> str:
    """A word mixing Latin letters with look-alikes from other scripts
    (a homograph trick) is folded to Latin; a word in one script is kept."""
    if not any(_is_latin_letter(c) for c in word):
        return word
    out = []
    changed = False
    for c in word:
        if not c.isascii() and not _is_latin_letter(c):
            f = fold_char(c)
            if f is not None:
                out.append(f)
                changed = True
                continue
        out.append(c)
    return "".join(out) if changed else word


def normalise(text: str, max_length: int = 200) -> str:
    """The prompt as it may be shown: clean, folded, short, without links."""
    text = for_matching(text[: max_length * 8])  # the slice bounds the cost of a 10,000-character message
    if not text.isascii():
        text = " ".join(_fold_mixed_word(w) for w in text.split())
    if "." in text or "/" in text:
        text = _URL.sub(" ", text)
    if "@" in text:
        text = _MENTION.sub(" ", text)
    text = " ".join(text.split())
    if len(text) > max_length:
        text = text[:max_length].rstrip()
    return text


# -- matching ------------------------------------------------------------------

_LEET = str.maketrans({
    "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
    "@": "a", "$": "s", "!": "i", "|": "l", "+": "t", "(": "c", "€": "e", "£": "l",
})
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
    def from_files(cls, paths: Iterable[Path], extra: Iterable[str] = ()) -> "BlockList":
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
            sq = form.squeezed
            for i, first in enumerate(sq):
                if first in self._phrases:
                    for phrase, tag in self._phrases[first]:
                        if tuple(sq[i:i + len(phrase)]) == phrase:
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


def block_list_paths(settings: ModerationSettings, base: Path = MODERATION_DIR) -> list[Path]:
    paths = []
    for name in settings.block_lists:
        p = Path(os.path.expanduser(name))
        paths.append(p if p.is_absolute() else base / p)
    return paths


# -- rate limits -----------------------------------------------------------------

class RateLimiter:
    """Token buckets per key, on whatever clock the caller passes in.

    Hand-written rather than `limits`: it runs on the show's clock, which
    replays and tests drive virtually, and `limits` reads the wall clock."""

    def __init__(self, per_s: float, burst: int, *, max_keys: int = 100_000) -> None:
        self.per_s = per_s
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: LRUCache[str, tuple[float, float]] = LRUCache(max_keys)  # the idlest go first

    def _tokens(self, key: str, now: float) -> float:
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + max(0.0, now - last) * self.per_s)

    def check(self, key: str, now: float) -> bool:
        """Whether `allow` would say yes, without spending anything."""
        return self._tokens(key, now) >= 1.0

    def allow(self, key: str, now: float) -> bool:
        tokens = self._tokens(key, now)
        ok = tokens >= 1.0
        if ok:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        return ok


# -- the moderator ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    text: str  # the normalised prompt; empty unless ok
    reason: Reason
    held: bool = False  # ok, but a moderator must approve it before it is shown


def _ban_key(name: str, platform: str | None) -> str:
    return f"{platform or '*'}:{name.lstrip('@').lower()}"


class Moderation:
    """Normalisation, block lists, safety layers, bans, rate limits and the new-viewer wait."""

    def __init__(
        self,
        settings: ModerationSettings | None = None,
        *,
        block_list: BlockList | None = None,
        safety: Safety | None = None,
        bans: Iterable[str] = (),
        wait_for_model: bool = True,
    ) -> None:
        """`wait_for_model=False`: the sentence model loads in the background
        (the semantic layer takes it when it is there; see safety.py)."""
        self.settings = settings or ModerationSettings()
        if block_list is None:
            block_list = BlockList.from_files(
                block_list_paths(self.settings), self.settings.block_words
            )
        self.block_list = block_list
        if safety is None:
            from .safety import build_safety

            s = self.settings
            safety = build_safety(classifier=s.classifier, semantic=s.semantic,
                                  classifier_threshold=s.classifier_threshold,
                                  classifier_hold_threshold=s.classifier_hold_threshold,
                                  semantic_hold_threshold=s.semantic_hold_threshold,
                                  semantic_threshold=s.semantic_threshold, wait_for_model=wait_for_model)
        self.safety = safety
        self.refused: Counter[tuple[str, str]] = Counter()  # (layer, category) -> prompts
        self.held: Counter[tuple[str, str]] = Counter()  # the same, for prompts held for a moderator
        # Ban keys: "platform:name" or "*:name" (by name), "platform:id" (a platform account).
        self.bans: set[str] = set(bans)
        self.ban_names: dict[str, str] = {}  # an account's ban key -> the name it was banned under
        self._accounts: LRUCache[str, set[tuple[str, str]]] = LRUCache(200_000)  # name -> (platform, id) seen
        s = self.settings
        self._viewer_limit = RateLimiter(s.viewer_prompts_per_min / 60.0, s.viewer_burst)
        self._global_limit = RateLimiter(s.global_prompts_per_min / 60.0, s.global_burst)
        self._first_seen: FIFOCache[str, float] = FIFOCache(500_000)
        self.blocked_total = 0

    # viewers
    def seen(self, viewer: Viewer, now: float) -> None:
        """Note that a viewer chatted (for the new-viewer wait)."""
        if self.settings.new_viewer_wait_s > 0 and viewer.key not in self._first_seen:
            self._first_seen[viewer.key] = now

    def is_new(self, viewer: Viewer, now: float) -> bool:
        wait = self.settings.new_viewer_wait_s
        if wait <= 0 or viewer.is_moderator:
            return False
        first = self._first_seen.get(viewer.key)
        return first is None or now - first < wait

    def remember(self, viewer: Viewer) -> None:
        """Note which platform account goes by this name, so a ban by name holds the account."""
        if not viewer.id:
            return
        name = viewer.name.lower()
        self._accounts[name] = self._accounts.get(name, set()) | {(viewer.platform, viewer.id)}

    def is_banned(self, viewer: Viewer) -> bool:
        if not self.bans:
            return False
        name = viewer.name.lower()
        return viewer.key in self.bans or f"*:{name}" in self.bans or f"{viewer.platform}:{name}" in self.bans

    def _accounts_named(self, name: str, platform: str | None) -> list[str]:
        return sorted(f"{p}:{i}" for p, i in self._accounts.get(name, ()) if platform in (None, p))

    def ban(self, name: str, platform: str | None = None, *, user_id: str = "") -> list[str]:
        """Ban by name (on one platform or everywhere, and the accounts recently seen under that
        name), or one platform account by its id. Returns the keys added."""
        name = name.lstrip("@")
        if user_id:
            if not platform:
                raise ValueError("a ban by user id needs the platform")
            keys = [f"{platform}:{user_id}"]
        else:
            keys = [_ban_key(name, platform), *self._accounts_named(name.lower(), platform)]
        for key in keys:
            self.bans.add(key)
            if key != _ban_key(name, platform) and name:
                self.ban_names[key] = name
        return keys

    def unban(self, name: str, platform: str | None = None) -> list[str]:
        """Lift a ban; without a platform, the name's bans everywhere. The name may also be the
        platform id the ban was keyed by."""
        name = name.lstrip("@").lower()
        if platform:
            keys = {_ban_key(name, platform)}
        else:
            keys = {b for b in self.bans if b.split(":", 1)[1] == name}
        keys |= {k for k, n in self.ban_names.items() if n.lower() == name and platform in (None, k.split(":")[0])}
        keys |= set(self._accounts_named(name, platform))
        keys &= self.bans
        for k in keys:
            self.bans.discard(k)
            self.ban_names.pop(k, None)
        return sorted(keys)

    # prompts
    def normalise(self, text: str) -> str:
        return normalise(text, self.settings.max_length)

    def is_blocked(self, text: str) -> bool:
        return self.block_list.matches(text)

    def set_world(self, spec: WorldSpec) -> None:
        """The safety categories this world allows (`[moderation] allow` in its preset)."""
        allow = (spec.extra.get("moderation") or {}).get("allow", [])
        if self.safety is not None:
            self.safety.allow(allow)

    def _refusal(self, clean: str) -> Finding | None:
        """The inline layers: block lists, then concept terms and the classifier;
        a refusal from any of them, else a hold from any of them, else None."""
        from .safety import Finding, worse

        if self.safety is not None:
            clean = self.safety.read(clean)  # slang with what it means: "seggs" is judged as "sex"
        tags = self.block_list.tags(clean) if self.block_list.size else set()
        listed = None
        if tags - {"hold"}:
            refuses = lambda t: bool(self.block_list.tags(t) - {"hold"})  # noqa: E731 (one line, used once)
            if self.safety is None or not self.safety.harmless_listing(clean, refuses):
                return Finding("block_list", "")
            tags = {"hold"}  # "pussy willow", "blue-footed boobies": a moderator tells them apart
        if tags:
            listed = Finding("block_list", "", "hold")
        if self.safety is None:
            return listed
        # "Moby Dick" is an exception for the classifier too, not only for the list
        return worse(listed, self.safety.check(self.block_list.without_exceptions(clean)))

    def _refuses(self, finding: Finding) -> bool:
        """A hold is a refusal where no moderator is expected to review (`hold = "refuse"`)."""
        return finding.action == "refuse" or self.settings.hold == "refuse"

    def _count(self, finding: Finding, who: str) -> None:
        if self._refuses(finding):
            self.blocked_total += 1
            self.refused[(finding.layer, finding.category)] += 1
            log.info("refused a prompt from %s (%s %s)", who, finding.layer, finding.category)
        else:
            self.held[(finding.layer, finding.category)] += 1
            log.info("held a prompt from %s for a moderator (%s %s)", who, finding.layer, finding.category)

    def check_prompt(self, viewer: Viewer, text: str, now: float) -> Verdict:
        """Whether a viewer's prompt may become a candidate, and in what words."""
        if self.is_banned(viewer):
            return Verdict(False, "", "banned")
        clean = self.normalise(text)
        if not clean or not any(c.isalnum() for c in clean):
            return Verdict(False, "", "empty")
        finding = self._refusal(clean)
        if finding is not None:
            self._count(finding, f"{viewer.platform}:{viewer.name}")
            if self._refuses(finding):
                return Verdict(False, "", "blocked")
        if self.is_new(viewer, now):
            return Verdict(False, "", "new_viewer")
        # Check both before spending either: a prompt the global limit refuses
        # must not cost the viewer their own allowance.
        limited = not viewer.is_moderator
        if (limited and not self._viewer_limit.check(viewer.key, now)) or not self._global_limit.check("*", now):
            return Verdict(False, "", "rate_limited")
        if limited:
            self._viewer_limit.allow(viewer.key, now)
        self._global_limit.allow("*", now)
        return Verdict(True, clean, "ok", held=finding is not None)

    def screen(self, texts: Sequence[str], vectors: np.ndarray | None = None, *,
               wait: bool = True) -> list[ScreenVerdict]:
        """The semantic layer for new candidates: "admit", "hold" (for a moderator) or "refuse".

        The voting engine calls this from its pooling worker with the
        embeddings it computed; a failing model refuses the batch rather than
        let unscreened prompts on air. `wait=False`: never wait for a model
        still loading (see `Safety.screen`).
        """
        if self.safety is None:
            return ["admit"] * len(texts)
        try:
            findings = self.safety.screen(texts, vectors, wait=wait)
        except Exception:
            log.exception("the semantic safety check failed; this batch of candidates is refused")
            return ["refuse"] * len(texts)
        out: list[ScreenVerdict] = []
        for f in findings:
            if f is None:
                out.append("admit")
                continue
            self._count(f, "a candidate")
            out.append("refuse" if self._refuses(f) else "hold")
        return out

    def warm_up(self) -> None:
        """Load the layers' models now, so the first viewer's idea is screened as fast as the rest."""
        if self.safety is not None:
            self.safety.warm_up()

    def check_text(self, text: str) -> str | None:
        """Every layer at once, for the streamer's own prompt: the clean text, or None if refused.

        What the layers would hold goes through: the streamer is the moderator who would approve it."""
        clean = self.normalise(text)
        if not clean or not any(c.isalnum() for c in clean):
            return None
        from .safety import worse

        finding = self._refusal(clean)
        # (on the event loop: a sentence model still loading is not waited for)
        if self.safety is not None and (finding is None or finding.action != "refuse"):
            finding = worse(finding, self.safety.screen([clean], wait=False)[0])
        if finding is not None and finding.action == "refuse":
            self._count(finding, "the streamer")
            return None
        return clean
