"""The console's aiohttp app (`create_app`) and its server on the show's loop.

`create_app(show, settings, tokens=...)` builds the app around one `Console`
state object; with `background=False` (tests) nothing runs by itself. The
background work are cleanup contexts: the broadcaster that pushes each
state the show publishes (the timeline each time it records an action;
health and logs, which are measurements, once a second) to
the open pages and the overlay, and the preview encoder, which observes the
frames going out. `ConsoleServer` runs the
app with AppRunner/TCPSite inside the show's own asyncio loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from importlib import metadata
from pathlib import Path

import click
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler

from .. import paths
from ..config import ConfigError, ConsoleSettings, list_presets
from ..secrets import redact
from ..surface import ShowSurface
from . import api, pages, views, voice_api  # noqa: F401  (their routes register on import)
from .address import parse_address
from .auth import (
    COOKIE,
    CSRF_HEADER,
    LoginLimiter,
    Sessions,
    Tokens,
    csrf_ok,
    load_tokens,
    same_origin,
)
from .core import CONSOLE, PRINCIPAL, Console, Principal, dumps, error
from .logbuffer import LogBuffer
from .metrics import Metrics
from .preview import Preview
from .routes import ROUTES, Route

log = logging.getLogger(__name__)

ROUTE_TABLE = web.AppKey("routes", dict[tuple[str, str], Route])
SAFE = ("GET", "HEAD", "OPTIONS")


def create_app(
    show: ShowSurface, settings: ConsoleSettings, *, tokens: Tokens, background: bool = True
) -> web.Application:
    """The console for `show`; `background=False` leaves out the broadcaster
    and the preview (tests drive the show and read the API themselves)."""
    app = web.Application(middlewares=[_errors, _guard], client_max_size=256 * 1024)
    stream = show.settings.stream
    preview = Preview(
        stream.dimensions,
        stream.fps,
        fps=settings.preview_fps,
        width=settings.preview_width,
        quality=settings.preview_quality,
    )
    console = Console(
        show=show,
        settings=settings,
        tokens=tokens,
        sessions=Sessions(settings.session_hours * 3600, path=sessions_file(settings)),
        limiter=LoginLimiter(settings.login_attempts, settings.login_window_s),
        logs=LogBuffer(settings.log_lines),
        metrics=None,  # type: ignore[arg-type]  # needs the console for its figures: set below
        system=views.System(),
        preview=preview,
        presets=[{"name": w.name, "title": w.title, "description": w.description} for w in list_presets()],
        version=_version(),
    )
    console.metrics = Metrics(
        show, lambda: {f"console_{k}": v for k, v in console.figures().items() if isinstance(v, (int, float))}
    )
    app[CONSOLE] = console
    app[ROUTE_TABLE] = ROUTES.install(app)
    app.on_response_prepare.append(_security_headers)
    app.cleanup_ctx.append(_log_lines)
    if background:
        app.cleanup_ctx.append(_broadcaster)
        app.cleanup_ctx.append(_preview)
    app.on_shutdown.append(_close_sockets)
    app.on_cleanup.append(_close_sessions)
    return app


def sessions_file(settings: ConsoleSettings) -> Path:
    return paths.configured(settings.sessions_file, paths.console_sessions_file())


async def _close_sessions(app: web.Application) -> None:
    app[CONSOLE].sessions.close()


def _version() -> str:
    try:
        return metadata.version("streambot")
    except metadata.PackageNotFoundError:
        return "0"


# -- middleware ---------------------------------------------------------------------------------


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status >= 400 and e.content_type != "application/json" and not request.path == "/":
            raise error(e.status, e.reason) from None
        raise
    except asyncio.CancelledError:
        raise
    except Exception:  # one failing action must not take the console down
        log.exception("console: %s %s failed", request.method, request.path)
        raise error(500, "The console hit an unexpected error; the details are in the log.") from None


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Who is asking, and may they? Every route says its access in `routes`."""
    console = request.app[CONSOLE]
    resource = request.match_info.route.resource
    r = request.app[ROUTE_TABLE].get((request.method, resource.canonical)) if resource is not None else None
    if r is None:
        return await handler(request)  # the router's own 404 / 405
    session = console.sessions.get(request.cookies.get(COOKIE))
    p = Principal(session.role, session) if session is not None else Principal(None)
    own = f"{request.scheme}://{request.host}"
    origin, referer = request.headers.get("Origin"), request.headers.get("Referer")
    origin_ok = same_origin(origin, referer, own, console.settings.allowed_origins)
    if request.method not in SAFE:
        if r.access == "public":  # logging in: a browser always says where a POST comes from
            if (origin or referer) and not origin_ok:
                raise error(403, "Cross-site request refused.")
        elif _bearer(request) is not None:
            # A script with the admin token. Browsers never add this header on
            # their own (and get no CORS permission to), so no CSRF check applies.
            p = _token_principal(request, console)
            if p.role != "admin":
                raise error(403, "Changing the show needs the admin token.")
        else:
            if session is None:
                raise error(401, "Log in first.")
            if not origin_ok:
                raise error(403, "Cross-site request refused.")
            if not csrf_ok(session, request.headers.get(CSRF_HEADER)):
                raise error(403, "Missing or wrong CSRF token.")
            if r.access == "admin" and session.role != "admin":
                raise error(403, "This session is read-only.")
    else:
        if p.role is None and r.access != "public":
            p = _token_principal(request, console)
        if r.access != "public" and p.role is None:
            raise error(401, "Log in first.")
        if r.access == "admin" and p.role != "admin":
            raise error(403, "This needs the admin.")
        if request.headers.get("Upgrade", "").lower() == "websocket" and origin and not origin_ok:
            raise error(403, "Cross-site request refused.")
    request[PRINCIPAL] = p
    return await handler(request)


