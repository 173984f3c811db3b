"""`streambot bench`: what `streambot run` runs, measured.

`LiveShow` puts the show on air the way `streambot run` does (the same `Show`
from app.py, so the same world, preset, encoder, outputs and start-up), with
what a streamer has around it: the console up and a page previewing the
stream (a websocket client in a process of its own, as a browser is), a
prompt typed in the terminal every few seconds (local chat, followed from a
file), and optionally chat pouring in through the audience as an adapter
delivers it. It samples memory, threads, file descriptors and frame rate
while it runs and reports what a viewer gets (output fps, late, skipped and
repeated frames, drift, prompt-to-pixel latency) and what the machine pays.
The soak benchmark (benchmarks/bench_soak.py) is the same harness, longer.

`compare_with_ffmpeg` times our encoder against the `ffmpeg` command line on
the same raw frames with the same x264 settings.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil

from .broadcast.encoder import Encoder, EncoderSettings
from .config import Settings, resolve_world

if TYPE_CHECKING:
    from rich.progress import Progress

    from .app import Show
    from .broadcast.pipeline import Broadcast
    from .viewer import Viewer

PROMPTS = [
    "a thunderstorm at night",
    "golden sunset over the desert",
    "a snowy winter morning",
    "neon city in the rain",
    "a calm sunny day with birds",
    "deep space with a purple nebula",
]


def _progress(enabled: bool) -> Progress:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(), disable=not enabled, transient=True
    )


# -- the console page, as a browser would hold it open --------------------------------

PREVIEW_CLIENT = """
import asyncio, sys, aiohttp
async def main(url, token):
    frames = 0
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer " + token}) as s:
        for _ in range(600):  # the console may still be starting
            try:
                ws = await s.ws_connect(url)
                break
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
        else:
            return
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                frames += 1
                print(frames, flush=True)
asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


