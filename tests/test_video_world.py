"""The video world on tiny random-weight models: diffusers' AnyFlow-FAR classes, on a CPU.

No weights, no network: the causal transformer, the Wan VAE and a UMT5 encoder
are built from small configs (streambot/world/video_models.py). The judge for
the loop is diffusers' own AnyFlowFARPipeline over the same models.
"""

from __future__ import annotations

import gc
import queue
import re

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", minversion="0.42", reason="the video world needs diffusers 0.42 (the gpu extra)")
pytest.importorskip("transformers", reason="the video world needs transformers (the gpu extra)")

from streambot.broadcast.clock import Clock, WorldRunner
from streambot.broadcast.pacer import FramePacer, change_spread, frame_changes, longest_still
from streambot.config import ConfigError, load_settings
from streambot.world.base import Direction, Frame, Pacing, WorldError
from streambot.world.video import VideoWorld
from streambot.world.video_engine import StreamingDecoder, VideoEngine
from streambot.world.video_models import random_models
from streambot.world.video_settings import VideoWorldSettings, parse_video_settings
from streambot.worldspec import WorldSpec

from .conftest import run_cli

SPEC = WorldSpec(
    name="meadow",
    title="Endless Valley",
    description="A wide green valley.",
    style="painterly landscape, soft light",
    beats=("morning mist lifts off the river", "a flock of birds crosses the valley"),
)
# At 256x128 every chunk is a whole number of 128-token blocks, so diffusers' inference
# path pads nothing and its attention is exactly ours (see video_engine's docstring).
REFERENCE = dict(
    resolution="256x128", steps=2, chunk_frames=2, sink_chunks=1, window_chunks=1, max_sequence_length=16, device="cpu"
)


def one_sentence(text: str) -> bool:
    return "\n" not in text and text.endswith(".") and len(re.findall(r"[.!?](\s|$)", text)) == 1


@pytest.fixture(scope="module", autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models gain nothing from more threads on a busy CI box
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return random_models("tiny", tokenizer_dir=tmp_path_factory.mktemp("tok"), seed=0)


def engine(models, **kw) -> VideoEngine:
    settings = VideoWorldSettings(**{**REFERENCE, **kw})
    e = VideoEngine(models, settings, device=torch.device("cpu"))
    e.prepare("morning mist lifts off the river", seed=0)
    return e


def chunk_noise(e: VideoEngine, seed: int) -> torch.Tensor:
    h, w = e.latent_hw
    return torch.randn((1, e.settings.chunk_frames, 16, h, w), generator=torch.Generator().manual_seed(seed))


# -- the loop against diffusers' own pipeline -------------------------------------------


def far_continuation(models, window, embeds, noise, steps) -> torch.Tensor:
    """What AnyFlowFARPipeline makes of the same window of latents, prompt and noise."""
    context = torch.cat([c.latents for c in window], dim=1)  # (1, T, C, h, w)
    partition = [c.frames for c in window] + [noise.shape[1]]
    total = sum(partition)
    latents = torch.zeros((1, noise.shape[2], total, *noise.shape[3:]))
    latents[:, :, -noise.shape[1] :] = noise.permute(0, 2, 1, 3, 4)
    out = models.pipeline(
        prompt_embeds=embeds,
        video_latents=context,
        latents=latents,
        chunk_partition=partition,
        num_frames=(total - 1) * 4 + 1,
        height=noise.shape[3] * 8,
        width=noise.shape[4] * 8,
        num_inference_steps=steps,
        output_type="latent",
    ).frames
    return out.permute(0, 2, 1, 3, 4)[:, -noise.shape[1] :]


def test_a_prompt_switch_recaches_and_the_next_chunk_is_the_models_own_continuation(models):
    e = engine(models)
    for _ in range(6):  # past the window: chunks have been compressed and dropped
        e.next_chunk()
    assert e.stats["recaches"] == 0
    assert [c.frames for c in e.window_chunks()] == [1, 2, 2, 2]  # sink, window, two full
    assert e.set_prompt("a storm breaks over the sea") is True
    assert e.stats["recaches"] == 1
    noise = chunk_noise(e, 5)
    ours = e.denoise(noise.clone())
    window = e.window_chunks()
    new = e.encode_prompt("a storm breaks over the sea").embeds
    theirs = far_continuation(models, window, new, noise, steps=2)
    assert (ours - theirs).abs().max().item() < 1e-4, "not the model's continuation under the new prompt"

    # the re-cache is what makes it so: the same show without it keeps the old prompt in its keys
    stale = engine(models, recache_on_switch=False)
    for _ in range(6):
        stale.next_chunk()
    assert all(torch.equal(a.latents, b.latents) for a, b in zip(stale.window_chunks(), window))
    assert stale.set_prompt("a storm breaks over the sea") is False
    lingering = stale.denoise(noise.clone())
    assert (lingering - theirs).abs().max().item() > 1e-2
    # and the new prompt matters at all: the old prompt's continuation is another picture
    old = e.encode_prompt("morning mist lifts off the river").embeds
    assert (far_continuation(models, window, old, noise, steps=2) - theirs).abs().max().item() > 1e-2


def test_chunks_keep_coming_past_the_window_with_flat_memory(models):
    e = engine(models, resolution="64x64", chunk_frames=3, sink_chunks=1, window_chunks=2, steps=1)
    first = [(t.data_ptr(), tuple(t.shape)) for t in e.cache_tensors()]
    limit = e.settings.sink_chunks + e.settings.window_chunks + e.full_slots
    counts = []
    for i in range(30):  # the window holds 5 chunks; 30 is six windows
        x = e.next_chunk()
        assert torch.isfinite(x).all()
        assert len(e.window_chunks()) <= limit
        if i in (9, 29):
            gc.collect()
            counts.append(sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor)))
    assert [(t.data_ptr(), tuple(t.shape)) for t in e.cache_tensors()] == first, "cache buffers reallocated"
    assert counts[0] == counts[1], f"tensors kept alive grow with the show: {counts}"
    # positions are re-based every chunk: never past the window, far below the model's table
    assert e.stats["max_frames_seen"] == e.longest == 1 + 2 * 3 + 2 * 3 + 3
    assert e.longest <= models.transformer.config.rope_max_seq_len
    assert [c.frames for c in e.window_chunks()] == [1, 3, 3, 3, 3]


