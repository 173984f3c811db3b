"""Drawing the overlay's panels from an `OverlayState` and a layout.

Three panels: "now" (the prompt on air and who gave it), "vote" (the numbered
candidates with live vote bars and the round's countdown) and "help" (how to
play). Each is drawn with PIL at the output resolution into its own small
premultiplied RGBA patch, and each is cached on the part of the state it
shows, so the countdown's tick redraws the vote panel only.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from .overlay_layout import OverlayLayout, Panel
from .overlay_state import OverlayState
from .overlay_text import FontSet, Line, draw_line, wrap

SS = 4  # supersampling for shapes' edges


@dataclass(frozen=True)
class Patch:
    """One panel: premultiplied RGBA pixels with their top-left in the frame."""

    x: int
    y: int
    rgba: NDArray[np.uint8]  # (h, w, 4) uint8, colour already multiplied by alpha
    name: str = ""

    @property
    def box(self) -> tuple[int, int, int, int]:
        h, w = self.rgba.shape[:2]
        return self.x, self.y, self.x + w, self.y + h


RGB = tuple[int, int, int]


class Stroke(TypedDict):
    """The outline every text on a panel is drawn with (passed on as keywords)."""

    stroke: int
    stroke_colour: RGB


def rgb(hex_colour: str) -> RGB:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


def hex_alpha(hex_colour: str) -> float:
    return int(hex_colour[7:9], 16) / 255 if len(hex_colour) == 9 else 1.0


@functools.lru_cache(maxsize=64)
def rounded_mask(w: int, h: int, r: int) -> Image.Image:
    """An anti-aliased rounded rectangle (or pill, or circle) as an L mask."""
    w, h = max(1, w), max(1, h)
    r = max(0, min(r, w // 2, h // 2))
    big = Image.new("L", (w * SS, h * SS), 0)
    ImageDraw.Draw(big).rounded_rectangle((0, 0, w * SS - 1, h * SS - 1), radius=r * SS, fill=255)
    return big.resize((w, h), Image.Resampling.BOX)


@functools.lru_cache(maxsize=64)
def _lut(opacity: float) -> list[int]:
    return [round(v * opacity) for v in range(256)]


def _scaled(mask: Image.Image, opacity: float) -> Image.Image:
    return mask if opacity >= 1 else mask.point(_lut(opacity))


class Canvas:
    """An RGBA image with the few operations panels need."""

    def __init__(self, w: int, h: int) -> None:
        self.img = Image.new("RGBA", (max(1, w), max(1, h)), (0, 0, 0, 0))

    def cover(self, x: int, y: int, mask: Image.Image, colour: RGB, opacity: float = 1.0) -> None:
        """Lay `colour` over the image with coverage `mask`."""
        if opacity <= 0:
            return
        self.img.paste((*colour, 255), (x, y, x + mask.width, y + mask.height), _scaled(mask, opacity))

    def box(self, x: int, y: int, w: int, h: int, r: int, colour: RGB, opacity: float = 1.0) -> None:
        if w > 0 and h > 0:
            self.cover(x, y, rounded_mask(w, h, r), colour, opacity)

    def text(
        self, line: Line, x: float, baseline: float, colour: RGB, *, stroke: int = 0, stroke_colour: RGB = (0, 0, 0)
    ) -> None:
        draw_line(self.img, x, baseline, line, colour, stroke=stroke, stroke_fill=stroke_colour)

    def pixels(self) -> NDArray[np.uint8]:
        """Premultiplied, as the blend wants it."""
        return np.asarray(self.img.convert("RGBa"))


class OverlayRenderer:
    """Draws the panels for one layout and output size; caches each panel."""

    def __init__(self, layout: OverlayLayout, size: tuple[int, int]) -> None:
        self.layout = layout
        self.size = size
        self.fonts = FontSet(layout.style.font)
        self.light = FontSet(layout.style.font_light)
        self._cache: dict[str, tuple[object, Patch | None]] = {}

    # -- the whole overlay --------------------------------------------------------
    def render(self, state: OverlayState) -> list[Patch]:
        """The panels for `state`, in drawing order (nothing while off air)."""
        if state.off_air:
            return []
        panels = [
            ("now", self.layout.now, (state.on_air, state.on_air_by, state.source, state.title), self._now),
            (
                "vote",
                self.layout.vote,
                (state.mode, state.round, state.seconds_left, state.round_s, state.locked, state.candidates),
                self._vote,
            ),
            ("help", self.layout.help, (state.how_to_play,), self._help),
        ]
        out = []
        for name, cfg, key, draw in panels:
            if not cfg.show:
                continue
            hit = self._cache.get(name)
            if hit is None or hit[0] != key:
                hit = (key, draw(state))
                self._cache[name] = hit
            if hit[1] is not None:
                out.append(hit[1])
        return out

    # -- measures -------------------------------------------------------------------
    def _px(self, fraction: float) -> int:
        return max(1, round(fraction * self.size[1]))

    @property
    def _stroke(self) -> int:
        o = self.layout.style.outline
        return round(o * self.size[1]) if o > 0 else 0

    def _place(self, cfg: Panel, w: int, h: int) -> tuple[int, int]:
        W, H = self.size
        ax, ay = cfg.x * W, cfg.y * H
        horiz = cfg.anchor.split("-")[-1] if "-" in cfg.anchor else "center"
        vert = cfg.anchor.split("-")[0] if "-" in cfg.anchor else "middle"
        x = ax - (w if horiz == "right" else w / 2 if horiz in ("center", "middle") else 0)
        y = ay - (h if vert == "bottom" else h / 2 if vert in ("middle", "center") else 0)
        x = min(max(0, round(x)), max(0, W - w))
        y = min(max(0, round(y)), max(0, H - h))
        return x, y

    def _panel(self, name: str, cfg: Panel, w: int, h: int) -> tuple[Canvas, int, int, int]:
        """A canvas with the panel's backing, border and glow drawn; returns it
        with the panel's left/top inside the canvas and its margin."""
        st = self.layout.style
        H = self.size[1]
        glow = round(st.glow * H)
        m = glow * 2
        c = Canvas(w + 2 * m, h + 2 * m)
        r = round(st.radius * H)
        bw = max(1, round(st.border_width * H)) if st.border_width > 0 else 0
        outer = rounded_mask(w, h, r)
        inner = Image.new("L", (w, h), 0)
        inner.paste(rounded_mask(w - 2 * bw, h - 2 * bw, max(0, r - bw)), (bw, bw))
        ring = ImageChops.subtract(outer, inner)
        if glow:
            # a soft halo falling off outside the panel (neon)
            halo = Image.new("L", c.img.size, 0)
            halo.paste(outer, (m, m))
            cut = halo.copy()
            halo = halo.filter(ImageFilter.GaussianBlur(glow / 2))
            c.cover(0, 0, ImageChops.subtract(halo, cut), rgb(st.glow_color), st.glow_opacity)
        c.box(m, m, w, h, r, rgb(st.backing), st.backing_opacity)
        if bw:
            c.cover(m, m, ring, rgb(st.border), st.border_opacity)
        return c, m, m, m

    def _finish(self, name: str, cfg: Panel, canvas: Canvas, margin: int, w: int, h: int) -> Patch:
        x, y = self._place(cfg, w, h)
        return Patch(x - margin, y - margin, canvas.pixels(), name)

    def _baseline(self, top: float, line_h: float, px: int) -> float:
        # Centre the capitals (cap height ~0.71 em in Noto Sans) in the line box.
        return top + line_h / 2 + 0.36 * px

    def _pill_size(self, text: str, px: int, dot: bool) -> tuple[int, int, Line]:
        line = wrap(text, self.fonts, px, 40 * px, 1)[0]
        pad, dot_w = round(px * 0.7), (round(px * 0.6) + round(px * 0.45) if dot else 0)
        return round(line.width) + 2 * pad + dot_w, round(px * 1.7), line

    def _pill(self, c: Canvas, x: int, y: int, text: str, px: int, bg: RGB, fg: RGB, *, dot: RGB | None = None) -> int:
        """A small label on a rounded pill; returns its width."""
        w, h, line = self._pill_size(text, px, dot is not None)
        padx = round(px * 0.7)
        c.box(x, y, w, h, h // 2, bg)
        tx = x + padx
        if dot is not None:
            d = round(px * 0.6)
            c.box(tx, y + (h - d) // 2, d, d, d // 2, dot)
            tx += d + round(px * 0.45)
        c.text(line, tx, self._baseline(y, h, px), fg)
        return w

    # -- now ------------------------------------------------------------------------
    def _now(self, s: OverlayState) -> Patch | None:
        cfg, st = self.layout.now, self.layout.style
        W, H = self.size
        px = self._px(cfg.text_size)
        small = max(self._px(0.022), round(px * 0.6))
        pad = self._px(st.padding)
        max_w = round(cfg.width * W)
        inner = max_w - 2 * pad
        # 1. measure: the label row, the prompt's lines, who gave it
        label_w, pill_h, _ = self._pill_size(cfg.label, small, True)
        title = wrap(s.title, self.light, small, max(10, inner - label_w - small), 1)[0] if cfg.show_title else None
        lines = wrap(s.on_air, self.fonts, px, inner, cfg.max_lines) if s.on_air else []
        if s.source == "story" or not s.on_air_by:
            who_text = "the world's own story" if s.on_air else "the story begins"
        else:
            who_text = f"by {s.on_air_by}" if s.source == "audience" else f"by {s.on_air_by} (streamer)"
        who = wrap(who_text, self.light, small, inner, 1)[0]
        line_h = round(px * 1.28)
        gap = round(px * 0.3)
        content_h = pill_h + gap + len(lines) * line_h + (gap // 2 if lines else 0) + round(small * 1.4)
        widest = max(
            [label_w + (round(title.width) + small if title else 0), round(who.width)]
            + [round(line.width) for line in lines]
        )
        w = min(max_w, max(widest + 2 * pad, round(0.22 * W)))
        h = content_h + 2 * pad
        # 2. draw
        c, ox, oy, m = self._panel("now", cfg, w, h)
        x0, y = ox + pad, oy + pad
        pw = self._pill(c, x0, y, cfg.label, small, rgb(st.live), (255, 255, 255), dot=(255, 255, 255))
        if title is not None:
            c.text(
                title,
                x0 + pw + small * 0.8,
                self._baseline(y, pill_h, small),
                rgb(st.muted),
                stroke=self._stroke,
                stroke_colour=rgb(st.outline_color),
            )
        y += pill_h + gap
        for line in lines:
            lx = x0 + (w - 2 * pad - line.width if line.rtl else 0)  # right to left: flush right
            c.text(
                line,
                lx,
                self._baseline(y, line_h, px),
                rgb(st.text),
                stroke=self._stroke,
                stroke_colour=rgb(st.outline_color),
            )
            y += line_h
        if lines:
            y += gap // 2
        c.text(
            who,
            x0,
            self._baseline(y, round(small * 1.4), small),
            rgb(st.muted),
            stroke=self._stroke,
            stroke_colour=rgb(st.outline_color),
        )
        return self._finish("now", cfg, c, m, w, h)

    # -- vote -----------------------------------------------------------------------
    def _vote(self, s: OverlayState) -> Patch | None:
        cfg, st = self.layout.vote, self.layout.style
        W, H = self.size
        cands = s.candidates[: cfg.max_candidates]
        if s.mode == "anarchy" and not cands:
            return None
        px = self._px(cfg.text_size)
        small = max(self._px(0.022), round(px * 0.72))
        pad = self._px(st.padding)
        w = round(cfg.width * W)
        inner = w - 2 * pad
        accent, muted, text = rgb(st.accent), rgb(st.muted), rgb(st.text)
        stroke = Stroke(stroke=self._stroke, stroke_colour=rgb(st.outline_color))
        # 1. measure
        head_h = round(px * 1.6)
        bar_h = max(2, round(H * 0.005))
        row_h = round(px * 2.05)
        badge = round(px * 1.35)
        if s.locked:
            clock = wrap("PAUSED", self.fonts, small, inner, 1)[0]
        elif s.mode == "anarchy":
            clock = None
        else:
            m_, sec = divmod(max(0, s.seconds_left), 60)
            clock = wrap(f"{m_}:{sec:02d}" if m_ else f"{sec}s", self.fonts, round(px * 1.15), inner, 1)[0]
        title_txt = "ANARCHY" if s.mode == "anarchy" else cfg.title
        title = wrap(title_txt, self.fonts, px, inner // 2, 1)[0]
        sub = wrap(
            f"ROUND {s.round}" if s.round else "",
            self.light,
            small,
            max(10, inner - round(title.width) - (round(clock.width) if clock else 0) - px),
            1,
        )[0]
        body_h = row_h * len(cands) if cands else round(px * 1.6)
        h = pad + head_h + bar_h + round(px * 0.45) + body_h + pad
        # 2. header: title, round, countdown, time bar
        c, ox, oy, m = self._panel("vote", cfg, w, h)
        x0, y = ox + pad, oy + pad
        base = self._baseline(y, head_h, px)
        c.text(title, x0, base, text, **stroke)
        c.text(sub, x0 + title.width + px * 0.5, base, muted, **stroke)
        if clock is not None:
            col = rgb(st.live) if s.locked or (0 < s.seconds_left <= 3) else accent
            c.text(clock, x0 + inner - clock.width, base, col, **stroke)
        y += head_h
        c.box(x0, y, inner, bar_h, bar_h // 2, text, st.bar_track_opacity)
        if s.round_s > 0 and s.mode != "anarchy":
            frac = min(1.0, max(0.0, s.seconds_left / s.round_s))
            c.box(x0, y, round(inner * frac), bar_h, bar_h // 2, accent)
        y += bar_h + round(px * 0.45)
        # 3. the candidates
        if not cands:
            hint = wrap("no ideas yet: type !p and your idea", self.light, small, inner, 1)[0]
            c.text(hint, x0, self._baseline(y, round(px * 1.6), small), muted, **stroke)
        lead = max((cd.share for cd in cands), default=0.0)
        num_px = round(px * 0.8)
        pct_w = round(small * 2.6) if cfg.show_percent else 0
        for cd in cands:
            leading = lead > 0 and cd.share == lead
            by = y + (row_h - badge) // 2 - round(px * 0.12)
            c.box(x0, by, badge, badge, badge // 2, accent if leading else text, 1.0 if leading else 0.9)
            num = wrap(str(cd.number), self.fonts, num_px, badge * 2, 1)[0]
            c.text(num, x0 + (badge - num.width) / 2, self._baseline(by, badge, num_px), rgb(st.accent_text))
            tx = x0 + badge + round(px * 0.5)
            tw = x0 + inner - tx - pct_w
            line = wrap(cd.text, self.fonts, px, tw, 1)[0]
            text_top = y + round(px * 0.05)
            c.text(
                line,
                tx + (tw - line.width if line.rtl else 0),
                self._baseline(text_top, round(px * 1.3), px),
                text,
                **stroke,
            )
            if cfg.show_percent:
                pct = wrap(f"{round(cd.share * 100)}%", self.light, small, pct_w, 1)[0]
                c.text(
                    pct,
                    x0 + inner - pct.width,
                    self._baseline(text_top, round(px * 1.3), px),
                    accent if leading else muted,
                    **stroke,
                )
            vb_h = max(3, round(px * 0.2))
            vb_y = text_top + round(px * 1.42)
            vb_w = x0 + inner - tx
            c.box(tx, vb_y, vb_w, vb_h, vb_h // 2, text, st.bar_track_opacity)
            if cd.share > 0:
                c.box(
                    tx,
                    vb_y,
                    max(vb_h, round(vb_w * min(1.0, cd.share))),
                    vb_h,
                    vb_h // 2,
                    accent,
                    1.0 if leading else 0.75,
                )
            y += row_h
        return self._finish("vote", cfg, c, m, w, h)

    # -- help -----------------------------------------------------------------------
    def _help(self, s: OverlayState) -> Patch | None:
        cfg, st = self.layout.help, self.layout.style
        W = self.size[0]
        if not s.how_to_play.strip():
            return None
        px = self._px(cfg.text_size)
        small = max(self._px(0.02), round(px * 0.62))
        pad = self._px(st.padding)
        gap = round(px * 0.55)
        stroke = Stroke(stroke=self._stroke, stroke_colour=rgb(st.outline_color))
        max_w = round(cfg.width * W)
        label_w, pill_h, _ = self._pill_size(cfg.label, small, False) if cfg.label else (0, 0, None)
        avail = max_w - 2 * pad - label_w - (gap if cfg.label else 0)
        # Segments split at "·"; a chat command (a word starting with "!") in the accent colour.
        space = self.fonts.primary.font(px).getlength(" ")
        pieces: list[tuple[Line, tuple[int, int, int], float]] = []  # (text, colour, advance after)
        segments = [seg.strip() for seg in s.how_to_play.split("·") if seg.strip()]
        for i, seg in enumerate(segments):
            if i:
                pieces[-1] = (*pieces[-1][:2], gap)
                pieces.append((wrap("·", self.fonts, px, avail, 1)[0], rgb(st.muted), gap))
            for word in seg.split():
                colour = rgb(st.accent) if word.startswith("!") else rgb(st.text)
                pieces.append((wrap(word, self.fonts, px, avail, 1)[0], colour, space))
        if pieces:
            pieces[-1] = (*pieces[-1][:2], 0.0)
        total = sum(p.width + adv for p, _, adv in pieces)
        if total > avail:  # too long for one line: one colour, ellipsised
            one = wrap(" · ".join(segments), self.fonts, px, avail, 1)[0]
            pieces, total = [(one, rgb(st.text), 0.0)], one.width
        line_h = round(px * 1.5)
        w = round(label_w + (gap if cfg.label else 0) + total + 2 * pad)
        h = line_h + pad
        c, ox, oy, m = self._panel("help", cfg, w, h)
        x = ox + pad
        if cfg.label:
            x += self._pill(c, x, oy + (h - pill_h) // 2, cfg.label, small, rgb(st.accent), rgb(st.accent_text)) + gap
        base = self._baseline(oy + (h - line_h) / 2, line_h, px)
        pen: float = x
        for line, colour, adv in pieces:
            c.text(line, pen, base, colour, **stroke)
            pen += line.width + adv
        return self._finish("help", cfg, c, m, w, h)


def composite_rgb(frame: NDArray[np.uint8], patches: list[Patch]) -> NDArray[np.uint8]:
    """The overlay laid over an RGB frame in floating point (screenshots, tests)."""
    out = frame.astype(np.float32).copy()
    H, W = out.shape[:2]
    for p in patches:
        x0, y0, x1, y1 = p.box
        cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        src = p.rgba[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0].astype(np.float32)
        a = src[..., 3:4] / 255
        out[cy0:cy1, cx0:cx1] = out[cy0:cy1, cx0:cx1] * (1 - a) + src[..., :3]
    picture: NDArray[np.uint8] = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return picture
