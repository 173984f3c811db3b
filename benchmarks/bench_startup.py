"""Time from `streambot run` to the first frame on air, on a real nginx RTMP server.

Starts nginx (recording every publish to FLV), then `streambot run --output
rtmp://…` as a new streamer would (the console on, the default world), and
reads the server's recording as it grows: the figure is the time from
starting the process to the first H.264 picture nginx wrote (an FLV video tag
holding NAL units, not the sequence header). Each run uses fresh state
folders, so nothing is cached in the project's own files between runs (the OS
file cache stays warm, as it does for a streamer who runs it twice). The
checkout's bytecode is compiled first, as set-up does (scripts/setup.sh): with
PYTHONDONTWRITEBYTECODE set, or files edited since, each start would compile
those modules again (0.3-0.4 s of the figure when all of them are).

    .venv/bin/python benchmarks/bench_startup.py --runs 5
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streambot.devserver import RtmpServer  # noqa: E402


def has_picture(path: Path) -> bool:
    """True once the FLV file holds a video tag with an H.264 picture."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if len(data) < 13 or data[:3] != b"FLV":
        return False
    pos = struct.unpack(">I", data[5:9])[0] + 4
    while pos + 11 <= len(data):
        kind = data[pos] & 0x1F
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        body = data[pos + 11 : pos + 11 + size]
        if len(body) < size:
            return False
        # video tag, codec 7 (AVC), AVCPacketType 1: NAL units (a picture)
        if kind == 9 and size >= 2 and body[0] & 0x0F == 7 and body[1] == 1:
            return True
        pos += 11 + size + 4
    return False


def one_run(server: RtmpServer, name: str, extra: list[str], timeout: float, root: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="streambot-startup-") as d:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMBOT_", "TWITCH_"))}
        env.update(
            XDG_STATE_HOME=f"{d}/state", XDG_CONFIG_HOME=f"{d}/config", XDG_DATA_HOME=f"{d}/data", PYTHONUNBUFFERED="1"
        )
        before = set(server.recordings)
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streambot.cli",
                "run",
                "--output",
                server.url(name),
                "--chat",
                "none",
                "--console",
                "127.0.0.1:0",
                *extra,
            ],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(f"{d}/stderr.txt", "w"),
        )
        first = None
        try:
            while time.monotonic() - t0 < timeout and proc.poll() is None:
                new = [p for p in server.recordings if p not in before]
                if new and has_picture(new[-1]):
                    first = time.monotonic() - t0
                    break
                time.sleep(0.01)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        err = Path(f"{d}/stderr.txt").read_text()
        if first is None:
            raise SystemExit(f"no picture reached the server within {timeout:.0f} s:\n{err[-2000:]}")
        return {"first_frame_s": round(first, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=90.0)
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ap.add_argument(
        "--root",
        type=Path,
        default=ROOT,
        help="the checkout whose `streambot run` is timed (another one: a before/after comparison)",
    )
    ap.add_argument("args", nargs="*", help="extra arguments for `streambot run` (after --)")
    a = ap.parse_args()
    compileall.compile_dir(a.root / "streambot", quiet=1)
    with tempfile.TemporaryDirectory(prefix="streambot-startup-nginx-") as d:
        server = RtmpServer(workdir=Path(d), record=True)
        server.start()
        try:
            times = []
            for k in range(a.runs):
                r = one_run(server, f"startup{k}", a.args, a.timeout, a.root)
                times.append(r["first_frame_s"])
                print(
                    f"run {k + 1}/{a.runs}: first picture on the server after {r['first_frame_s']:.2f} s",
                    file=sys.stderr,
                )
        finally:
            server.stop()
    out = {
        "runs": a.runs,
        "first_frame_s": times,
        "median_s": round(statistics.median(times), 2),
        "min_s": min(times),
        "max_s": max(times),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(out) if a.json else "\n".join(f"{k}: {v}" for k, v in out.items()))


if __name__ == "__main__":
    main()
