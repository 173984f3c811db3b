"""The streamer's own music: a folder of audio files played as a shuffled playlist.

Files are decoded with PyAV (anything FFmpeg reads: mp3, ogg/opus, flac,
wav, m4a, ...) and resampled to 48 kHz stereo by its resampler. Each track is
measured as it opens (the K-weighted loudness of its first seconds) and
brought near the show's loudness, so a quiet recording after a loud master
does not jump; the leveller after it does the rest. Tracks overlap by
`crossfade_s` with equal-power curves. Order: a fresh shuffle every pass,
never the same track twice in a row; the folder is read again each pass, so
music added during a show joins the next one. A file that cannot be played
is skipped, remembered and reported (`check_folder`, `streambot check`).
"""

from __future__ import annotations

import logging
import random
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import cast

import av
import numpy as np
from numpy.typing import NDArray

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = {
    ".mp3",
    ".ogg",
    ".oga",
    ".opus",
    ".flac",
    ".wav",
    ".m4a",
    ".aac",
    ".aif",
    ".aiff",
    ".wma",
    ".mka",
    ".webm",
    ".mp4",
}
PROBE_S = 8.0  # seconds decoded when a track opens, to measure its loudness


class NothingToPlay(Exception):
    """No file in the music folder can be played; the message says why, in one sentence."""


