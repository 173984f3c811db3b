"""The world backends and chat platforms streambot knows, by name.

Each entry is a name, one line that describes it (what `--help` and
`streambot check` print) and where its code lives, as "module:attribute"
text: nothing is imported until that entry is used, so listing the worlds
for `--help` never loads torch, and the sketch world never does either.
A new world or chat platform is a module of its own plus one line here;
app.py builds whatever is named.

This module sits at the bottom of the package (it imports nothing of
streambot's), so the settings can check a name against it without
importing any backend.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


class UnknownName(ValueError):
    """A name no entry has; the message lists the ones there are."""


class MissingPackage(ImportError):
    """An entry's code needs a package that is not installed; the message says which and how to get it."""


@dataclass(frozen=True)
class Entry:
    name: str
    description: str  # one line, for --help and `streambot check`
    create: str  # "module:attribute", imported when the entry is used
    check: str = ""  # "module:attribute" that checks the entry's settings without starting anything
    # A world's own settings: "module:Model", a pydantic model in a module that imports no
    # backend; config validates the [world.NAME] table with it when the settings are loaded.
    settings: str = ""
    needs: str = ""  # what `create` imports beyond the base install, when it does
    install: str = ""  # and how to get it

    def load(self, which: str = "create") -> Any:
        """The attribute `which` ("create", "check" or "settings") names, imported now."""
        module, _, attr = getattr(self, which).partition(":")
        return getattr(importlib.import_module(module), attr)


class Registry:
    """Entries by name, in the order they were registered."""

    def __init__(self, kind: str, entries: tuple[Entry, ...] = ()) -> None:
        self.kind = kind  # "world", "chat platform": how the messages name an entry
        self._entries: dict[str, Entry] = {}
        for e in entries:
            self.register(e)

    def register(self, entry: Entry) -> Entry:
        if entry.name in self._entries:
            raise ValueError(f"there is already a {self.kind} named {entry.name!r}")
        self._entries[entry.name] = entry
        return entry

    def names(self) -> list[str]:
        return list(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(self.unknown(name)) from None

    def load(self, name: str, which: str = "create") -> Any:
        """An entry's factory (or its settings check); a missing optional package is one sentence."""
        entry = self.get(name)
        try:
            return entry.load(which)
        except ImportError as e:
            if not entry.needs:
                raise
            raise MissingPackage(
                f"The {name!r} {self.kind} needs {entry.needs} ({e.name or e} is missing): {entry.install}."
            ) from None

    def unknown(self, name: str) -> str:
        """The end of a sentence ("[world] backend ..."): the name is not known, and these are."""
        return f"must name a {self.kind} streambot has (one of: {', '.join(self._entries)}), not {name!r}"

    def help(self) -> str:
        """One line per entry: its name and what it is."""
        width = max(len(n) for n in self._entries)
        return "\n".join(f"{e.name:<{width}}  {e.description}" for e in self)


GPU_EXTRA = "pip install -U 'streambot[gpu]'"

# A world's `create` takes its own settings table ([world.NAME]) and returns a
# loaded world; its `check` takes the same table and raises ConfigError; its
# `settings` model is what config validates that table with (a new world needs
# no field in config.py).
WORLDS = Registry(
    "world",
    (
        Entry(
            "sketch",
            "a procedural landscape drawn on any CPU, no weights (the default)",
            "streambot.world.sketch:create_world",
            check="streambot.world.sketch_settings:parse_sketch_settings",
            settings="streambot.world.sketch_settings:SketchWorldSettings",
        ),
        Entry(
            "stream",
            "image-to-image diffusion (SD-Turbo) in real time, on one GPU",
            "streambot.world.stream:create_world",
            check="streambot.world.stream_settings:parse_stream_settings",
            settings="streambot.world.stream_settings:StreamWorldSettings",
            needs="diffusers and transformers",
            install=GPU_EXTRA,
        ),
        Entry(
            "video",
            "a causal video model (AnyFlow-FAR, diffusers 0.42 or newer), on one large GPU",
            "streambot.world.video:create_world",
            check="streambot.world.video_settings:parse_video_settings",
            settings="streambot.world.video_settings:VideoWorldSettings",
            needs="diffusers 0.42 or newer and transformers",
            install=GPU_EXTRA,
        ),
    ),
)

# A chat platform's `create` names a class with `wanted(settings, chat_source)`,
# `check(settings, secrets)` (raises ConfigError) and `create(context)`
# (streambot/audience/platforms.py).
CHATS = Registry(
    "chat platform",
    (
        Entry(
            "terminal",
            "prompts typed in this terminal or appended to a file (--chat -|FILE; none: off)",
            "streambot.audience.platforms:Terminal",
        ),
        Entry(
            "twitch",
            "Twitch chat: !p prompts, votes, channel points ([twitch] enabled = true)",
            "streambot.audience.platforms:Twitch",
        ),
        Entry(
            "discord",
            "Discord: slash commands and round messages, voice when on ([discord] enabled = true)",
            "streambot.audience.platforms:Discord",
        ),
    ),
)
