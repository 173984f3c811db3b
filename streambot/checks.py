"""What start-up checks before anything connects, and `streambot check`.

`check_inputs` is start-up's first phase: app.py runs it before the show
opens, and the first problem stops the start. `streambot check` runs the
same steps but lists every problem instead of stopping at the first, then
adds what only a check asks (whether each ingest answers, whether every
music file decodes, the GPU and its weights, the speech model), so a check
is written once and both refuse a bad input with the same sentence.
"""

from __future__ import annotations

import logging
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

import av

from .broadcast.outputs import OutputError, check_reachable, validate_target
from .broadcast.playlist import check_folder
from .config import ConfigError, Settings, load_secrets, resolve_output, resolve_world
from .devserver import MODULE_PATHS
from .registry import CHATS, WORLDS, Entry, MissingPackage, UnknownName
from .secrets import mask_url
from .store import Store, StoreError, resolve_path
from .world.base import WorldError
from .worldspec import WorldSpec

if TYPE_CHECKING:
    from .audience.platforms import ChatContext

log = logging.getLogger(__name__)

# A problem start-up finds is one of these, worded as one sentence.
INPUT_ERRORS = (ConfigError, OutputError, StoreError, WorldError)


class ChatPlatform(Protocol):
    """A chat platform as `CHATS` loads it (a class of streambot/audience/platforms.py)."""

    def wanted(self, settings: Settings, chat_source: str | None) -> bool: ...

    def check(self, settings: Settings, secrets: dict[str, str]) -> None: ...

    def create(self, ctx: ChatContext) -> Any: ...  # an adapter: async run() and close(), a `state`


@dataclass
class Checked:
    """What start-up's first phase found, every part of it checked: what the second phase uses."""

    targets: list[str]  # the outputs, their secrets filled in
    spec: WorldSpec  # the world to start: the one the last run had switched to, or the configured one
    resume: dict[str, Any] | None  # what the last run had on air
    chats: list[tuple[str, ChatPlatform]] = field(default_factory=list)  # the chat platforms turned on


@dataclass
class _Found:
    """What the steps found; where a step failed (`streambot check`), what it would have given is missing."""

    spec: WorldSpec | None  # None: the configured world could not be read
    targets: list[str] = field(default_factory=list)
    resume: dict[str, Any] | None = None
    chats: list[tuple[str, ChatPlatform]] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)  # what was found usable, for `streambot check`'s notes


def world_entry(settings: Settings) -> Entry:
    try:
        return WORLDS.get(settings.world.backend)
    except UnknownName as e:
        raise ConfigError(f"[world] backend {e}.") from None


def check_world_settings(settings: Settings) -> None:
    """The chosen backend's own settings table, checked without loading it (ConfigError)."""
    entry = world_entry(settings)
    if entry.check:
        try:
            check = WORLDS.load(entry.name, "check")
        except MissingPackage as e:
            raise WorldError(str(e)) from None
        check(settings.world.table(entry.name))


def resume_point(settings: Settings) -> dict[str, Any] | None:
    """What the last run had on air, to pick up; not when the configured
    preset has changed since (the streamer chose another world). A timeline
    that cannot be opened stops the start here (StoreError)."""
    store = Store(resolve_path(settings.voting.timeline), background=False, session=False)
    try:
        last = store.load_state("world")
    except StoreError:
        last = None
    finally:
        store.close()
    if not last or last.get("configured", last.get("preset")) != settings.world.preset:
        return None
    log.info("resuming the %s world with %r on air", last.get("preset"), last.get("text"))
    return last


def _check_console_address(settings: Settings, address: str) -> None:
    """An address asked for on the command line must be free now: found taken
    after the outputs went live, the show would have to stop again. (The
    configured one falls back to any free port: see console/server.py.)"""
    from .console.address import parse_address

    host, port = parse_address(address)
    if port == 0 or (host, port) == (settings.console.host, settings.console.port):
        return
    try:
        family, kind, proto, _, where = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the console's own server does
            probe.bind(where)
    except OSError as e:
        raise ConfigError(
            f"--console {address}: that address cannot be used ({(e.strerror or str(e)).lower()})."
        ) from None


def check_inputs(
    settings: Settings,
    spec: WorldSpec,
    outputs: list[str],
    secrets: dict[str, str],
    *,
    chat_source: str | None = None,
    console: str | None = None,
) -> Checked:
    """Start-up's first phase: every input the user gave is checked, and nothing
    is opened that another machine would see (no connection, no child process,
    no listening port). The first problem stops it, as one sentence (one of
    `INPUT_ERRORS`)."""
    found = _steps(settings, spec, outputs, secrets, chat_source, console, problems=None)
    assert found.spec is not None  # given a world, the steps keep one
    return Checked(found.targets, found.spec, found.resume, found.chats)


