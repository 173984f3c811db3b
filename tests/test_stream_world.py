"""The stream world on tiny random-weight models: the real diffusers code path, on a CPU.

No weights, no network: UNet2DConditionModel, AutoencoderTiny and a CLIP text
model are built from small configs, with a tokenizer over a hand-written
vocabulary.
"""

from __future__ import annotations

import gc
import re

import numpy as np
import psutil
import pytest
import torch

pytest.importorskip("diffusers", reason="the stream world needs diffusers (the gpu extra)")
pytest.importorskip("transformers", reason="the stream world needs transformers (the gpu extra)")

from diffusers.models.attention_processor import FusedAttnProcessor2_0

from streambot.config import ConfigError
from streambot.world.base import Direction, WorldError
from streambot.world.stream import NO_CUDA, Motion, StreamWorld, StreamWorldSettings, create_world
from streambot.world.stream_models import StreamModels, check_gpu_memory, random_models
from streambot.world.stream_ops import SimilarityFilter, ease_out, slerp
from streambot.world.stream_settings import parse_stream_settings
from streambot.worldspec import WorldSpec

SPEC = WorldSpec(
    name="meadow",
    title="Endless Valley",
    description="A wide green valley.",
    style="painterly landscape, soft light",
    beats=("morning mist lifts off the river", "a flock of birds crosses the valley"),
)


def one_sentence(text: str) -> bool:
    return "\n" not in text and text.endswith(".") and len(re.findall(r"[.!?](\s|$)", text)) == 1


@pytest.fixture(scope="module", autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models gain nothing from more, and a busy CI box punishes it
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return random_models("tiny", tokenizer_dir=tmp_path_factory.mktemp("tok"), seed=0)


def make_world(models, **kw) -> StreamWorld:
    kw.setdefault("resolution", "64x64")
    kw.setdefault("device", "cpu")
    return StreamWorld(models, StreamWorldSettings(**kw))


def started(models, seed=0, fps=30, spec=SPEC, **kw) -> StreamWorld:
    world = make_world(models, **kw)
    world.start(spec, (1280, 720), fps, seed=seed)
    return world


# -- frames -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        dict(steps=1),
        dict(steps=2, stream_batch=True),
        dict(steps=3, stream_batch=False),
        dict(steps=2, feedback="pixel", noise="fresh"),
        dict(resolution="96x64", motion=Motion(pan_x=0.01, zoom=1.01, rotate_deg=1, drift=0.005)),
    ],
    ids=["1step", "2step-batch", "3step-sequential", "pixel-feedback", "wide-moving"],
)
def test_frames_come_out_continuously(models, kw):
    world = started(models, **kw)
    w, h = world.frame_size
    last = None
    for i in range(12):
        frame = world.render()
        assert frame.image.shape == (h, w, 3) and frame.image.dtype == np.uint8
        assert frame.index == i and frame.generation == 0
        assert frame.image.flags.c_contiguous
        if last is not None:
            assert frame.image is not last  # each frame owns its pixels
        last = frame.image
    assert world.stats["frames"] == 12
    world.close()
    world.close()  # safe twice


def test_frames_are_not_overwritten_by_later_frames(models):
    world = started(models, steps=1, motion=Motion(pan_x=0.02))
    first = world.render()
    kept = first.image.copy()
    for _ in range(3):
        world.render()
    assert np.array_equal(first.image, kept)


def test_stream_batch_runs_one_unet_call_per_frame(models):
    batched = started(models, steps=3, stream_batch=True)
    sequential = started(models, steps=3, stream_batch=False)
    b0, s0 = batched.engine.unet_calls, sequential.engine.unet_calls
    for _ in range(5):
        batched.render()
        sequential.render()
    assert batched.engine.unet_calls - b0 == 5
    assert sequential.engine.unet_calls - s0 == 15


