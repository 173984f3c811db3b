"""The one set of rules chat text is read by (streambot/text.py), held against
Unicode's own data (Python's copy of the Unicode Character Database, not the
`regex` tables the module reads), and the OBS page's JavaScript held to the
same answers as the Python on hostile and generated text."""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streambot.audience import commands, moderation
from streambot.broadcast import overlay_text
from streambot.text import MAX_MARKS, clean, for_display, for_matching

from .test_overlay_page import NODE, OVERLAY_DIR, needs_node
from .test_overlay_text import HOSTILE

# UAX #9's Bidi_Control property (PropList.txt): the implicit marks and every explicit control
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
PRESENTATION = "\ufe0e\ufe0f"
WHITE_SPACE_CC = "\t\n\x0b\x0c\r\x85"  # the controls Unicode counts as White_Space
ZWJ = "\u200d"
NEWER_UNASSIGNED = regex.compile(r"\p{Cn}")
# PropList.txt's Other_Default_Ignorable_Code_Point, its unassigned part: reserved to draw nothing
IGNORABLE_UNASSIGNED = {
    0x2065,
    *range(0xFFF0, 0xFFF9),
    0xE0000,
    *range(0xE0002, 0xE0020),
    *range(0xE0080, 0xE0100),
    *range(0xE01F0, 0xE1000),
}


def _code_points():
    """Every code point of the planes chat uses (the BMP, emoji and symbols, tags)
    that Python's UCD and the cleaner's tables agree is assigned, or is not."""
    for plane in (0x00000, 0x10000, 0xE0000):
        for cp in range(plane, plane + 0x10000):
            yield chr(cp)


@pytest.fixture(scope="module")
def per_character() -> dict[str, tuple[str, str]]:
    """Each character between two letters, cleaned for matching and for display."""
    return {
        ch: (for_matching(f"a{ch}b"), for_display(f"a{ch}b"))
        for ch in _code_points()
        if unicodedata.normalize("NFKC", f"a{ch}b") == f"a{ch}b"
    }  # NFKC would rewrite it: judged below


def test_every_character_is_treated_as_its_unicode_category_says(per_character) -> None:
    wrong = []
    for ch, (matched, shown) in per_character.items():
        cat = unicodedata.category(ch)
        if ch in PRESENTATION:
            want = (f"a{ch}b", f"a{ch}b")  # the emoji/text presentation of the letter before it
        elif ch in BIDI_CONTROLS or ch == ZWJ or ch == "\u034f":  # CGJ: a mark by category, yet ignorable
            want = ("ab", "ab")
        elif cat in ("Zs", "Zl", "Zp", "Cc") or ch in WHITE_SPACE_CC:
            want = ("a b", "a b")
        elif cat in ("Cf", "Cs") or ch == "\u2800" or ord(ch) in IGNORABLE_UNASSIGNED:
            want = ("ab", "ab")
        elif cat in ("Co", "Cn"):
            if cat == "Cn" and not NEWER_UNASSIGNED.match(ch):  # assigned since Python's UCD was made
                continue
            want = ("ab", f"a{ch}b")
        else:
            continue  # letters, marks, symbols: below
        if (matched, shown) != want:
            wrong.append((f"U+{ord(ch):04X}", cat, matched, shown))
    assert not wrong, wrong[:20]


def test_nothing_that_draws_nothing_survives(per_character) -> None:
    for ch, (matched, shown) in per_character.items():
        for out in (matched, shown):
            assert not any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in out), f"U+{ord(ch):04X}"
            assert not any(c in BIDI_CONTROLS for c in out)


def test_letters_digits_symbols_and_marks_stay(per_character) -> None:
    for ch, (matched, shown) in per_character.items():
        cat = unicodedata.category(ch)
        if cat[0] in "LNPS" and ch not in "\u115f\u1160\u3164\uffa0\u2800":  # the fillers are Lo yet draw nothing
            assert matched == shown == f"a{ch}b", f"U+{ord(ch):04X}"
        if cat in ("Mn", "Me") and unicodedata.combining(ch) and not ch.isspace():
            assert matched.count(ch) >= 1 or ch in "\u034f", f"U+{ord(ch):04X}"


