"""Whether a recorded process is still the one devenv started, and stopping it.

A record keeps a process's pid with its start time (see :mod:`devenv.pids`); the pid
counts as the same process only while its start time still matches, so a pid reused by
something else is never signalled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from devenv import pids, proc

GRACE = 5.0  # seconds between SIGTERM and SIGKILL


def alive(rec: Mapping[str, Any]) -> bool:
    """Whether the process a record names still runs (that very process)."""
    return pids.is_same(int(rec["pid"]), str(rec.get("start_id") or ""))


def stop(rec: Mapping[str, Any], grace: float = GRACE) -> bool:
    """Stop the process group a record names (SIGTERM, SIGKILL what is left after
    ``grace``); False if nothing of it ran (then nothing is signalled).

    The group's id is its leader's pid; :func:`devenv.pids.group_members` tells a reused
    one (a stranger's group) from ours. A leader that exited can leave its group behind
    (children it started): those, started no earlier than it, are stopped."""
    since = pids.recorded_start(str(rec.get("start_id") or ""))
    if since is None:
        return False  # nothing to tell it from a stranger by
    return proc.kill_group(int(rec["pid"]), grace, since=since)


def live_owner(rec: Mapping[str, Any]) -> int | None:
    """The pid of the foreground ``devenv up`` a record names, if that very process still
    runs (a reused pid is someone else's: never signalled). Records written before the
    owner's start time was kept count when the pid is alive, as before."""
    owner = rec.get("owner")
    if not isinstance(owner, int):
        return None
    expected = rec.get("owner_start")
    if expected is None:
        return owner if pids.alive(owner) else None
    return owner if pids.is_same(owner, str(expected)) else None