def test_sdxl_and_lcm_unets_run(tmp_path):
    sdxl = random_models("tiny", sdxl=True, tokenizer_dir=tmp_path / "a")
    world = started(sdxl, steps=2)
    assert world.engine.added["text_embeds"].shape == (2, 32)
    world.steer(Direction("rain", "rain, painterly"))
    for _ in range(3):
        assert world.render().image.shape == (64, 64, 3)
    lcm = random_models("tiny", time_cond_proj_dim=16, tokenizer_dir=tmp_path / "b")
    world = started(lcm, steps=2)
    assert world.engine.timestep_cond.shape == (2, 16)
    assert world.render().image.shape == (64, 64, 3)


# -- steering -------------------------------------------------------------------------


def test_steer_slerps_through_intermediate_embeddings(models):
    world = started(models, steps=1)
    old = world.engine.embeds[0].clone()
    new = world.engine.encode_prompt("storm clouds, painterly landscape, soft light").embeds[0]
    gen = world.steer(Direction("storm clouds", "storm clouds, painterly landscape, soft light"), 1.0)
    seen, gens = [], []
    for _ in range(32):
        frame = world.render()
        gens.append(frame.generation)
        seen.append(world.engine.embeds[0].clone())
    assert gens == [gen] * 32
    to_new = [float((e - new).norm()) for e in seen]
    to_old = [float((e - old).norm()) for e in seen]
    # 30 frames of transition at 30 fps: strictly closer to the new prompt each frame, then there
    assert all(a > b for a, b in zip(to_new[:30], to_new[1:30]))
    assert to_new[29] < 1e-4 and to_new[31] < 1e-4
    # the frames in between are neither prompt
    assert all(d > 1e-3 for d in to_new[:29]) and all(d > 1e-3 for d in to_old[:29])
    # it shows at once: over half-way within 0.5 s at 30 fps
    total = float((new - old).norm())
    assert to_new[0] < total and to_new[14] < 0.5 * total
    # slerp, not lerp: intermediate token vectors keep their length
    mid = seen[10]
    assert float(mid.norm(dim=-1).min()) > 0.9 * float(torch.minimum(old.norm(dim=-1), new.norm(dim=-1)).min())


def test_a_steer_mid_transition_starts_from_where_it_is(models):
    world = started(models, transition_frames=10)
    world.steer(Direction("a", "fire"))
    for _ in range(4):
        world.render()
    midway = world.engine.embeds[0].clone()
    world.steer(Direction("b", "ice"))
    world.render()
    assert (
        float((world.engine.embeds[0] - midway).norm())
        < float((midway - world.engine.encode_prompt("fire").embeds[0]).norm()) + 1e-3
    )
    for _ in range(10):
        world.render()
    assert torch.allclose(world.engine.embeds[0], world.engine.encode_prompt("ice").embeds[0], atol=1e-5)


def test_prompt_embeddings_are_cached_and_bounded(models):
    world = started(models, prompt_cache_size=4)
    calls = []
    hook = world.models.text_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        for _ in range(3):
            world.engine.encode_prompt("the same prompt")
        assert len(calls) == 1
        for i in range(10):
            world.engine.encode_prompt(f"prompt {i}")
        assert len(world.engine._cache) == 4
    finally:
        hook.remove()


# -- determinism and the long run --------------------------------------------------------


def run(models, seed, n=8, **kw):
    world = started(models, seed=seed, steps=2, motion=Motion(pan_x=0.01, zoom=1.01), **kw)
    frames = []
    for i in range(n):
        if i == 3:
            world.steer(Direction("night", "night sky, painterly"), 0.1)
        frames.append(world.render().image)
    return frames


