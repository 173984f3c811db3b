"""The stream world's picture, seen: an oracle UNet, diffusers' own pipelines as the judge, long runs.

The tests in test_stream_world.py check that frames come out; these check what
is in them. An oracle UNet (tests/stream_oracle.py) knows the noise in its
input, so a correct loop gives back a known picture exactly; diffusers'
img2img pipeline, run on the same tiny random model with the same noise,
judges the engine's scheduler arithmetic; a tiny random model runs for
hundreds of frames to show the fed-back picture stays finite, bounded, smooth
and steered by its prompt.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", reason="the stream world needs diffusers (the gpu extra)")
pytest.importorskip("transformers", reason="the stream world needs transformers (the gpu extra)")

from diffusers import EulerDiscreteScheduler, LCMScheduler, StableDiffusionImg2ImgPipeline  # noqa: E402
from diffusers.image_processor import VaeImageProcessor  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from streambot.world.base import Direction  # noqa: E402
from streambot.world.stream import Motion, StreamWorld, StreamWorldSettings  # noqa: E402
from streambot.world.stream_engine import boundary_scalings, schedule_timesteps  # noqa: E402
from streambot.world.stream_models import StreamModels, random_models  # noqa: E402
from streambot.world.stream_ops import guidance_embedding, keep_in_range, motion_theta  # noqa: E402
from streambot.worldspec import WorldSpec  # noqa: E402

from .stream_oracle import OracleUNet, contrast_vae  # noqa: E402

SPEC = WorldSpec("meadow", "Endless Valley", "A wide green valley.", "painterly landscape", ("morning mist",))
STILL = Motion()


@pytest.fixture(scope="module", autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return random_models("tiny", tokenizer_dir=tmp_path_factory.mktemp("tok"), seed=0)


@pytest.fixture(scope="module")
def sharp(tmp_path_factory):
    """The tiny random models with a VAE whose picture follows its latent."""
    m = random_models("tiny", tokenizer_dir=tmp_path_factory.mktemp("tok"), seed=0)
    m.vae = contrast_vae(m.vae)
    return m


def target_latent(seed: int) -> torch.Tensor:
    return torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(seed))


def oracle_world(sharp: StreamModels, target: torch.Tensor, **kw) -> tuple[StreamWorld, OracleUNet]:
    oracle = OracleUNet(sharp.unet, sharp.scheduler, target)
    models = StreamModels(**{**sharp.__dict__, "unet": oracle, "name": "oracle"})
    kw.setdefault("resolution", "64x64")
    kw.setdefault("reanchor_every", 0)
    world = StreamWorld(models, StreamWorldSettings(device="cpu", **kw))
    world.start(SPEC, (64, 64), 30, seed=0)
    oracle.bind(world.engine)
    return world, oracle


def picture_of(vae, latent: torch.Tensor) -> np.ndarray:
    """What a latent should look like on air: the VAE's decode, as diffusers' own image processor makes pixels."""
    with torch.no_grad():
        image = vae.decode(latent / vae.config.scaling_factor, return_dict=False)[0]
    pixels = VaeImageProcessor(vae_scale_factor=8).postprocess(image, output_type="np")[0]
    return (pixels * 255).round().astype(np.uint8)


def levels(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


def rms(x: torch.Tensor) -> float:
    return float(x.double().pow(2).mean().sqrt())


STEPS = [(1, True), (2, True), (3, True), (4, True), (2, False), (3, False), (4, False)]
STEP_IDS = [f"{k}step-{'batch' if b else 'sequential'}" for k, b in STEPS]


# -- the oracle: a loop that knows the answer ------------------------------------------------------


@pytest.mark.parametrize("steps,batch", STEPS, ids=STEP_IDS)
def test_an_oracle_unet_gives_back_its_target_at_every_step_count(sharp, steps, batch):
    target = target_latent(1)
    world, _ = oracle_world(sharp, target, steps=steps, stream_batch=batch, motion=STILL)
    expected = picture_of(sharp.vae, target)
    assert levels(expected, picture_of(sharp.vae, target_latent(2))) > 40  # another latent looks different
    for _ in range(6):
        frame = world.render()
        torch.testing.assert_close(world.engine.x_out, target, rtol=0, atol=2e-5)
        assert levels(frame.image, expected) <= 1


@pytest.mark.parametrize("steps,batch", STEPS, ids=STEP_IDS)
def test_with_an_oracle_the_output_is_the_input_late_by_the_stream_batch(sharp, steps, batch):
    """A perfect model keeps what it is shown, so the world is the camera alone: frame n shows
    the input of frame n - (steps - 1) in a stream batch, and its own input otherwise."""
    target = target_latent(3)
    world, _ = oracle_world(
        sharp, target, steps=steps, stream_batch=batch, motion=Motion(pan_x=0.03, zoom=1.02, rotate_deg=1.5)
    )
    late = steps - 1 if batch else 0
    inputs = []
    for n in range(8):
        world.render()
        inputs.append(world.engine.x_in.clone())
        expected = target if n < late else inputs[n - late]
        torch.testing.assert_close(world.engine.x_out, expected, rtol=0, atol=2e-5)
    assert rms(inputs[-1] - inputs[0]) > 0.1  # the camera really moved the picture


def test_reanchoring_pulls_a_drifted_picture_back_to_a_fresh_one(sharp):
    # the oracle keeps whatever it is shown, so a drift stays until re-anchoring removes it;
    # the fresh picture re-anchoring pulls toward is the target (txt2img under the oracle)
    target = target_latent(4)
    kw = dict(steps=1, motion=STILL, reanchor_strength=0.5, reanchor_frames=5)
    world, _ = oracle_world(sharp, target, reanchor_every=20, **kw)
    twin, _ = oracle_world(sharp, target, reanchor_every=0, **kw)
    for w in (world, twin):
        for _ in range(10):
            w.render()
        with torch.inference_mode():
            w.engine.x_out.mul_(1.8).add_(0.7)  # colour and contrast drift
    for _ in range(10):
        world.render()
        twin.render()
    assert rms(world.engine.x_out - target) > 0.5  # frame 20 starts the pull: not yet
    for _ in range(5):
        world.render()
        twin.render()
    assert world.stats["reanchored"] == 1 and world.engine._anchor is None
    torch.testing.assert_close(world.engine.x_out, target, rtol=0, atol=1e-4)
    torch.testing.assert_close(twin.engine.x_out, target * 1.8 + 0.7, rtol=0, atol=1e-4)


# -- the outside judge: diffusers' img2img on the same model and noise ----------------------------------


def judge_pipeline(models: StreamModels, scheduler) -> StableDiffusionImg2ImgPipeline:
    pipe = StableDiffusionImg2ImgPipeline(
        vae=models.vae,
        text_encoder=models.text_encoder,
        tokenizer=models.tokenizer,
        unet=models.unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def judge(pipe, engine, clean: torch.Tensor, seed: int, guidance: float) -> torch.Tensor:
    """diffusers' img2img from the clean latent `clean` through the engine's timesteps, noise from `seed`."""
    with torch.no_grad():
        return pipe(
            prompt_embeds=engine.embeds[:1].clone(),
            image=clean,
            strength=1.0,
            timesteps=engine.timesteps.tolist(),
            guidance_scale=guidance,
            generator=torch.Generator().manual_seed(seed),
            output_type="latent",
            return_dict=False,
        )[0]


@pytest.mark.parametrize(
    "steps,batch,lcm",
    [(1, True, False), (2, True, False), (3, True, False), (2, False, False), (3, False, False), (2, True, True)],
    ids=["1step", "2step-batch", "3step-batch", "2step-sequential", "3step-sequential", "2step-batch-lcm-unet"],
)
def test_the_denoised_latent_matches_diffusers_lcm_img2img(tmp_path, models, steps, batch, lcm):
    """LCMScheduler's step is the arithmetic StreamDiffusion's loop runs (noise to the timestep,
    predict x0 with the consistency boundary scalings, noise again to the next timestep)."""
    if lcm:
        models = random_models("tiny", tokenizer_dir=tmp_path, seed=0, time_cond_proj_dim=16)
    world = StreamWorld(
        models,
        StreamWorldSettings(
            device="cpu",
            resolution="64x64",
            steps=steps,
            stream_batch=batch,
            motion=STILL,
            reanchor_every=0,
        ),
    )
    world.start(SPEC, (64, 64), 30, seed=0)
    engine = world.engine
    # the judge draws its noise from a generator in this order: the input's, then one per later step
    g = torch.Generator().manual_seed(77)
    with torch.inference_mode():
        engine.noise.copy_(torch.cat([torch.randn((1, 4, 8, 8), generator=g) for _ in range(steps)]))
    pipe = judge_pipeline(models, LCMScheduler.from_config(models.scheduler.config))
    guidance = world.settings.lcm_guidance if lcm else 0.0  # an LCM UNet embeds it; a turbo one takes none
    inputs, late = [], steps - 1 if batch else 0
    for n in range(steps + 3):
        clean = target_latent(100 + n) * 0.8  # what the camera hands the model this frame
        inputs.append(clean)
        with torch.inference_mode():
            engine.x_out.copy_(clean)
        world.render()
        if n >= late:
            expected = judge(pipe, engine, inputs[n - late], seed=77, guidance=guidance)
            # an untrained UNet's estimate can pass the latent range the engine holds its output to
            # (RMS 3): that bound is one uniform scale, applied to the judge's answer alike
            assert rms(expected) < 3.3
            torch.testing.assert_close(engine.x_out, keep_in_range(expected), rtol=1e-4, atol=1e-4)


def test_one_step_matches_diffusers_euler_img2img(models):
    """SD-Turbo's own scheduler (Euler, trailing) in one step to sigma 0 is the same x0 estimate."""
    world = StreamWorld(
        models,
        StreamWorldSettings(
            device="cpu",
            resolution="64x64",
            steps=1,
            motion=STILL,
            reanchor_every=0,
        ),
    )
    world.start(SPEC, (64, 64), 30, seed=0)
    engine = world.engine
    with torch.inference_mode():
        engine.noise.copy_(torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(5)))
    pipe = judge_pipeline(models, EulerDiscreteScheduler.from_config(models.scheduler.config))
    for n in range(3):
        clean = target_latent(200 + n)
        with torch.inference_mode():
            engine.x_out.copy_(clean)
        world.render()
        expected = judge(pipe, engine, clean, seed=5, guidance=0.0)
        torch.testing.assert_close(engine.x_out, expected, rtol=1e-4, atol=1e-4)


