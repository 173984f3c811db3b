"""A viewer: who sent a line of chat, a vote or a voice note, on which platform.

Every part that reads the audience passes this one value around: adapters
make it, moderation keys bans and rate limits by it, the voting engine counts
one vote per viewer and keeps them across a restart. It sits below all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Viewer:
    platform: str
    name: str
    roles: frozenset[str] = frozenset()
    id: str = ""
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The platform's user id when there is one: a rename keeps the viewer's votes and bans.
        object.__setattr__(self, "key", f"{self.platform}:{self.id or self.name.lower()}")

    @property
    def is_moderator(self) -> bool:
        return "moderator" in self.roles or "broadcaster" in self.roles

    def as_dict(self) -> dict[str, object]:
        return {"platform": self.platform, "name": self.name, "roles": sorted(self.roles), "id": self.id}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Viewer:
        return cls(d["platform"], d["name"], frozenset(d.get("roles", ())), d.get("id", ""))
