"""What every child process of the show (a destination's muxer, the overlay's
drawing, the soundtrack, the sentence and speech models) does first: ignore the
terminal's Ctrl-C, and end when the show that started it is gone; and how the
command line keeps their start cheap (`lean_children`).

A show killed with SIGKILL closes nothing: a child blocked on a socket, or
on a queue whose writing end it holds itself (a ProcessPoolExecutor worker),
would run on unseen, still streaming or holding memory. Each child watches
its parent instead, and a restarted show starts from a clean machine.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path


def lean_children() -> None:
    """Children started with 'spawn' do not run the command line's module again.

    A spawned child normally imports the parent's main module first (here the
    command line: click, every setting's model) before its own target's, about
    0.4 s of CPU each; five children start with the show, on two cores beside
    its first frame. Every child target of the show lives in its own importable
    module, so the main module is not needed there: with no `__spec__` or
    `__file__` on `__main__`, multiprocessing's spawn leaves it out."""
    main = sys.modules.get("__main__")
    if main is None:
        return
    if getattr(main.__spec__, "name", None) == "streambot.cli":  # python -m streambot.cli
        main.__spec__ = None
        main.__dict__.pop("__file__", None)
    elif Path(main.__dict__.get("__file__") or "").stem == "streambot":  # the console script: it only calls `main`
        main.__dict__.pop("__file__", None)


def _watch(parent: int, interval: float) -> None:
    while True:
        time.sleep(interval)  # a poll, not a wait on anything: the parent leaves no event behind
        if os.getppid() != parent:
            os._exit(0)


def become_child(interval: float = 1.0) -> None:
    """Ctrl-C reaches the whole process group; the show stops this process
    itself, after its last packet. And no child outlives the show."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch, args=(os.getppid(), interval), name="parent watch", daemon=True).start()
