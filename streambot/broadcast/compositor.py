"""The compositor: what is drawn over the world before it is encoded.

It owns the "be right back" slate (the console's kill switch) and the
burned-in overlay. The clock thread never waits for drawing: when the overlay
state changes, a worker thread has the changed panels drawn with PIL and
converted once to premultiplied Y/U/V + alpha (`YuvPatch`); each frame then
only blends those few rectangles into the frame's planes with integer numpy
math, well under the 2 ms per 1280x720 frame budget.

The drawing itself runs in a separate process: PIL's text rendering holds
the GIL for tens of milliseconds at a time, which made the clock thread miss
its deadlines whenever the countdown ticked. Only the finished patches cross
back (about a megabyte, unpickled in well under a millisecond).
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing as mp
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..children import become_child
from ..world.base import Frame
from .overlay_layout import OverlayLayout, load_layout
from .overlay_render import OverlayRenderer, Patch
from .overlay_state import OverlayState

if TYPE_CHECKING:  # annotations only: the drawing process has no use for PyAV
    import av

log = logging.getLogger(__name__)

Planes = tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.uint8]]  # Y, U, V


def slate(size: tuple[int, int], text: str = "BE RIGHT BACK") -> NDArray[np.uint8]:
    """A calm full-frame slate, used when the picture must go off air at once."""
    from PIL import Image, ImageDraw, ImageFont

    from .overlay_text import FONT_DIR

    w, h = size
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    top, bottom = np.array([24, 26, 48], np.float32), np.array([8, 8, 16], np.float32)
    img = np.broadcast_to(top * (1 - y) + bottom * y, (h, w, 3)).astype(np.uint8)
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont
    try:
        font = ImageFont.truetype(str(FONT_DIR / "NotoSans-Bold.ttf"), max(12, h // 10))
    except OSError:
        font = ImageFont.load_default(size=max(12, h // 10))
    box = draw.textbbox((0, 0), text, font=font)
    draw.text(((w - (box[2] - box[0])) / 2, (h - (box[3] - box[1])) / 2), text, font=font, fill=(235, 235, 245))
    picture: NDArray[np.uint8] = np.asarray(pil)
    return picture


# BT.601 limited range, what swscale gives rgb24 -> yuv420p by default.
_RGB_TO_YUV = (
    np.array(
        [
            [65.481, 128.553, 24.966],
            [-37.797, -74.203, 112.0],
            [112.0, -93.786, -18.214],
        ],
        np.float32,
    )
    / 255.0
)
_YUV_OFFSET = np.array([16.0, 128.0, 128.0], np.float32)


@dataclass
class YuvPatch:
    """A premultiplied overlay patch ready for a yuv420p frame: per plane,
    `out = (plane * inv + pre + 128) >> 8` with inv = 256 - alpha*256."""

    x: int  # even, in luma pixels
    y: int
    pre_y: NDArray[np.uint16]  # (h, w)
    inv_y: NDArray[np.uint16]
    pre_u: NDArray[np.uint16]  # (h/2, w/2)
    pre_v: NDArray[np.uint16]
    inv_uv: NDArray[np.uint16]
    name: str = ""

    def __post_init__(self) -> None:
        # scratch space so a frame's blend allocates nothing
        self._buf_y = np.empty_like(self.pre_y)
        self._buf_uv = np.empty_like(self.pre_u)

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_buf")}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    @property
    def box(self) -> tuple[int, int, int, int]:
        h, w = self.pre_y.shape
        return self.x, self.y, self.x + w, self.y + h

    @classmethod
    def from_patch(cls, patch: Patch, size: tuple[int, int]) -> YuvPatch | None:
        """Crop to the pixels that show, align to the 4:2:0 grid, convert."""
        W, H = size
        a = patch.rgba[..., 3]
        rows, cols = np.flatnonzero(a.any(axis=1)), np.flatnonzero(a.any(axis=0))
        if rows.size == 0:
            return None
        x0, x1 = patch.x + cols[0], patch.x + cols[-1] + 1
        y0, y1 = patch.y + rows[0], patch.y + rows[-1] + 1
        x0, y0 = max(0, x0 - x0 % 2), max(0, y0 - y0 % 2)
        x1, y1 = min(W - W % 2, x1 + x1 % 2), min(H - H % 2, y1 + y1 % 2)
        if x1 <= x0 or y1 <= y0:
            return None
        # the patch's pixels over [x0,x1) x [y0,y1), transparent where it has none
        px = np.zeros((y1 - y0, x1 - x0, 4), np.float32)
        sx0, sy0 = max(x0, patch.x), max(y0, patch.y)
        sx1, sy1 = min(x1, patch.x + patch.rgba.shape[1]), min(y1, patch.y + patch.rgba.shape[0])
        px[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = patch.rgba[
            sy0 - patch.y : sy1 - patch.y, sx0 - patch.x : sx1 - patch.x
        ]
        alpha = px[..., 3] / 255.0
        # premultiplied YUV: the offset scales with alpha, the matrix acts on premultiplied RGB
        yuv = px[..., :3] @ _RGB_TO_YUV.T + alpha[..., None] * _YUV_OFFSET
        quad = (yuv[0::2, 0::2, 1:] + yuv[1::2, 0::2, 1:] + yuv[0::2, 1::2, 1:] + yuv[1::2, 1::2, 1:]) / 4
        a2 = (alpha[0::2, 0::2] + alpha[1::2, 0::2] + alpha[0::2, 1::2] + alpha[1::2, 1::2]) / 4

        def u16(v: NDArray[np.floating[Any]]) -> NDArray[np.uint16]:
            fixed: NDArray[np.uint16] = np.clip(np.rint(v * 256), 0, 65280).astype(np.uint16)
            return fixed

        return cls(
            x=int(x0),
            y=int(y0),
            pre_y=u16(yuv[..., 0]),
            inv_y=(256 - u16(alpha)).astype(np.uint16),
            pre_u=u16(quad[..., 0]),
            pre_v=u16(quad[..., 1]),
            inv_uv=(256 - u16(a2)).astype(np.uint16),
            name=patch.name,
        )

    def blend(self, planes: Planes) -> None:
        """Blend into (Y, U, V) uint8 plane views, in place."""
        x0, y0, x1, y1 = self.box
        for plane, pre, inv, buf, s in (
            (planes[0], self.pre_y, self.inv_y, self._buf_y, 1),
            (planes[1], self.pre_u, self.inv_uv, self._buf_uv, 2),
            (planes[2], self.pre_v, self.inv_uv, self._buf_uv, 2),
        ):
            view = plane[y0 // s : y1 // s, x0 // s : x1 // s]
            np.multiply(view, inv, out=buf)
            buf += pre
            buf += 128
            buf >>= 8
            np.copyto(view, buf, casting="unsafe")


def frame_planes(video: av.VideoFrame) -> Planes:
    """Writable numpy views of a yuv420p av.VideoFrame's Y, U and V planes."""
    out = []
    for i, (w, h) in enumerate(
        (
            (video.width, video.height),
            ((video.width + 1) // 2, (video.height + 1) // 2),
            ((video.width + 1) // 2, (video.height + 1) // 2),
        )
    ):
        p = video.planes[i]
        out.append(np.frombuffer(memoryview(p), np.uint8).reshape(h, p.line_size)[:, :w])
    return out[0], out[1], out[2]


class _Drawer:
    """Draws overlay states into YuvPatches; an unchanged panel keeps its pixels."""

    def __init__(self, layout: OverlayLayout, size: tuple[int, int]) -> None:
        self.key = (layout, size)
        self.size = size
        self.renderer = OverlayRenderer(layout, size)
        self.converted: dict[str, tuple[Patch, YuvPatch | None]] = {}

    def draw(self, state: OverlayState) -> tuple[YuvPatch, ...]:
        out = []
        for patch in self.renderer.render(state):
            hit = self.converted.get(patch.name)
            if hit is None or hit[0] is not patch:
                hit = (patch, YuvPatch.from_patch(patch, self.size))
                self.converted[patch.name] = hit
            if hit[1] is not None:
                out.append(hit[1])
        return tuple(out)


_drawer: _Drawer | None = None  # one per process: the drawing process's, or the fallback's


def draw_patches(state: OverlayState, layout: OverlayLayout, size: tuple[int, int]) -> tuple[YuvPatch, ...]:
    """Draw `state` (runs in the drawing process)."""
    global _drawer
    if _drawer is None or _drawer.key != (layout, size):
        _drawer = _Drawer(layout, size)
    return _drawer.draw(state)


_pool_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None


def _drawing_pool() -> ProcessPoolExecutor:
    """The one drawing process, shared by every compositor of this process."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=become_child)
            atexit.register(_pool.shutdown, wait=False, cancel_futures=True)
        return _pool


def _prepare(layout: OverlayLayout, size: tuple[int, int]) -> None:
    """Build the drawing process's renderer (fonts, panels) before its first state."""
    global _drawer
    if _drawer is None or _drawer.key != (layout, size):
        _drawer = _Drawer(layout, size)


def _discard_pool() -> None:
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


class Compositor:
    """The slate and the burned-in overlay.

    `layout`: the overlay layout (None: overlays/layouts/default.toml), also
    what the OBS page draws with; `burn_in=False` draws nothing into the
    frames (the OBS page shows the overlay instead). `min_redraw_s` spaces
    redraws when votes pour in.
    """

    def __init__(
        self,
        size: tuple[int, int],
        layout: OverlayLayout | None = None,
        *,
        burn_in: bool = True,
        min_redraw_s: float = 0.1,
        drawing_process: bool = True,
    ) -> None:
        self.size = size
        self.drawing_process = drawing_process
        self.burn_in = burn_in
        self.min_redraw_s = min_redraw_s
        self._lock = threading.Lock()
        self._slate: NDArray[np.uint8] | None = None
        self.off_air = False
        self.state: OverlayState | None = None
        # kept even when nothing is burned in: the OBS page draws with it (`layout_json`)
        self.layout = layout if layout is not None else load_layout()
        self._layer: tuple[YuvPatch, ...] = ()  # swapped whole; the clock thread only reads it
        # the worker: the latest (state, layout) to draw, and the last drawn
        self._cond = threading.Condition()
        self._wanted: tuple[OverlayState, OverlayLayout] | None = None
        self._drawn: tuple[OverlayState, OverlayLayout] | None = None
        self._closed = False
        self._worker: threading.Thread | None = None
        self.redraws = 0
        self.redraw_ms: list[float] = []

    # -- the slate --------------------------------------------------------------
    def set_off_air(self, off: bool, text: str = "BE RIGHT BACK") -> None:
        """The kill switch: replace the picture with the slate from the next frame."""
        with self._lock:
            if off and self._slate is None:
                self._slate = slate(self.size, text)
            self.off_air = off

    def picture(self, frame: Frame) -> NDArray[np.uint8]:
        """The world's frame, or the slate while off air."""
        if self.off_air and self._slate is not None:
            return self._slate
        return frame.image

    # -- the overlay's content ------------------------------------------------------
    def start_drawing(self) -> None:
        """Start the drawing process and its renderer now, without waiting: the show
        does this before it loads its world, so the process starts beside it."""
        if self.burn_in and self.drawing_process and self.layout is not None:
            try:
                _drawing_pool().submit(_prepare, self.layout, self.size)
            except Exception as e:  # a broken pool: the first draw says so and draws here
                log.debug("overlay: the drawing process did not start early (%s)", e)

    def set_state(self, state: OverlayState) -> None:
        """The overlay's content (an OverlayState); redrawn, off the clock
        thread, only when it changes."""
        if state == self.state:
            return
        self.state = state
        self._request()

    def set_layout(self, layout: OverlayLayout) -> None:
        """Another layout (a world switch may bring its own); redrawn at once."""
        if layout == self.layout:
            return
        self.layout = layout
        self._request()

    def _request(self) -> None:
        if not self.burn_in or self.state is None or self.layout is None:
            return
        with self._cond:
            if self._closed:
                return
            self._wanted = (self.state, self.layout)
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="overlay", daemon=True)
                self._worker.start()
            self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the latest state is drawn (tests, screenshots, benchmarks)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._wanted is not None and self._drawn != self._wanted:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(5)

    def _run(self) -> None:
        last = 0.0
        while True:
            with self._cond:
                while not self._closed and (self._wanted is None or self._wanted == self._drawn):
                    self._cond.wait()
                if self._closed:
                    return
            # coalesce a burst of changes (votes pouring in) into one redraw
            wait = last + self.min_redraw_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            with self._cond:
                wanted = self._wanted
            assert wanted is not None  # the wait above ends on a state to draw (or on close)
            last = time.monotonic()
            try:
                self._layer = self.draw(*wanted)
            except Exception:  # a bad string must never take the overlay down for good
                log.exception("overlay: drawing failed; the last overlay stays up")
            with self._cond:
                self._drawn = wanted
                self._cond.notify_all()

    def draw(self, state: OverlayState, layout: OverlayLayout) -> tuple[YuvPatch, ...]:
        """Draw `state` with `layout` into blend-ready patches (the worker's
        job), in the drawing process; in this one if that process is gone."""
        t = time.perf_counter()
        if self.drawing_process:
            try:
                out = _drawing_pool().submit(draw_patches, state, layout, self.size).result(timeout=30)
            except Exception as e:  # a broken pool: draw here this time, a fresh one next time
                log.warning("overlay: drawing process failed (%s); drawing in-process", e)
                _discard_pool()
                out = draw_patches(state, layout, self.size)
        else:
            out = draw_patches(state, layout, self.size)
        self.redraws += 1
        self.redraw_ms = (self.redraw_ms + [(time.perf_counter() - t) * 1000])[-100:]
        return out

    # -- per frame ---------------------------------------------------------------------
    def overlay(self, video: av.VideoFrame) -> None:
        """Draw the overlay into `video` (a yuv420p av.VideoFrame of the output size)."""
        layer = self._layer
        if not layer or self.off_air or not self.burn_in:
            return
        if self.state is not None and self.state.off_air:
            return
        planes = frame_planes(video)
        for patch in layer:
            patch.blend(planes)
