"""Overlay layouts: files in overlays/layouts/ that place and colour the overlay.

A layout says where each panel sits (fractions of the frame, from an anchor),
how big its text is (a fraction of the frame height, so 720p and 1080p look
alike), and the colours, backing, corners and outline. A streamer restyles
the overlay by copying a file; a preset picks its own with a top-level
`overlay = "neon"`. The same layout, as JSON (`layout_json`), drives the OBS
browser-source page.
"""

from __future__ import annotations

import functools
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..config import ConfigError, explain_validation
from ..worldspec import WorldSpec
from .overlay_text import EMOJI_FONT, FALLBACK_FONTS, FONT_DIR, FontSet, coverage

OVERLAY_DIR = FONT_DIR.parent
LAYOUT_DIR = OVERLAY_DIR / "layouts"
DEFAULT_LAYOUT = "default"

Color = Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}([0-9a-fA-F]{2})?$")]
Fraction = Annotated[float, Field(ge=0, le=1)]
Anchor = Literal[
    "top-left",
    "top-center",
    "top-right",
    "middle-left",
    "center",
    "middle-right",
    "bottom-left",
    "bottom-center",
    "bottom-right",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Style(_Strict):
    font: str = "NotoSans-Bold.ttf"  # in overlays/fonts; other scripts fall back per character
    font_light: str = "NotoSans-Regular.ttf"  # secondary text: who, round, percentages
    text: Color = "#FFFFFF"
    muted: Color = "#C7CEE4"
    accent: Color = "#FFC83D"  # numbers, countdown, vote bars, chat commands
    accent_text: Color = "#16181F"  # text drawn on the accent colour
    live: Color = "#FF3B4E"  # the "now" label
    backing: Color = "#0A0E1A"
    backing_opacity: Fraction = 0.72
    border: Color = "#FFFFFF"
    border_opacity: Fraction = 0.10
    border_width: Annotated[float, Field(ge=0, le=0.02)] = 0.0015  # of the frame height
    radius: Annotated[float, Field(ge=0, le=0.1)] = 0.016  # corner radius, of the frame height
    padding: Annotated[float, Field(ge=0, le=0.1)] = 0.02  # inside a panel, of the frame height
    outline: Annotated[float, Field(ge=0, le=0.01)] = 0.0  # text outline, of the frame height
    outline_color: Color = "#000000"
    glow: Annotated[float, Field(ge=0, le=0.05)] = 0.0  # a soft border glow (neon), of the frame height
    glow_color: Color = "#FFC83D"
    glow_opacity: Fraction = 0.6
    bar_track_opacity: Fraction = 0.16

    @field_validator("font", "font_light")
    @classmethod
    def _font_exists(cls, v: str) -> str:
        if "/" in v or "\\" in v or not (FONT_DIR / v).is_file():
            raise ValueError(f"names no font file in overlays/fonts ({v!r})")
        return v


class Panel(_Strict):
    show: bool = True
    anchor: Anchor = "top-left"
    x: Fraction = 0.05  # where the anchor point sits, as fractions of the frame
    y: Fraction = 0.05
    width: Annotated[float, Field(gt=0.05, le=1)] = 0.5  # the widest the panel may grow
    text_size: Annotated[float, Field(ge=0.015, le=0.2)] = 0.04  # of the frame height


class NowPanel(Panel):
    """The prompt on air and who gave it."""

    label: Annotated[str, Field(max_length=24)] = "NOW"
    show_title: bool = True  # the world's title beside the label
    max_lines: Annotated[int, Field(ge=1, le=4)] = 2


class VotePanel(Panel):
    """This round's candidates, their vote bars and the countdown."""

    anchor: Anchor = "top-right"
    x: Fraction = 0.95
    width: Annotated[float, Field(gt=0.05, le=1)] = 0.34
    text_size: Annotated[float, Field(ge=0.015, le=0.2)] = 0.031
    title: Annotated[str, Field(max_length=24)] = "VOTE"
    max_candidates: Annotated[int, Field(ge=1, le=10)] = 4
    show_percent: bool = True


class HelpPanel(Panel):
    """One line of how to play."""

    anchor: Anchor = "bottom-center"
    x: Fraction = 0.5
    y: Fraction = 0.95
    width: Annotated[float, Field(gt=0.05, le=1)] = 0.9
    text_size: Annotated[float, Field(ge=0.015, le=0.2)] = 0.03
    label: Annotated[str, Field(max_length=24)] = "CHAT"


class OverlayLayout(_Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=40)]
    description: str = ""
    style: Style = Style()
    now: NowPanel = NowPanel()
    vote: VotePanel = VotePanel()
    help: HelpPanel = HelpPanel()


def layout_path(name_or_path: str) -> Path:
    if name_or_path.endswith(".toml") or "/" in name_or_path or "\\" in name_or_path:
        return Path(name_or_path)
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name_or_path):
        raise ConfigError(f"{name_or_path!r} is not an overlay layout name (lowercase letters, digits, - and _).")
    path = LAYOUT_DIR / f"{name_or_path}.toml"
    if not path.exists():
        names = ", ".join(sorted(p.stem for p in LAYOUT_DIR.glob("*.toml")))
        raise ConfigError(f"There is no overlay layout named {name_or_path!r}; choose one of: {names}.")
    return path


def load_layout(name_or_path: str = DEFAULT_LAYOUT) -> OverlayLayout:
    """A layout by name (overlays/layouts/NAME.toml) or by path, validated."""
    path = layout_path(name_or_path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such overlay layout file.") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e}).") from None
    data.setdefault("name", path.stem)
    try:
        return OverlayLayout.model_validate(data)
    except ValidationError as e:
        raise ConfigError(explain_validation(e, path, unknown="is not a known layout setting")) from None


def layout_name(configured: str, spec: WorldSpec | None = None) -> str:
    """The layout to use: the settings' `[overlay] layout`, else the world
    preset's own `overlay = "..."`, else the default."""
    if configured:
        return configured
    own = (getattr(spec, "extra", None) or {}).get("overlay") if spec is not None else None
    return own if isinstance(own, str) and own else DEFAULT_LAYOUT


def layout_json(name_or_path: str | OverlayLayout = DEFAULT_LAYOUT) -> dict[str, object]:
    """The layout for the OBS page (served at /overlay/layout.json): the
    validated layout plus the font files the page loads from /overlay/fonts/."""
    layout = name_or_path if isinstance(name_or_path, OverlayLayout) else load_layout(name_or_path)
    data = layout.model_dump()
    data["fonts"] = {
        "primary": layout.style.font,
        "light": layout.style.font_light,
        "fallbacks": [f for f in FALLBACK_FONTS if f not in (layout.style.font, layout.style.font_light)],
        "emoji": EMOJI_FONT,
    }
    # what the shipped fonts can draw: the page shows '?' for the rest, never a box
    data["coverage"] = _coverage(layout.style.font)
    return data


@functools.cache
def _coverage(font: str) -> list[list[int]]:
    return [list(r) for r in coverage(FontSet(font))]
