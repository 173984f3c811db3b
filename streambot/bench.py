"""`streambot bench`: the real pipeline, measured.

Runs the sketch world, compositor and encoder into a local file for N
seconds, steering the world every few seconds, and reports what a viewer
gets (output fps, late/repeated frames, prompt-to-pixel latency), what the
machine pays (world capacity, encode cost, memory), and how our encoder's CPU
time compares with the `ffmpeg` command line on the same raw frames and the
same x264 settings.
"""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from .broadcast.audio import Soundtrack
from .broadcast.compositor import Compositor
from .broadcast.encoder import Encoder, EncoderSettings
from .broadcast.outputs import Output
from .broadcast.pipeline import Broadcast
from .broadcast.overlay_state import build_overlay_state
from .config import load_settings, music_of, resolve_world
from .director import Director

PROMPTS = [
    "a thunderstorm at night",
    "golden sunset over the desert",
    "a snowy winter morning",
    "neon city in the rain",
    "a calm sunny day with birds",
    "deep space with a purple nebula",
]


def _progress(enabled: bool):
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(),
                    disable=not enabled, transient=True)


def _world(preset: str, size, fps):
    from .world.sketch import SketchWorld

    world = SketchWorld()
    world.start(resolve_world(preset), size, fps, seed=1)
    return world


def _generator_alone(preset: str, size, fps, seconds: float = 5.0) -> float:
    world = _world(preset, size, fps)
    for _ in range(10):
        world.render()
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        world.render()
        n += 1
    fps_alone = n / (time.perf_counter() - t)
    world.close()
    return fps_alone


def compare_with_ffmpeg(frames: list[np.ndarray], settings: EncoderSettings) -> dict:
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
        subprocess.run([
            ffmpeg, "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{src_w}x{src_h}",
            "-r", str(settings.fps), "-i", str(raw), "-vf", f"scale={w}:{h}:flags=bilinear",
            "-c:v", "libx264", "-preset", settings.preset,
            "-tune", "zerolatency", "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-minrate", f"{kbps}k",
            "-bufsize", f"{2 * kbps}k", "-g", str(gop),
            "-x264-params", f"keyint={gop}:min-keyint={gop}:scenecut=0:nal-hrd=cbr:force-cfr=1:open-gop=0",
            "-pix_fmt", "yuv420p", "-f", "flv", str(Path(d) / "out.flv"),
        ], check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    theirs = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "frames": len(frames),
        "pyav_cpu_s": round(ours, 3),
        "ffmpeg_cpu_s": round(theirs, 3),
        "cpu_ratio_pyav_over_ffmpeg": round(ours / theirs, 3) if theirs > 0 else None,
    }


def _busy_round():
    """A voting round with four candidates, so the overlay is drawn in full."""
    from .audience.events import Audience

    audience = Audience.from_settings(load_settings(), embeddings=False)
    ideas = ["a dragon circles the mountain", "a thunderstorm rolls in at dusk",
             "a hot air balloon festival over the valley", "the northern lights over a frozen lake"]
    for i, idea in enumerate(ideas):
        audience.chat("twitch", f"viewer{i}", f"!p {idea}")
    return audience


def run_bench(*, seconds: float, size=(1280, 720), fps: int = 30, preset: str = "meadow",
              compare_ffmpeg: bool = True, progress: bool = True, steer_every_s: float = 3.0) -> dict:
    proc = psutil.Process(os.getpid())
    with _progress(progress) as bar:
        task = bar.add_task("world alone", total=None)
        alone = _generator_alone(preset, size, fps)
        bar.remove_task(task)

        spec = resolve_world(preset)
        world = _world(preset, size, fps)
        tmp = tempfile.mkdtemp(prefix="streambot-bench-")
        enc_settings = EncoderSettings(size=size, fps=fps)
        encoder = Encoder(enc_settings)
        out = Output(str(Path(tmp) / "bench.flv"), encoder.stream_info)
        out.open()
        compositor = Compositor(size)
        b = Broadcast(world, encoder, [out], compositor, Soundtrack(music_of(spec), seed=1), fps=fps,
                      max_frames=round(seconds * fps))
        director = Director(world, spec, beat_interval_s=1e9)
        director.begin()
        audience = _busy_round()
        b.start()
        task = bar.add_task(f"streaming {seconds:.0f} s", total=seconds)
        t0 = time.monotonic()
        rss_start = None
        next_steer = t0 + steer_every_s
        k = 0
        while not b.wait(0.1):
            now = time.monotonic()
            if rss_start is None and now - t0 > min(10.0, seconds / 4):
                rss_start = proc.memory_info().rss / 2**20  # after warm-up
            if now >= next_steer:
                director.submit(PROMPTS[k % len(PROMPTS)], source="audience", user="bench")
                audience.chat("twitch", f"voter{k}", f"!vote {1 + k % 4}")
                k += 1
                next_steer += steer_every_s
            # The overlay as on air: candidates with votes, a countdown ticking every second.
            compositor.set_state(build_overlay_state(audience.snapshot(), director.on_air, spec.title))
            bar.update(task, completed=min(seconds, now - t0))
        wall = time.monotonic() - t0
        rss_end = proc.memory_info().rss / 2**20
        h = b.health()
        b.stop()
        world.close()
        shutil.rmtree(tmp, ignore_errors=True)
        result = {
            "seconds": seconds,
            "size": f"{size[0]}x{size[1]}",
            "world_native_size": f"{world.frame_size[0]}x{world.frame_size[1]}",
            "output_fps": round(h.ticks / wall, 2),
            "frames": h.ticks,
            "generator_fps": h.generator_fps,
            "generator_fps_alone": round(alone, 1),
            "encode_ms_per_frame": h.encode_ms_per_frame,
            "compose_ms_per_frame": h.compose_ms_per_frame,
            "late_frames": h.late_frames,
            "repeated_frames": h.repeated_frames,
            "prompt_to_pixel_ms_p50": h.prompt_to_pixel_ms_p50,
            "prompt_to_pixel_ms_p95": h.prompt_to_pixel_ms_p95,
            "prompts": len(b.latencies_ms),
            "rss_mb_start": round(rss_start or rss_end, 1),
            "rss_mb_end": round(rss_end, 1),
            "cpu_count": os.cpu_count(),
        }
        if compare_ffmpeg:
            bar.add_task("ffmpeg comparison", total=None)
            # The same raw frames (the world's own, before scaling) for both encoders.
            world = _world(preset, size, fps)
            frames = [world.render().image for _ in range(min(300, fps * 10))]
            world.close()
            result["ffmpeg_comparison"] = compare_with_ffmpeg(frames, enc_settings)
    return result
