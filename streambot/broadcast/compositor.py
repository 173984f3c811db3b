"""The compositor: what is drawn over the world before it is encoded.

It owns the "be right back" slate (the console's kill switch) and the hook
for burned-in overlays. It never blocks: drawing happens on the clock thread
and must stay within a couple of milliseconds per frame.
"""
from __future__ import annotations

import threading

import numpy as np

from ..world.base import Frame


def slate(size: tuple[int, int], text: str = "BE RIGHT BACK") -> np.ndarray:
    """A calm full-frame slate, used when the picture must go off air at once."""
    from PIL import Image, ImageDraw, ImageFont

    w, h = size
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    top, bottom = np.array([24, 26, 48], np.float32), np.array([8, 8, 16], np.float32)
    img = np.broadcast_to(top * (1 - y) + bottom * y, (h, w, 3)).astype(np.uint8)
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    try:
        font = ImageFont.truetype("DejaVuSans-Bold.ttf", max(12, h // 10))
    except OSError:
        font = ImageFont.load_default(size=max(12, h // 10))
    box = draw.textbbox((0, 0), text, font=font)
    draw.text(((w - (box[2] - box[0])) / 2, (h - (box[3] - box[1])) / 2), text, font=font,
              fill=(235, 235, 245))
    return np.asarray(pil)


class Compositor:
    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._slate: np.ndarray | None = None
        self.off_air = False

    def set_off_air(self, off: bool, text: str = "BE RIGHT BACK") -> None:
        """The kill switch: replace the picture with the slate from the next frame."""
        with self._lock:
            if off and self._slate is None:
                self._slate = slate(self.size, text)
            self.off_air = off

    def picture(self, frame: Frame) -> np.ndarray:
        """The world's frame, or the slate while off air."""
        if self.off_air and self._slate is not None:
            return self._slate
        return frame.image

    def set_state(self, state) -> None:
        """The overlay's content (an OverlayState); redrawn only when it changes."""
        self.state = state

    def overlay(self, video) -> None:
        """Draw the overlay into `video` (a yuv420p av.VideoFrame of the output size)."""
