"""The broadcast: world runner -> clock -> compositor -> encoder -> outputs,
with the soundtrack's blocks taken ahead in a thread of their own (audio_feed.AudioFeed;
the soundtrack itself is rendered in its own process).

As in OBS, the clock only picks each slot's frame; the picture, the overlay,
the encode, the sound and the sends happen on an encoder thread of their own
behind a queue of a few frames (`[stream] encode_ahead_frames`), so a spike
in encoding (a keyframe, a busy moment on the machine) never makes a tick
start late. When the encoder falls a whole queue behind, the slot's frame is
not encoded: it is counted as skipped, its timestamp left out, and the stream
stays on the wall clock. With 0 the whole tick runs on the clock's thread
(tests on an injected clock use that to step through ticks one by one).

`open_broadcast` is the one place that builds it, for `streambot run`,
`streambot bench` and the tests alike: the encoder from the stream settings,
every output opened (at the same time: each starts a process; `connect` starts
them ahead, while the show loads its world), the parts
handed to `Broadcast`. `Broadcast` runs them in their threads, keeps the
encoder's preset matched to what the machine can do (`PresetGovernor`), and
measures what viewers get: output frame rate, the world's free-running
capacity, encode cost, late, repeated and skipped frames, the preset in use,
and prompt-to-pixel latency (from the steer call to the first encoded frame
rendered under that prompt).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from ..config import StreamSettings
from ..world.base import Frame, World
from .audio_feed import AudioFeed, SteeredTrack
from .clock import Clock, WorldRunner
from .compositor import Compositor
from .encoder import AUDIO_RATE, Encoder, EncoderSettings, PresetGovernor
from .outputs import Output, await_outputs, close_outputs, start_outputs

if TYPE_CHECKING:
    import av

    from .encoder import Packet

log = logging.getLogger(__name__)

MAX_AUDIO_CATCH_UP = AUDIO_RATE // 4  # samples of score after skipped ticks; beyond that, silence


class OutputHealth(TypedDict):
    name: str  # the destination, its key masked
    state: str
    reconnects: int
    bytes_sent: int
    dropped: int


@dataclass
class Health:
    output_fps: float
    generator_fps: float
    encode_ms_per_frame: float
    compose_ms_per_frame: float
    ticks: int
    late_frames: int
    repeated_frames: int
    skipped_frames: int
    dropped_frames: int
    prompt_to_pixel_ms_p50: float | None
    prompt_to_pixel_ms_p95: float | None
    bitrate_kbps: float
    outputs: list[OutputHealth]
    encoder_preset: str
    encoder_preset_configured: str
    encoder_preset_changes: int
    busy: float  # the governor's smoothed share of a frame period each frame takes to encode
    encode_lag_frames: int  # of skipped_frames: slots the encoder was a whole queue behind for


def encoder_settings(stream: StreamSettings) -> EncoderSettings:
    return EncoderSettings(
        size=stream.dimensions,
        fps=stream.fps,
        bitrate_kbps=stream.bitrate_kbps,
        audio_bitrate_kbps=stream.audio_bitrate_kbps,
        keyframe_s=stream.keyframe_s,
        preset=stream.x264_preset,
        codec=stream.encoder,
        adaptive=stream.adaptive_preset,
    )


class Connecting:
    """The encoder and every output's process, connecting while the show gets
    the rest ready (`connect`); `open_broadcast` waits for them."""

    def __init__(self, encoder: Encoder, outputs: list[Output]) -> None:
        self.encoder = encoder
        self.outputs = outputs

    def close(self) -> None:
        """A start that stopped before the broadcast was built: end them."""
        close_outputs(self.outputs)
        self.encoder.close()


def connect(stream: StreamSettings, targets: list[str]) -> Connecting:
    """The encoder from `stream` (it needs nothing from the world) and every target's
    process started at once, without waiting for any handshake."""
    encoder = Encoder(encoder_settings(stream))
    planned = stream.planned_reconnect_h * 3600 or None
    try:
        outputs = [
            Output(
                t,
                encoder.stream_info,
                connect_timeout_s=stream.connect_timeout_s,
                reconnect_max_s=stream.reconnect_max_s,
                planned_reconnect_s=planned,
            )
            for t in targets
        ]
        start_outputs(outputs)
    except Exception:
        encoder.close()
        raise
    return Connecting(encoder, outputs)


def open_broadcast(
    world: World,
    stream: StreamSettings,
    targets: list[str],
    compositor: Compositor,
    soundtrack: SteeredTrack,
    *,
    connecting: Connecting | None = None,
    max_frames: int | None = None,
    now: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] | None = None,
    encode_ahead: int | None = None,
) -> Broadcast:
    """The broadcast `streambot run` puts on air: `world` (started), the encoder
    from `stream`, every target opened (`open_outputs`: all at once; one that
    does not answer keeps trying while the others go live). `connecting`: what
    `connect` started earlier for these targets (the show starts its outputs
    before the world, so their processes start while it loads). When none can
    be opened, the OutputError is raised, and what `connect` started is closed
    by whoever called it (here, when `connecting` was not given). `now`/`sleep`:
    an injected clock for tests; `encode_ahead`: `stream.encode_ahead_frames`
    unless given."""
    started_here = connecting is None
    connecting = connecting or connect(stream, targets)
    encoder, outputs = connecting.encoder, connecting.outputs
    try:
        await_outputs(outputs)
    except BaseException:
        if started_here:
            connecting.close()
        raise
    return Broadcast(
        world,
        encoder,
        outputs,
        compositor,
        soundtrack,
        fps=stream.fps,
        max_frames=max_frames,
        now=now,
        sleep=sleep,
        encode_ahead=stream.encode_ahead_frames if encode_ahead is None else encode_ahead,
    )


class Broadcast:
    def __init__(
        self,
        world: World,
        encoder: Encoder,
        outputs: list[Output],
        compositor: Compositor,
        soundtrack: SteeredTrack,
        *,
        fps: int,
        max_frames: int | None = None,
        frame_observer: Callable[[int, av.VideoFrame], None] | None = None,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        encode_ahead: int = 0,
    ) -> None:
        self.world = world
        self.encoder = encoder
        self.outputs = outputs
        self.compositor = compositor
        self.soundtrack = soundtrack
        self.fps = fps
        self._now = now
        self.audio = AudioFeed(soundtrack, world.ambience)  # its own thread, ahead of the clock
        self.runner = WorldRunner(world, fps=fps)
        # The encoder's queue: (slot, frame, repeated, when it was handed over); None ends it.
        self._ahead: queue.Queue[tuple[int, Frame, bool, float] | None] | None = (
            queue.Queue(maxsize=encode_ahead) if encode_ahead > 0 else None
        )
        self._encoder_thread: threading.Thread | None = None
        self.encode_lag_frames = 0  # slots not encoded: the encoder was a whole queue behind
        self._last_encoded = -1  # the last slot encoded (the governor counts the slots between as skipped)
        self.clock = Clock(
            self.runner,
            fps,
            self._on_tick if self._ahead is None else self._hand_over,
            max_frames=max_frames,
            now=now,
            sleep=sleep,
            after_tick=self._after_tick if self._ahead is None else None,
        )
        self.governor = PresetGovernor(fps)
        self.frame_observer = frame_observer  # e.g. the console's preview
        self._encode_ms: deque[float] = deque(maxlen=300)
        self._compose_ms: deque[float] = deque(maxlen=300)
        self._latency_ms: deque[float] = deque(maxlen=500)
        self._last_generation = -1
        self._audio_from = 0  # the first tick whose sound is not yet encoded
        self._bytes: deque[tuple[float, int]] = deque(maxlen=300)
        self._closed = False
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        """Outputs are already open; start rendering (sound and picture), then the clock."""
        self.runner.start()
        self.audio.start()
        if self._ahead is not None:
            self._encoder_thread = threading.Thread(target=self._encode_ahead, name="encoder", daemon=True)
            self._encoder_thread.start()
        self.clock.start()

    def wait(self, timeout: float | None = None) -> bool:
        return self.clock.wait(timeout)

    def stop(self) -> None:
        """Stop the clock, flush the encoder, close every output properly."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.clock.stop()
        if self._ahead is not None and self._encoder_thread is not None:
            # After what is queued: every slot handed over is encoded.
            while self._encoder_thread.is_alive():
                try:
                    self._ahead.put(None, timeout=0.1)
                    break
                except queue.Full:
                    continue
            self._encoder_thread.join(timeout=15)
        self.runner.stop()
        self.audio.close()
        self.soundtrack.close()
        for kind, packet in self.encoder.flush():
            for out in self.outputs:
                out.send(packet, kind)
        for out in self.outputs:
            out.close()
        self.encoder.close()
        self.compositor.close()

    # -- one tick ------------------------------------------------------------------
    def _hand_over(self, index: int, frame: Frame, repeated: bool) -> None:
        """The clock's tick with the encoder on its own thread: queue the slot's
        frame; when the queue is full the encoder is a whole queue behind, and
        the slot is skipped (counted, its timestamp left out)."""
        assert self._ahead is not None
        try:
            self._ahead.put_nowait((index, frame, repeated, self._now()))
        except queue.Full:
            self.encode_lag_frames += 1

    def _encode_ahead(self) -> None:
        """The encoder thread: each queued slot in order, its governor fed with how
        long the slot waited and took (the slots left out since the last count as
        wholly busy)."""
        assert self._ahead is not None
        try:
            while True:
                item = self._ahead.get()
                if item is None:
                    return
                index, frame, repeated, handed = item
                skipped = index - self._last_encoded - 1 if self._last_encoded >= 0 else 0
                self._on_tick(index, frame, repeated)
                end = self._now()
                self._after_tick(handed, end - handed, skipped)
        except BaseException as e:
            # Nothing more can go out: the broadcast ends as it does when the clock's own sink fails.
            log.exception("broadcast encoder stopped by an error")
            self.clock.error = e
            self.clock.stop()

    def _on_tick(self, index: int, frame: Frame, repeated: bool) -> None:
        # 1. the picture (the world, or the slate when off air), scaled to the output
        t = time.perf_counter()
        video = self.encoder.to_frame(self.compositor.picture(frame))
        # 2. the overlay, blended straight into the YUV planes
        c = time.perf_counter()
        self.compositor.overlay(video)
        self._compose_ms.append((time.perf_counter() - c) * 1000)
        # 3. one encode for every destination
        packets = self.encoder.encode_frame(video, index)
        self._encode_ms.append((time.perf_counter() - t) * 1000 - self._compose_ms[-1])
        if frame.generation > self._last_generation:
            if self._last_generation >= 0:
                steered = self.world.steered_at(frame.generation)
                if steered is not None:
                    self._latency_ms.append((time.monotonic() - steered) * 1000)
            self._last_generation = frame.generation
        self._send(packets, "video")
        # 4. the sound of this tick and of any skipped before it: audio never skips.
        # After a long stall the gap is silence, not seconds of score at once:
        # the feed holds 1.5 s ahead, and what it lacks would be made on this
        # thread, costing the next ticks their time.
        n = (index + 1) * AUDIO_RATE // self.fps - self._audio_from * AUDIO_RATE // self.fps
        self._audio_from = index + 1
        gap = max(0, n - MAX_AUDIO_CATCH_UP)
        if gap:
            self._send(self.encoder.encode_audio(self.audio.silence(gap)), "audio")
        self._send(self.encoder.encode_audio(self.audio.read(n - gap)), "audio")
        self._last_encoded = index
        if self.frame_observer is not None:
            self.frame_observer(index, video)

    def _after_tick(self, started: float, busy_s: float, skipped: int) -> None:
        """Step the preset when the governor says encoding lags or has recovered."""
        direction = self.governor.observe(started, busy_s, skipped)
        if direction and self.encoder.step(
            direction, "encoding lagged" if direction < 0 else "the machine keeps up again"
        ):
            self.governor.stepped(started, direction)

    def _send(self, packets: list[Packet], kind: str) -> None:
        size = 0
        for p in packets:
            size += p.size
            for out in self.outputs:
                out.send(p, kind)
        if size:
            self._bytes.append((self._now(), size))

    # -- figures ---------------------------------------------------------------------
    def health(self) -> Health:
        s = self.clock.stats
        lat = np.array(self._latency_ms) if self._latency_ms else None
        b = list(self._bytes)
        span = b[-1][0] - b[0][0] if len(b) > 1 else 0
        kbps = sum(x for _, x in b[1:]) * 8 / span / 1000 if span > 0 else 0.0
        return Health(
            output_fps=round(s.output_fps, 2),
            generator_fps=round(self.runner.capacity_fps, 1),
            encode_ms_per_frame=round(float(np.mean(self._encode_ms)), 2) if self._encode_ms else 0.0,
            compose_ms_per_frame=round(float(np.mean(self._compose_ms)), 3) if self._compose_ms else 0.0,
            ticks=s.ticks,
            late_frames=s.late,
            repeated_frames=s.repeated,
            skipped_frames=s.skipped + self.encode_lag_frames,
            dropped_frames=sum(o.packets_dropped for o in self.outputs),
            prompt_to_pixel_ms_p50=None if lat is None else round(float(np.percentile(lat, 50)), 1),
            prompt_to_pixel_ms_p95=None if lat is None else round(float(np.percentile(lat, 95)), 1),
            bitrate_kbps=round(kbps, 1),
            outputs=[
                {
                    "name": o.name,
                    "state": o.state,
                    "reconnects": o.reconnects,
                    "bytes_sent": o.bytes_sent,
                    "dropped": o.packets_dropped,
                }
                for o in self.outputs
            ],
            encoder_preset=self.encoder.preset,
            encoder_preset_configured=self.encoder.configured_preset,
            encoder_preset_changes=self.encoder.preset_changes,
            busy=round(self.governor.busy, 3),
            encode_lag_frames=self.encode_lag_frames,
        )

    def audio_status(self) -> dict[str, object]:
        """The soundtrack for the console: source, style, mood, loudness, problems."""
        return self.audio.status()

    @property
    def frames_out(self) -> int:
        """Frames encoded and sent (ticks minus every skipped slot)."""
        return self.clock.stats.sent - self.encode_lag_frames

    @property
    def latencies_ms(self) -> list[float]:
        return list(self._latency_ms)
