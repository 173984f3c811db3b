"""The soundtrack: each world's music and weather, at streaming loudness, never late.

`Soundtrack` is the whole audio chain, rendered block by block:

    music (the world's band, music.py, or the streamer's playlist, playlist.py)
      + weather beds (wind and rain noise whose levels follow the world's ambience)
      -> leveller (to the target loudness, EBU R128) -> brick-wall limiter -> meter

The story reaches it as text (`set_story`: the prompt's mood), a world switch
as that world's `[music]` (`set_world_music`: the old band fades out while the
new one fades in), the console's switch as `set_music`. These only leave a
request; the chain's own thread applies it at its next block.

`AudioFeed` runs the chain in its own thread, 1.5 s ahead of the clock, into
a bounded queue. The clock thread only takes finished samples (`read`) and
never waits: when the producer is late, the gap is filled with the weather
beds, joined without a click, and counted. A music generator that fails is
dropped and the weather goes on; the reason is in `status()` for the console.
`Silence` is the track when audio is switched off.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Callable
from typing import Protocol, TypedDict

import numpy as np
from numpy.typing import NDArray

from ..config import MusicSettings
from ..world.base import Ambience
from .loudness import Leveller, LoudnessMeter, TruePeakLimiter, ramp_to_one
from .music import Band, Style, mood_of, style_for
from .playlist import NothingToPlay, Playlist

log = logging.getLogger(__name__)

RATE = 48_000
BLOCK = RATE // 10  # 100 ms, the loudness meter's hop
FADE_S = 1.5  # the music switch
WORLD_FADE_S = 3.0  # one world's music into the next
# The limiter's ceiling sits this far under the allowed true peak: AAC's
# reconstruction may overshoot what went into the encoder.
PEAK_MARGIN_DB = 1.5


def _shaped_noise(n: int, rng: np.random.Generator, lo: float, hi: float, rate: int) -> NDArray[np.float32]:
    """A seamless loop of noise band-limited to lo..hi Hz (made once, read cyclically)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    gain = np.exp(-0.5 * (np.log(np.maximum(freqs, 1.0) / np.sqrt(lo * hi)) / np.log(hi / lo)) ** 2)
    noise = np.fft.irfft(spec * gain, n)
    return (noise / (float(np.abs(noise).max()) + 1e-9)).astype(np.float32)


class _Requests(TypedDict, total=False):
    """Changes asked for from other threads, taken by the render thread at its next block."""

    mood: str
    world: MusicSettings


class Beds:
    """Wind and rain: loops of shaped noise whose levels glide after the world's
    ambience (a ~3 s time constant), with slow gusts."""

    def __init__(self, rate: int = RATE, seed: int = 0) -> None:
        self.rate = rate
        rng = np.random.default_rng(seed + 1)
        loop = rate * 6
        self._wind = np.stack([_shaped_noise(loop, rng, 80, 600, rate) for _ in range(2)])
        self._rain = np.stack([_shaped_noise(loop, rng, 2500, 9000, rate) for _ in range(2)])
        self._level = np.array([0.2, 0.0])  # wind, rain
        self._t = 0  # position in the loops
        self._clock = 0  # samples so far, for the gusts

    def render(self, n: int, ambience: Ambience) -> NDArray[np.float32]:
        target = np.array([ambience.wind, ambience.rain])
        start = self._level.copy()
        self._level += (target - self._level) * (1.0 - math.exp(-n / (3.0 * self.rate)))
        if max(start.max(), self._level.max()) <= 1e-4:
            out = np.zeros((2, n), np.float32)
        else:
            ramp = ramp_to_one(n)
            gusts = [0.6 + 0.4 * math.sin(t * 2 * math.pi / (self.rate * 7.3)) for t in (self._clock, self._clock + n)]
            g0, g1 = 0.16 * start[0] * gusts[0], 0.16 * self._level[0] * gusts[1]  # slow: a line per block
            i = (
                np.arange(self._t, self._t + n) % self._wind.shape[1]
                if self._t + n > self._wind.shape[1]
                else slice(self._t, self._t + n)
            )
            out = self._wind[:, i] * (ramp * np.float32(g1 - g0) + np.float32(g0))
            r0, r1 = 0.11 * start[1], 0.11 * self._level[1]
            if max(r0, r1) > 0:
                out += self._rain[:, i] * (ramp * np.float32(r1 - r0) + np.float32(r0))
        self._t = (self._t + n) % self._wind.shape[1]
        self._clock += n
        return out