def test_same_seed_same_frames(models):
    a, b, c = run(models, 7), run(models, 7), run(models, 8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_same_seed_same_frames_with_fresh_noise_and_reanchoring(models):
    a = run(models, 3, noise="fresh", reanchor_every=3)
    b = run(models, 3, noise="fresh", reanchor_every=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_500_frames_keep_memory_flat(models):
    world = started(models, steps=2, motion=Motion(pan_x=0.01, zoom=1.005), reanchor_every=50, prompt_cache_size=8)
    proc = psutil.Process()
    for _ in range(100):
        world.render()
    gc.collect()
    before = proc.memory_info().rss
    for i in range(400):
        if i % 20 == 0:
            world.steer(Direction(f"beat {i}", f"beat number {i}, painterly"), 0.2)
        world.render()
    gc.collect()
    grown = proc.memory_info().rss - before
    assert world.stats["frames"] == 500
    assert len(world.engine._cache) <= 8
    assert grown < 16 * 2**20, f"RSS grew {grown / 2**20:.1f} MiB over 400 frames"


def test_reanchoring_is_spread_out(models):
    def biggest_jump(frames):
        world = started(
            models, steps=1, reanchor_every=20, reanchor_strength=0.5, reanchor_frames=frames, motion=Motion()
        )
        jumps, last = [], None
        for _ in range(32):
            world.render()
            x = world.engine.x_out.clone()
            if last is not None:
                jumps.append(float((x - last).norm() / last.norm()))
            last = x
        return max(jumps[18:])

    assert biggest_jump(10) < 0.5 * biggest_jump(1)


def test_match_stats():
    from streambot.world.stream_ops import match_stats

    x, anchor = torch.randn(1, 4, 8, 8) * 5 + 3, torch.randn(1, 4, 8, 8)
    assert torch.allclose(match_stats(x, anchor).mean((-2, -1)), anchor.mean((-2, -1)), atol=1e-5)
    assert torch.allclose(match_stats(x, anchor).std((-2, -1)), anchor.std((-2, -1)), atol=1e-4)


# -- the similarity filter -------------------------------------------------------------------


def test_similarity_filter_skips_identical_input_and_renders_changes():
    f = SimilarityFilter(threshold=0.9, max_skip=5, seed=0)
    assert f() is False  # nothing measured yet
    f.observe(1.0)  # the last render changed nothing
    assert [f() for _ in range(6)] == [True] * 5 + [False]  # max_skip forces a render
    f.observe(0.0)  # it changed everything: never
    assert not any(f() for _ in range(20))


def test_world_skips_the_model_when_the_picture_is_still(models):
    world = started(
        models,
        steps=1,
        motion=Motion(),
        reanchor_every=0,
        similarity_filter=True,
        similarity_threshold=0.5,
        similarity_max_skip=100,
    )
    frames = [world.render() for _ in range(20)]
    assert world.stats["skipped"] >= 10
    assert world.engine.unet_calls < world.stats["frames"] + 2  # +1 txt2img at start
    assert np.array_equal(frames[-1].image, frames[-2].image)  # a skipped frame repeats the last
    # a steer always renders: the conditioning changed even if the picture did not
    skipped = world.stats["skipped"]
    world.steer(Direction("x", "a different prompt"), transition_s=0.1)
    world.render()
    world.render()
    assert world.stats["skipped"] == skipped


def test_moving_camera_is_not_skipped(models):
    world = started(
        models,
        steps=1,
        motion=Motion(pan_x=0.05, rotate_deg=2),
        reanchor_every=0,
        similarity_filter=True,
        similarity_threshold=0.999,
    )
    for _ in range(10):
        world.render()
    assert world.stats["skipped"] <= 2


# -- motion and safety ------------------------------------------------------------------------


def test_motion_from_the_preset_and_the_director(models):
    spec = WorldSpec(**{**SPEC.__dict__, "extra": {"stream": {"motion": {"pan_x": 0.01}}}})
    world = started(models, spec=spec, motion=Motion())
    assert world.motion.pan_x == 0.01 and world._advance_camera() is not None
    world.set_motion({"zoom": 1.0})
    assert world._advance_camera() is None
    world.set_motion(Motion(zoom=1.02))
    frame = world.render()
    assert frame.image.shape == (64, 64, 3)
    bad = WorldSpec(**{**SPEC.__dict__, "extra": {"stream": {"motion": {"pan_x": 5}}}})
    with pytest.raises(WorldError) as e:
        make_world(models).start(bad, (64, 64), 30)
    assert one_sentence(str(e.value))


def test_safety_check_holds_the_last_safe_frame(models):
    flagged_at = {4, 6}
    checked = []

    def checker(image):
        checked.append(len(checked))
        return checked[-1] * 2 in flagged_at  # checks happen on frames 0, 2, 4, ...

    world = make_world(models, safety_check_every=2, motion=Motion(pan_x=0.02))
    world.models = type(world.models)(**{**world.models.__dict__, "safety_checker": checker})
    world.start(SPEC, (64, 64), 30)
    shown = [world.render().image for _ in range(10)]
    assert world.stats["flagged"] == 2
    # frames 4..7 hold frame 2, the last that passed; frame 8 passes again
    for i in (4, 5, 6, 7):
        assert np.array_equal(shown[i], shown[2])
    assert not np.array_equal(shown[8], shown[2])


def test_safety_check_without_a_checker_is_an_error(models):
    with pytest.raises(WorldError) as e:
        started(models, safety_check_every=5)
    assert one_sentence(str(e.value))


# -- errors, one sentence each -----------------------------------------------------------------


def test_no_cuda_device(monkeypatch, models):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(WorldError) as e:
        StreamWorld(models, StreamWorldSettings(device="auto"))
    assert str(e.value) == NO_CUDA and one_sentence(NO_CUDA)
    assert "--world sketch" in NO_CUDA and "--device cpu" in NO_CUDA
    with pytest.raises(WorldError):
        create_world({"device": "cuda"})


def test_not_enough_gpu_memory(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * 2**30, 8 * 2**30))
    with pytest.raises(WorldError) as e:
        check_gpu_memory(torch.device("cuda"), "stabilityai/sdxl-turbo", torch.float16)
    msg = str(e.value)
    assert one_sentence(msg) and "9.0 GiB" in msg and "2.0 GiB" in msg and "sd-turbo" in msg


def test_out_of_memory_while_preparing_names_the_size(models):
    """The UNet handed in runs out of memory on its first picture, as a GPU's would."""
    world = make_world(models)

    def out_of_memory(module, args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    hook = models.unet.register_forward_pre_hook(out_of_memory)
    try:
        with pytest.raises(WorldError) as e:
            world.start(SPEC, (64, 64), 30)
    finally:
        hook.remove()  # the models are shared with the other tests
    assert one_sentence(str(e.value)) and "GiB" in str(e.value)
    assert "Tried to allocate" not in str(e.value)  # the world's own sentence, not torch's


def test_weights_missing_offline_say_where_they_were_looked_for(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # belt and braces: this test never touches the network
    with pytest.raises(WorldError) as e:
        create_world({"model": "stabilityai/sd-turbo", "offline": True, "cache_dir": str(tmp_path), "device": "cpu"})
    msg = str(e.value)
    assert one_sentence(msg) and str(tmp_path) in msg and "stabilityai/sd-turbo" in msg and "--offline" in msg
    with pytest.raises(WorldError) as e:
        create_world({"model": str(tmp_path / "nowhere"), "device": "cpu"})
    assert one_sentence(str(e.value)) and "nowhere" in str(e.value)


def test_bad_settings_are_one_sentence():
    for table in (
        {"bogus": 1},
        {"t_index_list": [60]},
        {"resolution": "500x500"},
        {"motion": {"zoom": 3}},
        {"dtype": "float8"},
    ):
        with pytest.raises(ConfigError) as e:
            parse_stream_settings(table)
        assert one_sentence(str(e.value)), str(e.value)
    assert parse_stream_settings({"steps": 2}).timestep_indices == [32, 45]


def test_resolution_must_fit_the_model(models):
    with pytest.raises(WorldError) as e:
        started(models, resolution="72x64")
    assert one_sentence(str(e.value))


def test_loads_a_local_model_folder_offline(models, tmp_path):
    """The real loading path (from_pretrained of every part) on a saved tiny model."""
    folder = tmp_path / "tiny-turbo"
    models.unet.save_pretrained(folder / "unet")
    models.text_encoder.save_pretrained(folder / "text_encoder")
    models.tokenizer.save_pretrained(folder / "tokenizer")
    models.scheduler.save_pretrained(folder / "scheduler")
    models.vae.save_pretrained(tmp_path / "tiny-taesd")
    world = create_world(
        {"model": str(folder), "vae": str(tmp_path / "tiny-taesd"), "resolution": "64x64", "offline": True},
        device="cpu",
    )
    world.start(SPEC, (64, 64), 30, seed=1)
    a = world.render().image
    twin = StreamWorld(models, StreamWorldSettings(resolution="64x64", device="cpu"))
    twin.start(SPEC, (64, 64), 30, seed=1)
    assert np.array_equal(a, twin.render().image)


def test_cuda_graphs_stay_off_on_cpu(models):
    world = started(models, cuda_graphs=True, channels_last=True)
    assert world.engine.active["cuda_graphs"] is False and world.engine.active["channels_last"] is True
    assert world.render().image.shape == (64, 64, 3)


# -- small helpers --------------------------------------------------------------------------------


def test_slerp_endpoints_and_norms():
    a, b = torch.randn(3, 16), torch.randn(3, 16) * 2
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5)
    assert torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    mid = slerp(a, b, 0.5)
    assert torch.allclose(mid.norm(dim=-1), (a.norm(dim=-1) + b.norm(dim=-1)) / 2, atol=1e-4)
    assert torch.allclose(slerp(a, a, 0.3), a, atol=1e-5)  # parallel: no NaN
    assert ease_out(0) == 0 and ease_out(1) == 1 and ease_out(0.25) > 0.25


def test_fused_qkv_projections_give_the_same_frames(tmp_path):
    plain = started(random_models("tiny", tokenizer_dir=tmp_path / "a", seed=5), seed=2, fuse_qkv=False, steps=2)
    fused = started(random_models("tiny", tokenizer_dir=tmp_path / "b", seed=5), seed=2, fuse_qkv=True, steps=2)
    assert fused.engine.active["fuse_qkv"] and not plain.engine.active["fuse_qkv"]
    for _ in range(3):
        a, b = plain.render().image, fused.render().image
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    # and back: a shared UNet follows each world's switch
    processors = fused.models.unet.attn_processors
    assert all(isinstance(p, FusedAttnProcessor2_0) for p in processors.values())
    again = started(fused.models, seed=2, fuse_qkv=False, steps=2)
    assert not again.engine.active["fuse_qkv"]
    processors = fused.models.unet.attn_processors
    assert not any(isinstance(p, FusedAttnProcessor2_0) for p in processors.values())
    once_more = started(fused.models, seed=2, fuse_qkv=True, steps=2)
    assert once_more.engine.active["fuse_qkv"]
    assert all(isinstance(p, FusedAttnProcessor2_0) for p in fused.models.unet.attn_processors.values())


# -- the benchmark scripts still run (tiny, CPU) ----------------------------------------------------


def _bench_module(name):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_benchmark_dry_runs_on_cpu(tmp_path, monkeypatch, capsys):
    bench = _bench_module("bench_stream_gpu")
    out = tmp_path / "r.json"
    argv = [
        "bench",
        "--random-weights",
        "--tiny",
        "--device",
        "cpu",
        "--size",
        "64",
        "--frames",
        "3",
        "--warmup",
        "1",
        "--combos",
        "fp16+cl+qkv,fp16+cl 2-step stream-batch,fp16+cl+compile",
        "--json",
        str(out),
    ]
    monkeypatch.setattr("sys.argv", argv)
    assert bench.main() == 0
    import json

    results = json.loads(out.read_text())["results"]
    assert [r["combo"] for r in results] == ["fp16+cl+qkv", "fp16+cl 2-step stream-batch"]  # no compile on CPU
    assert all(r["fps"] > 0 and r["prompt_change_ms_new"] > 0 for r in results)


def test_gpu_benchmark_counts_only_painted_frames(tmp_path, monkeypatch):
    bench = _bench_module("bench_stream_gpu")
    out = tmp_path / "r.json"
    argv = [
        "bench",
        "--random-weights",
        "--tiny",
        "--device",
        "cpu",
        "--size",
        "64",
        "--frames",
        "20",
        "--warmup",
        "40",
        "--combos",
        "fp16+cl+filter still camera",
        "--json",
        str(out),
    ]
    monkeypatch.setattr("sys.argv", argv)
    assert bench.main() == 0
    import json

    (r,) = json.loads(out.read_text())["results"]
    assert r["skipped"] > 0 and r["rendered"] + r["skipped"] == 20  # a settled picture under a still camera
    assert r["fps"] == pytest.approx(r["rendered"] / r["elapsed_s"]) and r["frames_out_fps"] > r["fps"]


def test_overhead_benchmark_leaves_out_the_forward_passes(tmp_path):
    """overhead = frame time - time inside the models' forward passes: a known
    40 ms added inside every UNet call shows in the frame time, not in the overhead."""
    import time

    bench = _bench_module("stream_overhead")
    models = bench.seam_sized_models(tmp_path)
    unet_forward = models.unet.forward

    def slow_unet(*args, **kwargs):
        time.sleep(0.04)  # a cost of known size inside the forward pass, not a wait for anything
        return unet_forward(*args, **kwargs)

    models.unet.forward = slow_unet  # the hooks around forward() still time it
    r = bench.measure(models, {"_steer_every": 2}, frames=4, warmup=1)
    assert r["rendered"] + r["skipped"] == 4 and r["rendered"] >= 1
    # every painted frame ran the UNet once at least: 40 ms of it is forward time
    assert r["frame_ms_median_cpu"] - r["overhead_ms_median"] >= 40, r
    # and the forward time is each frame's own, not summed over the run (which would go negative)
    assert r["overhead_ms_median"] > 0, r


def test_download_fetches_one_copy_of_the_weights(monkeypatch):
    import huggingface_hub

    from streambot.world.stream_models import model_files

    listing = [
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "text_encoder/model.safetensors",
        "text_encoder/model.fp16.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    ]
    monkeypatch.setattr(huggingface_hub, "list_repo_files", lambda repo: listing)
    half = model_files("stabilityai/sd-turbo", torch.float16, offline=False)
    assert "unet/*.fp16.safetensors" in half and "text_encoder/*.fp16.safetensors" in half
    assert not any(p.startswith("vae/") for p in half)
    assert "unet/*.safetensors" in model_files("stabilityai/sd-turbo", torch.float32, offline=False)

    def no_network(repo):
        raise AssertionError("offline must not list the hub")

    monkeypatch.setattr(huggingface_hub, "list_repo_files", no_network)
    assert "unet/*.safetensors" in model_files("stabilityai/sd-turbo", torch.float16, offline=True)


# -- the VAE for the model -----------------------------------------------------------------------------------


def _hub_cache_entry(cache, repo: str, model) -> None:
    """`model` saved where a download of `repo` into the Hugging Face cache leaves it (tests never download)."""
    root = cache / ("models--" + repo.replace("/", "--"))
    commit = "0" * 40
    model.save_pretrained(root / "snapshots" / commit)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)


def _save_model_folder(models, folder) -> None:
    for part in ("unet", "text_encoder", "tokenizer", "scheduler", "text_encoder_2", "tokenizer_2"):
        module = getattr(models, part)
        if module is not None:
            module.save_pretrained(folder / part)


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_sdxl_models_decode_with_the_sdxl_tiny_vae_unless_told_otherwise(tmp_path):
    from diffusers import AutoencoderTiny

    from streambot.world.stream_models import TINY_TAESD

    sd, sdxl = tmp_path / "tiny-sd", tmp_path / "tiny-sdxl"
    _save_model_folder(random_models("tiny", tokenizer_dir=tmp_path / "t1"), sd)
    _save_model_folder(random_models("tiny", sdxl=True, tokenizer_dir=tmp_path / "t2"), sdxl)
    cache = tmp_path / "hub"
    vaes = {}
    for seed, repo in enumerate(("madebyollin/taesd", "madebyollin/taesdxl", "mine")):
        torch.manual_seed(seed)
        vaes[repo] = AutoencoderTiny(**TINY_TAESD)
        if repo == "mine":
            vaes[repo].save_pretrained(tmp_path / "mine")
        else:
            _hub_cache_entry(cache, repo, vaes[repo])

    def world(**table):
        return create_world({"offline": True, "cache_dir": str(cache), "resolution": "64x64", **table}, device="cpu")

    xl = world(model=str(sdxl))
    assert _same_weights(xl.models.vae, vaes["madebyollin/taesdxl"])
    assert _same_weights(world(model=str(sd)).models.vae, vaes["madebyollin/taesd"])
    assert _same_weights(world(model=str(sdxl), vae=str(tmp_path / "mine")).models.vae, vaes["mine"])  # the user's
    xl.start(SPEC, (64, 64), 30)
    assert xl.render().image.shape == (64, 64, 3)


def _tiny_kl_vae(force_upcast: bool, seed: int = 3):
    """An SDXL-shaped AutoencoderKL (scaling 0.13025) whose activations pass float16's largest number."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        norm_num_groups=4,
        layers_per_block=1,
        latent_channels=4,
        scaling_factor=0.13025,
        force_upcast=force_upcast,
        sample_size=64,
    )
    with torch.no_grad():  # the next group norm takes the scale out again, in float32
        vae.decoder.conv_in.weight.mul_(1e6)
    return vae.eval()


def test_a_vae_that_asks_for_float32_is_upcast_under_half_precision(tmp_path):
    """SDXL's own VAE overflows in float16 and says so in its config (force_upcast), which
    diffusers' SDXL pipeline reads; the engine keeps such a VAE in float32."""
    base = random_models("tiny", sdxl=True, tokenizer_dir=tmp_path)

    def frames(dtype, force_upcast):
        models = StreamModels(**{**base.__dict__, "vae": _tiny_kl_vae(force_upcast)})
        world = StreamWorld(
            models,
            StreamWorldSettings(
                resolution="64x64",
                device="cpu",
                dtype=dtype,
                steps=1,
                motion=Motion(pan_x=0.01),
                vae="model",
            ),
        )
        world.start(SPEC, (64, 64), 30, seed=0)
        return world, [world.render().image for _ in range(3)]

    _, reference = frames("float32", True)
    half, shown = frames("float16", True)
    assert half.engine.active["vae_upcast"]
    assert next(half.models.vae.parameters()).dtype == torch.float32
    assert next(half.models.unet.parameters()).dtype == torch.float16
    for a, b in zip(shown, reference):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 6
    _, overflowed = frames("float16", False)  # the same VAE, not asking: what upcasting prevents
    assert max(np.abs(a.astype(int) - b.astype(int)).max() for a, b in zip(overflowed, reference)) > 50


def test_check_looks_for_the_tiny_vae_the_model_will_use(cli_env, tmp_path):
    from .conftest import run_cli

    cfg = tmp_path / "sdxl.toml"
    cfg.write_text(f'[world.stream]\nmodel = "stabilityai/sdxl-turbo"\ncache_dir = "{tmp_path / "hub"}"\n')
    r = run_cli(["check", "--config", str(cfg), "--world", "stream"], cli_env)
    problems = "\n".join(ln for ln in r.stderr.splitlines() if ln.startswith("problem:"))
    assert "madebyollin/taesdxl" in problems and "'auto'" not in problems