def _bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else None


def _token_principal(request: web.Request, console: Console) -> Principal:
    """A request may carry a token: `Authorization: Bearer` (either token; a
    state-changing call needs the admin's), or on a read-only GET `?token=`
    (the viewer token only: the admin's stays out of URLs)."""
    bearer = _bearer(request)
    token = bearer or request.query.get("token")
    if not token:
        return Principal(None)
    client = request.remote or "?"
    wait = console.limiter.retry_after(client)
    if wait:
        raise error(429, f"Too many wrong tokens; try again in {wait} s.", headers={"Retry-After": str(wait)})
    role = console.tokens.role_of(token)
    if role is None or (bearer is None and role == "admin"):
        console.limiter.failed(client)
        console.metrics.login_failures.inc()
        log.warning("console: wrong token from %s", client)
        raise error(401, "That token is not right.")
    return Principal(role)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    h = response.headers
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "same-origin")
    h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    h.setdefault("Cache-Control", "no-store")
    if not request.path.startswith("/overlay"):
        h.setdefault("X-Frame-Options", "DENY")


# -- background work (cleanup contexts) ----------------------------------------------------------


async def _log_lines(app: web.Application) -> AsyncIterator[None]:
    logs = app[CONSOLE].logs
    logs.install()
    quiet = _MalformedRequests()
    server_log = logging.getLogger("aiohttp.server")
    server_log.addFilter(quiet)
    yield
    server_log.removeFilter(quiet)
    logs.uninstall()