def audio_files(folder: Path) -> list[Path]:
    """The audio files in `folder` (by extension; hidden files left out), sorted."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in AUDIO_EXTENSIONS
    )


def _reason(e: Exception) -> str:
    text = str(getattr(e, "strerror", None) or e).strip().rstrip(".")
    return text[0].lower() + text[1:] if text else type(e).__name__


def check_folder(folder: Path) -> tuple[list[Path], list[str]]:
    """The files of a music folder that play, and one sentence for each problem:
    the folder is missing or empty, or a file cannot be played (each file is
    opened and its first audio decoded)."""
    if not folder.is_dir():
        return [], [f"The music folder {folder} does not exist."]
    files = audio_files(folder)
    if not files:
        return [], [f"The music folder {folder} has no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})."]
    good, problems = [], []
    for path in files:
        try:
            with Track(path) as track:
                if track.pull(4800).shape[1] == 0:
                    raise ValueError("it holds no audio")
            good.append(path)
        except Exception as e:
            problems.append(f"{path} cannot be played: {_reason(e)}.")
    return good, problems


class Track:
    """One file, decoded and resampled on demand, in (2, n) float32 blocks."""

    def __init__(self, path: Path, rate: int = 48_000) -> None:
        self.path = path
        self.rate = rate
        self._container = av.open(str(path), metadata_errors="ignore")
        if not self._container.streams.audio:
            self._container.close()
            raise ValueError("it has no audio stream")
        self._stream = self._container.streams.audio[0]
        self._frames = self._container.decode(self._stream)
        self._resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
        self._chunks: deque[NDArray[np.float32]] = deque()
        self._buffered = 0
        self.ended = False
        self.gain = 1.0

    def _decode_until(self, n: int) -> None:
        while self._buffered < n and not self.ended:
            try:
                frame = next(self._frames)
            except StopIteration:
                frame = None
            except av.FFmpegError as e:  # a damaged file ends where it breaks
                log.warning("music: %s stops early: %s", self.path.name, _reason(e))
                frame = None
            for out in self._resampler.resample(frame):
                x = cast(NDArray[np.float32], out.to_ndarray())  # fltp: float32 planes
                self._chunks.append(x.reshape(2, -1))
                self._buffered += x.shape[-1]
            if frame is None:
                self.ended = True

    def ahead(self, n: int) -> int:
        """Decode until `n` samples wait (or the file ends); how many wait."""
        self._decode_until(n)
        return self._buffered

    def pull(self, n: int) -> NDArray[np.float32]:
        """Up to `n` samples (fewer only at the end of the file), gain applied."""
        self._decode_until(n)
        parts, got = [], 0
        while got < n and self._chunks:
            c = self._chunks.popleft()
            if got + c.shape[1] > n:
                self._chunks.appendleft(c[:, n - got :])
                c = c[:, : n - got]
            parts.append(c)
            got += c.shape[1]
        self._buffered -= got
        out = np.concatenate(parts, axis=1) if parts else np.zeros((2, 0), np.float32)
        return (out * self.gain).astype(np.float32)

    def measure(self, target_lufs: float) -> float:
        """Set the gain that brings the opening seconds to `target_lufs` (a cut of
        up to 15 dB, a lift of up to 6: a quiet intro is not a quiet song);
        returns the measured loudness."""
        from .loudness import KFilter, lufs  # scipy: only where music plays, never for a check

        self._decode_until(int(PROBE_S * self.rate))
        x = np.concatenate(list(self._chunks), axis=1) if self._chunks else np.zeros((2, 0), np.float32)
        power = float(KFilter().power(x).mean()) if x.shape[1] else 0.0
        loud = lufs(power)
        if loud > -70:
            self.gain = 10 ** (min(max(target_lufs - loud, -15.0), 6.0) / 20)
        return loud

    def close(self) -> None:
        try:
            self._container.close()
        except Exception:
            pass

    def __enter__(self) -> Track:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


class Playlist:
    """Shuffled, crossfaded playback of a folder, block by block (one thread)."""

    def __init__(
        self,
        folder: Path,
        *,
        crossfade_s: float = 4.0,
        target_lufs: float = -15.0,
        rate: int = 48_000,
        seed: int | None = None,
    ) -> None:
        self.folder = Path(folder).expanduser()
        self.rate = rate
        self.crossfade = int(crossfade_s * rate)
        self.target = target_lufs
        self._rng = random.Random(seed)
        self._order: list[Path] = []
        self._last: Path | None = None
        self.failed: dict[str, str] = {}  # file name -> why it cannot be played
        self._cur: Track | None = None
        self._next: Track | None = None
        self._fade_pos = 0
        self._fade_len = 0

    @property
    def track(self) -> str | None:
        return self._cur.path.name if self._cur is not None else None

    def _shuffle(self) -> list[Path]:
        files = [p for p in audio_files(self.folder) if p.name not in self.failed] if self.folder.is_dir() else []
        self._rng.shuffle(files)
        if len(files) > 1 and files[0] == self._last:
            files.append(files.pop(0))
        return files

    def _open_next(self) -> Track:
        """The next playable track; NothingToPlay when a whole pass finds none."""
        while True:
            if not self._order:
                self._order = self._shuffle()  # failed files are left out, so this ends
                if not self._order:
                    raise NothingToPlay(
                        f"No file in the music folder {self.folder} can be played"
                        + (f" ({len(self.failed)} failed)" if self.failed else "")
                    )
            path = self._order.pop(0)
            try:
                track = Track(path, self.rate)
                track.measure(self.target)
                if track.ahead(1) == 0:
                    track.close()
                    raise ValueError("it holds no audio")
            except Exception as e:
                self.failed[path.name] = _reason(e)
                log.warning("music: skipping %s: %s", path.name, _reason(e))
                continue
            self._last = path
            log.info("music: now playing %s", path.name)
            return track

    def render(self, n: int) -> NDArray[np.float32]:
        out = np.zeros((2, n), np.float32)
        pos = 0
        while pos < n:
            if self._cur is None:
                self._cur = self._open_next()
            if self._next is not None:  # crossfading into the next track
                k = min(n - pos, self._fade_len - self._fade_pos)
                a, b = self._cur.pull(k), self._next.pull(k)
                u = (self._fade_pos + np.arange(k)) / max(self._fade_len, 1) * (np.pi / 2)
                out[:, pos : pos + a.shape[1]] += a * np.cos(u[: a.shape[1]])
                out[:, pos : pos + b.shape[1]] += b * np.sin(u[: b.shape[1]])
                self._fade_pos += k
                pos += k
                if self._fade_pos >= self._fade_len:
                    self._cur.close()
                    self._cur, self._next = self._next, None
                continue
            waiting = self._cur.ahead(n - pos + self.crossfade)
            if self._cur.ended and waiting <= self.crossfade + (n - pos):
                # The fade starts where exactly `crossfade` samples (or all that is left) remain.
                k = max(0, waiting - self.crossfade)
                x = self._cur.pull(min(k, n - pos))
                out[:, pos : pos + x.shape[1]] = x
                pos += x.shape[1]
                if pos < n or k == 0:
                    self._next = self._open_next()
                    self._fade_pos, self._fade_len = 0, max(self._cur.ahead(self.crossfade), 1)
                continue
            x = self._cur.pull(n - pos)
            out[:, pos : pos + x.shape[1]] = x
            pos += x.shape[1]
        return out

    def close(self) -> None:
        for t in (self._cur, self._next):
            if t is not None:
                t.close()
        self._cur = self._next = None