def test_schedule_scalings_and_guidance_embedding_are_diffusers(models):
    for n in (50, 8, 4):
        lcm = LCMScheduler.from_config(models.scheduler.config)
        lcm.set_timesteps(n, original_inference_steps=n)
        assert schedule_timesteps(1000, n) == lcm.timesteps.tolist()
        for t in lcm.timesteps.tolist():
            c_skip, c_out = boundary_scalings(torch.tensor([t]))
            ref_skip, ref_out = lcm.get_scalings_for_boundary_condition_discrete(t)
            assert float(c_skip) == pytest.approx(ref_skip, rel=1e-9)
            assert float(c_out) == pytest.approx(ref_out, rel=1e-9)
    pipe = judge_pipeline(models, models.scheduler)
    for w, dim in ((8.0, 16), (1.5, 256), (4.0, 33)):
        ours = guidance_embedding(w, dim, device="cpu", dtype=torch.float32)
        ref = pipe.get_guidance_scale_embedding(torch.tensor([w - 1.0]), embedding_dim=dim)
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


# -- a tiny random model over hundreds of frames ---------------------------------------------------------


def test_a_random_model_stays_finite_bounded_and_smooth_for_300_frames(models):
    world = StreamWorld(models, StreamWorldSettings(device="cpu", resolution="64x64", steps=2))  # default camera
    world.start(SPEC, (64, 64), 30, seed=0)
    last, sizes, jumps = None, [], []
    for n in range(300):
        frame = world.render()
        x = world.engine.x_out.clone()
        assert torch.isfinite(x).all() and frame.image.dtype == np.uint8
        sizes.append(rms(x))
        if last is not None and n >= 60:  # once the loop has found its picture
            jumps.append(rms(x - last))
        last = x
    # an untrained model never takes out the noise it is given: without a bound the latent grows every frame
    assert max(sizes) <= 3.0 + 1e-4 and min(sizes[10:]) > 0.5
    # under a slow camera no frame jumps: each step is a small fraction of the picture
    assert max(jumps) < 0.005 * min(sizes[60:]), max(jumps)