def test_marks_are_capped_and_never_stand_alone() -> None:
    acute = "\u0301"
    assert for_matching("d" + acute * 50 + "ragon") == "d" + acute * MAX_MARKS + "ragon"
    assert for_display(" " + acute + "x " + acute) == "x"
    assert for_display("\u0915\u093f\u0902") == "\u0915\u093f\u0902"  # a spacing vowel sign and a mark: Hindi कीं


def test_the_normal_form_is_the_readers() -> None:
    assert for_matching("！２ ｄｒａｇｏｎ") == "!2 dragon"  # NFKC: what is matched
    assert for_display("ｄｒａｇｏｎ") == "ｄｒａｇｏｎ"  # NFC: what is drawn
    assert for_display("e\u0301") == "\u00e9"


def test_emoji_sequences_keep_what_builds_them() -> None:
    family = "👨\u200d👩\u200d👧"
    assert for_display(family) == family  # one picture where it is drawn
    assert for_matching(family) == "👨👩👧"  # three where it is matched
    assert for_display("👍🏽\u200d🔥 ❤\ufe0f") == "👍🏽\u200d🔥 ❤\ufe0f"
    assert for_display("a\u200db \u200d🔥 🔥\u200d") == "ab 🔥 🔥"
    assert for_display("\ufe0f x \ufe0f") == "x"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_cleaning_twice_changes_nothing(text) -> None:
    for drawn in (True, False):
        once = clean(text, drawn=drawn)
        assert clean(once, drawn=drawn) == once
        assert "  " not in once and once == once.strip()
    assert clean("0\u0300\u034f\u0316", drawn=False) == "0\u0316\u0300"  # the marks a dropped CGJ kept apart


def test_every_reader_uses_these_rules() -> None:
    text = "\u202e！ｐ a\u200b dragon\x00flies" + "\u0301" * 5
    assert commands.clean(text) == for_matching(text)
    assert commands.parse(text) == commands.Command(
        "prompt", text="a dragon flie\u015b\u0301\u0301"
    )  # NFKC composes the first
    assert moderation.normalise("a\x00dra\u200bgon\u3164") == "a dragon"
    assert overlay_text.clean_text(text) == for_display(text)


# -- the OBS page: the same rules in JavaScript ----------------------------------------------


def _js_clean(texts: list[str]) -> list[str]:
    script = (
        f"const o = require({json.dumps(str(OVERLAY_DIR / 'obs.js'))});\n"
        "const texts = JSON.parse(require('fs').readFileSync(0, 'utf8'));\n"
        "process.stdout.write(JSON.stringify(texts.map((t) => o.clean(t))));\n"
    )
    out = subprocess.run([NODE, "-e", script], input=json.dumps(texts), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _old_enough(ch: str) -> bool:
    """Assigned in Python's UCD: node's ICU and the cleaner's tables agree on it."""
    return unicodedata.category(ch) != "Cn" and not 0xD800 <= ord(ch) <= 0xDFFF  # JSON cannot carry lone surrogates


@needs_node
def test_the_obs_page_cleans_as_the_python_does() -> None:
    texts = [t[:300] for t in HOSTILE.values() if all(_old_enough(c) for c in t)]
    texts += [
        "\u202eevil\u202c \x00b\u200bc",
        "👨\u200d👩\u200d👧 ok",
        "a\u200db \u200d🔥",
        "x\ufe0f \ufe0e",
        "\u3164\u115f fill\u2800ers\u00ad",
        "d" + "\u0301" * 9,
        "\tmixed\u2028lines\u3000here\x85",
        "\U000e0067tags\U000e007f",
        "\u0915\u093f\u0902",
        "مدينة\u200f 12",
        "ｆｕｌｌ ｗｉｄｔｈ",
    ]
    assert _js_clean(texts) == [for_display(t) for t in texts]


@needs_node
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(st.characters(codec="utf-8").filter(_old_enough), max_size=60), min_size=20, max_size=20))
def test_any_text_cleans_the_same_in_the_page(texts) -> None:
    assert _js_clean(texts) == [for_display(t) for t in texts]


def test_the_module_sits_at_the_bottom() -> None:
    """It imports nothing of the show's: every layer may use it."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, streambot.text; print(sorted(m for m in sys.modules if m.startswith('streambot')))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.strip() == "['streambot', 'streambot.text']", out.stdout + out.stderr
