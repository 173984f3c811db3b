"""Soak: what `streambot run` does to memory, threads and file descriptors over time.

The same harness as `streambot bench` (streambot/bench.py, `LiveShow`): the
app's own Show with the default settings, the console up and a page
previewing the stream, a prompt typed every 4 s, and chat replayed through
the audience at 200 messages a second (the realistic mix of
bench_chat.py: votes, prompts with near-duplicates, chatter, junk, from
20,000 accounts). It samples every second and writes the samples, a summary
and a plot of RSS and output fps over time:

    .venv/bin/python benchmarks/bench_soak.py --minutes 30 --out benchmarks/soak

The broadcast runs on the wall clock by design (it never runs faster than
real time), so the soak takes as long as it says. Growth is measured after a
warm-up (`--warmup-min`, 5 by default): the mean RSS of the first and the
last two minutes after it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_chat import make_messages  # noqa: E402

from streambot.bench import LiveShow, Sample  # noqa: E402
from streambot.config import load_settings  # noqa: E402


def summarise(samples: list[Sample], warmup_s: float, fps_target: int) -> dict:
    after = [s for s in samples if s.t >= warmup_s]
    if len(after) < 10:
        raise SystemExit("too short: no samples after the warm-up")
    span = min(120.0, (after[-1].t - after[0].t) / 3)
    head = [s for s in after if s.t < after[0].t + span]
    tail = [s for s in after if s.t > after[-1].t - span]

    def mean(xs):
        return round(statistics.fmean(xs), 1)

    rss0, rss1 = mean(s.rss_mb for s in head), mean(s.rss_mb for s in tail)
    tot0, tot1 = mean(s.rss_total_mb for s in head), mean(s.rss_total_mb for s in tail)
    minutes = (tail[-1].t - head[0].t) / 60
    fps = [s.fps for s in after[1:]]
    last = samples[-1]
    return {
        "minutes_after_warmup": round(minutes, 1),
        "rss_mb": [rss0, rss1],
        "rss_growth_pct": round(100 * (rss1 - rss0) / rss0, 2),
        "rss_mb_per_min": round((rss1 - rss0) / minutes, 3) if minutes else None,
        "rss_total_mb": [tot0, tot1],
        "rss_total_growth_pct": round(100 * (tot1 - tot0) / tot0, 2),
        # steady count (the mode) and range: worker threads come and go around a steady set
        "fds_mode_min_max": [
            statistics.mode(s.fds for s in after),
            min(s.fds for s in after),
            max(s.fds for s in after),
        ],
        "threads_mode_min_max": [
            statistics.mode(s.threads for s in after),
            min(s.threads for s in after),
            max(s.threads for s in after),
        ],
        "fds_first_last": [after[0].fds, after[-1].fds],
        "threads_first_last": [after[0].threads, after[-1].threads],
        "fps_mean": round(statistics.fmean(fps), 3),
        "fps_p1": round(sorted(fps)[len(fps) // 100], 2),
        "fps_target": fps_target,
        "skipped": last.skipped,
        "late": last.late,
        "frames": last.sent,
    }


def plot(samples: list[Sample], path: Path, title: str, warmup_s: float, fps_target: int = 30) -> None:
    """RSS (the broadcast process, and with its children) and output fps over
    time, drawn with PIL (no plotting library needed)."""
    from PIL import Image, ImageDraw, ImageFont

    from streambot.broadcast.overlay_text import FONT_DIR

    W, H, L, R, T, GAP = 1200, 790, 90, 30, 50, 60
    ph = (H - T - GAP - 80) // 2
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    try:
        font = ImageFont.truetype(str(FONT_DIR / "NotoSans-Regular.ttf"), 15)
        big = ImageFont.truetype(str(FONT_DIR / "NotoSans-Bold.ttf"), 18)
    except OSError:
        font = big = ImageFont.load_default()
    d.text((L, 12), title, fill="black", font=big)
    t_end = max(s.t for s in samples) / 60 or 1

    def panel(y0: int, series: list[tuple[str, str, list[float]]], label: str, lo: float, hi: float):
        x0, x1, y1 = L, W - R, y0 + ph
        d.rectangle([x0, y0, x1, y1], outline="black")
        for k in range(6):
            v = lo + (hi - lo) * k / 5
            y = y1 - (y1 - y0) * k / 5
            d.line([x0 - 5, y, x0, y], fill="black")
            d.line([x0, y, x1, y], fill=(230, 230, 230))
            d.text((8, y - 9), f"{v:.1f}", fill="black", font=font)
        step = max(1, round(t_end / 10))
        for m in range(0, int(t_end) + 1, step):
            x = x0 + (x1 - x0) * m / t_end
            d.line([x, y1, x, y1 + 5], fill="black")
            d.text((x - 6, y1 + 8), str(m), fill="black", font=font)
        wx = x0 + (x1 - x0) * warmup_s / 60 / t_end
        d.line([wx, y0, wx, y1], fill=(200, 120, 0))
        d.text((wx + 4, y1 - 24), "end of warm-up", fill=(200, 120, 0), font=font)
        d.text((x0, y0 - 22), label, fill="black", font=font)
        for i, (name, color, ys) in enumerate(series):
            pts = [
                (x0 + (x1 - x0) * s.t / 60 / t_end, y1 - (y1 - y0) * (min(max(v, lo), hi) - lo) / (hi - lo))
                for s, v in zip(samples, ys)
            ]
            d.line(pts, fill=color, width=2)
            d.text((x0 + 10, y0 + 8 + 20 * i), name, fill=color, font=font)

    main = [s.rss_mb for s in samples]
    total = [s.rss_total_mb for s in samples]
    lo, hi = min(main) * 0.9, max(total) * 1.05
    panel(
        T + 20,
        [
            ("RSS, broadcast process (MB)", (20, 90, 200), main),
            ("RSS, with its child processes (MB)", (120, 60, 160), total),
        ],
        "memory (MB)",
        lo,
        hi,
    )
    fps = [s.fps for s in samples]
    panel(
        T + 20 + ph + GAP,
        [
            ("output fps (frames sent per second)", (0, 140, 60), fps),
            (f"target: {fps_target} fps", (200, 0, 0), [fps_target] * len(samples)),
        ],
        "frames per second",
        0,
        max(35.0, max(fps) * 1.05),
    )
    d.text((W - R - 110, H - 22), "minutes on air", fill="black", font=font)
    img.save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--warmup-min", type=float, default=5.0)
    ap.add_argument("--chat-rate", type=float, default=200.0, help="chat messages a second")
    ap.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / "soak",
        help="writes OUT.json (summary and samples) and OUT.png (the plot)",
    )
    ap.add_argument("--config", type=Path, help="a settings file (default: the defaults `run` uses)")
    a = ap.parse_args()
    settings = load_settings(a.config)
    live = LiveShow(
        settings,
        a.minutes * 60,
        chat_per_s=a.chat_rate,
        chat=make_messages(20_000, seed=7),
        progress=sys.stderr.isatty(),
    )
    figures = live.run()
    summary = summarise(live.samples, a.warmup_min * 60, settings.stream.fps)
    summary["chat_per_s"] = figures["chat_handled_per_s"]  # taken by the audience, on air
    summary["chat_behind_max"] = figures["chat_behind_max"]  # messages due and not yet taken, at worst
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(
        json.dumps({"summary": summary, "run": figures, "samples": [s.__dict__ for s in live.samples]}, indent=None)
    )
    plot(
        live.samples,
        a.out.with_suffix(".png"),
        f"streambot soak: {a.minutes:.0f} min, chat {a.chat_rate:.0f} msg/s, console previewing, "
        f"{settings.stream.size} at {settings.stream.fps} fps",
        a.warmup_min * 60,
        settings.stream.fps,
    )
    print(json.dumps({"summary": summary, "run": figures}, indent=2))


if __name__ == "__main__":
    main()
