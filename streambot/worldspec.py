"""A world spec: what a preset (or a custom world file) says about a world.

Config reads presets into it, every world backend starts from it, and the
timeline records it; so it sits below all of them, and depends on nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class WorldSpec:
    """What a preset (or a custom world file) says about a world."""

    name: str
    title: str
    description: str
    style: str
    beats: tuple[str, ...]
    # Backend-specific settings, passed through untouched (e.g. [sketch] tables).
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)  # TOML data, as tomllib gives it

    def to_dict(self) -> dict[str, object]:
        """Plain JSON data (a TOML date in `extra` becomes its text), for the timeline."""
        extra = json.loads(json.dumps(self.extra, default=str))
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "style": self.style,
            "beats": list(self.beats),
            "extra": extra,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WorldSpec:  # JSON data, as to_dict wrote it
        return cls(
            str(d["name"]),
            str(d["title"]),
            str(d["description"]),
            str(d["style"]),
            tuple(str(b) for b in d["beats"]),
            dict(d.get("extra") or {}),
        )
