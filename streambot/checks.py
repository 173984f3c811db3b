"""`streambot check`: every problem with config and environment, one sentence each."""

from __future__ import annotations

import shutil
from pathlib import Path

import av

from .broadcast.outputs import OutputError, check_reachable, validate_target
from .broadcast.playlist import check_folder
from .config import ConfigError, load_secrets, resolve_output, resolve_world
from .devserver import MODULE_PATHS
from .registry import CHATS, WORLDS, MissingPackage
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
        problems.extend(_video_problems(table, torch))
    return problems


def _video_problems(table: dict, torch) -> list[str]:
    """Does this machine have what the video world needs? (Weights looked up offline.)"""
    try:
        import diffusers

        from .world.base import WorldError
        from .world.stream_models import resolve_folder
        from .world.video_models import needed_gib
        from .world.video_settings import parse_video_settings
    except ImportError as e:
        return [
            f"The 'video' world needs diffusers and transformers ({e.name} is missing): pip install 'streambot[gpu]'."
        ]
    if not hasattr(diffusers, "AnyFlowFARPipeline"):
        return [
            f"The 'video' world needs diffusers 0.42 or newer for AnyFlow-FAR (this is {diffusers.__version__}): "
            "pip install -U 'streambot[gpu]'."
        ]
    try:
        s = parse_video_settings(table)
    except ConfigError as e:
        return [str(e)]
    problems = []
    try:
        resolve_folder(s.model, offline=True, cache_dir=s.cache_dir)
    except WorldError as e:
        a_path = s.model.startswith((".", "/", "~"))
        problems.append(
            str(e)
            if s.offline or a_path
            else (
                f"The weights for {s.model!r} are not on this machine yet; the first run downloads "
                "them from the Hugging Face hub (over 10 GB), or set model to a local folder."
            )
        )
    if s.device != "cpu" and torch.cuda.is_available():
        device = torch.device("cuda" if s.device == "auto" else s.device)
        free = torch.cuda.mem_get_info(device)[0] / 2**30
        need = needed_gib(torch.float32 if s.dtype == "float32" else torch.bfloat16)
        if free < need:
            problems.append(
                f"The 'video' world needs about {need:.0f} GiB of GPU memory and {device} has "
                f"{free:.1f} GiB free; lower resolution or window_chunks in [world.video]."
            )
    return problems


def _stream_weight_problems(table: dict) -> list[str]:
    """Are the stream world's weights on this machine? (Looked up offline.)"""
    try:
        from .world.base import WorldError
        from .world.stream_models import resolve_folder, vae_source
        from .world.stream_settings import parse_stream_settings
    except ImportError as e:
        return [
            f"The 'stream' world needs diffusers and transformers ({e.name} is missing): pip install 'streambot[gpu]'."
        ]
    try:
        s = parse_stream_settings(table)
    except ConfigError as e:
        return [str(e)]
    problems = []
    for model in {s.model, vae_source(s.vae, s.model)} - {None}:
        try:
            resolve_folder(model, offline=True, cache_dir=s.cache_dir)
        except WorldError as e:
            problems.append(
                str(e)
                if s.offline
                else (
                    f"The weights for {model!r} are not on this machine yet; the first run downloads "
                    "them from the Hugging Face hub (or set model to a local folder)."
                )
            )
    return problems


def _voice_checks(settings, problems: list[str], notes: list[str]) -> None:
    """The speech model, and Discord voice receive when Discord is on: one sentence each."""
    from .audience.voice import discord_voice_note, model_note

    ok, sentence = model_note(settings.voice.model)
    (notes if ok else problems).append(sentence[0].lower() + sentence[1:] if ok else sentence)
    if settings.discord.enabled:
        ok, sentence = discord_voice_note()
        notes.append(sentence[0].lower() + sentence[1:])


def _music_problems(settings, notes: list[str]) -> list[str]:
    """The music folder: every file in it is opened and decoded a little."""
    if not settings.audio.enabled or not settings.audio.music_dir:
        return []
    folder = Path(settings.audio.music_dir).expanduser()
    playable, problems = check_folder(folder)
    if playable:
        notes.append(f"music folder {folder}: {len(playable)} file(s) will play, shuffled")
    return problems


def run_checks(
    config_file, preset, world, size, fps, bitrate, secrets_file, device, offline, outputs, make_settings
) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    notes: list[str] = []
    try:
        settings = make_settings(config_file, size, fps, bitrate, world, preset, device, offline)
    except ConfigError as e:
        return [str(e)], notes
    notes.append(
        f"settings are valid ({settings.stream.size} at {settings.stream.fps} fps, {settings.stream.bitrate_kbps} kbps)"
    )
    notes.append(f"world backend '{settings.world.backend}': {WORLDS.get(settings.world.backend).description}")
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
    problems.extend(_music_problems(settings, notes))
    problems.extend(_start_problems(settings, found, notes))
    codecs = av.codecs_available
    for name, what in (("libx264", "H.264 video"), ("aac", "AAC audio")):
        if name not in codecs:
            problems.append(f"This PyAV build has no {name} encoder, so it cannot make {what}.")
    if settings.world.backend != "sketch":
        problems.extend(_gpu_problems(settings))
    if settings.voice.enabled:
        _voice_checks(settings, problems, notes)
    if shutil.which("nginx") and any(p.exists() for p in MODULE_PATHS):
        notes.append("nginx with the RTMP module is installed (used by `streambot demo`)")
    return list(dict.fromkeys(problems)), notes  # a settings table two checks read is named once


def _start_problems(settings, found: dict, notes: list[str]) -> list[str]:
    """What `streambot run` checks before it connects: the world's settings, the
    timeline, the block lists, the overlay layout, the chat platforms turned on."""
    from .audience.moderation import block_list_paths
    from .blocklist import BlockList
    from .broadcast.overlay_layout import layout_name, load_layout
    from .store import Store, StoreError, resolve_path
    from .world.base import WorldError

    problems: list[str] = []
    m = settings.moderation
    backend = settings.world.backend
    timeline = resolve_path(settings.voting.timeline)

    def world_settings() -> None:
        entry = WORLDS.get(backend)
        if entry.check:
            try:
                check = WORLDS.load(backend, "check")
            except MissingPackage as e:
                raise WorldError(str(e)) from None
            check(getattr(settings.world, backend, None) or {})

    steps = [
        (world_settings, None),
        (lambda: Store(timeline, background=False, session=False).close(), f"timeline {timeline} opens"),
        (lambda: BlockList.from_files(block_list_paths(m), m.block_words), None),
        (lambda: load_layout(layout_name(settings.overlay.layout)), None),
    ]
    for entry in CHATS:
        platform = CHATS.load(entry.name)
        if platform.wanted(settings, None):  # the terminal is `run`'s --chat, not a setting
            steps.append((lambda p=platform: p.check(settings, found), f"chat: {entry.name}: {entry.description}"))
    for step, note in steps:
        try:
            step()
        except (ConfigError, StoreError, WorldError) as e:
            problems.append(str(e))
        else:
            if note:
                notes.append(note)
    return problems
