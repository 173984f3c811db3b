"""The overlay's line order against outside judges: the Unicode Bidirectional
Algorithm as python-bidi implements it (the Rust unicode-bidi crate, run
against Unicode's own conformance files), and grapheme clusters as UAX #29
defines them. Real fonts, the real layout code."""

from __future__ import annotations

import bidi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streambot.broadcast import overlay_text as ot
from streambot.broadcast.bidi import embedding_levels, visual_order
from streambot.broadcast.overlay_text import (
    FontSet,
    build_line,
    clusters,
    split_clusters,
)


@pytest.fixture(scope="module")
def fonts() -> FontSet:
    return FontSet("NotoSans-Bold.ttf")


def drawn_order(text: str, fonts: FontSet) -> str:
    """The characters left to right as the overlay draws them: runs in the line's
    order, each right-to-left run's clusters reversed (what the shaper does)."""
    glyphs, _ = clusters(text, fonts)
    line = build_line(glyphs, 30)
    out = []
    for run in line.runs:
        parts = split_clusters(run.text)
        out.append("".join(reversed(parts)) if run.rtl and ot.RAQM else "".join(parts))
    return "".join(out)


CASES = [
    "abc אבג דהו def",
    "مرحبا hello",
    "אבג (abc) דהו",
    "the price is 100 שקל today",
    "עולם 2024, שנה טובה!",
    "مدينة 12.5 كم عن hello world",
    'a dragon: "דרקון" lands',
    "אבג abc 123 def גדה",
    "hello - עולם - world",
    "1 2 3",
]


@pytest.mark.parametrize("text", CASES)
def test_runs_stand_where_the_unicode_bidi_algorithm_puts_them(fonts, text) -> None:
    assert drawn_order(text, fonts) == bidi.get_display(text)
    assert build_line(clusters(text, fonts)[0], 30).rtl == (bidi.get_base_level(text) == 1)


LETTERS = st.sampled_from(
    list("abcXYZ") + list("אבגדהו") + list("مرحبا") + list("0123456789") + list(" .,:-+!?%()\"'/")
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(LETTERS, min_size=1, max_size=40).map("".join))
def test_any_mix_matches_the_reference_implementation(text) -> None:
    text = " ".join(text.split())  # the overlay collapses white space before layout
    if not text:
        return
    assert drawn_order(text, FontSet("NotoSans-Bold.ttf")) == bidi.get_display(text), text


def test_visual_order_reverses_from_the_highest_level_down() -> None:
    # UAX #9 L2's own example levels: 0 0 0 1 1 1 2 2 2 1 1 0 -> reverse 2s, then 1-and-above
    levels = [0, 0, 0, 1, 1, 1, 2, 2, 2, 1, 1, 0]
    assert visual_order(levels) == [0, 1, 2, 10, 9, 6, 7, 8, 5, 4, 3, 11]
    assert embedding_levels("").levels == ()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("e\u0301a", ["e\u0301", "a"]),  # a base and its combining mark
        ("👨\u200d👩\u200d👧 ok", ["👨\u200d👩\u200d👧", " ", "o", "k"]),  # a ZWJ sequence
        ("🇯🇵🇫🇷🇩", ["🇯🇵", "🇫🇷", "🇩"]),  # regional indicators pair up, a lone one stands alone
        ("1\ufe0f\u20e3", ["1\ufe0f\u20e3"]),  # a keycap
        ("👍🏽!", ["👍🏽", "!"]),  # an emoji modifier
        ("\u1100\u1161\u11a8\uac00", ["\u1100\u1161\u11a8", "\uac00"]),  # a Hangul syllable spelled in jamo (L V T)
        ("\u0e01\u0e33", ["\u0e01\u0e33"]),  # Thai: SARA AM is a spacing mark (GB9a)
        ("a\r\nb", ["a", "\r\n", "b"]),  # CR LF is one cluster (GB3)
    ],
)
def test_clusters_are_unicodes_extended_grapheme_clusters(text, expected) -> None:
    assert split_clusters(text) == expected