class _MalformedRequests(logging.Filter):
    """A request aiohttp cannot even parse (a bad header, a broken request
    line) is the client's fault and already answered with a 400: one line in
    the log, not a traceback on the streamer's terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args = "console: refused a malformed request (%s)", (exc.message.splitlines()[0],)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


async def _broadcaster(app: web.Application) -> AsyncIterator[None]:
    console = app[CONSOLE]
    tasks = [
        asyncio.create_task(_push_states(console), name="console states"),
        asyncio.create_task(_push_figures(console), name="console figures"),
        asyncio.create_task(_push_timeline(console), name="console timeline"),
    ]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _push_states(console: Console, min_gap: float = 0.2) -> None:
    """Push each state the show publishes to the open pages (the console's and
    the OBS overlay's) when it changes what they show: at most one every
    `min_gap`, always the newest (a page never sees a stale state)."""
    show = console.show
    last: dict[str, object] = {}
    last_error = 0.0
    with show.states.subscribe() as states:
        async for st in states:
            try:
                if console.overlay_channel.clients:
                    message = pages.overlay_message(show.overlay_state(st))
                    if message != last.get("overlay"):
                        last["overlay"] = message
                        console.overlay_channel.publish(message)
                    if last.get("layout") is not None and st.layout != last["layout"]:
                        console.overlay_channel.publish(dumps({"layout": show.overlay_layout()}))
                last["layout"] = st.layout
                if console.state_channel.clients:
                    message = dumps({"type": "state", **views.state(show, st)})
                    if message != last.get("state"):
                        last["state"] = message
                        console.state_channel.publish(message)
            except Exception:
                if time.monotonic() - last_error > 60:
                    last_error = time.monotonic()
                    log.exception("console: the live update failed")
            await asyncio.sleep(min_gap)  # pacing: the next state taken is the newest


async def _push_figures(console: Console, interval: float = 1.0) -> None:
    """Health and new log lines, once a second: measurements, which change
    with time itself, not the show's state."""
    last_log = 0
    last_error = 0.0
    while True:
        await asyncio.sleep(interval)
        channel = console.state_channel
        if not channel.clients:
            continue
        try:
            channel.publish(dumps({"type": "health", **console.health()}))
            lines = console.logs.since(last_log)
            if lines:
                last_log = lines[-1]["seq"]
                channel.publish(dumps({"type": "logs", "lines": lines}), role="admin")
        except Exception:
            if time.monotonic() - last_error > 60:
                last_error = time.monotonic()
                log.exception("console: the live update failed")


async def _push_timeline(console: Console) -> None:
    """The timeline, to the admins' pages, each time the show records an action
    (a page gets it whole when it connects: see pages.py)."""
    show = console.show
    last_timeline = ""
    last_error = 0.0
    with show.timeline_changes.subscribe(current=False) as changes:
        async for _ in changes:  # a burst of actions is read once: the subscription keeps the newest
            channel = console.state_channel
            if not channel.clients:
                continue
            try:
                actions = dumps({"type": "timeline", "actions": views.timeline(show)})
                if actions != last_timeline:
                    last_timeline = actions
                    channel.publish(actions, role="admin")
            except Exception:
                if time.monotonic() - last_error > 60:
                    last_error = time.monotonic()
                    log.exception("console: the live update failed")


async def _preview(app: web.Application) -> AsyncIterator[None]:
    console = app[CONSOLE]
    preview, channel = console.preview, console.preview_channel
    if preview is None or console.show.frame() is None:
        yield
        return
    stop_observing = console.show.observe_frames(preview.observe)
    task = asyncio.create_task(preview.run(lambda: bool(channel.clients), channel.publish), name="console preview")
    yield
    stop_observing()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _close_sockets(app: web.Application) -> None:
    console = app[CONSOLE]
    for channel in (console.state_channel, console.overlay_channel, console.preview_channel):
        await channel.close_all()


# -- the server ---------------------------------------------------------------------------------


class ConsoleServer:
    """The app on AppRunner/TCPSite, in the caller's (the show's) loop."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host, self.port = host, port
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=2)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        try:
            await site.start()
        except OSError as e:
            await self.runner.cleanup()
            self.runner = None
            raise ConfigError(
                f"The console cannot listen on {self.host}:{self.port} ({e.strerror or e}); choose another "
                "address with --console HOST:PORT, or start without it with --no-console."
            ) from None
        port = self.runner.addresses[0][1]
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
        return self.url

    async def stop(self) -> None:
        if self.runner is not None:
            runner, self.runner = self.runner, None
            await runner.cleanup()


class PreparedConsole:
    """The console made before the show goes on air (its tokens and its app:
    aiohttp's server and every route, a few tenths of a second of CPU, and no
    loop needed), started on the show's loop once the first frames are out."""

    def __init__(self, show: ShowSurface, address: str, *, secrets: dict[str, str]) -> None:
        self.show = show
        self.settings = show.settings.console
        self.host, self.port = parse_address(address)
        self.tokens = load_tokens(self.settings.token_file, secrets)
        self.app = create_app(show, self.settings, tokens=self.tokens)

    def close(self) -> None:
        """A console never started (the show stopped before going on air)."""
        self.app[CONSOLE].sessions.close()

    async def start(self) -> ConsoleServer:
        """The server on this loop; the URL (and a new admin token, once) on the
        terminal, never in the log."""
        show, settings, tokens, host, port = self.show, self.settings, self.tokens, self.host, self.port
        server = ConsoleServer(self.app, host, port)
        try:
            url = await server.start()
        except ConfigError:
            if (host, port) != (settings.host, settings.port) or port == 0:
                raise  # an address asked for on the command line: fail loudly
            # the default port is taken (another show, another program): any free one will do
            server = ConsoleServer(create_app(show, settings, tokens=tokens), host, 0)
            url = await server.start()
            click.echo(f"  Console: port {port} is taken; using another.", err=True)
        if host in ("0.0.0.0", "::"):
            url_note = f"{url}  (listening on every interface)"
        else:
            url_note = url
        click.echo(f"  Console: {url_note}", err=True)
        if show.watch_source() is not None:
            click.echo(f"  Watch:   {url}watch?token={tokens.viewer}   (the stream itself, in any browser)", err=True)
        if tokens.created:
            click.echo(
                f"  Console admin token (shown once; kept owner-only in {tokens.admin_file}):\n      {tokens.admin}",
                err=True,
            )
        elif tokens.admin_file is not None:
            click.echo(f"  Log in with the admin token in {tokens.admin_file}", err=True)
        else:
            click.echo("  Log in with the admin token from STREAMBOT_ADMIN_TOKEN", err=True)
        log.info("console on %s", redact(url))
        return server


async def start_console(show: ShowSurface, address: str, *, secrets: dict[str, str]) -> ConsoleServer:
    """Tokens, the app, the server on this loop (`PreparedConsole`, at once)."""
    return await PreparedConsole(show, address, secrets=secrets).start()
