"""The console's one state object (`Console`, the app's typed state) and the
small helpers handlers share: JSON answers, request bodies, who is asking."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ..config import ConsoleSettings
from ..secrets import redact
from ..surface import ShowSurface
from . import views
from .auth import LoginLimiter, Role, Session, Sessions, Tokens
from .live import Channel
from .logbuffer import LogBuffer
from .metrics import Metrics
from .preview import Preview

M = TypeVar("M", bound=BaseModel)


@dataclass
class Principal:
    role: Role | None
    session: Session | None = None

    @property
    def actor(self) -> str:
        if self.session is not None:
            return self.session.actor
        return f"console:{self.role or 'anonymous'}"


@dataclass
class Console:
    show: ShowSurface
    settings: ConsoleSettings
    tokens: Tokens
    sessions: Sessions
    limiter: LoginLimiter
    logs: LogBuffer
    metrics: Metrics
    system: views.System
    preview: Preview | None
    state_channel: Channel = field(default_factory=lambda: Channel("state"))
    overlay_channel: Channel = field(default_factory=lambda: Channel("overlay"))
    preview_channel: Channel = field(default_factory=lambda: Channel("preview", latest_only=True))
    presets: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    version: str = "0"

    def state(self) -> dict[str, Any]:
        return views.state(self.show)

    def health(self) -> dict[str, Any]:
        return views.health(self.show, self.system, {"console": self.figures()})

    def figures(self) -> dict[str, Any]:
        return {
            "pages": len(self.state_channel),
            "overlay_pages": len(self.overlay_channel),
            "preview_clients": len(self.preview_channel),
            "sessions": len(self.sessions),
            "preview": self.preview.figures() if self.preview is not None else None,
        }

    def frame(self) -> int | None:
        return self.show.frame()


CONSOLE = web.AppKey("console", Console)
PRINCIPAL = web.RequestKey("principal", Principal)  # set by the guard middleware


def console_of(request: web.Request) -> Console:
    return request.app[CONSOLE]


def principal_of(request: web.Request) -> Principal:
    return request.get(PRINCIPAL) or Principal(None)


def dumps(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def reply(
    data: object, *, status: int = 200, headers: Mapping[str, str] | None = None, redacted: bool = True
) -> web.Response:
    """A JSON answer; registered secrets never leave in one (`redacted=False`
    only for the admin's own share links)."""
    text = dumps(data)
    return web.Response(
        text=redact(text) if redacted else text, status=status, content_type="application/json", headers=headers
    )


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.HTTPException:
    """An HTTP error with a JSON body {"error": ...} (raise it)."""
    cls = _ERRORS.get(status, web.HTTPBadRequest)
    return cls(text=dumps({"error": redact(message)}), content_type="application/json", headers=headers)


_ERRORS = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
    429: web.HTTPTooManyRequests,
    500: web.HTTPInternalServerError,
}


async def body(request: web.Request, model: type[M]) -> M:
    """The request's JSON body, validated; a 400 that says what is wrong otherwise."""
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise error(400, "The body must be JSON.") from None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise error(400, f"{where}: {err['msg']}") from None
