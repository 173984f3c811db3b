"""Rebuild NotoSansCJKsc-Bold-Subset.otf from Debian's fonts-noto-cjk.

    apt-get install fonts-noto-cjk && pip install fonttools
    python overlays/fonts/make_cjk_subset.py /usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc

Keeps CJK symbols and punctuation, kana, Hangul (all syllables and jamo),
full-width forms, and the ideographs of GB 2312, JIS X 0208, KS X 1001 and
Big5 level 1: what chat writes, in a third of the size.
"""
import subprocess
import sys
import tempfile
from pathlib import Path


def codec_chars(codec: str, leads: range, trails) -> set[str]:
    out = set()
    for a in leads:
        for b in trails:
            try:
                out.update(bytes([a, b]).decode(codec))
            except UnicodeDecodeError:
                pass
    return out


def code_points() -> list[int]:
    chars = (codec_chars("gb2312", range(0xA1, 0xF8), range(0xA1, 0xFF))
             | codec_chars("euc_jp", range(0xA1, 0xF5), range(0xA1, 0xFF))
             | codec_chars("euc_kr", range(0xA1, 0xFE), range(0xA1, 0xFF))
             | codec_chars("big5", range(0xA1, 0xC7), [*range(0x40, 0x7F), *range(0xA1, 0xFF)]))
    cps = {ord(c) for c in chars}
    for lo, hi in [(0x1100, 0x11FF), (0x3000, 0x303F), (0x3040, 0x30FF), (0x3130, 0x318F), (0x31F0, 0x31FF),
                   (0x3200, 0x32FF), (0x3300, 0x33FF), (0xAC00, 0xD7A3), (0xFF00, 0xFFEF)]:
        cps.update(range(lo, hi + 1))
    return sorted(cps)


def main(ttc: str) -> None:
    out = Path(__file__).resolve().parent / "NotoSansCJKsc-Bold-Subset.otf"
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(f"U+{cp:04X}" for cp in code_points()))
    subprocess.run([sys.executable, "-m", "fontTools.subset", ttc, "--font-number=2", "--layout-features=*",
                    f"--unicodes-file={f.name}", f"--output-file={out}"], check=True)
    print(out, out.stat().st_size)


if __name__ == "__main__":
    main(sys.argv[1])
