"""What every child process of the show (a destination's muxer, the overlay's
drawing, the sentence model) does first: ignore the terminal's Ctrl-C, and
end when the show that started it is gone.

A show killed with SIGKILL closes nothing: a child blocked on a socket, or
on a queue whose writing end it holds itself (a ProcessPoolExecutor worker),
would run on unseen, still streaming or holding memory. Each child watches
its parent instead, and a restarted show starts from a clean machine.
"""

from __future__ import annotations

import os
import signal
import threading
import time


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
