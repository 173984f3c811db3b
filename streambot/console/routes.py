"""Every console route with who may call it and what it takes and gives.

Handlers register here with `@route(...)`: the router, the access check (the
middleware reads `access`) and the OpenAPI document at /api/openapi.json all
come from the same table, so an undocumented or unguarded route cannot exist.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from .auth import COOKIE, CSRF_HEADER, Access

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    access: Access  # "public", "viewer" (or admin), "admin"
    summary: str
    tag: str = "console"
    body: type[BaseModel] | None = None  # the JSON request body
    response: dict[str, Any] | None = None  # JSON schema of a 200 answer
    query: tuple[tuple[str, str], ...] = ()  # (name, description) of optional query parameters
    content: str = "application/json"  # what a 200 answer is
    documented: bool = True  # pages and static files are left out of the API document


@dataclass
class Routes:
    routes: list[Route] = field(default_factory=list)

    def __call__(
        self,
        method: str,
        path: str,
        *,
        access: Access,
        summary: str,
        tag: str = "console",
        body: type[BaseModel] | None = None,
        response: dict[str, Any] | None = None,
        query: tuple[tuple[str, str], ...] = (),
        content: str = "application/json",
        documented: bool = True,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.routes.append(
                Route(method, path, handler, access, summary, tag, body, response, query, content, documented)
            )
            return handler

        return register

    def install(self, app: web.Application) -> dict[tuple[str, str], Route]:
        """Add every route to `app`; the (method, path) -> Route table for the guard."""
        table: dict[tuple[str, str], Route] = {}
        for r in self.routes:
            app.router.add_route(r.method, r.path, r.handler)
            table[(r.method, r.path)] = r
            if r.method == "GET":
                table[("HEAD", r.path)] = r
        return table


ROUTES = Routes()
route = ROUTES


# -- the OpenAPI document --------------------------------------------------------------


def _obj(required: tuple[str, ...] = (), **props: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    return out


OK = _obj(
    ("ok",), ok={"type": "boolean"}, frame={"type": "integer", "description": "the output frame when it happened"}
)
ERROR = _obj(("error",), error={"type": "string"})

_ERRORS = {
    "400": "Bad request (the body says why)",
    "401": "Not logged in, or a wrong token",
    "403": "Cross-site request, missing or wrong CSRF token, or a read-only session",
    "429": "Too many failed logins from this address; see Retry-After",
}


def openapi(routes: list[Route], version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for r in routes:
        if not r.documented:
            continue
        op: dict[str, Any] = {
            "summary": r.summary,
            "tags": [r.tag],
            "operationId": r.handler.__name__,
            "responses": {"200": {"description": "OK"}},
        }
        if r.content == "application/json":
            op["responses"]["200"]["content"] = {"application/json": {"schema": r.response or OK}}
        else:
            op["responses"]["200"]["content"] = {r.content: {}}
        for code, text in _ERRORS.items():
            if r.access == "public" and code in ("401", "403") and r.method == "GET":
                continue
            op["responses"][code] = {"description": text, "content": {"application/json": {"schema": ERROR}}}
        if _path_params(r.path):
            op["responses"]["404"] = {
                "description": "No such thing (the path names something that is not there)",
                "content": {"application/json": {"schema": ERROR}},
            }
        if r.access == "public":
            op["security"] = []
        elif r.method == "GET":
            op["security"] = [{"session": []}, {"bearer": []}] + ([{"viewerToken": []}] if r.access == "viewer" else [])
        else:
            op["security"] = [{"session": [], "csrf": []}, {"bearer": []}]
        op["x-access"] = r.access
        params = [
            {"name": n, "in": "query", "required": False, "description": d, "schema": {"type": "string"}}
            for n, d in r.query
        ]
        params += [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in _path_params(r.path)
        ]
        if params:
            op["parameters"] = params
        if r.body is not None:
            schema = r.body.model_json_schema()
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "streambot console API",
            "version": version,
            "description": (
                'The API the console page itself uses. Log in with POST /login (JSON {"token": ...}); '
                "the answer sets a session cookie and gives the CSRF token to send as "
                f"{CSRF_HEADER} with every POST and DELETE, from the console's own origin. "
                "Scripts send `Authorization: Bearer TOKEN` instead (the admin token for POST and DELETE; "
                "no CSRF token then); read-only GETs also take the viewer token as ?token=."
            ),
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": COOKIE},
                "csrf": {"type": "apiKey", "in": "header", "name": CSRF_HEADER},
                "bearer": {"type": "http", "scheme": "bearer"},
                "viewerToken": {"type": "apiKey", "in": "query", "name": "token"},
            },
        },
    }


def _path_params(path: str) -> list[str]:
    return re.findall(r"\{(\w+)", path)