def test_a_nan_in_the_picture_does_not_stay(models):
    world = StreamWorld(models, StreamWorldSettings(device="cpu", resolution="64x64", steps=1))
    world.start(SPEC, (64, 64), 30, seed=0)
    world.render()
    with torch.inference_mode():
        world.engine.x_out[0, 0, :4] = float("nan")  # as a half-precision overflow would leave it
    world.render()
    world.render()
    assert torch.isfinite(world.engine.x_out).all()


def test_the_prompt_steers_the_picture(sharp):
    """Two prompts, same seed: different pictures; steer one to the other's prompt and it lands on its picture."""

    def world(prompt):
        w = StreamWorld(sharp, StreamWorldSettings(device="cpu", resolution="64x64", steps=1, transition_frames=5))
        w.start(WorldSpec("w", "w", "w", "", (prompt,)), (64, 64), 30, seed=0)
        return w

    a, b = world("morning mist over a river"), world("a storm over the sea at night")
    for _ in range(40):  # each loop settles on its own picture
        last = a.engine.x_out.clone()
        fa, fb = a.render(), b.render()
    apart = rms(a.engine.x_out - b.engine.x_out)
    assert apart > 0.005 * rms(b.engine.x_out) and apart > 20 * rms(a.engine.x_out - last)
    assert np.abs(fa.image.astype(int) - fb.image.astype(int)).mean() > 0.3  # seen in the picture too
    a.steer(Direction("storm", "a storm over the sea at night"), transition_s=0.1)
    for _ in range(25):
        a.render(), b.render()
    assert rms(a.engine.x_out - b.engine.x_out) < 0.1 * apart


