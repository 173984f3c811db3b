"""The soundtrack's process (`run`), the child of `audio_feed.SoundtrackProcess`.

It is spawned once the show is on air, beside the first seconds of frames, so
what it does at the show's priority before its first block is kept to the
interpreter and this module (the standard library only). Its settings come
pickled and are read on the build thread, 10 nice steps below the show
(`priority.yield_to_clock`), with everything they need: numpy, the settings'
models, scipy, the instruments. The blocks are then rendered on the
process's main thread, at the show's own priority, so they stay ahead.
"""

from __future__ import annotations

import logging
import pickle
import threading
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from ..children import become_child
from ..priority import yield_to_clock

if TYPE_CHECKING:
    from .audio import Soundtrack
    from .sound import SoundtrackSettings

STATUS_EVERY = 5  # blocks between the status reports (the console's meter: twice a second)


def run(settings: bytes, requests: Connection, blocks: Connection) -> None:
    """Build the chain, then render block after block, each after the requests
    and the ambience that came before it. A block is sent as b"A" + its
    float32 samples, the status as b"S" + a pickle; the send blocks while the
    broadcast holds enough, which keeps this process ahead of the clock by
    the feed's depth and no more. `settings`: a pickled SoundtrackSettings."""
    become_child()
    logging.basicConfig(level=logging.WARNING, format="soundtrack: %(levelname)s %(name)s: %(message)s")
    built: list[tuple[Soundtrack, SoundtrackSettings]] = []
    builder = threading.Thread(target=_build, args=(settings, built), name="soundtrack build")
    builder.start()
    builder.join()
    if not built:
        return  # why is in the log; the broadcast starts it again
    import numpy as np  # imported by the build already

    from ..world.base import Ambience

    track, chosen = built[0]
    ambience = Ambience()
    sent = 0
    try:
        while True:
            while requests.poll():
                kind, value = requests.recv()
                if kind == "ambience":
                    ambience = value
                elif kind == "story":
                    track.set_story(value)
                elif kind == "world":
                    track.set_world_music(value)
                elif kind == "music":
                    track.set_music(value)
            block = track.render(chosen.block, ambience)
            blocks.send_bytes(b"A" + np.ascontiguousarray(block, np.float32).tobytes())
            if sent % STATUS_EVERY == 0:
                blocks.send_bytes(b"S" + pickle.dumps(track.status()))
            sent += 1
    except (EOFError, OSError):  # the broadcast closed the pipes, or is gone
        pass
    finally:
        track.close()


def _build(settings: bytes, built: list[tuple[Soundtrack, SoundtrackSettings]]) -> None:
    """Read the settings, import the chain (scipy) and make its instruments,
    yielding the CPU: on a busy machine the broadcast's first seconds on air
    come first (the weather plays meanwhile)."""
    yield_to_clock()
    chosen: SoundtrackSettings = pickle.loads(settings)  # numpy and the settings' models, imported here
    from .audio import Soundtrack  # scipy and the instruments: here, never in the broadcast's process
    from .playlist import Playlist

    playlist = (
        Playlist(chosen.music_dir, crossfade_s=chosen.crossfade_s, target_lufs=chosen.loudness_lufs)
        if chosen.music_dir is not None
        else None
    )
    track = Soundtrack(
        chosen.music,
        seed=chosen.seed,
        playlist=playlist,
        loudness_lufs=chosen.loudness_lufs,
        true_peak_dbtp=chosen.true_peak_dbtp,
        volume=chosen.volume,
        music_on=chosen.music_on,
        fade_in=True,
    )
    built.append((track, chosen))
