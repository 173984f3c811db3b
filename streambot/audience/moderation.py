"""Moderation: nothing bad goes on air.

Every prompt passes `Moderation.check_prompt` before it can become a
candidate: it is normalised (Unicode NFKC, control, zero-width and bidi
characters removed, look-alike letters folded, URLs and @mentions dropped,
whitespace collapsed, length capped), matched against the block lists after
undoing the usual evasions (spacing, leetspeak, repeated letters, accents,
homoglyphs), checked by the inline safety layers (concept terms and the
offensive-language classifier, `audience.safety`), and rate-limited per
viewer and overall (checked before the layers: chat past the limits costs
none). A new candidate then waits, hidden, for the semantic layer
(`Moderation.screen`, run by the voting engine's pooling worker).
Slang is judged as what it means ("seggs" as "sex", config/moderation/slang.txt).
A listed word that is only the name of an animal, a plant or a place to
WordNet ("blue-footed boobies", "pussy willow") is held rather than refused.
A prompt the layers are unsure of is held for a moderator (`held`), or
refused where `moderation.hold = "refuse"` (no moderator watching).
Refused and held prompts are counted by layer and category, logged without
their text, and never echoed.

Look-alike letters come from Unicode's confusables data as packaged by
`confusable_homoglyphs`; the cleaning rules are `streambot.text`'s, the
block lists' matching `streambot.blocklist`'s.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cachetools import FIFOCache, LRUCache

from ..blocklist import BlockList, fold_char
from ..config import CONFIG_DIR, ModerationSettings
from ..ratelimit import RateLimiter
from ..text import for_matching
from ..viewer import Viewer

if TYPE_CHECKING:
    import numpy as np

    from ..worldspec import WorldSpec
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


# -- block lists ---------------------------------------------------------------


def block_list_paths(settings: ModerationSettings, base: Path = MODERATION_DIR) -> list[Path]:
    paths = []
    for name in settings.block_lists:
        p = Path(os.path.expanduser(name))
        paths.append(p if p.is_absolute() else base / p)
    return paths


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
            block_list = BlockList.from_files(block_list_paths(self.settings), self.settings.block_words)
        self.block_list = block_list
        if safety is None:
            from .safety import build_safety

            s = self.settings
            safety = build_safety(
                classifier=s.classifier,
                semantic=s.semantic,
                classifier_threshold=s.classifier_threshold,
                classifier_hold_threshold=s.classifier_hold_threshold,
                semantic_hold_threshold=s.semantic_hold_threshold,
                semantic_threshold=s.semantic_threshold,
                wait_for_model=wait_for_model,
            )
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
        # The limits before the layers, checked here and spent only on a prompt that passes:
        # chat past them is dropped, as the platforms drop it, before the layers spend a
        # millisecond on it (a crowd's prompts come far faster than the global limit). Both
        # are checked before either is spent: a prompt the global limit refuses must not
        # cost the viewer their own allowance.
        limited = not viewer.is_moderator
        if (limited and not self._viewer_limit.check(viewer.key, now)) or not self._global_limit.check("*", now):
            return Verdict(False, "", "rate_limited")
        finding = self._refusal(clean)
        if finding is not None:
            self._count(finding, f"{viewer.platform}:{viewer.name}")
            if self._refuses(finding):
                return Verdict(False, "", "blocked")
        if self.is_new(viewer, now):
            return Verdict(False, "", "new_viewer")
        if limited:
            self._viewer_limit.allow(viewer.key, now)
        self._global_limit.allow("*", now)
        return Verdict(True, clean, "ok", held=finding is not None)

    def screen(
        self, texts: Sequence[str], vectors: np.ndarray | None = None, *, wait: bool = True
    ) -> list[ScreenVerdict]:
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