class PreviewPage:
    """A console page watching the live preview, in a process of its own."""

    def __init__(self, console: str, token: str) -> None:
        self.frames = 0
        self._proc = subprocess.Popen(
            [sys.executable, "-c", PREVIEW_CLIENT, f"ws://{console}/ws/preview", token],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name="preview page", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None  # stdout=PIPE
        for line in self._proc.stdout:
            self.frames = int(line)

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait(10)
        self._reader.join(5)


# -- samples while on air ----------------------------------------------------------------


@dataclass
class Sample:
    t: float  # seconds since the clock started
    rss_mb: float  # the broadcast process
    rss_total_mb: float  # with its children (outputs, overlay drawing, sentence model)
    fds: int
    threads: int
    fps: float  # frames sent per second since the previous sample
    sent: int
    skipped: int
    late: int
    preset: str


@dataclass
class LiveShow:
    settings: Settings
    seconds: float
    preview: bool = True
    prompt_every_s: float = 4.0
    chat_per_s: float = 0.0
    chat: list[tuple[Viewer, str]] = field(default_factory=list)  # replayed through the audience
    sample_every_s: float = 1.0
    progress: bool = False
    samples: list[Sample] = field(default_factory=list)
    chat_offered: int = 0  # messages due by the end, at `chat_per_s` on the wall clock since the first frame
    chat_handled: int = 0  # messages the audience took
    chat_behind_max: int = 0  # the most messages due and not yet taken, at any moment
    chat_seconds: float = 0.0

    def run(self) -> dict[str, Any]:
        from .app import Show, ShowOptions, build_world
        from .devserver import free_port

        work = Path(tempfile.mkdtemp(prefix="streambot-bench-"))
        s = self.settings
        # The show's own files go to a scratch folder, never the streamer's.
        s.voting.timeline = str(work / "timeline.sqlite3")
        s.console.sessions_file = str(work / "sessions.sqlite3")
        s.console.token_file = str(work / "console_token")
        token = secrets.token_urlsafe(24)
        console = f"127.0.0.1:{free_port()}"
        chat = work / "typed.txt"
        chat.touch()
        spec = resolve_world(s.world.preset)
        out = work / "bench.flv"
        show = Show(
            s,
            spec,
            build_world(s),
            ShowOptions(
                outputs=[str(out)],
                duration_s=self.seconds,
                chat_source=str(chat),
                secrets={"admin_token": token},
                console=console,
            ),
        )
        proc = psutil.Process()
        try:
            show.open()
            page = PreviewPage(console, token) if self.preview else None
            try:
                asyncio.run(self._on_air(show, chat, proc))
            finally:
                if page is not None:
                    page.close()
            figures = self._figures(show, out, page)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return figures

    async def _on_air(self, show: Show, chat: Path, proc: psutil.Process) -> None:
        tasks = [asyncio.create_task(self._watch(show, chat, proc))]
        if self.chat_per_s > 0 and self.chat:
            tasks.append(asyncio.create_task(self._chat(show)))
        try:
            await show.run()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(self, show: Show, chat: Path, proc: psutil.Process) -> None:
        """Type a prompt every few seconds; sample the process every second."""
        with _progress(self.progress) as bar:
            task = bar.add_task(f"on air for {self.seconds:.0f} s", total=self.seconds)
            while show.broadcast is None or not show.broadcast.clock.stats.started:
                await asyncio.sleep(0.05)
            broadcast = show.broadcast
            started = time.monotonic()
            next_prompt = started + self.prompt_every_s
            next_sample = started + self.sample_every_s  # each sample's fps is over a whole interval
            k = 0
            last = (started, 0)
            while not broadcast.clock.done.is_set():  # (not while the show closes)
                now = time.monotonic()
                if now >= next_prompt:
                    with chat.open("a") as f:  # the streamer types a prompt
                        f.write(PROMPTS[k % len(PROMPTS)] + "\n")
                    k += 1
                    next_prompt += self.prompt_every_s
                if now >= next_sample:
                    sent = broadcast.frames_out
                    fps = (sent - last[1]) / (now - last[0]) if now > last[0] else 0.0
                    last = (now, sent)
                    self.samples.append(_sample(proc, now - started, fps, broadcast))
                    next_sample += self.sample_every_s
                bar.update(task, completed=min(self.seconds, now - started))
                await asyncio.sleep(0.05)

    async def _chat(self, show: Show) -> None:
        """Chat as an adapter delivers it: `chat` over and over, `chat_per_s` a second on
        the wall clock from the first frame. What is due goes out at once, in slices of
        20 ms that leave the loop to everything else between them; what the show has not
        taken when it is due is the backlog (`chat_behind_max`)."""
        from .audience.events import ChatMessage

        messages = self.chat
        while show.broadcast is None or not show.broadcast.clock.stats.started:
            await asyncio.sleep(0.05)
        assert show.audience is not None  # the show is open
        t0 = time.monotonic()
        i = 0
        while True:
            now = time.monotonic()
            due = int((now - t0) * self.chat_per_s)
            self.chat_offered, self.chat_seconds = due, now - t0
            self.chat_behind_max = max(self.chat_behind_max, due - i)
            # A slice is time, not a count: when the loop comes round late (a loaded
            # machine), the next slice takes more, so the rate holds.
            end = now + 0.02
            while i < due and time.monotonic() < end:
                viewer, text = messages[i % len(messages)]
                show.audience.handle(ChatMessage(viewer, text))
                i += 1
            self.chat_handled = i
            # behind: the next slice after whatever else is waiting; caught up: the next messages
            await asyncio.sleep(0 if i < due else 0.01)

    def _figures(self, show: Show, out: Path, page: PreviewPage | None) -> dict[str, Any]:
        b = show.broadcast
        assert b is not None and show.audience is not None  # the show ran
        h = b.health()
        st = b.clock.stats
        wall = st.tick_times[-1] - st.started if st.tick_times else 0.0
        last_tick_at = st.last_sent_at - st.started
        warm = [x for x in self.samples if x.t >= min(60.0, self.seconds / 4)]
        first, last = (warm[0], warm[-1]) if warm else (None, None)
        return {
            "seconds": self.seconds,
            "size": show.settings.stream.size,
            "world": show.spec.name,
            "x264_preset_configured": h.encoder_preset_configured,
            "x264_preset_end": h.encoder_preset,
            "x264_preset_changes": h.encoder_preset_changes,
            "output_fps": round(b.frames_out / wall, 3) if wall else 0.0,
            "slots": h.ticks,
            "frames": b.frames_out,
            "late_frames": h.late_frames,
            "skipped_frames": h.skipped_frames,
            "repeated_frames": h.repeated_frames,
            "encode_lag_frames": h.encode_lag_frames,
            "late_plus_skipped_pct": round(100 * (h.late_frames + h.skipped_frames) / max(1, h.ticks), 3),
            "drift_ms": _drift_ms(out, last_tick_at),
            "generator_fps": h.generator_fps,
            "encode_ms_per_frame": h.encode_ms_per_frame,
            "compose_ms_per_frame": h.compose_ms_per_frame,
            "prompt_to_pixel_ms_p50": h.prompt_to_pixel_ms_p50,
            "prompt_to_pixel_ms_p95": h.prompt_to_pixel_ms_p95,
            "prompts": len(b.latencies_ms),
            "preview_frames": page.frames if page is not None else None,
            "chat_messages": show.audience.counts.get("messages", 0),
            "chat_offered_per_s": round(self.chat_offered / self.chat_seconds, 1) if self.chat_seconds else None,
            "chat_handled_per_s": round(self.chat_handled / self.chat_seconds, 1) if self.chat_seconds else None,
            "chat_behind_max": self.chat_behind_max,
            "rss_mb_start": first.rss_mb if first else None,
            "rss_mb_end": last.rss_mb if last else None,
            "rss_total_mb_start": first.rss_total_mb if first else None,
            "rss_total_mb_end": last.rss_total_mb if last else None,
            "fds_start_end": [first.fds, last.fds] if first and last else None,
            "threads_start_end": [first.threads, last.threads] if first and last else None,
            "cpu_count": os.cpu_count(),
            "load_avg_1m_end": round(os.getloadavg()[0], 2),
        }


def _sample(proc: psutil.Process, t: float, fps: float, broadcast: Broadcast) -> Sample:
    stats = broadcast.clock.stats
    rss = proc.memory_info().rss
    total = rss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return Sample(
        t=round(t, 2),
        rss_mb=round(rss / 2**20, 1),
        rss_total_mb=round(total / 2**20, 1),
        fds=proc.num_fds(),
        threads=proc.num_threads(),
        fps=round(fps, 2),
        sent=broadcast.frames_out,
        skipped=stats.skipped + broadcast.encode_lag_frames,
        late=stats.late,
        preset=broadcast.encoder.preset,
    )


def _drift_ms(path: Path, last_tick_at: float) -> float | None:
    """How far the stream's own clock is from the wall clock at the end: the
    last video timestamp in the file, read back, against the wall-clock time
    (since the first tick) at which that frame's tick began."""
    import av

    try:
        with av.open(str(path)) as c:
            v = c.streams.video[0]
            last = max(float(p.pts * p.time_base) for p in c.demux(v) if p.pts is not None)
    except (OSError, ValueError, av.error.FFmpegError):
        return None
    return round((last - last_tick_at) * 1000, 1)


# -- our encoder against the ffmpeg command line ------------------------------------------


def compare_with_ffmpeg(frames: list[np.ndarray], settings: EncoderSettings) -> dict[str, Any]:
    """CPU seconds to encode the same frames: our PyAV encoder vs the ffmpeg CLI."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return {"ffmpeg": "not installed"}
    w, h = settings.size
    src_h, src_w = frames[0].shape[:2]
    enc = Encoder(settings)
    cpu0 = time.process_time()
    for i, f in enumerate(frames):
        enc.encode_video(f, i)
    enc.flush()
    ours = time.process_time() - cpu0
    enc.close()
    gop = round(settings.keyframe_s * settings.fps)
    kbps = settings.bitrate_kbps
    with tempfile.TemporaryDirectory() as d:
        raw = Path(d) / "frames.rgb"
        with open(raw, "wb") as fh:
            for f in frames:
                fh.write(np.ascontiguousarray(f).tobytes())
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            [
                ffmpeg,
                "-v",
                "error",
                "-y",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
                "-s",
                f"{src_w}x{src_h}",
                "-r",
                str(settings.fps),
                "-i",
                str(raw),
                "-vf",
                f"scale={w}:{h}:flags=bilinear",
                "-c:v",
                "libx264",
                "-preset",
                settings.preset,
                "-tune",
                "zerolatency",
                "-b:v",
                f"{kbps}k",
                "-maxrate",
                f"{kbps}k",
                "-minrate",
                f"{kbps}k",
                "-bufsize",
                f"{2 * kbps}k",
                "-g",
                str(gop),
                "-x264-params",
                f"keyint={gop}:min-keyint={gop}:scenecut=0:nal-hrd=cbr:force-cfr=1:open-gop=0",
                "-pix_fmt",
                "yuv420p",
                "-f",
                "flv",
                str(Path(d) / "out.flv"),
            ],
            check=True,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    theirs = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "frames": len(frames),
        "pyav_cpu_s": round(ours, 3),
        "ffmpeg_cpu_s": round(theirs, 3),
        "cpu_ratio_pyav_over_ffmpeg": round(ours / theirs, 3) if theirs > 0 else None,
    }


def run_bench(
    settings: Settings,
    *,
    seconds: float,
    compare_ffmpeg: bool = True,
    progress: bool = True,
    preview: bool = True,
    prompt_every_s: float = 4.0,
    samples_to: Path | None = None,
) -> dict[str, Any]:
    live = LiveShow(settings, seconds, preview=preview, prompt_every_s=prompt_every_s, progress=progress)
    result = live.run()
    if samples_to is not None:
        samples_to.write_text("\n".join(json.dumps(x.__dict__) for x in live.samples) + "\n")
    if compare_ffmpeg:
        from .broadcast.pipeline import encoder_settings
        from .world.sketch import SketchWorld

        # The same raw frames (the world's own, before scaling) for both encoders.
        world = SketchWorld(embedder=None)
        world.start(resolve_world(settings.world.preset), settings.stream.dimensions, settings.stream.fps, seed=1)
        frames = [world.render().image for _ in range(min(300, settings.stream.fps * 10))]
        world.close()
        result["ffmpeg_comparison"] = compare_with_ffmpeg(frames, encoder_settings(settings.stream))
    return result