def _steps(
    settings: Settings,
    spec: WorldSpec | None,
    outputs: list[str],
    secrets: dict[str, str],
    chat_source: str | None,
    console: str | None,
    problems: list[str] | None,
) -> _Found:
    """`check_inputs`'s steps, in order. Without `problems` the first problem is
    raised; with it, each is added there and the next step runs."""
    from .audience.moderation import block_list_paths
    from .blocklist import BlockList
    from .broadcast.overlay_layout import layout_name, load_layout

    found = _Found(spec)

    def step(check: Callable[[], object], note: str | None = None) -> bool:
        if problems is None:
            check()
        else:
            try:
                check()
            except INPUT_ERRORS as e:
                problems.append(str(e))
                return False
        if note:
            found.passed.append(note)
        return True

    # 1. the outputs: valid targets with their secrets (whether they answer is the second phase's)
    def no_output() -> None:
        raise OutputError(
            "There is nowhere to stream to: give --output (an RTMP URL or a file) or set [stream] outputs."
        )

    def output(target: str) -> None:
        url = resolve_output(target, secrets)
        validate_target(url)
        found.targets.append(url)

    if not outputs:
        step(no_output)
    for target in outputs:
        step(partial(output, target))
    # 2. the world backend's own settings
    step(lambda: check_world_settings(settings))

    # 3. the timeline can be opened (a folder, an unwritable place stop here), and what it had on air
    def timeline() -> None:
        found.resume = resume_point(settings)
        if found.resume and found.resume.get("spec"):
            found.spec = WorldSpec.from_dict(found.resume["spec"])  # the world the console had switched to

    step(timeline, f"timeline {resolve_path(settings.voting.timeline)} opens")

    # 4. the block lists, the music folder, the overlay layout
    def block_lists() -> None:
        m = settings.moderation
        BlockList.from_files(block_list_paths(m), m.block_words)

    def music_folder() -> None:
        a = settings.audio
        if a.enabled and a.music_dir and not Path(a.music_dir).expanduser().is_dir():
            raise ConfigError(f"[audio] music_dir: the folder {Path(a.music_dir).expanduser()} does not exist.")

    step(block_lists)
    step(music_folder)
    step(lambda: load_layout(layout_name(settings.overlay.layout, found.spec)))
    # 5. the console's address, and each chat platform turned on
    if console:
        step(lambda: _check_console_address(settings, console))
    for entry in CHATS:
        platform: ChatPlatform = CHATS.load(entry.name)
        if platform.wanted(settings, chat_source):
            if step(partial(platform.check, settings, secrets), f"chat: {entry.name}: {entry.description}"):
                found.chats.append((entry.name, platform))
    return found


def _gpu_problems(settings: Settings) -> list[str]:
    backend = settings.world.backend
    table: dict[str, Any] = getattr(settings.world, backend, {}) or {}
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


def _video_problems(table: dict[str, Any], torch: ModuleType) -> list[str]:
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
    problems: list[str] = []
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


def _stream_weight_problems(table: dict[str, Any]) -> list[str]:
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
    problems: list[str] = []
    for model in {m for m in (s.model, vae_source(s.vae, s.model)) if m is not None}:
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


def _voice_checks(settings: Settings, problems: list[str], notes: list[str]) -> None:
    """The speech model, and Discord voice receive when Discord is on: one sentence each."""
    from .audience.voice import discord_voice_note, model_note

    ok, sentence = model_note(settings.voice.model)
    (notes if ok else problems).append(sentence[0].lower() + sentence[1:] if ok else sentence)
    if settings.discord.enabled:
        ok, sentence = discord_voice_note()
        notes.append(sentence[0].lower() + sentence[1:])


def _music_problems(settings: Settings, notes: list[str]) -> list[str]:
    """The music folder: every file in it is opened and decoded a little
    (a missing folder is start-up's own problem: `check_inputs`)."""
    folder = Path(settings.audio.music_dir).expanduser()
    if not settings.audio.enabled or not settings.audio.music_dir or not folder.is_dir():
        return []
    playable, problems = check_folder(folder)
    if playable:
        notes.append(f"music folder {folder}: {len(playable)} file(s) will play, shuffled")
    return problems


def run_checks(
    make_settings: Callable[[], Settings], secrets_file: Path | None, outputs: list[str]
) -> tuple[list[str], list[str]]:
    """Every problem (one sentence each) and what was found usable: start-up's
    own steps (`check_inputs`), then what only a check asks."""
    problems: list[str] = []
    notes: list[str] = []
    try:
        settings = make_settings()
    except ConfigError as e:
        return [str(e)], notes
    notes.append(
        f"settings are valid ({settings.stream.size} at {settings.stream.fps} fps, {settings.stream.bitrate_kbps} kbps)"
    )
    notes.append(f"world backend '{settings.world.backend}': {WORLDS.get(settings.world.backend).description}")
    spec: WorldSpec | None = None
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
    # the terminal's chat is `run`'s --chat, not a setting; the console's address is `run`'s --console
    steps = _steps(settings, spec, targets, found, chat_source=None, console=None, problems=problems)
    for url in steps.targets:
        try:
            if url.startswith(("rtmp://", "rtmps://")):
                check_reachable(url, settings.stream.connect_timeout_s)
            notes.append(f"output {mask_url(url)} is usable")
        except OutputError as e:
            problems.append(str(e))
    notes.extend(steps.passed)
    problems.extend(_music_problems(settings, notes))
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
