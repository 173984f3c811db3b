"""Websocket channels: each connected page gets its own small queue, filled
by the console's background tasks; a page too slow to keep up drops what is
stale (the preview keeps only its newest frame), never the stream."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TypeAlias

from aiohttp import WSCloseCode, WSMsgType, web

from ..secrets import redact

log = logging.getLogger(__name__)

Message: TypeAlias = str | bytes  # text is redacted on its way out; bytes (preview frames) are not


class Channel:
    def __init__(self, name: str, *, queue_size: int = 64, latest_only: bool = False) -> None:
        self.name = name
        self.queue_size = 1 if latest_only else queue_size
        self.latest_only = latest_only
        self.clients: dict[asyncio.Queue[Message], web.WebSocketResponse] = {}
        self.roles: dict[asyncio.Queue[Message], str | None] = {}

    def __len__(self) -> int:
        return len(self.clients)

    def publish(self, message: str | bytes, *, role: str | None = None) -> None:
        """To every page (or only to pages logged in with `role`)."""
        for q in list(self.clients):
            if role is not None and self.roles.get(q) != role:
                continue
            if q.full():
                if not self.latest_only:
                    # too far behind: drop the page; it reconnects and starts fresh
                    self._drop(q)
                    continue
                q.get_nowait()
            q.put_nowait(message)

    def _drop(self, q: asyncio.Queue[Message]) -> None:
        ws = self.clients.pop(q, None)
        self.roles.pop(q, None)
        if ws is not None:
            asyncio.ensure_future(ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow"))

    async def serve(
        self, request: web.Request, first: Iterable[str | bytes] = (), role: str | None = None
    ) -> web.WebSocketResponse:
        """Run one page's socket: `first` messages, then whatever is published."""
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=4096)
        await ws.prepare(request)
        q: asyncio.Queue[Message] = asyncio.Queue(self.queue_size)
        self.clients[q] = ws
        self.roles[q] = role
        sender = asyncio.create_task(self._pump(q, ws, list(first)))
        try:
            async for msg in ws:  # the pages only listen; this notices the close
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            self.clients.pop(q, None)
            self.roles.pop(q, None)
            sender.cancel()
        return ws

    @staticmethod
    async def _pump(q: asyncio.Queue[Message], ws: web.WebSocketResponse, first: list[Message]) -> None:
        try:
            for m in first:
                await _send(ws, m)
            while not ws.closed:
                await _send(ws, await q.get())
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass

    async def close_all(self) -> None:
        for ws in list(self.clients.values()):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"console stopping")
        self.clients.clear()


async def _send(ws: web.WebSocketResponse, message: str | bytes) -> None:
    if isinstance(message, bytes):
        await ws.send_bytes(message)
    else:
        await ws.send_str(redact(message))
