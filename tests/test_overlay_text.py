"""Overlay text: hostile input made safe, a font per character (no tofu), bidi
order, wrapping and ellipsis. Real fonts from overlays/fonts, no mocks."""

from __future__ import annotations

import functools
import unicodedata

import numpy as np
import pytest
from fontTools.ttLib import TTFont
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import ImageFont, features

from streambot.broadcast.overlay_text import (
    ELLIPSIS,
    EMOJI_FONT,
    FONT_DIR,
    MAX_MARKS,
    REPLACEMENT,
    FontSet,
    clean_text,
    clusters,
    draw_line,
    wrap,
)

ZALGO = "Z" + "".join(chr(c) for c in range(0x300, 0x36F)) + "algo" + "\u0489" * 50
HOSTILE = {
    "10k latin": "x" * 10_000,
    "10k words": "dragon " * 1500,
    "zalgo": ZALGO * 20,
    "rtl override": "\u202egnp.exe\u202c harmless \u2066isolate\u2069 \u200f\u200e",
    "nul and controls": "a\x00b\x01c\x07\x1b[31mred\x7f\u0085\r\n\tz",
    "zero width": "s\u200bp\u200ba\u200bc\u200be\ufeff\u2060\u00ad\u200c",
    "emoji flood": "🔥" * 5000,
    "zwj flood": "👨‍👩‍👧‍👦" * 500 + "\u200d" * 100,
    "cjk": "東京の夜、空に竜が飛ぶ。" * 300,
    "arabic": "مدينة عائمة في السماء فوق الغيوم " * 200,
    "mixed": "hello مرحبا עולם 東京 🐉 नमस्ते ภาษาไทย Ελληνικά Русский 한국어 " * 50,
    "undrawable": "\ue000\uf8ff\U000f0000\U0010fffd\U00013000\U0001d800" * 100,
    "surrogates and nonchars": "a\ud800b\udfffc\ufffe\uffffd",
    "only spaces": " \t\n " * 1000,
    "empty": "",
    "huge combining": "a" + "\u0301" * 10_000,
    "variation selectors": "x\ufe00\ufe01\U000e0100" * 100,
    "tags": "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
}


@pytest.fixture(scope="module")
def fonts():
    return FontSet("NotoSans-Bold.ttf")


def _cmap(path):
    with TTFont(path, lazy=True) as tt:
        return set(tt.getBestCmap())


_cmap_cached = functools.cache(_cmap)


# -- cleaning ---------------------------------------------------------------------------


def test_clean_text_drops_controls_overrides_and_zero_width():
    out = clean_text(HOSTILE["rtl override"] + HOSTILE["nul and controls"] + HOSTILE["zero width"])
    assert not [c for c in out if unicodedata.category(c) in ("Cc", "Cf", "Cs")]
    assert "\u202e" not in out and "\x00" not in out and "\u200b" not in out
    assert "space" in out and "harmless" in out and "  " not in out


def test_zalgo_keeps_at_most_two_marks_per_letter():
    out = clean_text(ZALGO)
    run = 0
    for c in out:
        run = run + 1 if unicodedata.combining(c) else 0
        assert run <= MAX_MARKS
    assert out.replace("".join(c for c in out if unicodedata.combining(c)), "").startswith("Z") or out[0] == "Z"
    assert "algo" in "".join(c for c in out if not unicodedata.combining(c))


def test_emoji_sequences_keep_their_joiners_but_stray_joiners_go():
    assert clean_text("👨‍👩‍👧") == "👨\u200d👩\u200d👧"
    assert "\u200d" not in clean_text("a\u200db \u200d")


# -- no tofu ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, font",
    [
        ("東京の夜、空に竜が飛ぶ", "NotoSansCJKsc-Bold-Subset.otf"),
        ("한국어 채팅", "NotoSansCJKsc-Bold-Subset.otf"),
        ("مدينة عائمة", "NotoSansArabic-Bold.ttf"),
        ("עולם", "NotoSansHebrew-Bold.ttf"),
        ("नमस्ते", "NotoSansDevanagari-Bold.ttf"),
        ("ภาษาไทย", "NotoSansThai-Bold.ttf"),
        ("🐉👍🏽🇯🇵", EMOJI_FONT),
    ],
)
def test_every_glyph_comes_from_a_font_that_has_it(fonts, text, font):
    glyphs, cut = clusters(text, fonts)
    assert not cut
    assert REPLACEMENT not in [g.text for g in glyphs]
    letters = [g for g in glyphs if g.text.strip()]
    assert letters and all(g.face.path.name == font for g in letters)
    cmap = _cmap(FONT_DIR / font)
    for g in letters:  # read the file's own cmap, not the code under test
        assert ord(g.text[0]) in cmap, (g.text, font)


def test_mixed_scripts_each_get_their_own_font_and_nothing_is_a_box(fonts):
    text = "dragons 🐉 over 東京 and مدينة, ok? ©™ €5 ⠿ ♛"
    glyphs, _ = clusters(text, fonts)
    cmaps = {}
    for g in glyphs:
        if g.text == " ":
            continue
        cmap = cmaps.setdefault(g.face.path, _cmap(g.face.path))
        assert all(ord(c) in cmap or c in "\u200d\ufe0f" for c in g.text), (g.text, g.face)
    # and what is drawn is a real glyph, not the font's .notdef box
    for g in glyphs:
        if g.face.color or not g.text.strip():
            continue
        font = g.face.font(40)
        drawn = np.asarray(font.getmask(g.text))
        notdef = np.asarray(font.getmask("\ue000"))  # no shipped text font maps private use
        assert drawn.size and drawn.any()
        assert drawn.shape != notdef.shape or not np.array_equal(drawn, notdef), g.text


