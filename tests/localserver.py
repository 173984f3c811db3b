"""A base for the mock platform servers (Twitch, Discord): an aiohttp app on a
free loopback port, with its websockets closed on stop; and a wait for a condition."""

from __future__ import annotations

import asyncio

from aiohttp import web


class LocalServer:
    def __init__(self) -> None:
        self.app = web.Application()
        self.sockets: list[web.WebSocketResponse] = []
        self.port = 0

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for ws in self.sockets:
            await ws.close()
        await self.runner.cleanup()


async def until(pred, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.02)
