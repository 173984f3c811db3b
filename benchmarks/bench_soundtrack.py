"""The soundtrack's figures, per preset: CPU per second of audio, and loudness
measured from a real recording.

    .venv/bin/python benchmarks/bench_soundtrack.py [--seconds 120] [--json]

For each preset, the whole chain (the world's band, the sketch world's
weather, leveller, limiter, meter) renders `--seconds` of audio in 100 ms
blocks, as the soundtrack thread does, with the story's beats changing the
mood every 6 s. CPU is that thread's own CPU time (time.thread_time) over the
audio's duration, as a share of one core: over the whole run (which includes
rendering each note the first time) and over its second half (steady state,
notes cached). The same audio goes through the broadcast's AAC encoder into a
Matroska file, and FFmpeg's ebur128 filter measures the decoded recording.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.ffmpeg_loudness import ebur128  # noqa: E402
from streambot.broadcast.audio import Soundtrack  # noqa: E402
from streambot.broadcast.encoder import Encoder, EncoderSettings  # noqa: E402
from streambot.broadcast.sound import BLOCK  # noqa: E402
from streambot.config import list_presets, music_of  # noqa: E402
from streambot.world.sketch import SketchWorld  # noqa: E402

TICK = 1600  # samples per video frame at 30 fps


def bench_preset(spec, seconds: float, folder: Path) -> dict:
    world = SketchWorld(embedder=None)
    world.start(spec, (160, 96), 30, seed=0)
    for _ in range(3):
        world.render()
    track = Soundtrack(music_of(spec), seed=0)
    blocks = round(seconds * 48_000 / BLOCK)
    audio, cpu, ambience = [], [], world.ambience()
    for i in range(blocks):
        if i % 60 == 0:
            track.set_story(spec.beats[(i // 60) % len(spec.beats)])
        t = time.thread_time()
        audio.append(track.render(BLOCK, ambience))
        cpu.append(time.thread_time() - t)
    world.close()
    path = folder / f"{spec.name}.mkv"
    encoder = Encoder(EncoderSettings(size=(160, 96), fps=30, bitrate_kbps=300))
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream_from_template(encoder.audio_stream)
        x = np.concatenate(audio, axis=1)
        for i in range(0, x.shape[1] - TICK + 1, TICK):
            for p in encoder.encode_audio(x[:, i : i + TICK]):
                p.stream = stream
                out.mux(p)
        for p in encoder.audio_stream.encode(None):
            p.stream = stream
            out.mux(p)
    encoder.close()
    half = blocks // 2
    block_s = BLOCK / 48_000
    return {
        "preset": spec.name,
        "style": music_of(spec).style,
        "cpu_percent_of_one_core": round(100 * sum(cpu) / (blocks * block_s), 2),
        "cpu_percent_steady": round(100 * sum(cpu[half:]) / ((blocks - half) * block_s), 2),
        "worst_block_ms": round(1000 * max(cpu[10:]), 1),
        "our_meter_integrated_lufs": round(track.meter.integrated, 1),
        **asdict(ebur128(path)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="audio per preset")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in list_presets():
            print(f"{spec.name}: rendering {args.seconds:.0f} s ...", file=sys.stderr, flush=True)
            rows.append(bench_preset(spec, args.seconds, Path(tmp)))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print("| preset | style | CPU, whole run | CPU, steady | worst block | integrated (FFmpeg) | LRA | true peak |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['preset']} | {r['style']} | {r['cpu_percent_of_one_core']:.2f} % "
            f"| {r['cpu_percent_steady']:.2f} % | {r['worst_block_ms']:.0f} ms | {r['integrated_lufs']:.1f} LUFS | {r['lra_lu']:.1f} LU "
            f"| {r['true_peak_dbtp']:.1f} dBTP |"
        )


if __name__ == "__main__":
    main()
