"""The soundtrack: each world's music and weather, at streaming loudness.

`Soundtrack` is the whole audio chain, rendered block by block:

    music (the world's band, music.py, or the streamer's playlist, playlist.py)
      + weather beds (wind and rain noise whose levels follow the world's ambience)
      -> leveller (to the target loudness, EBU R128) -> brick-wall limiter -> meter

The story reaches it as text (`set_story`: the prompt's mood), a world switch
as that world's `[music]` (`set_world_music`: the old band fades out while the
new one fades in), the console's switch as `set_music`. These only leave a
request; the chain applies it at its next block.

On air the chain runs in a process of its own (`audio_feed.SoundtrackProcess`),
which imports this module and scipy; the broadcast's process never does. A
music generator that fails is dropped and the weather goes on; the reason is
in `status()` for the console.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import TypedDict

import numpy as np
from numpy.typing import NDArray

from ..config import MusicSettings
from ..world.base import Ambience
from .loudness import Leveller, LoudnessMeter, TruePeakLimiter
from .music import Band, Style, mood_of, style_for
from .playlist import NothingToPlay, Playlist
from .sound import RATE, Beds, ramp_to_one

log = logging.getLogger(__name__)

FADE_S = 1.5  # the music switch
WORLD_FADE_S = 3.0  # one world's music into the next
# The limiter's ceiling sits this far under the allowed true peak: AAC's
# reconstruction may overshoot what went into the encoder.
PEAK_MARGIN_DB = 1.5


class _Requests(TypedDict, total=False):
    """Changes asked for from other threads, taken by the render thread at its next block."""

    mood: str
    world: MusicSettings


class Soundtrack:
    """Music + weather -> leveller -> limiter -> meter, one block at a time.
    `render` is called from one thread; the setters from any. `fade_in`: the
    music starts with the switch's fade (a soundtrack that joins a broadcast
    already on air)."""

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
        fade_in: bool = False,
        style_of: Callable[[MusicSettings], Style] = style_for,
    ) -> None:
        self.rate = rate
        self.seed = seed
        self._style_of = style_of  # a world's [music] -> the style its band plays
        self.volume = volume
        self.playlist = playlist
        self.problem: str | None = None
        self.music_on = music_on
        self._fader = 1.0 if music_on and not fade_in else 0.0
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

    def close(self) -> None:
        if self.playlist is not None:
            self.playlist.close()
