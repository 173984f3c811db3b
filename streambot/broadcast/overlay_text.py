"""Text for the burned-in overlay: hostile input made safe, a font per
character, bidi order, measuring, wrapping with an ellipsis, drawing.

Chat text is untrusted: it arrives with control characters, bidi overrides,
zero-width tricks, zalgo floods, 10,000-character pastes, emoji, CJK and
Arabic. `clusters()` cleans it and gives each grapheme cluster the first
shipped font whose cmap holds it (emoji to the colour emoji font first); a
cluster no font can draw becomes '?', so no tofu box is ever drawn and
nothing here raises on any string.

Clusters are Unicode's extended grapheme clusters (`regex`'s `\\X`); a line's
direction and the order of its runs come from the Unicode Bidirectional
Algorithm (`bidi.py`, FriBidi), the shaper lays out each run.

Drawing is onto straight (not premultiplied) RGBA images: PIL's fills and
text blend over what is there; emoji bitmaps are composited.
"""

from __future__ import annotations

import functools
import logging
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import regex
from PIL import Image, ImageDraw, ImageFont, features

from .. import cache
from ..text import MAX_MARKS, for_display  # noqa: F401  (MAX_MARKS: the bound clean_text keeps)
from .bidi import embedding_levels, visual_order

log = logging.getLogger(__name__)

FONT_DIR = Path(__file__).resolve().parents[2] / "overlays" / "fonts"
# Tried in order after the layout's own font; every file ships in overlays/fonts.
FALLBACK_FONTS = (
    "NotoSans-Bold.ttf",
    "NotoSansArabic-Bold.ttf",
    "NotoSansHebrew-Bold.ttf",
    "NotoSansCJKsc-Bold-Subset.otf",
    "NotoSansDevanagari-Bold.ttf",
    "NotoSansBengali-Bold.ttf",
    "NotoSansTamil-Bold.ttf",
    "NotoSansThai-Bold.ttf",
    "NotoSansArmenian-Bold.ttf",
    "NotoSansGeorgian-Bold.ttf",
    "NotoSansEthiopic-Bold.ttf",
    "NotoSansSymbols-Bold.ttf",
    "NotoSansSymbols2-Regular.ttf",
)
EMOJI_FONT = "NotoColorEmoji.ttf"
EMOJI_PX = 109  # the only strike size FreeType loads from Noto Color Emoji (CBDT)
EMOJI_SCALE = 1.0  # emoji height in ems of the surrounding text
REPLACEMENT = "?"
ELLIPSIS = "…"
MAX_INPUT = 4000  # characters looked at; the rest cannot fit any overlay box
MAX_CLUSTERS = 300  # clusters kept after cleaning (a 2-line prompt holds ~120)

RAQM = bool(features.check("raqm"))  # None only for a feature Pillow does not know

_GRAPHEME = regex.compile(r"\X")
_WIDE = (
    (0x1100, 0x115F),
    (0x2E80, 0x9FFF),
    (0xAC00, 0xD7A3),
    (0xF900, 0xFAFF),
    (0xFE30, 0xFE4F),
    (0xFF00, 0xFF60),
    (0x20000, 0x3FFFD),
)


def _is_wide(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _WIDE)


