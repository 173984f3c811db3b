"""The pages and sockets: the console page, login and logout, the OBS overlay
page and its files, the live sockets, /healthz and /metrics."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ..onair import Overlay
from .auth import COOKIE, Role, Session
from .core import Principal, body, console_of, dumps, error, principal_of, reply
from .routes import _obj, route

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
OVERLAY_DIR = Path(__file__).resolve().parents[2] / "overlays"  # the OBS page's files, beside the overlay's fonts
FONTS = OVERLAY_DIR / "fonts"

CSP_CONSOLE = (
    "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; style-src 'self'; "
    "script-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
)
# the OBS page writes its @font-face rules and layout colours at run time
CSP_OVERLAY = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; font-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; script-src 'self'; base-uri 'self'; object-src 'none'"
)
_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
}
# the watch page: hls.js feeds the <video> through Media Source Extensions (blob: URLs) from a blob: worker
CSP_WATCH = CSP_CONSOLE.replace(
    "img-src 'self' blob: data:;", "img-src 'self' blob: data:; media-src 'self' blob:; worker-src 'self' blob:;"
)


def _csp(request: web.Request, policy: str) -> str:
    """Older Safari does not count ws:// of the page's own host as 'self': name it."""
    host = request.host
    if re.fullmatch(r"[A-Za-z0-9.\-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?", host):
        policy = policy.replace("connect-src 'self'", f"connect-src 'self' ws://{host} wss://{host}")
    return policy


def _file(path: Path, *, csp: str | None = None, cache: str = "no-cache") -> web.FileResponse:
    headers = {"Cache-Control": cache, "Content-Type": _TYPES.get(path.suffix, "application/octet-stream")}
    if csp:
        headers["Content-Security-Policy"] = csp
    return web.FileResponse(path, headers=headers)


