"""The JSON API under /api: what the page reads and every control it has.

Each handler is thin: it validates its body, calls one of the show's
controls with who is asking (the timeline records it), and answers with the
new state. The guard middleware has already checked the session, the CSRF
token and the origin for every POST and DELETE.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .. import paths
from ..config import ConfigError, load_world_file
from . import views
from .core import body, console_of, error, principal_of, reply
from .routes import _obj, openapi, route

STATE = {
    "type": "object",
    "description": "On air, the round with its candidates and votes, the world, the switches, "
    "and `meter`: chat's vote between anarchy and democracy (null unless "
    "voting.mode_vote is on).",
}
_num = {"type": ["number", "null"]}
BUDGET = {
    "type": ["object", "null"],
    "description": "The GPU budget ([budget]): hours a GPU world (stream, video) has been on air today, the daily "
    "limit, Twitch's viewer count, and why the sketch world is on air instead (standby). "
    "active is false for a world that uses no GPU; null when the show has no budget.",
    "required": [
        "active",
        "world",
        "day",
        "timezone",
        "used_s",
        "used_h",
        "budget_h",
        "left_h",
        "resets_in_s",
        "viewers",
        "idle_after_s",
        "idle_in_s",
        "standby",
        "why",
    ],
    "properties": {
        "active": {"type": "boolean"},
        "world": {"type": "string"},
        "day": {"type": "string", "description": "the budget's day (ISO date in its time zone)"},
        "timezone": {"type": "string"},
        "used_s": {"type": "number"},
        "used_h": {"type": "number"},
        "budget_h": {**_num, "description": "null: no daily limit"},
        "left_h": _num,
        "resets_in_s": {"type": "integer", "description": "seconds until the next day's budget"},
        "viewers": {"type": ["integer", "null"], "description": "as Twitch last said; null: unknown"},
        "idle_after_s": _num,
        "idle_in_s": {**_num, "description": "nobody watching: seconds until the sketch world"},
        "standby": {"enum": ["budget", "no_viewers", None]},
        "why": {"type": ["string", "null"]},
    },
}
HEALTH = {
    "type": "object",
    "description": "Frame rates, late/repeated/skipped frames, the x264 preset in use, "
    "bitrate, destinations, chat adapters, prompt-to-pixel latency, "
    "CPU and GPU memory, the soundtrack "
    "(audio: what plays, momentary/short-term/integrated LUFS, problems), "
    "and the GPU budget.",
    "properties": {"budget": BUDGET},
}
ACTION = _obj(("ok",), ok={"type": "boolean"}, frame={"type": "integer"}, state=STATE)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ForceBody(_Body):
    text: Annotated[str, Field(min_length=1, max_length=500)]


class BanBody(_Body):
    user: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\s:]+$")]
    platform: Literal["twitch", "discord", "local"] | None = None


class WorldBody(_Body):
    preset: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")] | None = None
    toml: Annotated[str, Field(min_length=1, max_length=64_000)] | None = None

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.preset is None) == (self.toml is None):
            raise ValueError("give either a preset name or a custom world file's text (toml)")
        return self


class RoundLengthBody(_Body):
    seconds: Annotated[float, Field(ge=3, le=120)]


class StoryBody(_Body):
    paused: bool


class ModeBody(_Body):
    mode: Literal["rounds", "anarchy"]


class KillBody(_Body):
    on: bool


class MusicBody(_Body):
    on: bool


class LockBody(_Body):
    locked: bool


def _done(request: web.Request, action: str, **extra: object) -> web.Response:
    console = console_of(request)
    console.metrics.actions.labels(action).inc()
    return reply({"ok": True, "frame": console.frame(), "state": console.state(), **extra})


# -- reading -----------------------------------------------------------------------


@route(
    "GET",
    "/api/openapi.json",
    access="public",
    summary="This API's OpenAPI document.",
    response={"type": "object"},
    tag="meta",
)
async def get_openapi(request: web.Request) -> web.Response:
    from .routes import ROUTES

    return reply(openapi(ROUTES.routes, console_of(request).version))


@route(
    "GET",
    "/api/session",
    access="viewer",
    summary="Who is logged in, and the CSRF token for actions.",
    response=_obj(
        ("role",),
        role={"type": "string"},
        actor={"type": "string"},
        csrf={"type": ["string", "null"], "description": "null for a bearer token (no CSRF then)"},
    ),
    tag="auth",
)
async def get_session(request: web.Request) -> web.Response:
    p = principal_of(request)
    return reply({"role": p.role, "actor": p.actor, "csrf": p.session.csrf if p.session else None})


@route(
    "GET", "/api/state", access="viewer", summary="On air, the countdown, the candidates with votes.", response=STATE
)
async def get_state(request: web.Request) -> web.Response:
    return reply(console_of(request).state())


@route("GET", "/api/health", access="viewer", summary="How the broadcast is doing.", response=HEALTH)
async def get_health(request: web.Request) -> web.Response:
    return reply(console_of(request).health())


@route(
    "GET",
    "/api/presets",
    access="viewer",
    summary="The preset worlds.",
    response={
        "type": "array",
        "items": _obj(name={"type": "string"}, title={"type": "string"}, description={"type": "string"}),
    },
)
async def get_presets(request: web.Request) -> web.Response:
    return reply(console_of(request).presets)


@route(
    "GET",
    "/api/logs",
    access="admin",
    summary="Recent log lines (secrets removed), oldest first.",
    query=(("after", "only lines after this sequence number"),),
    response={"type": "array", "items": {"type": "object"}},
)
async def get_logs(request: web.Request) -> web.Response:
    try:
        after = int(request.query.get("after", "0"))
    except ValueError:
        raise error(400, "after: must be a whole number") from None
    return reply(console_of(request).logs.since(after))


@route(
    "GET",
    "/api/timeline",
    access="admin",
    summary="This session's recent actions, newest first, with who.",
    response={
        "type": "array",
        "items": _obj(
            ago_s={"type": "number"}, actor={"type": "string"}, action={"type": "string"}, detail={"type": "string"}
        ),
    },
)
async def get_timeline(request: web.Request) -> web.Response:
    return reply(views.timeline(console_of(request).show))


@route(
    "GET",
    "/api/share",
    access="admin",
    summary="The read-only viewer link and the OBS overlay URL.",
    response=_obj(viewer={"type": "string"}, overlay={"type": "string"}),
    tag="auth",
)
async def get_share(request: web.Request) -> web.Response:
    console = console_of(request)
    base = f"{request.scheme}://{request.host}"
    token = console.tokens.viewer
    return reply({"viewer": f"{base}/?token={token}", "overlay": f"{base}/overlay?token={token}"}, redacted=False)


# -- the controls -----------------------------------------------------------------------


@route(
    "POST",
    "/api/force",
    access="admin",
    summary="Put a prompt on air now (every moderation layer still applies).",
    body=ForceBody,
    response=ACTION,
    tag="controls",
)
async def force(request: web.Request) -> web.Response:
    b = await body(request, ForceBody)
    console = console_of(request)
    if not console.show.force(b.text, actor=principal_of(request).actor):
        raise error(400, "That prompt can't go on air.")
    return _done(request, "force")


@route(
    "POST",
    "/api/round/skip",
    access="admin",
    summary="End the round now, with no winner.",
    response=ACTION,
    tag="controls",
)
async def skip_round(request: web.Request) -> web.Response:
    console_of(request).show.skip_round(actor=principal_of(request).actor)
    return _done(request, "skip")


@route(
    "POST",
    "/api/candidates/{id}/approve",
    access="admin",
    summary="Approve a candidate waiting for a moderator (approval mode).",
    response=ACTION,
    tag="controls",
)
async def approve(request: web.Request) -> web.Response:
    cid = _cid(request)
    if not console_of(request).show.approve(cid, actor=principal_of(request).actor):
        raise error(404, f"There is no candidate #{cid} in this round.")
    return _done(request, "approve")


@route(
    "POST",
    "/api/candidates/{id}/reject",
    access="admin",
    summary="Reject a candidate (it leaves the round).",
    response=ACTION,
    tag="controls",
)
async def reject(request: web.Request) -> web.Response:
    cid = _cid(request)
    if not console_of(request).show.reject(cid, actor=principal_of(request).actor):
        raise error(404, f"There is no candidate #{cid} in this round.")
    return _done(request, "reject")


def _cid(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 9:
        raise error(400, "id: must be a candidate id")
    return int(raw)


@route(
    "POST",
    "/api/bans",
    access="admin",
    summary="Ban a viewer (on one platform, or everywhere).",
    body=BanBody,
    response=ACTION,
    tag="controls",
)
async def ban(request: web.Request) -> web.Response:
    b = await body(request, BanBody)
    console_of(request).show.ban(b.user, actor=principal_of(request).actor, platform=b.platform)
    return _done(request, "ban")


@route(
    "DELETE",
    "/api/bans/{user}",
    access="admin",
    summary="Lift a ban.",
    query=(("platform", "twitch, discord or local; none: everywhere"),),
    response=ACTION,
    tag="controls",
)
async def unban(request: web.Request) -> web.Response:
    user = request.match_info["user"]
    platform = request.query.get("platform") or None
    if platform not in (None, "twitch", "discord", "local") or not re.fullmatch(r"[^\s]{1,120}", user):
        raise error(400, "Give a user name, and a platform of twitch, discord or local (or none).")
    if ":" in user and platform is None:  # a ban key as listed: "twitch:name"
        platform, user = user.split(":", 1)
    console_of(request).show.unban(user, actor=principal_of(request).actor, platform=platform)
    return _done(request, "unban")


@route(
    "POST",
    "/api/world",
    access="admin",
    summary="Switch to a preset world, or load a custom world file (its TOML text).",
    body=WorldBody,
    response=ACTION,
    tag="controls",
)
async def switch_world(request: web.Request) -> web.Response:
    b = await body(request, WorldBody)
    console = console_of(request)
    target = b.preset if b.preset is not None else _save_custom_world(b.toml or "")
    try:
        console.show.switch_world(target, actor=principal_of(request).actor)
    except ConfigError as e:
        raise error(400, str(e)) from None
    return _done(request, "world")


def _save_custom_world(text: str) -> str:
    """Check an uploaded world file, then keep it (worlds/NAME.toml) for the world to load."""
    folder = paths.worlds_dir()
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".toml", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            spec = load_world_file(Path(tmp))
        except ConfigError as e:
            raise error(400, str(e).replace(tmp, "the world file")) from None
        final = folder / f"{spec.name}.toml"
        os.replace(tmp, final)
        return str(final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@route(
    "POST",
    "/api/round-length",
    access="admin",
    summary="Change how long a voting round lasts.",
    body=RoundLengthBody,
    response=ACTION,
    tag="controls",
)
async def round_length(request: web.Request) -> web.Response:
    b = await body(request, RoundLengthBody)
    try:
        console_of(request).show.set_round_length(b.seconds, actor=principal_of(request).actor)
    except ValueError as e:  # shorter than the stream delay and grace
        raise error(400, f"seconds: {e}") from None
    return _done(request, "round_length")


@route(
    "POST",
    "/api/story",
    access="admin",
    summary="Pause or resume the world's own story.",
    body=StoryBody,
    response=ACTION,
    tag="controls",
)
async def story(request: web.Request) -> web.Response:
    b = await body(request, StoryBody)
    console_of(request).show.pause_story(b.paused, actor=principal_of(request).actor)
    return _done(request, "story")


@route(
    "POST",
    "/api/mode",
    access="admin",
    summary="Voting rounds, or anarchy (every accepted prompt straight on air).",
    body=ModeBody,
    response=ACTION,
    tag="controls",
)
async def mode(request: web.Request) -> web.Response:
    b = await body(request, ModeBody)
    console_of(request).show.set_mode(b.mode, actor=principal_of(request).actor)
    return _done(request, "mode")


@route(
    "POST",
    "/api/lock",
    access="admin",
    summary="Stop (or start again) accepting prompts and votes.",
    body=LockBody,
    response=ACTION,
    tag="controls",
)
async def lock(request: web.Request) -> web.Response:
    b = await body(request, LockBody)
    console_of(request).show.lock(b.locked, actor=principal_of(request).actor)
    return _done(request, "lock")


@route(
    "POST",
    "/api/kill-switch",
    access="admin",
    summary="Off air at once: a 'be right back' slate replaces the picture and prompts stop.",
    body=KillBody,
    response=ACTION,
    tag="controls",
)
async def kill_switch(request: web.Request) -> web.Response:
    b = await body(request, KillBody)
    console_of(request).show.kill_switch(b.on, actor=principal_of(request).actor)
    return _done(request, "kill_switch")


# -- sessions ----------------------------------------------------------------------

SESSIONS = _obj(
    ("sessions",),
    sessions={
        "type": "array",
        "items": _obj(
            ("id", "role", "actor", "created", "expires", "current"),
            id={"type": "string", "description": "a handle to revoke it by (not a credential)"},
            role={"type": "string", "enum": ["viewer", "admin"]},
            actor={"type": "string"},
            created={"type": "number", "description": "Unix time"},
            expires={"type": "number", "description": "Unix time"},
            current={"type": "boolean", "description": "the session making this request"},
        ),
    },
)


def _sessions(request: web.Request) -> dict[str, Any]:
    me = principal_of(request).session
    return {
        "sessions": [
            {
                "id": s.handle,
                "role": s.role,
                "actor": s.actor,
                "created": round(s.created, 3),
                "expires": round(s.expires, 3),
                "current": me is not None and s.key == me.key,
            }
            for s in console_of(request).sessions.all_sessions()
        ]
    }


@route(
    "GET",
    "/api/sessions",
    access="admin",
    summary="Who is logged in (sessions outlive a restart).",
    response=SESSIONS,
    tag="auth",
)
async def list_sessions(request: web.Request) -> web.Response:
    return reply(_sessions(request))


@route(
    "DELETE",
    "/api/sessions/{id}",
    access="admin",
    summary="Log a session out (revoke it).",
    response=SESSIONS,
    tag="auth",
)
async def revoke_session(request: web.Request) -> web.Response:
    handle = request.match_info["id"]
    console = console_of(request)
    if not re.fullmatch(r"[0-9a-f]{8,64}", handle) or not console.sessions.revoke(handle):
        raise error(404, "There is no such session.")
    actor = principal_of(request).actor
    console.metrics.actions.labels("revoke_session").inc()
    console.show.record(actor, "revoke session", handle)
    return reply(_sessions(request))


@route(
    "POST",
    "/api/music",
    access="admin",
    summary="Music on or off (it fades); the world's weather always plays.",
    body=MusicBody,
    response=ACTION,
    tag="controls",
)
async def music(request: web.Request) -> web.Response:
    b = await body(request, MusicBody)
    console_of(request).show.set_music(b.on, actor=principal_of(request).actor)
    return _done(request, "music")