# -- the similarity filter in a fed-back world ------------------------------------------------------------


def test_a_self_fed_world_with_a_slow_camera_never_freezes(sharp):
    """The oracle changes nothing it is shown: consecutive inputs are 0.999+ alike, which froze
    a filter that compared inputs. Here every frame must still move with the camera."""
    world, _ = oracle_world(sharp, target_latent(6), steps=1, similarity_filter=True)  # the default slow camera
    calls = world.engine.unet_calls
    last = None
    for _ in range(110):
        world.render()
        x = world.engine.x_out.clone()
        if last is not None:
            assert not torch.equal(x, last)
        last = x
    assert world.stats["skipped"] == 0 and world.engine.unet_calls - calls == 110


def test_a_settled_picture_under_a_still_camera_is_skipped(sharp):
    target = target_latent(7)
    world, _ = oracle_world(sharp, target, steps=1, similarity_filter=True, similarity_max_skip=10, motion=STILL)
    expected = picture_of(sharp.vae, target)
    frames = [world.render() for _ in range(110)]
    assert world.stats["skipped"] >= 90  # runs of 10 skips, then one render
    assert world.engine.filter.last_similarity == pytest.approx(1.0, abs=1e-6)
    assert all(levels(f.image, expected) <= 1 for f in frames)


# -- the hot path: nothing waits for the device --------------------------------------------------------------

# How a value reaches the host in aten: a scalar read, a data-dependent shape, a copy to the CPU,
# or (tolist, numpy) resolving a view before reading memory; lift_fresh is a tensor made from host data.
HOST_READS = {
    "item",
    "_local_scalar_dense",
    "is_nonzero",
    "equal",
    "nonzero",
    "masked_select",
    "unique",
    "resolve_conj",
    "resolve_neg",
}


class HostWatch(TorchDispatchMode):
    """Records every aten op that reads a value back to the host or builds a tensor from host data.

    Under inference mode, as the world renders; a GPU would wait at each of these.
    """

    def __init__(self) -> None:
        super().__init__()
        self.paused = False
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if not self.paused:
            to_host = name in ("to", "_to_copy") and str(kwargs.get("device", "")) == "cpu"
            masked = name.startswith("index") and any(  # a boolean mask's shape depends on its values
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else ())
            )
            if name in HOST_READS or name.startswith("lift_fresh") or to_host or masked:
                self.found.append(name)
        return func(*args, **kwargs)


