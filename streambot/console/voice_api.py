"""The console's push-to-talk: a clip from the browser's microphone in, the
transcript and its command out, and one click to put the command in the round.

The page records with MediaRecorder and uploads the clip as the request body
(webm/ogg Opus, or anything PyAV decodes). The clip is transcribed by the
show's voice worker, off the loop, and held; the command goes in only when
the streamer confirms it, as the streamer's own prompt or vote through the
same audience hub, moderation and voting as everyone's. Admin only, CSRF
checked by the guard like every action; size and length limits from [voice].
"""

from __future__ import annotations

import asyncio
import secrets

from aiohttp import web
from cachetools import FIFOCache

from ..audience.voice import LOADING, OFF, Heard, SpokenCommand, VoiceError, VoiceService, decode
from ..viewer import Viewer
from .core import console_of, error, principal_of, reply
from .routes import _obj, route

HEARD = _obj(
    ("id", "text", "command", "argument"),
    id={"type": "string"},
    text={"type": "string"},
    command={"type": ["string", "null"], "enum": ["prompt", "vote", None]},
    argument={"type": ["string", "integer", "null"]},
)
CONFIRMED = _obj(("ok", "reply"), ok={"type": "boolean"}, reply={"type": "string"}, kind={"type": "string"})

_HOLD = 20
_HELD: FIFOCache[str, tuple[str, SpokenCommand]] = FIFOCache(_HOLD)  # clip id -> (actor, SpokenCommand)


def _service(request: web.Request) -> VoiceService:
    service = console_of(request).show.voice
    if service is None or service.settings is None or service.state == "off":
        raise error(409, "Voice commands are off ([voice] enabled = false, or the speech model is missing).")
    if service.state == "loading":
        raise error(409, LOADING)
    return service


async def _clip(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise error(400, f"That clip is larger than {limit // 1000} kB.")
    data = bytearray()
    while chunk := await request.content.read(64 * 1024):
        data += chunk
        if len(data) > limit:
            raise error(400, f"That clip is larger than {limit // 1000} kB.")
    if not data:
        raise error(400, "The clip is empty.")
    return bytes(data)


@route(
    "GET",
    "/api/voice",
    access="viewer",
    tag="voice",
    summary="Is voice ready: the speech model (or that it is still loading), and Discord voice receive, "
    "one sentence each.",
    response=_obj(
        ("ready", "loading", "model", "discord"),
        ready={"type": "boolean"},
        loading={"type": "boolean"},
        model={"type": "string"},
        discord={"type": "string"},
    ),
)
async def voice_status(request: web.Request) -> web.Response:
    from ..audience.voice import discord_voice_note, model_note

    show = console_of(request).show
    settings = show.settings.voice
    service = show.voice
    state = service.state if service is not None else "off"
    if not settings.enabled:
        model = "Voice commands are off ([voice] enabled = false)."
    elif state == "loading":
        model = LOADING
    else:
        ok, model = await asyncio.to_thread(model_note, settings.model)
        if ok and state == "off":
            model = OFF
    _, discord = await asyncio.to_thread(discord_voice_note)
    return reply(
        {
            "ready": state == "ready",
            "loading": state == "loading",
            "model": model[0].upper() + model[1:],
            "discord": discord,
        }
    )


@route(
    "POST",
    "/api/voice",
    access="admin",
    tag="voice",
    summary="Transcribe a push-to-talk clip (the raw audio as the body); the command waits for a confirm.",
    response=HEARD,
)
async def hear_clip(request: web.Request) -> web.Response:
    service = _service(request)
    s = service.settings
    assert s is not None  # _service refuses a service without them
    data = await _clip(request, s.upload_max_bytes)
    import io

    try:
        audio = await asyncio.to_thread(decode, io.BytesIO(data), max_s=s.upload_max_s, name="That clip")
    except VoiceError as e:
        raise error(400, str(e)) from None
    actor = principal_of(request).actor
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Heard] = loop.create_future()

    def heard_it(heard: Heard, _reply: object) -> None:
        if not done.done():
            done.set_result(heard)

    service.hear(Viewer("console", actor, frozenset({"broadcaster"})), audio, submit=False, done=heard_it)
    heard = await asyncio.wait_for(done, 120)
    if heard.command is None:
        raise error(
            409,
            {"dropped": "The voice worker is busy; try again in a moment.", "loading": LOADING, "off": OFF}.get(
                heard.error, "That clip could not be transcribed."
            ),
        )
    clip_id = secrets.token_urlsafe(12)
    _HELD[clip_id] = (actor, heard.command)
    console_of(request).metrics.actions.labels("voice").inc()
    return reply({"id": clip_id, **heard.command.as_dict()})


@route(
    "POST",
    "/api/voice/{id}/confirm",
    access="admin",
    tag="voice",
    summary="Put a transcribed clip's command in the round, as the streamer's own.",
    response=CONFIRMED,
)
async def confirm_clip(request: web.Request) -> web.Response:
    service = _service(request)
    held = _HELD.pop(request.match_info["id"], None)
    actor = principal_of(request).actor
    if held is None or held[0] != actor:
        raise error(404, "There is no such clip waiting (it was confirmed already, or is too old).")
    command = held[1]
    if command.command is None:
        raise error(400, "That clip holds no command.")
    r = service.submit(Viewer("console", actor, frozenset({"broadcaster"})), command)
    if r is not None and service.audience is not None:
        r = await service.audience.settle(r)  # the idea's number once the safety screen has passed it
    console_of(request).metrics.actions.labels("voice_confirm").inc()
    return reply(
        {
            "ok": r is not None and r.kind in ("new", "pooled", "voted"),
            "reply": r.text if r else "",
            "kind": r.kind if r else "none",
        }
    )
