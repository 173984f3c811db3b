"""What the console shows, as plain JSON-ready dicts, read from the show.

The console receives the show's control surface (`surface.ShowSurface`) and
reads only what it publishes: its state, its health, its timeline; nothing
here changes it.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import psutil

from ..onair import ShowState
from ..secrets import mask_url
from ..surface import ShowSurface


def _num(x: float | None, nd: int = 2) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), nd)


def state(show: ShowSurface, st: ShowState | None = None) -> dict[str, Any]:
    """On air, the round, its candidates and votes, the world, the switches
    (of the published state `st`, or of the show now)."""
    st = st if st is not None else show.state()
    snap = st.round
    on_air = st.on_air
    total = sum(max(0.0, c.votes) for c in snap.candidates) or 1.0
    last = snap.last
    return {
        "world": {"name": st.world.name, "title": st.world.title, "description": st.world.description},
        "on_air": {
            "text": on_air.text if on_air else None,
            "by": on_air.user if on_air and on_air.source != "story" else None,
            "source": on_air.source if on_air else "story",
            "for_s": _num(time.monotonic() - on_air.since, 1) if on_air is not None else None,
        },
        "off_air": st.off_air,
        "music_on": st.music_on,
        "story_paused": st.story_paused,
        "round": {
            "mode": snap.mode,
            "number": snap.round,
            "time_left": _num(snap.time_left, 2),
            "round_s": snap.round_s,
            "grace_s": snap.grace_s,
            "locked": snap.locked,
            "approval": snap.approval,
            "voters": snap.voters,
            "total_candidates": snap.total_candidates,
        },
        "candidates": [
            {
                "id": c.id,
                "number": c.number,
                "text": c.text,
                "votes": c.votes,
                "share": round(max(0.0, c.votes) / total, 3),
                "author": c.author,
                "platform": c.platform,
                "voters": len(c.users),
            }
            for c in snap.candidates
        ],
        "pending": [
            {"id": c.id, "text": c.text, "author": c.author, "platform": c.platform, "held": c.held}
            for c in snap.pending
        ],
        "meter": None
        if snap.meter is None
        else {
            "anarchy": snap.meter.anarchy,
            "democracy": snap.meter.democracy,
            "share": _num(snap.meter.share, 3),
            "threshold": snap.meter.threshold,
            "min_voters": snap.meter.min_voters,
            "cooldown_left_s": _num(snap.meter.cooldown_left_s, 1),
        },
        "last": None
        if last is None or last.winner is None
        else {
            "round": last.winner.round,
            "text": last.winner.text,
            "user": last.winner.user,
            "votes": last.winner.votes,
        },
        "watch": watch(show),
        "bans": list(st.bans),
        "counts": dict(st.counts),
    }


def watch(show: ShowSurface) -> dict[str, Any] | None:
    """The watch page and its playlist, when the show has a local stream to watch (the demo)."""
    source = show.watch_source()
    if source is None:
        return None
    return {"page": "/watch", "playlist": f"/watch/hls/{source[1]}.m3u8"}


class System:
    """CPU and memory of this process (psutil), GPU memory when torch already
    runs on CUDA (never imported or initialised here)."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.proc.cpu_percent(None)
        psutil.cpu_percent(None)

    def figures(self) -> dict[str, Any]:
        mem = self.proc.memory_info().rss
        out: dict[str, Any] = {
            "cpu_percent": _num(self.proc.cpu_percent(None), 1),
            "cpu_count": psutil.cpu_count() or 1,
            "system_cpu_percent": _num(psutil.cpu_percent(None), 1),
            "memory_mb": round(mem / 2**20, 1),
            "system_memory_percent": _num(psutil.virtual_memory().percent, 1),
            "gpu": None,
        }
        torch = sys.modules.get("torch")
        try:
            if torch is not None and torch.cuda.is_initialized():
                free, total = torch.cuda.mem_get_info()
                out["gpu"] = {
                    "name": torch.cuda.get_device_name(),
                    "used_mb": round((total - free) / 2**20, 1),
                    "total_mb": round(total / 2**20, 1),
                    "allocated_mb": round(torch.cuda.memory_allocated() / 2**20, 1),
                }
        except Exception:  # a GPU hiccup must not break the health panel
            pass
        return out


def health(show: ShowSurface, system: System, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    h = show.health()
    if h is None:  # not on air yet
        return {"system": system.figures(), **(extra or {})}
    fps = show.settings.stream.fps
    out = {
        "target_fps": fps,
        "output_fps": h.output_fps,
        "generator_fps": h.generator_fps,
        "encode_ms": h.encode_ms_per_frame,
        "compose_ms": h.compose_ms_per_frame,
        "ticks": h.ticks,
        "uptime_s": round(h.ticks / fps, 1),
        "late_frames": h.late_frames,
        "repeated_frames": h.repeated_frames,
        "skipped_frames": h.skipped_frames,
        "dropped_frames": h.dropped_frames,
        # The x264 preset in use: below the configured one while encoding lags.
        "encoder": {
            "preset": h.encoder_preset,
            "configured": h.encoder_preset_configured,
            "changes": h.encoder_preset_changes,
            "busy": h.busy,
            "lag_frames": h.encode_lag_frames,  # slots skipped because the encoder was a queue behind
        },
        "bitrate_kbps": h.bitrate_kbps,
        "prompt_to_pixel_ms": {"p50": h.prompt_to_pixel_ms_p50, "p95": h.prompt_to_pixel_ms_p95},
        "outputs": [
            {
                "name": mask_url(o["name"]),
                "state": o["state"],
                "reconnects": o["reconnects"],
                "bytes_sent": o["bytes_sent"],
                "dropped": o["dropped"],
            }
            for o in h.outputs
        ],
        "adapters": [{"name": k, "state": v} for k, v in show.adapter_states().items()],
        "audio": show.audio_status(),
        "world": show.world_status(),
        "budget": show.budget_status(),
        "system": system.figures(),
    }
    if extra:
        out.update(extra)
    return out


def timeline(show: ShowSurface, limit: int = 40) -> list[dict[str, Any]]:
    """The latest actions of this session, newest first, with who did them."""
    now = show.now()
    return [
        {"ago_s": round(max(0.0, now - e.at), 1), "actor": e.actor, "action": e.action, "detail": e.detail}
        for e in show.timeline(limit)
    ]
