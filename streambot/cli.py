"""`streambot run | demo | presets | check | bench` — the command line.

Every user error ends as one sentence on stderr and a non-zero exit; an
unexpected failure prints one sentence too and leaves its details in the log
file, never a traceback on the terminal.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from . import secrets as secret_store
from .children import lean_children
from .config import ConfigError, Settings, load_secrets, load_settings, parse_size, resolve_world
from .paths import log_file
from .registry import CHATS, WORLDS, Registry

log = logging.getLogger("streambot")

EXIT_USAGE = 2

F = TypeVar("F", bound=Callable[..., Any])  # a command's callback, as click's own decorators keep it


LOG_FORMATS = ("text", "json")


def _formatter(kind: str) -> logging.Formatter:
    if kind == "json":
        # One JSON object a line for log collectors (journald, Loki, Docker):
        # time, level, logger and message, plus the traceback when there is one.
        from pythonjsonlogger.json import JsonFormatter

        return JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            datefmt="%Y-%m-%dT%H:%M:%S%z",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    return logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")


def setup_logging(level: str = "info", kind: str = "text") -> None:
    root = logging.getLogger()
    if getattr(root, "_streambot", False):
        return
    root.setLevel(logging.DEBUG)
    fmt = _formatter(kind)
    redact = secret_store.RedactingFilter()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(getattr(logging, level.upper(), logging.INFO))
    console.setFormatter(fmt)
    console.addFilter(redact)
    root.addHandler(console)
    try:
        path = log_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(path, encoding="utf-8")
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(fmt)
        fh.addFilter(redact)
        root.addHandler(fh)
    except OSError:
        pass
    for noisy in ("libav", "PIL", "urllib3", "httpx", "sentence_transformers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    root._streambot = True  # type: ignore[attr-defined]


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"streambot: {secret_store.redact(message)}", err=True)
    sys.exit(code)


def _overrides(
    size: str | None, fps: int | None, bitrate: int | None, world: str | None, preset: str | None
) -> dict[str, Any]:
    over: dict[str, Any] = {}
    stream: dict[str, Any] = {}
    if size is not None:
        try:
            parse_size(size)
        except ValueError as e:
            raise ConfigError(f"--size: {e}.") from None
        stream["size"] = size
    if fps is not None:
        stream["fps"] = fps
    if bitrate is not None:
        stream["bitrate_kbps"] = bitrate
    if stream:
        over["stream"] = stream
    w: dict[str, Any] = {}
    if world:
        w["backend"] = world
    if preset:
        w["preset"] = preset
    if w:
        over["world"] = w
    return over


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="streambot")
def cli() -> None:
    """An endless AI-generated world, broadcast live and steered by its audience."""


common = [
    click.option("--config", "config_file", type=click.Path(path_type=Path), help="Your settings file (TOML)."),
    click.option("--preset", help="A preset name (see `streambot presets`) or a custom world .toml file."),
    click.option("--world", type=click.Choice(WORLDS.names()), help="World backend (each is described below)."),
    click.option("--size", help="Output size WIDTHxHEIGHT, e.g. 1280x720."),
    click.option("--fps", type=int, help="Output frames per second."),
    click.option("--bitrate", type=int, help="Video bitrate in kbps (Twitch allows up to 6000)."),
    click.option(
        "--secrets",
        "secrets_file",
        type=click.Path(path_type=Path),
        envvar="STREAMBOT_SECRETS",
        help="Secrets file (TOML with stream_key = ...; or $STREAMBOT_SECRETS); the environment wins.",
    ),
    click.option("--device", help="Torch device for GPU backends (cuda, cpu)."),
    click.option("--offline", is_flag=True, help="Never touch the network for model weights."),
]


log_format_option = click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="text",
    show_default=True,
    envvar="STREAMBOT_LOG_FORMAT",
    help="Log lines as text, or one JSON object a line (or $STREAMBOT_LOG_FORMAT).",
)


console_options = [
    click.option(
        "--console",
        "console",
        metavar="HOST:PORT",
        help="Where the web console listens (default from [console]: 127.0.0.1:8080).",
    ),
    click.option("--no-console", is_flag=True, help="No web console this time."),
]


def with_console(f: F) -> F:
    for option in reversed(console_options):
        f = option(f)
    return f


def _console_address(settings: Settings, console: str | None, no_console: bool) -> str | None:
    """HOST:PORT for the console, or None when it is off."""
    if no_console or (console is None and not settings.console.enabled):
        return None
    from .console.address import parse_address

    address = console or f"{settings.console.host}:{settings.console.port}"
    parse_address(address)  # a typo stops here, before anything goes live
    return address


def with_common(f: F) -> F:
    for option in reversed(common):
        f = option(f)
    return f


def _settings(
    config_file: Path | None,
    size: str | None,
    fps: int | None,
    bitrate: int | None,
    world: str | None,
    preset: str | None,
    device: str | None = None,
    offline: bool = False,
) -> Settings:
    settings = load_settings(config_file, _overrides(size, fps, bitrate, world, preset))
    if device or offline:
        for table in (settings.world.table("stream"), settings.world.table("video")):
            if device:
                table["device"] = device
            if offline:
                table["offline"] = True
    return settings


def _registry_help() -> str:
    """The worlds and chat platforms, one line each, for `--help` (\b keeps click from rewrapping)."""

    def block(title: str, registry: Registry) -> str:
        return f"\b\n{title}:\n" + "\n".join(f"  {line}" for line in registry.help().splitlines())

    return block("Worlds (--world)", WORLDS) + "\n\n" + block("Chat", CHATS)


@cli.command(epilog=_registry_help())
@with_common
@click.option(
    "--output",
    "-o",
    "outputs",
    multiple=True,
    help="rtmp://…, rtmps://…, `twitch`, or a file .flv/.mp4/.mkv; repeat for several.",
)
@click.option("--duration", type=click.FloatRange(min=0.1), help="Stop after this many seconds.")
@click.option(
    "--chat",
    "chat",
    default="-",
    show_default=True,
    help="Local prompts: '-' reads stdin, a path follows a file line by line, 'none' is off.",
)
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
@log_format_option
@with_console
def run(
    config_file: Path | None,
    preset: str | None,
    world: str | None,
    size: str | None,
    fps: int | None,
    bitrate: int | None,
    secrets_file: Path | None,
    device: str | None,
    offline: bool,
    outputs: tuple[str, ...],
    duration: float | None,
    chat: str,
    log_level: str,
    log_format: str,
    console: str | None,
    no_console: bool,
) -> None:
    """Stream the world until stopped (Ctrl-C stops cleanly)."""
    setup_logging(log_level, log_format)
    _run_show(
        config_file,
        preset,
        world,
        size,
        fps,
        bitrate,
        secrets_file,
        device,
        offline,
        list(outputs),
        duration,
        None if chat == "none" else chat,
        console=console,
        no_console=no_console,
    )


def _run_show(
    config_file: Path | None,
    preset: str | None,
    world: str | None,
    size: str | None,
    fps: int | None,
    bitrate: int | None,
    secrets_file: Path | None,
    device: str | None,
    offline: bool,
    outputs: list[str],
    duration: float | None,
    chat: str | None,
    banner: str | None = None,
    console: str | None = None,
    no_console: bool = False,
    watch: tuple[str, str] | None = None,
) -> None:
    from .app import Show, ShowOptions, build_world, check_inputs

    settings = _settings(config_file, size, fps, bitrate, world, preset, device, offline)
    spec = resolve_world(settings.world.preset)
    found = load_secrets(secrets_file)
    options = ShowOptions(
        outputs=outputs or list(settings.stream.outputs),
        duration_s=duration,
        chat_source=chat,
        secrets=found,
        console=_console_address(settings, console, no_console),
        watch=watch,
    )
    # 1. everything the user gave is checked before anything connects (or a model loads)
    checked = check_inputs(settings, spec, options)
    # 2. then connect: the world loads, the show opens (closing what it opened when that fails)
    built = build_world(settings)
    try:
        show = Show(settings, spec, built, options)
    except BaseException:
        built.close()
        raise
    show.open(checked)
    if banner:
        click.echo(banner, err=True)
    log.info(
        "on air: %s (%s world, %s at %d fps)",
        show.spec.title,
        settings.world.backend,
        settings.stream.size,
        settings.stream.fps,
    )
    asyncio.run(show.run())
    h = show.broadcast.health() if show.broadcast else None
    if h is not None:
        log.info(
            "stopped after %d frames (%d late, %d repeated, %d skipped)",
            h.ticks,
            h.late_frames,
            h.repeated_frames,
            h.skipped_frames,
        )
    if show.broadcast and show.broadcast.clock.error is not None:
        fail("the broadcast stopped on an error; see the log for details.", 1)


@cli.command(epilog=_registry_help())
@with_common
@click.option("--port", type=int, default=1935, show_default=True, help="Local RTMP port.")
@click.option("--duration", type=click.FloatRange(min=0.1), help="Stop after this many seconds.")
@log_format_option
@with_console
def demo(
    config_file: Path | None,
    preset: str | None,
    world: str | None,
    size: str | None,
    fps: int | None,
    bitrate: int | None,
    secrets_file: Path | None,
    device: str | None,
    offline: bool,
    port: int,
    duration: float | None,
    log_format: str,
    console: str | None,
    no_console: bool,
) -> None:
    """The demo: a local RTMP server, the sketch world, prompts typed on stdin."""
    from .devserver import RtmpServer, RtmpServerError

    setup_logging("info", log_format)
    server = RtmpServer(port=port, record=False, hls=True)
    try:
        server.start()
    except RtmpServerError as e:
        fail(str(e))
    url = server.url("demo")
    browser = "" if no_console else "in a browser: the Watch address below; or "
    banner = (
        f"\n  Watch:  {browser}ffplay {url}   (or open it in VLC / mpv)\n"
        "  Steer:  type a prompt here and press Enter (e.g. 'a thunderstorm at night').\n"
        "  Stop:   Ctrl-C\n"
    )
    try:
        _run_show(
            config_file,
            preset,
            world,
            size,
            fps,
            bitrate,
            secrets_file,
            device,
            offline,
            [url],
            duration,
            "-",
            banner=banner,
            console=console,
            no_console=no_console,
            watch=(str(server.hls_dir), "demo"),
        )
    finally:
        server.cleanup()


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def presets(as_json: bool) -> None:
    """List the preset worlds."""
    from .config import list_presets

    worlds = list_presets()
    if as_json:
        click.echo(
            json.dumps([{"name": w.name, "title": w.title, "description": w.description} for w in worlds], indent=2)
        )
        return
    width = max(len(w.name) for w in worlds)
    for w in worlds:
        click.echo(f"{w.name:<{width}}  {w.title}: {w.description}")
    click.echo(
        "\nA custom world is a TOML file with name, title, description, style and beats; pass its path to --preset."
    )


@cli.command(epilog=_registry_help())
@with_common
@click.option("--output", "-o", "outputs", multiple=True, help="Outputs to check (default: from config).")
def check(
    config_file: Path | None,
    preset: str | None,
    world: str | None,
    size: str | None,
    fps: int | None,
    bitrate: int | None,
    secrets_file: Path | None,
    device: str | None,
    offline: bool,
    outputs: tuple[str, ...],
) -> None:
    """Validate config and environment; explain each problem in one sentence."""
    from .checks import run_checks

    problems, notes = run_checks(
        lambda: _settings(config_file, size, fps, bitrate, world, preset, device, offline), secrets_file, list(outputs)
    )
    for n in notes:
        click.echo(f"ok: {n}")
    for p in problems:
        click.echo(f"problem: {secret_store.redact(p)}", err=True)
    if problems:
        sys.exit(1)
    click.echo("All checks passed.")


@cli.command()
@click.option("--seconds", type=click.FloatRange(min=1), default=60, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="Your settings file (TOML).")
@click.option("--preset", help="A preset name or a custom world .toml file (default: as `run`).")
@click.option("--world", type=click.Choice(WORLDS.names()), help="World backend (see `streambot run --help`).")
@click.option("--size", help="Output size WIDTHxHEIGHT (default: as `run`).")
@click.option("--fps", type=int, help="Output frames per second (default: as `run`).")
@click.option("--bitrate", type=int, help="Video bitrate in kbps (default: as `run`).")
@click.option(
    "--preview/--no-preview",
    default=True,
    show_default=True,
    help="A console page previewing the stream, as a streamer has open.",
)
@click.option(
    "--prompt-every",
    type=click.FloatRange(min=0.5),
    default=4.0,
    show_default=True,
    help="Seconds between prompts typed in the terminal (local chat).",
)
@click.option("--samples", type=click.Path(path_type=Path), help="Write one JSON line a second (RSS, fps, ...).")
@click.option(
    "--compare-ffmpeg/--no-compare-ffmpeg",
    default=True,
    show_default=True,
    help="Also time the ffmpeg command line on the same frames.",
)
def bench(
    seconds: float,
    as_json: bool,
    config_file: Path | None,
    preset: str | None,
    world: str | None,
    size: str | None,
    fps: int | None,
    bitrate: int | None,
    preview: bool,
    prompt_every: float,
    samples: Path | None,
    compare_ffmpeg: bool,
) -> None:
    """Run what `streambot run` runs for N seconds (console previewing, prompts
    typed every few seconds) and report its figures."""
    from .bench import run_bench

    setup_logging("warning")
    settings = _settings(config_file, size, fps, bitrate, world, preset)
    result = run_bench(
        settings,
        seconds=seconds,
        compare_ffmpeg=compare_ffmpeg,
        progress=not as_json,
        preview=preview,
        prompt_every_s=prompt_every,
        samples_to=samples,
    )
    if as_json:
        click.echo(json.dumps(result))
    else:
        for k, v in result.items():
            click.echo(f"{k:>28}: {v}")


def _register_optional() -> None:
    """Commands that live beside their own feature's code."""
    try:
        from .cli_audience import replay, timeline
    except ImportError:
        return
    cli.add_command(replay)
    cli.add_command(timeline)
    from .cli_voice import transcribe

    cli.add_command(transcribe)


_register_optional()


def main() -> None:
    lean_children()
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:
        from .checks import INPUT_ERRORS  # what start-up refuses with one sentence

        if isinstance(e, INPUT_ERRORS):
            fail(str(e))
        try:
            from .devserver import RtmpServerError

            if isinstance(e, RtmpServerError):
                fail(str(e))
        except ImportError:
            pass
        logging.getLogger("streambot").debug("unexpected failure", exc_info=True)
        fail(f"stopped on an unexpected error ({type(e).__name__}: {e}); details in {log_file()}.", 1)


if __name__ == "__main__":
    main()