@pytest.mark.parametrize("sink, window", [(0, 0), (0, 2), (2, 0), (2, 1)])
def test_any_window_shape_keeps_its_bounds(models, sink, window):
    e = engine(models, resolution="64x64", chunk_frames=3, sink_chunks=sink, window_chunks=window, steps=1)
    for _ in range(sink + window + 6):
        e.next_chunk()
    held = e.window_chunks()
    assert len(held) == sink + window + e.full_slots
    assert held[0].frames == (1 if sink else 3)  # the sink, when there is one, is where the show began
    assert e.stats["max_frames_seen"] == e.longest == sum(c.frames for c in held) + 3


def test_streaming_decode_is_the_whole_videos_decode(models):
    vae = models.vae
    latents = torch.randn((1, 7, 16, 8, 8), generator=torch.Generator().manual_seed(1))
    stream = StreamingDecoder(vae)
    with torch.inference_mode():
        parts = [stream(latents[:, a:b]) for a, b in ((0, 1), (1, 4), (4, 7))]
        # the pipeline's decode: de-normalise, then AutoencoderKLWan.decode of all frames at once
        mean = torch.tensor(vae.config.latents_mean).view(1, 16, 1, 1, 1)
        std = torch.tensor(vae.config.latents_std).view(1, 16, 1, 1, 1)
        whole = vae.decode(latents.permute(0, 2, 1, 3, 4) * std + mean, return_dict=False)[0]
    assert [p.shape[2] for p in parts] == [1, 12, 12]
    assert torch.allclose(torch.cat(parts, dim=2), whole, atol=1e-5)


def test_prompt_embeddings_are_computed_once_per_prompt(models):
    e = engine(models, prompt_cache_size=2)
    calls = []
    hook = models.text_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        e.next_chunk()
        e.set_prompt("rain on the hills")
        e.set_prompt("morning mist lifts off the river")  # the start prompt: still cached
        e.set_prompt("rain on the hills")
        assert len(calls) == 1
        e.set_prompt("a red balloon")  # a third prompt pushes the oldest out of a cache of two
        e.set_prompt("morning mist lifts off the river")
        assert len(calls) == 3
    finally:
        hook.remove()


# -- the world ----------------------------------------------------------------------------


def video_world(models, **kw) -> VideoWorld:
    kw = {"resolution": "64x64", "steps": 1, "max_sequence_length": 16, "device": "cpu", **kw}
    world = VideoWorld(models, VideoWorldSettings(**kw))
    world.start(SPEC, (1280, 720), 30, seed=0)
    return world


def test_the_world_renders_chunks_and_a_steer_takes_the_next_chunk(models):
    world = video_world(models)
    first = world.render()
    assert first.image.shape == (64, 64, 3) and first.image.dtype == np.uint8
    frames = [world.render() for _ in range(12)]  # the next chunk: 3 latent frames, 12 pictures
    assert [f.index for f in frames] == list(range(1, 13))
    assert world.stats["chunks"] == 2 and world.engine.stats["chunks"] == 2
    gen = world.steer(Direction("a storm", "a storm, painterly landscape"), 1.0)
    after = [world.render() for _ in range(12)]
    assert all(f.generation == gen for f in after)
    assert world.stats["recaches"] == 1
    assert world.engine.cond.prompt == "a storm, painterly landscape"
    assert world.pacing() == Pacing(source_fps=16.0, chunk_frames=12, blend=True)
    world.close()
    world.close()


