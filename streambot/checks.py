"""`streambot check`: every problem with config and environment, one sentence each."""
from __future__ import annotations

import shutil

import av

from .broadcast.outputs import OutputError, check_reachable, validate_target
from .config import ConfigError, load_secrets, resolve_output, resolve_world
from .devserver import MODULE_PATHS
from .secrets import mask_url


def _gpu_problems(settings) -> list[str]:
    backend = settings.world.backend
    table = getattr(settings.world, backend, {}) or {}
    device = str(table.get("device", "cuda"))
    problems: list[str] = []
    try:
        import torch
    except ImportError:
        return [f"The '{backend}' world needs PyTorch, which is not installed (pip install torch)."]
    if device.startswith("cuda") and not torch.cuda.is_available():
        problems.append(
            f"The '{backend}' world needs a CUDA GPU and none is visible; use --world sketch, "
            "or --device cpu for a slow preview."
        )
    if backend == "stream":
        problems.extend(_stream_weight_problems(table))
    elif backend == "video":
        problems.append("The 'video' world backend is not part of this version; use sketch or stream.")
    return problems


def _stream_weight_problems(table: dict) -> list[str]:
    """Are the stream world's weights on this machine? (Looked up offline.)"""
    try:
        from .world.base import WorldError
        from .world.stream_models import resolve_folder, vae_source
        from .world.stream_settings import parse_stream_settings
    except ImportError as e:
        return [f"The 'stream' world needs diffusers and transformers ({e.name} is missing): "
                "pip install 'streambot[gpu]'."]
    try:
        s = parse_stream_settings(table)
    except ConfigError as e:
        return [str(e)]
    problems = []
    for model in {s.model, vae_source(s.vae, s.model)} - {None}:
        try:
            resolve_folder(model, offline=True, cache_dir=s.cache_dir)
        except WorldError as e:
            problems.append(str(e) if s.offline else (
                f"The weights for {model!r} are not on this machine yet; the first run downloads "
                "them from the Hugging Face hub (or set model to a local folder)."))
    return problems


def run_checks(config_file, preset, world, size, fps, bitrate, secrets_file, device, offline,
               outputs, make_settings) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    notes: list[str] = []
    try:
        settings = make_settings(config_file, size, fps, bitrate, world, preset, device, offline)
    except ConfigError as e:
        return [str(e)], notes
    notes.append(f"settings are valid ({settings.stream.size} at {settings.stream.fps} fps, "
                 f"{settings.stream.bitrate_kbps} kbps)")
    try:
        spec = resolve_world(settings.world.preset)
        notes.append(f"world '{spec.name}': {spec.title}")
    except ConfigError as e:
        problems.append(str(e))
    try:
        found = load_secrets(secrets_file)
    except ConfigError as e:
        problems.append(str(e))
        found = {}
    targets = outputs or list(settings.stream.outputs)
    if not targets:
        problems.append("No output is configured: give --output or set [stream] outputs.")
    for target in targets:
        try:
            url = resolve_output(target, found)
            validate_target(url)
            if url.startswith(("rtmp://", "rtmps://")):
                check_reachable(url, settings.stream.connect_timeout_s)
            notes.append(f"output {mask_url(url)} is usable")
        except (ConfigError, OutputError) as e:
            problems.append(str(e))
    codecs = av.codecs_available
    for name, what in (("libx264", "H.264 video"), ("aac", "AAC audio")):
        if name not in codecs:
            problems.append(f"This PyAV build has no {name} encoder, so it cannot make {what}.")
    if settings.world.backend != "sketch":
        problems.extend(_gpu_problems(settings))
    if shutil.which("nginx") and any(p.exists() for p in MODULE_PATHS):
        notes.append("nginx with the RTMP module is installed (used by `streambot demo`)")
    return problems, notes
