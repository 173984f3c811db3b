"""/metrics in Prometheus' text format (prometheus-client).

One registry per console app (tests run several side by side). The show's
figures are read at scrape time from `Broadcast.health()` by a collector,
so nothing is counted twice; the console's own events (actions, failed
logins) are ordinary counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from ..surface import ShowSurface

# The console's own figures, read at scrape time: name -> value.
Extra = Callable[[], Mapping[str, float]]


def _no_extra() -> Mapping[str, float]:
    return {}


class ShowCollector:
    def __init__(self, show: ShowSurface, extra: Extra = _no_extra) -> None:
        self.show = show
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        show = self.show
        h = show.health()
        if h is None:
            return
        state = show.state()

        def gauge(name: str, doc: str, value: float | None, unit: str = "") -> GaugeMetricFamily:
            return GaugeMetricFamily(f"streambot_{name}", doc, value=0.0 if value is None else value, unit=unit)

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(f"streambot_{name}", doc, value=value)

        yield gauge("output_fps", "Frames per second sent to the outputs.", h.output_fps)
        yield gauge("target_fps", "The configured output frame rate.", show.settings.stream.fps)
        yield gauge("generator_fps", "What the world could render per second, free-running.", h.generator_fps)
        yield gauge("encode_ms", "Mean encode time per frame, in milliseconds.", h.encode_ms_per_frame)
        yield gauge("bitrate_kbps", "Measured video+audio bitrate going out, in kbit/s.", h.bitrate_kbps)
        yield counter("frames", "Frames the clock has emitted.", h.ticks)
        yield counter("late_frames", "Frames the clock emitted late.", h.late_frames)
        yield counter("repeated_frames", "Frames repeated because the world was not ready.", h.repeated_frames)
        yield counter("dropped_frames", "Frames or packets dropped on the way out.", h.dropped_frames)
        yield counter(
            "skipped_frames", "Frames skipped to stay on the wall clock while the machine lagged.", h.skipped_frames
        )
        yield counter(
            "encode_lag_frames",
            "Of the skipped frames, those the encoder was a whole queue behind for.",
            h.encode_lag_frames,
        )
        preset = GaugeMetricFamily(
            "streambot_encoder_preset", "1 for the x264 preset in use.", labels=["preset", "configured"]
        )
        preset.add_metric([h.encoder_preset, h.encoder_preset_configured], 1.0)
        yield preset
        yield counter(
            "encoder_preset_changes", "Times the encoder stepped its preset down or up.", h.encoder_preset_changes
        )
        lat = GaugeMetricFamily(
            "streambot_prompt_to_pixel_seconds", "Prompt-to-pixel latency over the recent prompts.", labels=["quantile"]
        )
        for q, v in (("0.5", h.prompt_to_pixel_ms_p50), ("0.95", h.prompt_to_pixel_ms_p95)):
            if v is not None:
                lat.add_metric([q], v / 1000)
        yield lat
        up = GaugeMetricFamily("streambot_output_up", "1 while a destination is live.", labels=["output"])
        rec = CounterMetricFamily("streambot_output_reconnects", "Reconnects per destination.", labels=["output"])
        sent = CounterMetricFamily("streambot_output_sent_bytes", "Bytes sent per destination.", labels=["output"])
        for o in h.outputs:
            up.add_metric([o["name"]], 1.0 if o["state"] == "live" else 0.0)
            rec.add_metric([o["name"]], o["reconnects"])
            sent.add_metric([o["name"]], o["bytes_sent"])
        yield up
        yield rec
        yield sent
        chat = GaugeMetricFamily(
            "streambot_chat_adapter_state", "1 for each chat adapter's current state.", labels=["adapter", "state"]
        )
        for name, st in show.adapter_states().items():
            chat.add_metric([name, st], 1.0)
        yield chat
        snap = state.round
        yield gauge("round", "The voting round under way.", snap.round)
        yield gauge("round_voters", "Viewers who voted this round.", snap.voters)
        yield gauge("round_candidates", "Candidates this round.", snap.total_candidates)
        yield gauge("prompts_locked", "1 while prompts are locked.", int(snap.locked))
        for k, v in state.counts.items():
            yield counter(f"audience_{k}", f"Audience {k} since start.", v)
        yield gauge("off_air", "1 while the kill switch shows the slate.", int(state.off_air))
        audio = show.audio_status()
        short_term = audio.get("short_term_lufs")  # None until 3 s of sound are measured: NaN, as Prometheus writes it
        yield gauge(
            "loudness_short_term_lufs",
            "Short-term loudness going out (EBU R128, 3 s).",
            float("nan") if short_term is None else short_term,
        )
        yield gauge("music_on", "1 while the music plays (the weather always does).", int(bool(audio.get("music_on"))))
        yield counter(
            "audio_late_blocks", "Times the soundtrack was late and the weather filled in.", audio.get("late_blocks", 0)
        )
        world = show.world_status()
        yield gauge(
            "world_failing",
            "0 while the world backend renders, 1 holding its last frame, 2 while the fallback world covers for it.",
            {"ok": 0, "holding": 1}.get(world["state"], 2),
        )
        budget = show.budget_status()
        if budget is not None and budget["active"]:
            yield gauge(
                "gpu_used_seconds", "Seconds a GPU world has been on air today (the budget's day).", budget["used_s"]
            )
            yield gauge(
                "gpu_budget_seconds", "The daily GPU budget in seconds (0: no limit).", (budget["budget_h"] or 0) * 3600
            )
            standby = GaugeMetricFamily(
                "streambot_gpu_standby",
                "1 while the GPU world is kept off air for this reason (the sketch world is on air).",
                labels=["reason"],
            )
            for reason in ("budget", "no_viewers"):
                standby.add_metric([reason], 1.0 if budget["standby"] == reason else 0.0)
            yield standby
            if budget["viewers"] is not None:
                yield gauge("twitch_viewers", "Viewers watching on Twitch, as Twitch last said.", budget["viewers"])
        for k, v in self.extra().items():
            yield gauge(k, f"Console: {k.replace('_', ' ')}.", v)


class Metrics:
    def __init__(self, show: ShowSurface, extra: Extra = _no_extra) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(ShowCollector(show, extra))
        ProcessCollector(registry=self.registry)
        self.actions = Counter(
            "streambot_console_actions", "Actions taken in the console.", ["action"], registry=self.registry
        )
        self.login_failures = Counter(
            "streambot_console_login_failures", "Failed console logins.", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
