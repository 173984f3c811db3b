"""The live preview: the outgoing picture as small JPEGs, a few a second.

`observe` is the broadcast's frame observer, called on the clock thread for
every frame: it only keeps a reference to every Nth frame, and only while
someone is watching. The downscale and JPEG encode happen later, in a worker
thread of their own, paced by `run` on the asyncio loop; the stream never
waits for the preview.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import av
from PIL import Image

from ..priority import yield_to_clock

log = logging.getLogger(__name__)


def preview_size(output: tuple[int, int], width: int) -> tuple[int, int]:
    """At most `width` wide (never wider than the stream), same aspect, even sides."""
    ow, oh = output
    w = min(width, ow)
    h = max(2, round(w * oh / ow / 2) * 2)
    return w - w % 2, h


class Preview:
    def __init__(
        self, output_size: tuple[int, int], output_fps: float, *, fps: float = 5.0, width: int = 480, quality: int = 70
    ) -> None:
        self.every = max(1, round(output_fps / fps))
        self.fps = output_fps / self.every
        self.size = preview_size(output_size, width)
        self.quality = quality
        self.active = False  # someone is watching; read on the clock thread
        self._latest: tuple[int, av.VideoFrame] | None = None  # replaced on the clock thread
        self._sent_index = -1
        self.encode_ms: deque[float] = deque(maxlen=50)
        self.frames = 0

    # -- the clock thread ------------------------------------------------------------
    def observe(self, index: int, video: av.VideoFrame) -> None:
        """Keep a reference, nothing more (the frame is not written to after encoding)."""
        if self.active and index % self.every == 0:
            self._latest = (index, video)

    # -- the worker thread ---------------------------------------------------------------
    def encode(self, video: av.VideoFrame) -> bytes:
        t = time.perf_counter()
        w, h = self.size
        # PyAV's stub leaves to_image unannotated; it returns a PIL image
        image: Image.Image = video.to_image(width=w, height=h, interpolation="AREA")  # type: ignore[no-untyped-call]
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=self.quality)
        self.encode_ms.append((time.perf_counter() - t) * 1000)
        return buf.getvalue()

    # -- the asyncio loop ------------------------------------------------------------------
    async def run(self, watching: Callable[[], bool], publish: Callable[[bytes], None]) -> None:
        """Encode the newest kept frame for whoever watches, until cancelled."""
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(1, thread_name_prefix="console preview", initializer=yield_to_clock)
        try:
            while True:
                await asyncio.sleep(1 / self.fps / 2)
                self.active = watching()
                latest, self._latest = self._latest, None
                if not self.active or latest is None or latest[0] == self._sent_index:
                    continue
                self._sent_index = latest[0]
                try:
                    data = await loop.run_in_executor(pool, self.encode, latest[1])
                except Exception:
                    log.exception("preview frame failed")
                    await asyncio.sleep(1)
                    continue
                self.frames += 1
                publish(data)
        finally:
            self.active = False
            self._latest = None
            pool.shutdown(wait=False, cancel_futures=True)

    def figures(self) -> dict[str, Any]:
        return {
            "fps": round(self.fps, 2),
            "width": self.size[0],
            "height": self.size[1],
            "encode_ms": round(sum(self.encode_ms) / len(self.encode_ms), 2) if self.encode_ms else None,
            "frames": self.frames,
        }
