"""Chat commands: one line of chat in, one `Command` (or None) out.

The forms are the ones Twitch viewers already know. Twitch drops a message
identical to the viewer's previous one, so every vote has several spellings
(`!vote 2`, `!2`, `+2`) and anything after the command is ignored, as are the
invisible characters chat clients append to get round that rule. A line is
read as `streambot.text` reads chat for matching: after Unicode NFKC, so
full-width forms typed with an East Asian input method (`！２`, `!vote ２`) are
the same command, and without what draws nothing (zero-width spaces and
joiners, tags, fillers), wherever it is.
`!anarchy` and `!democracy` are chat's vote between the modes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ..text import for_matching

Kind = Literal["prompt", "vote", "mode", "help", "now", "ban", "unban", "skip", "lock", "unlock"]
ModAction = Literal["ban", "unban", "skip", "lock", "unlock"]

MODERATOR_KINDS: frozenset[ModAction] = frozenset({"ban", "unban", "skip", "lock", "unlock"})

_VOTE = re.compile(r"(?:[!+]\s*#?|!v(?:ote)?\s*#?)(\d{1,6})(?!\w)", re.ASCII | re.IGNORECASE)
_WORD = re.compile(r"!(\w+)(?:\s+(.*))?", re.ASCII | re.DOTALL)
_USER = re.compile(r"@?([\w.\-]{1,40})", re.ASCII)

_ALIASES: dict[str, Kind] = {
    "p": "prompt",
    "prompt": "prompt",
    "help": "help",
    "commands": "help",
    "now": "now",
    "ban": "ban",
    "unban": "unban",
    "skip": "skip",
    "lock": "lock",
    "unlock": "unlock",
}

# Chat's vote between the modes, in the words Twitch Plays Pokemon made known.
MODES = {"anarchy": "anarchy", "chaos": "anarchy", "democracy": "rounds", "order": "rounds"}

HELP = "!p <idea> to suggest what happens next, !vote N (or !N, +N) to vote, !now for what is on."


@dataclass(frozen=True, slots=True)
class Command:
    kind: Kind
    text: str = ""  # the idea of a prompt, or the user a ban names
    number: int = 0  # the candidate a vote names


def clean(message: str) -> str:
    """What the viewer meant to type. Chatterino/7TV append U+E0000 (or U+034F)
    to repeat a message, other clients zero-width characters: all of them go."""
    return for_matching(message[:1000])


def parse(message: str) -> Command | None:
    """The command in a chat line, or None for ordinary chat."""
    message = clean(message)
    if not message or message[0] not in "!+":
        return None
    m = _VOTE.match(message)
    if m:
        return Command("vote", number=int(m.group(1)))
    m = _WORD.match(message)
    if not m:
        return None
    word = m.group(1).lower()
    rest = (m.group(2) or "").strip()
    if word in MODES or (word in ("v", "vote") and rest.split()[:1] and rest.split()[0].lower() in MODES):
        return Command("mode", text=MODES[word if word in MODES else rest.split()[0].lower()])
    kind = _ALIASES.get(word)
    if kind is None:
        return None
    if kind == "prompt":
        return Command("prompt", text=rest) if rest else None
    if kind in ("ban", "unban"):
        u = _USER.match(rest)
        return Command(kind, text=u.group(1).lower()) if u else None
    return Command(kind)
