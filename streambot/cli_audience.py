"""`streambot replay` and `streambot timeline`.

Both are plain `click.Command`s, registered on the main group with
`cli.add_command(replay)` / `cli.add_command(timeline)`. Their output (JSON
lines, chapter lines) is the one place this project prints; anything wrong
with the input ends in one sentence and a non-zero exit.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from .config import ConfigError, Settings, load_settings

log = logging.getLogger(__name__)


def _settings(config: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    try:
        return load_settings(config, overrides)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None


@click.command("replay")
@click.argument("chat", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Your settings file (voting and moderation are read from it).",
)
@click.option("--mode", type=click.Choice(["rounds", "anarchy"]), default=None, help="Override voting.mode.")
@click.option("--round-s", type=float, default=None, help="Override voting.round_s (3 to 120).")
@click.option("--stream-delay-s", type=float, default=None, help="Override voting.stream_delay_s.")
@click.option("--grace-s", type=float, default=None, help="Override voting.grace_s.")
@click.option("--no-embeddings", is_flag=True, help="Pool near-duplicates by words, not sentence embeddings.")
def replay(
    chat: Path,
    config: Path | None,
    mode: str | None,
    round_s: float | None,
    stream_delay_s: float | None,
    grace_s: float | None,
    no_embeddings: bool,
) -> None:
    """Feed a recorded chat log (JSON lines) through moderation and voting, in
    virtual time, and print one JSON object per round."""
    from .replay import ReplayError, read_chat
    from .replay import replay as run_replay

    voting = {
        k: v
        for k, v in {"mode": mode, "round_s": round_s, "stream_delay_s": stream_delay_s, "grace_s": grace_s}.items()
        if v is not None
    }
    settings = _settings(config, {"voting": voting} if voting else None)
    try:
        lines = read_chat(chat)
    except ReplayError as e:
        raise click.ClickException(str(e)) from None
    try:
        run_replay(lines, settings, sys.stdout, embeddings=not no_embeddings)
    except BrokenPipeError:  # `streambot replay log.jsonl | head`
        sys.stderr.close()


@click.command("timeline")
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Your settings file (voting.timeline names the database).",
)
@click.option(
    "--db",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The timeline database (overrides the settings).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["chapters", "jsonl", "text"]),
    default="text",
    show_default=True,
    help="chapters: 'HH:MM:SS prompt' lines for a VOD description.",
)
@click.option("--session", type=int, default=None, help="Which run of the show (default: the last one).")
def timeline(config: Path | None, db: Path | None, fmt: str, session: int | None) -> None:
    """Print the rounds and winners recorded in the timeline."""
    from .store import Store, StoreError, hms, resolve_path

    path = db if db is not None else resolve_path(_settings(config).voting.timeline)
    if not path.exists():
        raise click.ClickException(f"{path}: no timeline there yet (it is written while the show runs).")
    try:
        store = Store(path, background=False, session=False)
        try:
            if fmt == "chapters":
                for at, text in store.chapters(session):
                    click.echo(f"{hms(at)} {text}")
            elif fmt == "jsonl":
                for r in store.rounds(session):
                    click.echo(json.dumps(r, ensure_ascii=False))
            else:
                for r in store.rounds(session):
                    won = r["winner"] if r["winner"] else ("(skipped)" if r["skipped"] else "(no winner)")
                    by = f"  by {r['winner_user']} ({r['winner_votes']:g} votes)" if r["winner"] else ""
                    click.echo(f"round {r['number']:>4}  {len(r['candidates']):>3} candidates  {won}{by}")
        finally:
            store.close()
    except StoreError as e:
        raise click.ClickException(str(e)) from None