def test_bad_settings_stop_with_one_sentence(models):
    with pytest.raises(ConfigError) as e:
        parse_video_settings({"resolution": "840x480"})
    assert one_sentence(str(e.value)) and "resolution" in str(e.value)
    with pytest.raises(ConfigError) as e:
        parse_video_settings({"window": 3})
    assert one_sentence(str(e.value)) and "window" in str(e.value)
    # a window longer than the model has positions for (the tiny model has 64)
    with pytest.raises(WorldError) as e:
        VideoEngine(
            models, VideoWorldSettings(resolution="64x64", chunk_frames=8, window_chunks=8), device=torch.device("cpu")
        )
    assert one_sentence(str(e.value)) and "window_chunks" in str(e.value)


def test_the_app_builds_the_video_world_from_a_local_folder(models, tmp_path):
    from streambot.app import build_world

    folder = tmp_path / "anyflow-tiny"
    models.pipeline.save_pretrained(folder)
    settings = load_settings(
        None,
        {
            "world": {
                "backend": "video",
                "video": {
                    "model": str(folder),
                    "device": "cpu",
                    "resolution": "64x64",
                    "steps": 1,
                    "max_sequence_length": 16,
                },
            }
        },
    )
    world = build_world(settings)
    assert isinstance(world, VideoWorld)
    world.start(SPEC, (1280, 720), 30)
    assert world.render().image.shape == (64, 64, 3)
    world.close()


def test_the_command_line_explains_what_is_missing(cli_env, tmp_path):
    missing = tmp_path / "no-such-model"
    config = tmp_path / "video.toml"
    config.write_text(f'[world.video]\nmodel = "{missing}"\n')
    out = run_cli(["check", "--world", "video", "--config", str(config), "--output", str(tmp_path / "x.flv")], cli_env)
    assert out.returncode == 1
    problems = [
        line[len("problem: ") :] for line in (out.stdout + out.stderr).splitlines() if line.startswith("problem: ")
    ]
    assert any(str(missing) in p for p in problems), out.stdout + out.stderr
    if not torch.cuda.is_available():
        assert any("CUDA GPU" in p for p in problems)
    assert all(one_sentence(p) for p in problems), problems
    # `run` stops before going live, with one sentence and no traceback
    run = run_cli(
        [
            "run",
            "--world",
            "video",
            "--config",
            str(config),
            "--output",
            str(tmp_path / "x.flv"),
            "--duration",
            "1",
            "--no-console",
            "--device",
            "cpu",
            "--chat",
            "none",
        ],
        cli_env,
    )
    assert run.returncode != 0 and "Traceback" not in run.stderr
    said = [line for line in run.stderr.splitlines() if line.startswith("streambot:")]
    assert len(said) == 1 and str(missing) in said[0], run.stderr
    assert one_sentence(said[0][len("streambot: ") :])


# -- pacing: chunk bursts to an even frame rate --------------------------------------------

FRAMES = 96  # source frames in the pacing tests


def wave(k: int) -> np.ndarray:
    """Source frame k: a sine pattern one frame wide, moving 4 pixels a frame to the right
    (about 10 grey levels of change per pixel and frame: far above 8-bit rounding)."""
    x = np.arange(256)
    row = np.round(127.5 + 100 * np.sin(2 * np.pi * (x - 4 * k) / 256)).astype(np.uint8)
    return np.broadcast_to(row, (2, 256))[..., None].repeat(3, 2).copy()


def play(pacer, chunk: int, period: int, ticks: int):
    """Chunks of `chunk` frames made every `period` ticks; what the clock shows at each tick
    (the last picture again when the pacer has nothing new, as the clock does)."""
    pending: list[Frame] = []
    k = 0
    shown, last = [], None
    for tick in range(ticks):
        if tick % period == 0 and k + chunk <= FRAMES:
            pending += [Frame(wave(i), i, 0) for i in range(k, k + chunk)]
            k += chunk
        while pending:  # the runner's thread: put until the buffer is full
            try:
                pacer.put(pending[0], timeout=0)
            except queue.Full:
                break
            pending.pop(0)
        try:
            frame = pacer.get_nowait() if last is not None else pacer.get(timeout=0)
        except queue.Empty:
            frame = last
        if frame is not None:
            shown.append(frame.image)
            last = frame
    return shown


class PlainQueue:
    """What the clock got before pacing: each frame once, the last one again when none is ready."""

    def __init__(self):
        self.q = queue.Queue(maxsize=2)

    def put(self, frame, timeout=None):
        self.q.put(frame, timeout=timeout) if timeout else self.q.put_nowait(frame)

    def get(self, timeout=None):
        return self.q.get_nowait()

    def get_nowait(self):
        return self.q.get_nowait()


