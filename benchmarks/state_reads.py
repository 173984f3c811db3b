"""How often the show's state is read while pages watch it.

Puts the app's own `Show` on air (the sketch world at 320x180, 15 fps, to a
file), serves its console on the same loop, opens `--pages` console pages and
one OBS overlay page (websocket clients, as a browser is), and counts, for
`--seconds`: how many times the voting round's snapshot was taken, how many
state messages each page received, and the process's CPU seconds. Prints one
JSON line.

    .venv/bin/python benchmarks/state_reads.py --seconds 20 --pages 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil
from aiohttp import web


async def measure(seconds: float, pages: int) -> dict:
    from streambot.app import Show, ShowOptions, build_world
    from streambot.config import load_settings, resolve_world
    from streambot.console import Tokens, create_app
    from streambot.voting import VotingEngine

    reads = 0
    snapshot = VotingEngine.snapshot

    def counted(self, *args, **kwargs):
        nonlocal reads
        reads += 1
        return snapshot(self, *args, **kwargs)

    VotingEngine.snapshot = counted  # type: ignore[method-assign]
    tmp = Path(tempfile.mkdtemp(prefix="state-reads-"))
    os.environ["XDG_DATA_HOME"], os.environ["XDG_CONFIG_HOME"] = str(tmp / "data"), str(tmp / "config")
    settings = load_settings(
        None,
        {
            "stream": {"size": "320x180", "fps": 15, "bitrate_kbps": 300},
            "world": {"sketch": {"embedder": None}},
            "voting": {"pool_embeddings": False, "timeline": str(tmp / "timeline.sqlite3")},
            "moderation": {"classifier": False, "semantic": False},
        },
    )
    show = Show(
        settings,
        resolve_world(settings.world.preset),
        build_world(settings),
        ShowOptions(outputs=[str(tmp / "out.flv")], chat_source=None),
    )
    await asyncio.to_thread(show.open)
    running = asyncio.create_task(show.run())
    tokens = Tokens.generate()
    runner = web.AppRunner(create_app(show, settings.console, tokens=tokens), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    received = {"state": 0, "overlay": 0}

    async def page(path: str, kind: str) -> None:
        async with aiohttp.ClientSession() as s, s.ws_connect(f"{base}{path}?token={tokens.viewer}") as ws:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                if kind == "overlay" or json.loads(msg.data).get("type") == "state":
                    received[kind] += 1

    clients = [asyncio.create_task(page("/ws/state", "state")) for _ in range(pages)]
    clients.append(asyncio.create_task(page("/ws/overlay", "overlay")))
    proc = psutil.Process()
    await asyncio.sleep(2)  # the pages connected, the first frames out
    reads0, got0, cpu0, t0 = reads, dict(received), sum(proc.cpu_times()[:2]), time.monotonic()
    await asyncio.sleep(seconds)
    wall = time.monotonic() - t0
    cpu = sum(proc.cpu_times()[:2]) - cpu0
    out = {
        "seconds": round(wall, 1),
        "pages": pages,
        "snapshot_reads_per_s": round((reads - reads0) / wall, 2),
        "state_messages_per_page_per_s": round((received["state"] - got0["state"]) / wall / max(1, pages), 2),
        "overlay_messages_per_s": round((received["overlay"] - got0["overlay"]) / wall, 2),
        "cpu_s_per_s": round(cpu / wall, 3),
    }
    for c in clients:
        c.cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    await runner.cleanup()
    show.stop()
    await running
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--pages", type=int, default=2)
    a = p.parse_args()
    print(json.dumps(asyncio.run(measure(a.seconds, a.pages))))


if __name__ == "__main__":
    main()
