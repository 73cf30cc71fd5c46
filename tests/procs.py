"""Whether a test's process is still running (a zombie waiting for its reaper counts as
gone: it runs nothing any more), read as devenv reads it (devenv.pids)."""

from __future__ import annotations

import time

from devenv import pids


def alive(pid: int) -> bool:
    """True while ``pid`` runs (not a zombie)."""
    return pids.alive(pid)


def gone(pid: int, wait: float = 5.0) -> bool:
    """True once ``pid`` no longer runs, waiting up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