def clean_text(text: object) -> str:
    """Untrusted text -> one line of drawable characters (not yet font-checked),
    by `streambot.text`'s rules for display (at most MAX_MARKS marks on a base)."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    return for_display(text[:MAX_INPUT])


def split_clusters(text: str) -> list[str]:
    """Extended grapheme clusters (UAX #29, the `regex` module's `\\X`): a base
    with its marks, emoji with modifiers, keycaps, ZWJ sequences, flag pairs,
    Hangul syllables spelled in jamo."""
    return _GRAPHEME.findall(text)


# -- fonts ---------------------------------------------------------------------


class Face:
    """One font file: its cmap (what it can draw) and its sizes, loaded lazily.

    `shaped`: laid out by libraqm (ligatures, Arabic joining, right-to-left
    runs); without it PIL places glyph after glyph, which is all a machine
    without libraqm can do, so that path is a choice here rather than a guess.
    """

    def __init__(self, path: Path, shaped: bool = RAQM) -> None:
        self.path = Path(path)
        self.shaped = shaped and RAQM
        self.cmap = font_cmap(self.path)
        self.color = self.path.name == EMOJI_FONT
        self._sizes: dict[int, ImageFont.FreeTypeFont] = {}

    def __repr__(self) -> str:
        return f"Face({self.path.name})"

    def has(self, cluster: str) -> bool:
        """Every character of the cluster (selectors and joiners aside) is in the cmap."""
        return all(
            ord(c) in self.cmap or ord(c) in (0x200D, 0xFE0E, 0xFE0F, 0x20E3) and c != cluster[0] for c in cluster
        )

    def font(self, px: int) -> ImageFont.FreeTypeFont:
        px = EMOJI_PX if self.color else max(1, int(px))
        f = self._sizes.get(px)
        if f is None:
            layout = ImageFont.Layout.RAQM if self.shaped else ImageFont.Layout.BASIC
            f = ImageFont.truetype(str(self.path), px, layout_engine=layout)
            self._sizes[px] = f
        return f


_CMAP_FORMAT = 1


def read_cmap(path: Path) -> frozenset[int]:
    """The code points the font file maps to glyphs (its best cmap), read by fontTools."""
    from fontTools.ttLib import TTFont

    with TTFont(path, lazy=True) as tt:
        return frozenset(tt.getBestCmap() or ())


def font_cmap(path: Path) -> frozenset[int]:
    """`read_cmap`, kept in the start-up cache (streambot/cache.py) under the
    file's path, size and modification time: the overlay's drawing process
    needs every shipped font's cmap before its first picture, and fontTools'
    import and the tables' parsing were a quarter of a second of its start."""
    stat = path.stat()
    k = cache.key("font-cmap", _CMAP_FORMAT, str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    arrays = cache.cached(
        f"font-cmap-{path.stem}", k, lambda: {"codepoints": np.array(sorted(read_cmap(path)), np.uint32)}
    )
    return frozenset(arrays["codepoints"].tolist())


@functools.cache
def load_face(path: Path, shaped: bool = RAQM) -> Face:
    return Face(path, shaped)


class FontSet:
    """A primary font and the shared fallback chain, with per-cluster choice."""

    def __init__(
        self,
        primary: str = "NotoSans-Bold.ttf",
        font_dir: Path = FONT_DIR,
        fallbacks: tuple[str, ...] = FALLBACK_FONTS,
        emoji: str | None = EMOJI_FONT,
        *,
        shaped: bool = RAQM,
    ) -> None:
        names = [primary] + [f for f in fallbacks if f != primary]
        self.faces = [load_face(Path(font_dir) / n, shaped) for n in names]
        self.primary = self.faces[0]
        self.emoji = load_face(Path(font_dir) / emoji, shaped) if emoji else None
        self._choice: dict[str, Face | None] = {}

    def face_for(self, cluster: str) -> Face | None:
        """The first face that can draw the whole cluster; emoji prefer colour."""
        if cluster in self._choice:
            return self._choice[cluster]
        face = self._pick(cluster)
        if len(self._choice) > 20000:
            self._choice.clear()
        self._choice[cluster] = face
        return face

    def _pick(self, cluster: str) -> Face | None:
        cp = ord(cluster[0])
        emoji_like = (
            len(cluster) > 1
            and any(
                ord(c) in (0xFE0F, 0x200D, 0x20E3) or 0x1F3FB <= ord(c) <= 0x1F3FF or 0x1F1E6 <= ord(c) <= 0x1F1FF
                for c in cluster[1:]
            )
            and not cluster.endswith("\ufe0e")
        ) or cp >= 0x1F000
        if emoji_like and self.emoji is not None and self.emoji.has(cluster):
            return self.emoji
        for face in self.faces:
            if face.has(cluster):
                return face
        # Marks no font pairs with the base are dropped rather than boxed.
        base = cluster[0]
        if len(cluster) > 1:
            return self._pick(base) if base != cluster else None
        if self.emoji is not None and self.emoji.has(base):
            return self.emoji
        return None


def coverage(fonts: FontSet) -> list[tuple[int, int]]:
    """Every code point some face of `fonts` can draw, as inclusive ranges
    (the OBS page replaces the rest with '?', as the burned-in overlay does)."""
    cps = sorted(set().union(*(f.cmap for f in fonts.faces), fonts.emoji.cmap if fonts.emoji else ()))
    ranges: list[tuple[int, int]] = []
    for cp in cps:
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    return ranges


@dataclass(frozen=True)
class Glyph:
    """One cluster with the face that draws it."""

    text: str
    face: Face


def clusters(text: object, fonts: FontSet) -> tuple[list[Glyph], bool]:
    """Clean `text` and give every cluster a face; '?' where none has it.
    Also says whether the text was cut before layout (then an ellipsis is due)."""
    cleaned = clean_text(text)
    parts = split_clusters(cleaned)
    cut = len(parts) > MAX_CLUSTERS or (isinstance(text, str) and len(text) > MAX_INPUT)
    out: list[Glyph] = []
    for c in parts[:MAX_CLUSTERS]:
        face = fonts.face_for(c)
        if face is None:
            # "𝕳𝖊𝖑𝖑𝖔", "ｆｕｌｌ" and the like: their compatibility form, if drawable
            plain = unicodedata.normalize("NFKC", c)
            pieces = [(p, fonts.face_for(p)) for p in split_clusters(plain)] if plain != c and plain.strip() else []
            if pieces and all(f is not None for _, f in pieces):
                out.extend(_glyph(p, f) for p, f in pieces if f is not None)
            else:
                out.append(Glyph(REPLACEMENT, fonts.primary))
        else:
            out.append(_glyph(c, face))
    # Spaces and neutral punctuation take the face around them, so a run of
    # Arabic or CJK with spaces is shaped as one piece.
    for i, g in enumerate(out):
        if _neutral(g.text) and 0 < i:
            prev = out[i - 1].face
            if prev is not g.face and not prev.color and prev.has(g.text):
                out[i] = Glyph(g.text, prev)
    return out, cut


def _glyph(c: str, face: Face) -> Glyph:
    return Glyph(c if face.has(c) else c[0], face)  # marks the fallback dropped


def _neutral(text: str) -> bool:
    return len(text) == 1 and unicodedata.bidirectional(text) in ("WS", "ON", "CS", "ES", "ET", "EN", "AN")


# -- measuring and lines --------------------------------------------------------

_widths: dict[tuple[Path, bool, int, str, bool], float] = {}


def _emoji_scale(px: int) -> float:
    return px * EMOJI_SCALE / EMOJI_PX


def run_width(text: str, face: Face, px: int, rtl: bool = False) -> float:
    key = (face.path, face.shaped, px, text, rtl)
    w = _widths.get(key)
    if w is None:
        font = face.font(px)
        direction = ("rtl" if rtl else "ltr") if face.shaped and not face.color else None
        w = font.getlength(text, direction=direction)
        if face.color:
            w *= _emoji_scale(px)
        if len(_widths) > 50000:
            _widths.clear()
        _widths[key] = w
    return w


@dataclass(frozen=True)
class Run:
    text: str
    face: Face
    rtl: bool
    width: float


@dataclass(frozen=True)
class Line:
    runs: tuple[Run, ...]  # visual order, left to right
    width: float
    px: int
    rtl: bool  # the paragraph reads right to left (align it to the right)
    text: str  # logical order, what it says (tests, logs)


def build_line(glyphs: list[Glyph], px: int, *, ellipsis_face: Face | None = None) -> Line:
    """Glyphs in logical order -> runs of one face in visual order."""
    items = list(glyphs)
    if ellipsis_face is not None:
        items.append(Glyph(ELLIPSIS, ellipsis_face))
    # 1. every glyph's embedding level, by the Unicode bidi algorithm over the whole line
    logical = "".join(g.text for g in items)
    bidi = embedding_levels(logical)
    levels: list[int] = []
    at = 0
    for g in items:
        levels.append(bidi.levels[at])  # a cluster's marks share its base's level
        at += len(g.text)
    # 2. runs of one face at one level
    runs: list[tuple[str, Face, int]] = []
    for g, lvl in zip(items, levels):
        if runs and runs[-1][1] is g.face and runs[-1][2] == lvl:
            runs[-1] = (runs[-1][0] + g.text, g.face, lvl)
        else:
            runs.append((g.text, g.face, lvl))
    # 3. the runs in visual order (UAX #9 L2); the shaper orders the characters inside each
    out = []
    for k in visual_order([lvl for _, _, lvl in runs]):
        text, face, lvl = runs[k]
        rtl = lvl % 2 == 1
        if rtl and not face.shaped:
            text = "".join(reversed(split_clusters(text)))  # no shaper: at least the right order
        out.append(Run(text, face, rtl, run_width(text, face, px, rtl and face.shaped)))
    return Line(tuple(out), sum(r.width for r in out), px, bidi.rtl, logical)


def _glyph_widths(glyphs: list[Glyph], px: int) -> list[float]:
    return [run_width(g.text, g.face, px) for g in glyphs]


def _strip(glyphs: list[Glyph]) -> list[Glyph]:
    i, j = 0, len(glyphs)
    while i < j and glyphs[i].text == " ":
        i += 1
    while j > i and glyphs[j - 1].text == " ":
        j -= 1
    return glyphs[i:j]


def fit_line(glyphs: list[Glyph], px: int, max_width: float, fonts: FontSet, *, cut: bool = False) -> Line:
    """One line that fits `max_width`, ending in an ellipsis when text is lost."""
    glyphs = _strip(glyphs)
    if not cut:
        line = build_line(glyphs, px)
        if line.width <= max_width:
            return line
    ell = fonts.primary if fonts.primary.has(ELLIPSIS) else fonts.faces[0]
    ell_w = run_width(ELLIPSIS, ell, px)
    widths = _glyph_widths(glyphs, px)
    k, acc = 0, ell_w
    while k < len(glyphs) and acc + widths[k] <= max_width:
        acc += widths[k]
        k += 1
    while True:
        line = build_line(_strip(glyphs[:k]), px, ellipsis_face=ell)
        if line.width <= max_width or k == 0:
            return line
        k -= 1


def _breakable_after(glyphs: list[Glyph], i: int) -> bool:
    t = glyphs[i].text
    if t == " " or t in "-/,;:)]}、。，":
        return True
    nxt = glyphs[i + 1].text if i + 1 < len(glyphs) else " "
    return _is_wide(ord(t[0])) or _is_wide(ord(nxt[0]))


def wrap(text: object, fonts: FontSet, px: int, max_width: float, max_lines: int = 1) -> list[Line]:
    """Lines that fit `max_width`, at most `max_lines`, the last ellipsised if
    text is left over. Breaks at spaces, else between CJK characters, else
    anywhere a word is longer than the line."""
    glyphs, cut = clusters(text, fonts)
    glyphs = _strip(glyphs)
    lines: list[Line] = []
    widths = _glyph_widths(glyphs, px)
    i, n = 0, len(glyphs)
    while i < n and len(lines) < max_lines:
        if len(lines) == max_lines - 1:
            lines.append(fit_line(glyphs[i:], px, max_width, fonts, cut=cut))
            break
        # 1. a first guess from the glyphs' own widths (shaping only narrows
        # Arabic and kerned Latin), then 2. the shaped line decides
        breaks = [b + 1 for b in range(i, n - 1) if _breakable_after(glyphs, b)] + [n]
        acc, j = 0.0, i
        while j < n and acc + widths[j] <= max_width:
            acc += widths[j]
            j += 1
        fits = [b for b in breaks if b <= j]
        k = len(fits) - 1  # index in `breaks` of the guess

        def measure(end: int) -> Line:
            return build_line(_strip(glyphs[i:end]), px)  # noqa: B023  (called only within this iteration)

        if k < 0:  # one word longer than the line: as many clusters as fit
            end = max(j, i + 1)
            line = measure(end)
            while line.width > max_width and end > i + 1:
                end -= 1
                line = measure(end)
        else:
            line = measure(breaks[k])
            while line.width > max_width and k > 0:
                k -= 1
                line = measure(breaks[k])
            while k + 1 < len(breaks):
                wider = measure(breaks[k + 1])
                if wider.width > max_width:
                    break
                k, line = k + 1, wider
            end = breaks[k]
        if end >= n and cut:
            line = fit_line(glyphs[i:end], px, max_width, fonts, cut=True)
        lines.append(line)
        i = end
        while i < n and glyphs[i].text == " ":
            i += 1
    return lines or [build_line([], px)]


# -- drawing --------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _emoji_image(text: str, face: Face, px: int) -> tuple[Image.Image, int, int]:
    """A run of emoji drawn at the font's one size and scaled to `px`, with its
    offset from the pen position on the baseline."""
    font = face.font(EMOJI_PX)
    left, top, right, bottom = font.getbbox(text, anchor="ls")
    w, h = max(1, int(right - left)), max(1, int(bottom - top))
    big = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    ImageDraw.Draw(big).text((-left, -top), text, font=font, anchor="ls", embedded_color=True)
    # Drawn over nothing, the bitmap comes out premultiplied: scale it as such.
    big = Image.frombytes("RGBa", big.size, big.tobytes())
    s = _emoji_scale(px)
    small = big.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return small.convert("RGBA"), round(left * s), round(top * s)


def draw_line(
    img: Image.Image,
    x: float,
    baseline: float,
    line: Line,
    fill: tuple[int, int, int],
    *,
    stroke: int = 0,
    stroke_fill: tuple[int, int, int] = (0, 0, 0),
) -> None:
    """Draw `line` with its left end at `x` on the baseline `baseline` (RGBA)."""
    draw = ImageDraw.Draw(img)
    for run in line.runs:
        if run.face.color:
            im, dx, dy = _emoji_image(run.text, run.face, line.px)
            _composite(img, im, round(x) + dx, round(baseline) + dy)
        else:
            direction = ("rtl" if run.rtl else "ltr") if run.face.shaped else None
            draw.text(
                (x, baseline),
                run.text,
                font=run.face.font(line.px),
                anchor="ls",
                fill=(*fill, 255),
                stroke_width=stroke,
                stroke_fill=(*stroke_fill, 255),
                direction=direction,
            )
        x += run.width


def _composite(dst: Image.Image, src: Image.Image, x: int, y: int) -> None:
    """`src` over `dst` at (x, y), clipped to `dst`."""
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(dst.width, x + src.width), min(dst.height, y + src.height)
    if x1 > x0 and y1 > y0:
        dst.alpha_composite(src, (x0, y0), (x0 - x, y0 - y, x1 - x, y1 - y))
