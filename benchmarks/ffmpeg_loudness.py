"""FFmpeg's EBU R128 meter (the `ebur128` filter), read from its summary: the
outside judge of the soundtrack's loudness, for the soundtrack benchmark and
the loudness tests alike.

    from benchmarks.ffmpeg_loudness import ebur128
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path


class MeterError(RuntimeError):
    """FFmpeg could not measure the file (its last lines say why)."""


@dataclass(frozen=True)
class Loudness:
    integrated_lufs: float
    lra_lu: float  # loudness range
    true_peak_dbtp: float  # -inf for silence


def ebur128(path: Path, timeout: float = 120.0) -> Loudness:
    """FFmpeg's EBU R128 summary of a recording: integrated loudness, loudness range, true peak."""
    r = subprocess.run(
        [
            "ffmpeg",
            "-nostats",
            "-hide_banner",
            "-i",
            str(path),
            "-filter_complex",
            "ebur128=peak=true",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if r.returncode != 0 or "Summary:" not in r.stderr:
        raise MeterError(f"ffmpeg could not measure {path}: {r.stderr[-800:]}")
    summary = r.stderr[r.stderr.rindex("Summary:") :]

    def grab(pattern: str) -> float:
        found = re.search(pattern, summary)
        if found is None:
            raise MeterError(f"ffmpeg's summary of {path} has no {pattern!r}: {summary}")
        return float(found.group(1))

    return Loudness(
        integrated_lufs=grab(r"I:\s+(-?[\d.]+|-inf) LUFS"),
        lra_lu=grab(r"LRA:\s+(-?[\d.]+) LU"),
        true_peak_dbtp=grab(r"Peak:\s+(-?[\d.]+|-inf) dBFS"),
    )