class Soundtrack:
    """Music + weather -> leveller -> limiter -> meter, one block at a time.
    `render` is called from one thread; the setters from any."""

    def __init__(
        self,
        music: MusicSettings | None = None,
        *,
        rate: int = RATE,
        seed: int = 0,
        playlist: Playlist | None = None,
        loudness_lufs: float = -15.0,
        true_peak_dbtp: float = -1.0,
        volume: float = 1.0,
        music_on: bool = True,
        style_of: Callable[[MusicSettings], Style] = style_for,
    ) -> None:
        self.rate = rate
        self.seed = seed
        self._style_of = style_of  # a world's [music] -> the style its band plays
        self.volume = volume
        self.playlist = playlist
        self.problem: str | None = None
        self.music_on = music_on
        self._fader = 1.0 if music_on else 0.0
        self._band: Band | None = self._new_band(music or MusicSettings())
        self._fading: tuple[Band, int, int] | None = None  # the last world's band: (band, done, length)
        self._beds = Beds(rate, seed)
        self._leveller = Leveller(loudness_lufs, rate)
        self._limiter = TruePeakLimiter(true_peak_dbtp - PEAK_MARGIN_DB, rate)
        self.meter = LoudnessMeter(rate)
        self._mood = "neutral"
        self._requests: _Requests = {}
        self._lock = threading.Lock()

    def _new_band(self, music: MusicSettings) -> Band | None:
        try:
            band = Band(self._style_of(music), rate=self.rate, seed=self.seed)
        except Exception as e:
            self._failed("The music generator could not start", e)
            return None
        self.problem = None
        return band

    def _failed(self, what: str, e: Exception) -> None:
        log.error("%s: %s: %s", what, type(e).__name__, e, exc_info=e)
        self.problem = f"{what} ({type(e).__name__}: {e}); the weather goes on."

    # -- requests, from any thread ---------------------------------------------------------
    def set_story(self, text: str) -> str:
        """The prompt on air; its mood reaches the music at the next bar lines."""
        mood = mood_of(text)
        with self._lock:
            self._requests["mood"] = mood
        return mood

    def set_world_music(self, music: MusicSettings) -> None:
        with self._lock:
            self._requests["world"] = music

    def set_music(self, on: bool) -> None:
        """Music on or off (a 1.5 s fade); the weather always plays."""
        self.music_on = bool(on)

    def _take_requests(self) -> None:
        with self._lock:
            requests, self._requests = self._requests, {}
        if "world" in requests:
            band = self._new_band(requests["world"])
            if band is not None:
                band.set_mood(self._mood)
                old = self._band
                self._fading = (old, 0, int(WORLD_FADE_S * self.rate)) if old is not None else None
                self._band = band
        if "mood" in requests:
            self._mood = requests["mood"]
            if self._band is not None:
                self._band.set_mood(self._mood)

    # -- the chain, in the audio thread ---------------------------------------------------------
    def render(self, n: int, ambience: Ambience | None = None) -> NDArray[np.float32]:
        """The next `n` stereo samples, float32, shape (2, n), values within -1..1."""
        self._take_requests()
        mix = self._music(n) + self._beds.render(n, ambience or Ambience())
        mix = self._leveller.process(mix, active=self._fader > 0)
        out = self._limiter.process(mix)
        if self.volume != 1.0:
            out *= np.float32(self.volume)
        power = self.meter.add(out)  # what goes out; the leveller learns from it too
        self._leveller.measure(power / self.volume**2 if self.volume > 0 else 0.0, n)
        return out

    def _music(self, n: int) -> NDArray[np.float32]:
        # The switch fades the music; a track that is fully off is not rendered at all.
        old = self._fader
        step = n / (FADE_S * self.rate)
        self._fader = min(old + step, 1.0) if self.music_on else max(old - step, 0.0)
        if old == 0.0 and self._fader == 0.0:
            return np.zeros((2, n), np.float32)
        x = self._source(n)
        if old == self._fader == 1.0:
            return x
        return x * (ramp_to_one(n) * np.float32(self._fader - old) + np.float32(old))

    def _source(self, n: int) -> NDArray[np.float32]:
        if self.playlist is not None:
            try:
                return self.playlist.render(n)
            except NothingToPlay as e:
                log.error("music: %s", e)
                self.problem = f"{e}; the generated music plays instead."
            except Exception as e:
                self._failed("The music folder stopped playing; the generated music plays instead", e)
            self.playlist.close()
            self.playlist = None
        out: NDArray[np.float32] = np.zeros((2, n), np.float32)
        if self._band is not None:
            try:
                out += self._band.render(n)
            except Exception as e:
                self._failed("The music generator stopped", e)
                self._band = None
        if self._fading is not None:  # equal-power crossfade from the last world's music
            band, done, length = self._fading
            u = np.minimum((done + np.arange(n)) / length, 1.0) * (np.pi / 2)
            try:
                out = out * np.sin(u).astype(np.float32) + band.render(n) * np.cos(u).astype(np.float32)
                self._fading = (band, done + n, length) if done + n < length else None
            except Exception as e:
                self._failed("The last world's music stopped", e)
                self._fading = None
        return out

    def status(self) -> dict[str, object]:
        """What the console shows: source, style and mood, loudness, any problem
        (read from another thread: every figure is a value the chain swaps whole)."""
        band = self._band.status() if self._band is not None else {}
        source = "playlist" if self.playlist is not None else "generated" if self._band is not None else "none"
        m = self.meter

        def num(x: float) -> float | None:
            return round(x, 1) if math.isfinite(x) else None

        return {
            "music_on": self.music_on,
            "source": source,
            "track": self.playlist.track if self.playlist is not None else None,
            **{k: band.get(k) for k in ("style", "mood", "tempo", "key", "mode", "intensity")},
            "momentary_lufs": num(m.momentary),
            "short_term_lufs": num(m.short_term),
            "integrated_lufs": num(m.integrated),
            "gain_db": round(self._leveller.gain_db, 1),
            "problem": self.problem,
        }


