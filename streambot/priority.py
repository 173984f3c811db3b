"""Which work yields the CPU when the show has too little of it.

On a machine the show keeps busy (two cores: the world, x264 and the page
preview all want one), the frame clock and the encoder must win: a frame
the world renders late is shown once more (a repeated frame the viewer
barely sees), a tick the clock starts late is a frame sent late or skipped
(a stutter on every viewer's screen). So the world's renderer, the console's
preview and the sentence model run at a lower scheduling priority than the
clock. Linux schedules each thread on its own, so a thread can lower its
own priority; elsewhere this is a no-op.
"""

from __future__ import annotations

import os
import threading

BACKGROUND = 10  # how many nice steps below the show work that may fall behind the clock runs


def yield_to_clock(steps: int = BACKGROUND) -> None:
    """Lower the calling thread's priority `steps` below the process's own
    (a show started with `nice -n -5` keeps its work in the same order)."""
    try:
        tid = threading.get_native_id()
        process = os.getpriority(os.PRIO_PROCESS, os.getpid())
        if os.getpriority(os.PRIO_PROCESS, tid) < process + steps:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, process + steps))
    except (OSError, AttributeError):  # no per-thread priorities here, or not allowed: run as is
        pass