def _listed(folder: Path, name: str) -> Path:
    """Only a file that is there by that exact name (no paths, no dot files)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}", name):
        raise web.HTTPNotFound()
    path = folder / name
    if not path.is_file():
        raise web.HTTPNotFound()
    return path


def _start_session(request: web.Request, role: Role, name: str, response: web.StreamResponse) -> Session:
    console = console_of(request)
    name = re.sub(r"[^\w .@-]", "", name, flags=re.UNICODE).strip()[:32]
    actor = f"console:{name or role}"
    session = console.sessions.create(role, actor)
    response.set_cookie(
        COOKIE,
        session.id,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
        max_age=int(console.sessions.ttl_s),
    )
    console.show.record(actor, "login", role)
    log.info("%s logged in to the console (%s)", actor, role)
    return session


def _failed(request: web.Request, why: str) -> None:
    console = console_of(request)
    console.limiter.failed(request.remote or "?")
    console.metrics.login_failures.inc()
    log.warning("console: %s from %s", why, request.remote)


# -- the console page and logging in -------------------------------------------------------


def _viewer_link(request: web.Request, back: str) -> None:
    """A read-only viewer link (?token=): trade the token for a session and drop
    it from the address bar; no session at all: the login page."""
    console = console_of(request)
    token = request.query.get("token")
    if token:
        wait = console.limiter.retry_after(request.remote or "?")
        if wait:
            raise web.HTTPSeeOther("/login?e=wait")
        if console.tokens.role_of(token) != "viewer":
            _failed(request, "wrong viewer link")
            raise web.HTTPSeeOther("/login?e=link")
        resp = web.HTTPSeeOther(back)
        _start_session(request, "viewer", "", resp)
        raise resp
    if principal_of(request).role is None:
        raise web.HTTPSeeOther("/login")


@route("GET", "/", access="public", summary="The console page (the login page when logged out).", documented=False)
async def index(request: web.Request) -> web.StreamResponse:
    _viewer_link(request, "/")
    return _file(STATIC / "index.html", csp=_csp(request, CSP_CONSOLE))


@route(
    "GET",
    "/watch",
    access="public",
    summary="The watch page: the stream itself, with sound, in the browser.",
    documented=False,
)
async def watch_page(request: web.Request) -> web.StreamResponse:
    _viewer_link(request, "/watch")
    return _file(STATIC / "watch.html", csp=_csp(request, CSP_WATCH))


@route(
    "GET",
    "/watch/hls/{name}",
    access="viewer",
    summary="The local server's HLS playlist and segments.",
    documented=False,
)
async def watch_hls(request: web.Request) -> web.StreamResponse:
    source = console_of(request).show.watch_source()
    name = request.match_info["name"]
    if source is None or not re.fullmatch(r"[A-Za-z0-9_-]{1,80}\.(m3u8|ts)", name):
        raise web.HTTPNotFound()
    return _file(_listed(source[0], name))


@route("GET", "/login", access="public", summary="The login page.", documented=False)
async def login_page(request: web.Request) -> web.StreamResponse:
    return _file(STATIC / "login.html", csp=_csp(request, CSP_CONSOLE))


@route("GET", "/static/{name}", access="public", summary="The console page's files.", documented=False)
async def static(request: web.Request) -> web.StreamResponse:
    return _file(_listed(STATIC, request.match_info["name"]))


@route("GET", "/favicon.ico", access="public", summary="The icon.", documented=False)
async def favicon(request: web.Request) -> web.StreamResponse:
    return _file(STATIC / "icon.svg", cache="public, max-age=86400")


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    token: Annotated[str, Field(min_length=1, max_length=200)]
    name: Annotated[str, Field(max_length=64)] = ""


@route(
    "POST",
    "/login",
    access="public",
    tag="auth",
    body=LoginBody,
    summary="Log in with the admin or the viewer token (JSON, or a form); sets the session cookie.",
    response=_obj(("role", "csrf"), role={"type": "string"}, actor={"type": "string"}, csrf={"type": "string"}),
)
async def login(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    form = request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data")
    wait = console.limiter.retry_after(request.remote or "?")
    if wait:
        if form:
            raise web.HTTPSeeOther(f"/login?e=wait&s={wait}")
        raise error(429, f"Too many failed logins; try again in {wait} s.", headers={"Retry-After": str(wait)})
    if form:
        data = await request.post()
        token, name = str(data.get("token", "")).strip(), str(data.get("name", ""))
    else:
        b = await body(request, LoginBody)
        token, name = b.token, b.name
    role = console.tokens.role_of(token)
    if role is None:
        _failed(request, "failed login")
        if form:
            raise web.HTTPSeeOther("/login?e=bad")
        raise error(401, "That token is not right.")
    if form:
        redirect = web.HTTPSeeOther("/")
        _start_session(request, role, name, redirect)
        raise redirect
    resp = web.json_response({})
    session = _start_session(request, role, name, resp)
    resp.text = dumps({"role": role, "actor": session.actor, "csrf": session.csrf})
    return resp


@route("POST", "/logout", access="viewer", tag="auth", summary="End this session.")
async def logout(request: web.Request) -> web.StreamResponse:
    p = principal_of(request)
    console = console_of(request)
    if p.session is not None:
        console.sessions.drop(p.session.id)
        console.show.record(p.actor, "logout", p.role or "")
    resp = reply({"ok": True})
    resp.del_cookie(COOKIE, path="/")
    return resp


# -- probes ------------------------------------------------------------------------------------


@route(
    "GET",
    "/healthz",
    access="public",
    tag="meta",
    summary="Liveness: 200 while the broadcast runs, 503 once it has stopped.",
    response=_obj(("status",), status={"type": "string"}, output_fps={"type": "number"}, off_air={"type": "boolean"}),
)
async def healthz(request: web.Request) -> web.Response:
    show = console_of(request).show
    h = show.health()
    if h is None or not show.streaming():
        return reply({"status": "stopped"}, status=503)
    return reply({"status": "ok", "output_fps": h.output_fps, "off_air": show.state().off_air})


@route(
    "GET",
    "/metrics",
    access="viewer",
    tag="meta",
    content="text/plain",
    summary="Prometheus metrics (Authorization: Bearer TOKEN for scrapers).",
)
async def metrics(request: web.Request) -> web.Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    from ..secrets import redact

    text = redact(console_of(request).metrics.render().decode("utf-8"))
    return web.Response(text=text, headers={"Content-Type": CONTENT_TYPE_LATEST})


# -- the OBS overlay page -----------------------------------------------------------------------


@route(
    "GET",
    "/overlay",
    access="viewer",
    tag="overlay",
    documented=False,
    summary="The overlay as a page for an OBS browser source (?token=VIEWER_TOKEN).",
)
async def overlay_page(request: web.Request) -> web.StreamResponse:
    return _file(OVERLAY_DIR / "obs.html", csp=_csp(request, CSP_OVERLAY))


@route(
    "GET",
    "/overlay/layout.json",
    access="viewer",
    tag="overlay",
    summary="The overlay layout the OBS page draws with (and the fonts it loads).",
    response={"type": "object"},
)
async def overlay_layout(request: web.Request) -> web.Response:
    return reply(console_of(request).show.overlay_layout())


@route("GET", "/overlay/fonts/{name}", access="public", summary="The overlay's fonts.", documented=False)
async def overlay_font(request: web.Request) -> web.StreamResponse:
    return _file(_listed(FONTS, request.match_info["name"]), cache="public, max-age=86400")


@route("GET", "/overlay/{name}", access="public", summary="The OBS page's script and style.", documented=False)
async def overlay_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in ("obs.js", "obs.css"):
        raise web.HTTPNotFound()
    return _file(OVERLAY_DIR / name)


def overlay_message(state: Overlay) -> str:
    return dumps(state.to_json())


@route(
    "GET",
    "/ws/overlay",
    access="viewer",
    tag="live",
    summary='Websocket: the overlay state (OverlayState JSON) whenever it changes; {"layout": ...} '
    "when the layout changes.",
    content="websocket",
)
async def ws_overlay(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    return await console.overlay_channel.serve(request, [overlay_message(console.show.overlay_state())])


@route(
    "GET",
    "/ws/state",
    access="viewer",
    tag="live",
    content="websocket",
    summary="Websocket: {type: state|health|logs|timeline, ...} messages for the console page.",
)
async def ws_state(request: web.Request) -> web.StreamResponse:
    from . import views

    console = console_of(request)
    p: Principal = principal_of(request)
    first = [
        dumps({"type": "hello", "role": p.role, "actor": p.actor}),
        dumps({"type": "state", **console.state()}),
        dumps({"type": "health", **console.health()}),
    ]
    if p.role == "admin":
        first.append(dumps({"type": "logs", "lines": console.logs.since(0)}))
        first.append(dumps({"type": "timeline", "actions": views.timeline(console.show)}))
    return await console.state_channel.serve(request, first, role=p.role)


@route(
    "GET",
    "/ws/preview",
    access="viewer",
    tag="live",
    content="websocket",
    summary="Websocket: the outgoing picture as binary JPEG messages, a few a second.",
)
async def ws_preview(request: web.Request) -> web.StreamResponse:
    return await console_of(request).preview_channel.serve(request)