def test_the_hot_path_reads_nothing_back_and_makes_no_camera_tensors(models):
    """What a CUDA graph and a busy GPU need: each frame is queued without a host read (torch.cuda
    sync debug mode would call these syncs) and the camera is the same buffer, moved in place."""
    world = StreamWorld(
        models,
        StreamWorldSettings(
            device="cpu",
            resolution="64x64",
            steps=2,
            similarity_filter=True,
            motion=Motion(pan_x=0.01, zoom=1.001, rotate_deg=0.5, drift=0.004, drift_period_frames=40),
        ),
    )
    world.start(SPEC, (64, 64), 30, seed=0)
    world.engine.encode_prompt("rain, painterly landscape")  # cached, as a steer's prompt is after its first use
    watch = HostWatch()
    take = world.engine.take

    def take_unwatched():  # taking the picture is where the host may wait: that is its job
        watch.paused = True
        try:
            return take()
        finally:
            watch.paused = False

    world.engine.take = take_unwatched
    thetas, pointers = [], set()
    with watch:
        for n in range(12):
            if n == 4:
                world.steer(Direction("rain", "rain, painterly landscape"), transition_s=0.1)
            world.render()
            theta = world._camera.theta
            pointers.add(theta.data_ptr())
            thetas.append(theta.clone())
    assert watch.found == ["lift_fresh"]  # the motion, copied to the device once, at the first frame
    assert len(pointers) == 1
    # and it is the camera the settings describe: pan, zoom and rotation, plus the drift's Lissajous wander
    m = world.motion
    for n, theta in enumerate(thetas):
        phase = 2 * np.pi * n / m.drift_period_frames
        rows = motion_theta(
            m.pan_x + m.drift * np.sin(phase), m.pan_y + 0.5 * m.drift * np.sin(1.618 * phase), m.zoom, m.rotate_deg
        )
        torch.testing.assert_close(theta[0], torch.tensor(rows, dtype=theta.dtype), rtol=0, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_queuing_a_frame_never_synchronizes(tmp_path):
    """The judge on a GPU: torch.cuda's sync debug mode raises at any call that waits for the device."""
    models = random_models("tiny", tokenizer_dir=tmp_path, seed=0)
    world = StreamWorld(
        models,
        StreamWorldSettings(
            device="cuda",
            resolution="64x64",
            steps=2,
            similarity_filter=True,
            cuda_graphs=True,
            motion=Motion(pan_x=0.01, zoom=1.001, drift=0.004),
        ),
    )
    world.start(SPEC, (64, 64), 30, seed=0)
    world.render()  # the motion's one copy to the device
    take = world.engine.take

    def take_allowed():  # taking the picture waits for its copy: that is its job
        torch.cuda.set_sync_debug_mode(0)
        try:
            return take()
        finally:
            torch.cuda.set_sync_debug_mode("error")

    world.engine.take = take_allowed
    torch.cuda.set_sync_debug_mode("error")
    try:
        frames = [world.render() for _ in range(8)]
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert world.engine.active["frames_in_flight"] and len({f.image.tobytes() for f in frames}) > 1


@pytest.mark.parametrize(
    "read",
    [
        lambda x: x.sum().item(),
        lambda x: float(x[1]),
        lambda x: bool(x[0] > 0),
        lambda x: x.tolist(),
        lambda x: x.numpy(),
        lambda x: x.cpu(),
        lambda x: x.to("cpu", copy=True),
        lambda x: torch.tensor([[1.0, 0.0, 0.0]]),
        lambda x: x[x > 0],
    ],
    ids=["item", "float", "bool", "tolist", "numpy", "cpu", "to-cpu", "new-tensor", "mask"],
)
def test_the_watch_sees_each_kind_of_host_read(read):
    """The watch above can fail: each way a value reaches the host, or host numbers reach a tensor, is seen."""
    x = torch.randn(4)
    with torch.inference_mode(), HostWatch() as watch:
        read(x)
    assert watch.found


# -- two frames in flight ----------------------------------------------------------------------------------------


def test_with_two_frames_in_flight_each_frame_comes_one_render_later_with_its_own_tags(models):
    def run(depth):
        w = StreamWorld(
            models,
            StreamWorldSettings(
                device="cpu",
                resolution="64x64",
                steps=2,
                frames_in_flight=depth,
                motion=Motion(pan_x=0.02),
            ),
        )
        w.start(SPEC, (64, 64), 30, seed=3)
        out = []
        for n in range(10):
            if n == 4:
                w.steer(Direction("dusk", "dusk, painterly landscape"), transition_s=0.1)
            f = w.render()
            out.append((f.image, f.generation, f.index))
        return w, out

    one, now = run(1)
    two, later = run(2)
    assert two.engine.active["frames_in_flight"] and not one.engine.active["frames_in_flight"]
    assert [i for *_, i in later] == list(range(10))
    for (image, gen, _), (image_later, gen_later, _) in zip(now, later[1:]):
        assert np.array_equal(image, image_later) and gen == gen_later
    assert later[0][1] == 0 and not np.array_equal(later[0][0], now[0][0])  # the first picture, before any step
    assert [g for _, g, _ in now] == [0] * 4 + [1] * 6