class Silence:
    """The track when audio is off: digital silence, still a valid AAC stream."""

    def __init__(self, rate: int = RATE) -> None:
        self.rate = rate
        self.music_on = False

    def render(self, n: int, ambience: Ambience | None = None) -> NDArray[np.float32]:
        return np.zeros((2, n), np.float32)

    def set_story(self, text: str) -> str:
        return "neutral"

    def set_world_music(self, music: MusicSettings) -> None:
        pass

    def set_music(self, on: bool) -> None:
        pass

    def status(self) -> dict[str, object]:
        return {"music_on": False, "source": "off", "problem": None}


class Track(Protocol):
    """What the feed's producer thread plays: the soundtrack, silence, or the weather alone."""

    def render(self, n: int, ambience: Ambience | None = None) -> NDArray[np.float32]: ...

    def status(self) -> dict[str, object]: ...


class AudioFeed:
    """The soundtrack rendered in its own thread, `depth` blocks ahead of the clock."""

    def __init__(
        self,
        track: Soundtrack | Silence,
        ambience: Callable[[], Ambience],
        *,
        block: int = BLOCK,
        depth: int = 15,
        rate: int = RATE,
    ) -> None:
        self.track = track
        self.ambience = ambience
        self.block = block
        self.rate = rate
        self._queue: queue.Queue[NDArray[np.float32]] = queue.Queue(maxsize=depth)
        self._buf = np.zeros((2, 0), np.float32)
        self._last = np.zeros(2, np.float32)  # the last sample the clock took
        self._last_ambience = Ambience()
        self._fallback = Beds(rate, seed=7)  # the clock's own, only for gaps
        self._source = "feed"  # where the last sample came from: the producer, or a gap
        self._stop = threading.Event()
        self._primed = threading.Event()  # the queue has filled once
        self._thread: threading.Thread | None = None
        self.late = 0  # reads the producer could not fill in time
        self.problem: str | None = None

    def start(self, ready_timeout: float = 10.0) -> None:
        """Start the producer and wait until its queue is full (or the timeout)."""
        self._thread = threading.Thread(target=self._run, name="soundtrack", daemon=True)
        self._thread.start()
        self._primed.wait(ready_timeout)

    def _run(self) -> None:
        track: Track = self.track
        while not self._stop.is_set():
            try:
                self._last_ambience = self.ambience()
            except Exception:  # the world's own trouble: the weather keeps its last mood
                log.debug("no ambience from the world", exc_info=True)
            try:
                block = track.render(self.block, self._last_ambience)
            except Exception as e:  # the whole chain broke: the weather alone, raw
                log.exception("the soundtrack stopped")
                self.problem = f"The soundtrack stopped ({type(e).__name__}: {e}); only the weather goes on."
                track = _BedsOnly(self.rate)
                continue
            while not self._stop.is_set():
                try:
                    self._queue.put(block, timeout=0.1)
                    break
                except queue.Full:
                    self._primed.set()

    def read(self, n: int) -> NDArray[np.float32]:
        """`n` samples for the clock thread, now: never waits for the producer."""
        pieces: list[tuple[NDArray[np.float32], bool]] = []  # (samples, from the producer)
        need = n
        while need:
            if self._buf.shape[1] == 0:
                try:
                    self._buf = self._queue.get_nowait()
                except queue.Empty:
                    break
            k = min(need, self._buf.shape[1])
            pieces.append((self._buf[:, :k], True))
            self._buf = self._buf[:, k:]
            need -= k
        if need:
            self.late += 1
            pieces.append((self._fallback.render(need, self._last_ambience), False))
        out = (
            np.concatenate([self._join(p, fresh) for p, fresh in pieces], axis=1)
            if len(pieces) > 1
            else self._join(*pieces[0])
        )
        self._last = out[:, -1].copy()
        return out

    def silence(self, n: int) -> NDArray[np.float32]:
        """`n` samples of silence (the clock skipped more than the feed holds),
        faded from the last sample taken, so neither edge clicks."""
        x = np.zeros((2, n), np.float32)
        k = min(n, int(0.005 * self.rate))
        x[:, :k] += self._last[:, None] * np.linspace(1.0, 0.0, k, dtype=np.float32)
        self._source = "silence"
        if n:
            self._last = x[:, -1].copy()
        return x

    def _join(self, x: NDArray[np.float32], fresh: bool) -> NDArray[np.float32]:
        """A piece from another source than the last sample starts where that
        sample was and glides onto its own course within 5 ms: no click."""
        source = "feed" if fresh else "gap"
        if self._source != source and x.shape[1]:
            k = min(x.shape[1], int(0.005 * self.rate))
            x = x.copy()
            x[:, :k] += (self._last - x[:, 0])[:, None] * np.linspace(1.0, 0.0, k, dtype=np.float32)
        self._source = source
        if x.shape[1]:
            self._last = x[:, -1].copy()
        return x

    def status(self) -> dict[str, object]:
        s = self.track.status()
        s["late_blocks"] = self.late
        if self.problem:
            s["problem"] = self.problem
        return s

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _BedsOnly:
    """What the producer plays when the soundtrack itself broke."""

    def __init__(self, rate: int) -> None:
        self._beds = Beds(rate, seed=11)

    def render(self, n: int, ambience: Ambience | None = None) -> NDArray[np.float32]:
        return self._beds.render(n, ambience or Ambience())

    def status(self) -> dict[str, object]:
        return {"music_on": False, "source": "none"}


def samples_for_tick(index: int, fps: int, rate: int) -> int:
    """Audio samples that belong with video frame `index` (exact over any run)."""
    return (index + 1) * rate // fps - index * rate // fps
