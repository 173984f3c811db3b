"""`streambot transcribe FILE`: the command a recording would produce, as JSON.

For trying the voice path from outside: the same decoding, model and spoken
grammar that Discord voice and the console use, on one file, printed as
`{"text": ..., "command": "prompt"|"vote"|null, "argument": ...}`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from .config import ConfigError, load_settings

log = logging.getLogger(__name__)


@click.command("transcribe")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Your settings file ([voice] is read from it).",
)
@click.option("--model", default=None, help="A faster-whisper model name or folder instead of [voice] model.")
def transcribe(file: Path, config: Path | None, model: str | None) -> None:
    """Print the command a recording (wav, ogg/opus, mp3, webm ...) would produce, as JSON."""
    from .audience.voice import Transcriber, VoiceError, decode, parse_spoken

    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    try:
        settings = load_settings(config, {"voice": {"model": model}} if model is not None else None)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    s = settings.voice
    try:
        if file.is_dir():
            raise VoiceError(f"{file} is a folder, not a recording.")
        audio = decode(file)
        text = Transcriber.from_settings(s).transcribe(audio)
    except VoiceError as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps(parse_spoken(text, s.wake).as_dict(), ensure_ascii=False))