def test_what_no_font_has_becomes_a_question_mark(fonts):
    glyphs, _ = clusters(HOSTILE["undrawable"][:6] + "ok", fonts)
    assert [g.text for g in glyphs] == ["?"] * 6 + ["o", "k"]
    assert all(g.face.has(g.text) for g in glyphs)


def test_styled_letters_fall_back_to_their_plain_form(fonts):
    glyphs, _ = clusters("𝕳𝖊𝖑𝖑𝖔 ｗｏｒｌｄ", fonts)
    assert "".join(g.text for g in glyphs) in ("Hello world", "Hello ｗｏｒｌｄ")


def test_the_tests_own_notdef_probe_really_is_a_box():
    # the check above is only worth something if a missing glyph draws differently
    font = ImageFont.truetype(str(FONT_DIR / "NotoSans-Bold.ttf"), 40)
    a, b = np.asarray(font.getmask("\ue000")), np.asarray(font.getmask("\ue001"))
    assert a.any() and a.shape == b.shape and np.array_equal(a, b)


# -- bidi ------------------------------------------------------------------------------------


def test_right_to_left_words_read_right_to_left_inside_latin(fonts):
    line = wrap("abc אבג דהו def", fonts, 30, 2000)[0]
    texts = [r.text.strip() for r in line.runs if r.text.strip()]
    assert texts == ["abc", "אבג דהו", "def"]  # the Hebrew run is laid out right to left by the shaper
    assert not line.rtl
    rtl = [r for r in line.runs if r.rtl]
    assert rtl and all("א" in r.text or "ד" in r.text for r in rtl)


def test_an_arabic_paragraph_puts_latin_words_on_its_left(fonts):
    line = wrap("مرحبا hello", fonts, 30, 2000)[0]
    assert line.rtl
    assert line.runs[0].text.strip() == "hello" and "مرحبا" in line.runs[-1].text


# -- fitting -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("max_lines", [1, 2])
def test_hostile_text_never_raises_and_fits_its_box(fonts, name, max_lines):
    # how long the worst of these takes is a figure of benchmarks/bench_overlay_text.py
    lines = wrap(HOSTILE[name], fonts, 30, 500, max_lines)
    assert 1 <= len(lines) <= max_lines
    for line in lines:
        assert line.width <= 500 + 0.5, (name, line.text)
    long = len(clean_text(HOSTILE[name])) > 120
    if long:
        assert lines[-1].text.endswith(ELLIPSIS), (name, lines[-1].text)


def test_short_text_is_not_ellipsised_and_long_text_is(fonts):
    assert wrap("a dragon", fonts, 30, 500, 1)[0].text == "a dragon"
    lines = wrap("a dragon attacks the castle at dawn and everyone runs " * 4, fonts, 30, 500, 2)
    assert len(lines) == 2 and lines[-1].text.endswith(ELLIPSIS) and not lines[0].text.endswith(ELLIPSIS)
    assert lines[0].text.startswith("a dragon attacks")


def test_cjk_wraps_without_spaces(fonts):
    lines = wrap("東京の夜空に竜が飛ぶ" * 5, fonts, 30, 200, 3)
    assert len(lines) == 3 and all(0 < line.width <= 200 for line in lines)


@functools.cache
def _plain_font(path, px, layout=None):
    """The font file opened by PIL directly, not through the code under test."""
    return ImageFont.truetype(str(path), px, layout_engine=layout)


def _measured(line, layout=None) -> float:
    """The line's width measured afresh from the font files (colour emoji at
    the one size their font has, scaled to the line's)."""
    shaped = layout != ImageFont.Layout.BASIC and features.check("raqm")
    total = 0.0
    for run in line.runs:
        if run.face.color:
            total += _plain_font(run.face.path, 109, layout).getlength(run.text) * line.px / 109
        else:
            kw = {"direction": "rtl" if run.rtl else "ltr"} if shaped else {}
            total += _plain_font(run.face.path, line.px, layout).getlength(run.text, **kw)
    return total


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400), st.integers(1, 3), st.integers(40, 700))
def test_any_string_fits(text, max_lines, width):
    fonts = FontSet("NotoSans-Bold.ttf")
    lines = wrap(text, fonts, 24, width, max_lines)
    assert 1 <= len(lines) <= max_lines
    for line in lines:
        # measured by PIL from the font files, not taken from the line's own figure
        assert _measured(line) <= width + 0.5 or len(line.runs) == 1 and len(line.text) <= 2, line.text
        for run in line.runs:
            if not run.face.color:  # each character is in its font's own cmap, read with fontTools
                cmap = _cmap_cached(run.face.path)
                assert all(ord(c) in cmap or c in "\u200d\ufe0e\ufe0f" or unicodedata.combining(c) for c in run.text), (
                    run.text,
                    run.face,
                )


def test_without_a_shaper_text_still_fits_and_reads_in_order():
    """Where libraqm/fribidi are missing PIL lays text out glyph by glyph: no
    shaping, but the right order, no tofu and no crash."""
    from PIL import Image

    fonts = FontSet("NotoSans-Bold.ttf", shaped=False)
    assert fonts.primary.font(30).layout_engine == ImageFont.Layout.BASIC
    for text in HOSTILE.values():
        for line in wrap(text, fonts, 30, 500, 2):
            assert _measured(line, ImageFont.Layout.BASIC) <= 500.5, line.text
    line = wrap("abc אבג", fonts, 30, 2000)[0]
    assert [r.text.strip() for r in line.runs if r.text.strip()] == ["abc", "גבא"]  # reversed by hand
    img = Image.new("RGBA", (600, 60))
    draw_line(img, 0, 40, wrap("mixed مرحبا 🐉 東京", fonts, 30, 600)[0], (255, 255, 255))
    assert img.getbbox() is not None
