"""Embedding levels by the Unicode Bidirectional Algorithm (UAX #9), from GNU FriBidi.

The overlay draws a line as runs, one font each, and the shaper (Pillow's Raqm
layout) orders the characters inside a run; which runs read right to left,
and in what order they stand, needs the levels of the whole line. FriBidi is
the bidi engine Raqm itself loads, so the overlay reads the same Unicode data
and the same algorithm (explicit levels, weak and neutral types, bracket
pairs, L1's trailing white space) as the text shaped inside each run. Pillow
keeps FriBidi to itself, so it is reached here through its C API (the three
calls of fribidi-bidi.h, stable since FriBidi 1.0), loaded the way Pillow
loads it.

Without FriBidi (where Pillow has no Raqm either) the line keeps one
direction, its paragraph's (UAX #9 P2-P3: the first strong letter's), and says
so once in the log.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import unicodedata
from dataclasses import dataclass

log = logging.getLogger(__name__)

# fribidi-bidi-types.h: a paragraph type is its strong type's mask
_PAR_ON = 0x40  # neutral: the paragraph takes the first strong letter's direction (P2-P3)
_PAR_RTL_MASK = 0x01


def _load() -> ctypes.CDLL | None:
    for name in (ctypes.util.find_library("fribidi"), "libfribidi.so.0", "libfribidi-0.dll", "libfribidi.0.dylib"):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        u32p = ctypes.POINTER(ctypes.c_uint32)
        lib.fribidi_get_bidi_types.argtypes = [u32p, ctypes.c_int, u32p]
        lib.fribidi_get_bidi_types.restype = None
        lib.fribidi_get_bracket_types.argtypes = [u32p, ctypes.c_int, u32p, u32p]
        lib.fribidi_get_bracket_types.restype = None
        lib.fribidi_get_par_embedding_levels_ex.argtypes = [
            u32p,
            u32p,
            ctypes.c_int,
            u32p,
            ctypes.POINTER(ctypes.c_int8),
        ]
        lib.fribidi_get_par_embedding_levels_ex.restype = ctypes.c_int8
        return lib
    log.warning(
        "GNU FriBidi is not installed: right-to-left text on the overlay keeps one direction (install libfribidi0)"
    )
    return None


_LIB = _load()


@dataclass(frozen=True)
class Levels:
    """One embedding level per character (odd: right to left), and the paragraph's."""

    levels: tuple[int, ...]
    base: int

    @property
    def rtl(self) -> bool:
        return self.base % 2 == 1


def _base_level(text: str) -> int:
    for c in text:
        b = unicodedata.bidirectional(c)
        if b in ("R", "AL"):
            return 1
        if b == "L":
            return 0
    return 0


def embedding_levels(text: str) -> Levels:
    """The resolved level of every character of one line (one paragraph), as UAX #9 gives them."""
    n = len(text)
    if _LIB is None or n == 0:
        base = _base_level(text)
        return Levels((base,) * n, base)
    chars = (ctypes.c_uint32 * n)(*map(ord, text))
    types = (ctypes.c_uint32 * n)()
    brackets = (ctypes.c_uint32 * n)()
    levels = (ctypes.c_int8 * n)()
    par = ctypes.c_uint32(_PAR_ON)
    _LIB.fribidi_get_bidi_types(chars, n, types)
    _LIB.fribidi_get_bracket_types(chars, n, types, brackets)
    if _LIB.fribidi_get_par_embedding_levels_ex(types, brackets, n, ctypes.byref(par), levels) == 0:
        base = _base_level(text)  # FriBidi failed (out of memory): one direction rather than none
        return Levels((base,) * n, base)
    return Levels(tuple(levels), 1 if par.value & _PAR_RTL_MASK else 0)


def visual_order(levels: list[int]) -> list[int]:
    """Indices of runs (or characters) at `levels`, left to right (UAX #9 L2: from the
    highest level down to the lowest odd one, reverse every stretch at that level or above)."""
    order = list(range(len(levels)))
    if not levels:
        return order
    lowest_odd = min(lv for lv in levels) | 1
    for lvl in range(max(levels), lowest_odd - 1, -1):
        i = 0
        while i < len(order):
            if levels[order[i]] >= lvl:
                j = i
                while j < len(order) and levels[order[j]] >= lvl:
                    j += 1
                order[i:j] = reversed(order[i:j])
                i = j
            else:
                i += 1
    return order
