"""Chat commands: one line of chat in, one `Command` (or None) out.

The forms are the ones Twitch viewers already know. Twitch drops a message
identical to the viewer's previous one, so every vote has several spellings
(`!vote 2`, `!2`, `+2`) and anything after the command is ignored, as are the
invisible characters chat clients append to get round that rule.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["prompt", "vote", "help", "now", "ban", "unban", "skip", "lock", "unlock"]

MODERATOR_KINDS = frozenset({"ban", "unban", "skip", "lock", "unlock"})

# Chatterino/7TV append U+E0000 (or U+034F) to repeat a message; other clients
# use zero-width characters. None of them belongs in a command.
_INVISIBLE = dict.fromkeys(
    [0x034F, 0x180E, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0xE0000, 0x00AD], None
)

_VOTE = re.compile(r"(?:[!+]\s*|!v(?:ote)?\s+#?)(\d{1,4})(?!\w)", re.ASCII | re.IGNORECASE)
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

HELP = "!p <idea> to suggest what happens next, !vote N (or !N, +N) to vote, !now for what is on."


@dataclass(frozen=True, slots=True)
class Command:
    kind: Kind
    text: str = ""  # the idea of a prompt, or the user a ban names
    number: int = 0  # the candidate a vote names


def parse(message: str) -> Command | None:
    """The command in a chat line, or None for ordinary chat."""
    message = message.lstrip()
    if not message or message[0] not in "!+":
        return None
    message = message[:1000].translate(_INVISIBLE).strip()
    m = _VOTE.match(message)
    if m:
        return Command("vote", number=int(m.group(1)))
    m = _WORD.match(message)
    if not m:
        return None
    kind = _ALIASES.get(m.group(1).lower())
    if kind is None:
        return None
    rest = (m.group(2) or "").strip()
    if kind == "prompt":
        return Command("prompt", text=rest) if rest else None
    if kind in ("ban", "unban"):
        u = _USER.match(rest)
        return Command(kind, text=u.group(1).lower()) if u else None
    return Command(kind)