def test_bursts_from_a_slow_model_become_even_motion():
    # 6-frame chunks every 18 ticks: a third of a frame per tick, under the world's 16/30
    pacer = FramePacer(Pacing(source_fps=16, chunk_frames=6), 30)
    shown = play(pacer, chunk=6, period=18, ticks=300)
    steady = shown[60:260]  # after the rate has found the model's pace, before the source runs out
    assert change_spread(steady) < 0.1, change_spread(steady)
    assert longest_still(steady) == 0
    assert pacer.held <= 12  # only while the first chunks set the pace
    assert pacer.production == pytest.approx(1 / 3, rel=0.05)

    plain = play(PlainQueue(), chunk=6, period=18, ticks=300)[60:260]
    assert change_spread(plain) > 1.0 and longest_still(plain) >= 10  # a burst, then a freeze
    nearest = FramePacer(Pacing(source_fps=16, chunk_frames=6, blend=False), 30)
    stepped = play(nearest, chunk=6, period=18, ticks=300)[60:260]
    assert change_spread(stepped) > 1.0 and longest_still(stepped) <= 3  # even, in whole-frame steps


def _ticks_to_new_prompt(catch_up: float) -> tuple[int, list]:
    """A fast model fills the buffer under prompt 0; then one chunk under prompt 1 lands.
    How many ticks until prompt 1 is on screen, and what was shown."""
    pacer = FramePacer(Pacing(source_fps=16, chunk_frames=6), 30, catch_up=catch_up)
    shown = []
    for i in range(pacer.capacity):
        pacer.put(Frame(wave(i), i, 0), timeout=0)
    frame = pacer.get(timeout=0)
    for _ in range(20):  # steady playing, the buffer kept full under the old prompt
        shown.append(frame.image)
        frame = pacer.get_nowait()
        while True:
            try:
                pacer.put(Frame(wave(frame.index + pacer.capacity), frame.index + pacer.capacity, 0), timeout=0)
            except queue.Full:
                break
    k = max(f.index for f in pacer._frames) + 1
    new = [Frame(wave(i), i, 1) for i in range(k, k + 6)]
    for f in new[: pacer.capacity - len(pacer._frames)]:
        pacer.put(f, timeout=0)
    pending = new[pacer.capacity - len(pacer._frames) :] if len(pacer._frames) < pacer.capacity else new
    for tick in range(1, 200):
        frame = pacer.get_nowait()
        shown.append(frame.image)
        while pending:
            try:
                pacer.put(pending[0], timeout=0)
            except queue.Full:
                break
            pending.pop(0)
        if frame.generation == 1:
            return tick, shown
    raise AssertionError("the new prompt never showed")


def test_a_new_prompt_is_not_kept_waiting_behind_buffered_frames():
    fast, shown = _ticks_to_new_prompt(catch_up=3.0)
    slow, _ = _ticks_to_new_prompt(catch_up=1.0)
    # a full buffer (10 frames) at 16/30 of a frame a tick is about 19 ticks (0.63 s);
    # three times faster, with the new chunk queueing behind it, 9 (0.3 s)
    assert slow >= 15 and fast <= 10, (slow, fast)
    # no cut: the way from the last old picture to the new prompt is played, several steps,
    # none of them more than half the whole change (a cut would be all of it at once)
    way = shown[-fast - 1 :]
    whole = frame_changes([way[0], way[-1]])[0]
    assert frame_changes(way).max() < whole / 2, (frame_changes(way), whole)


def test_a_fast_model_plays_at_its_own_frame_rate():
    pacer = FramePacer(Pacing(source_fps=16, chunk_frames=6), 30)
    shown = play(pacer, chunk=6, period=4, ticks=170)  # far faster than real time
    assert pacer.rate == pytest.approx(16 / 30)
    assert pacer.held == 0
    assert change_spread(shown[5:160]) < 0.05


def test_the_clock_plays_the_video_world_through_the_pacer(models):
    world = video_world(models, chunk_frames=1)  # 4 pictures a chunk
    runner = WorldRunner(world, fps=30)
    assert isinstance(runner.frames, FramePacer)
    shown = []

    def sink(i, frame, repeated):
        shown.append((i, frame.index, repeated))

    clock = Clock(runner, 30, sink, max_frames=45)
    runner.start()
    clock.start(first_frame_timeout=60)
    assert clock.wait(30)
    runner.stop()
    assert [s[0] for s in shown] == list(range(45))
    indices = [s[1] for s in shown]
    assert indices == sorted(indices), "frames go out in order"
    # played at 16 fps under a 30 fps clock, however the chunks came
    assert indices[-1] - indices[0] <= 45 * 16 / 30 + 1
    world.close()
