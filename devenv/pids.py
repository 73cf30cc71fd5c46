"""Which processes run, and which of them are ours: process identity, process groups, port
owners and environment tags, read through psutil (``/proc`` on Linux, the kernel's process
table on macOS, where there is no ``/proc``).

The one module that imports psutil, function-locally: the import costs tens of
milliseconds that ``devenv --help`` should not pay.

A pid alone does not name a process: once it exits, the kernel hands its pid to another
one. A pid with its start time (:func:`start_id`) does, so devenv never signals a process
it only has an old pid of.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psutil

# How far two readings of one process's start time may differ (seconds). psutil gives a
# start time as the boot time plus the process's age since boot, and the boot time the
# kernel reports moves a little when the clock is set (NTP): a process recorded by one
# devenv and looked up by the next can read some hundredths apart. A pid reused by another
# process within a second of the first one's start is not a case that happens.
TOLERANCE = 1.0


def _live(p: psutil.Process) -> bool:
    """Whether ``p`` runs: a zombie waiting for its reaper runs nothing any more."""
    import psutil

    try:
        return p.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.Error:  # gone since, or not ours to look at
        return False


def started(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch); ``None``: no such process,
    a zombie, or one we may not look at."""
    import psutil

    try:
        p = psutil.Process(pid)
        return p.create_time() if _live(p) else None
    except psutil.Error:
        return None


def start_id(pid: int) -> str | None:
    """Process ``pid``'s start time as devenv records it (``None``: see :func:`started`).
    Together with the pid it names one process: :func:`is_same` checks it later."""
    t = started(pid)
    return None if t is None else f"{t:.2f}"


def recorded_start(text: str) -> float | None:
    """A recorded start id as seconds since the epoch (``None``: not one). Also reads what
    devenv recorded before psutil: clock ticks since boot from ``/proc`` (digits only) and
    ``ps -o lstart`` text (macOS), so processes started by an older devenv are still
    found, and stopped, by this one."""
    read = _read_start(text)
    return read[0] if read is not None else None


def _read_start(text: str) -> tuple[float, float] | None:
    """:func:`recorded_start` and how far a live process's start may be from it."""
    text = text.strip()
    if not text:
        return None
    if text.isdigit():
        import psutil

        return psutil.boot_time() + int(text) / os.sysconf("SC_CLK_TCK"), TOLERANCE
    try:
        return float(text), TOLERANCE
    except ValueError:
        pass
    try:
        # ps's lstart is whole seconds: a process read back from it may be up to 1 s older
        return (time.mktime(time.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y")),
                TOLERANCE + 1.0)
    except (ValueError, OverflowError):
        return None


def is_same(pid: int, recorded: str) -> bool:
    """Whether ``pid`` runs and is the process whose :func:`start_id` was ``recorded``
    (a reused pid is someone else's)."""
    read = _read_start(recorded)
    now = started(pid) if read is not None else None
    return now is not None and read is not None and abs(now - read[0]) < read[1]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    return started(pid) is not None


def group_members(pgid: int, since: float | None = None) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``; with ``since`` (the
    group leader's recorded start), only those started no earlier than that, and none
    when the leader's pid runs as another process: the kernel gives out no pid that is
    still a group's id, so a reused one means our group ended and the id is a stranger's."""
    try:
        os.killpg(pgid, 0)  # most calls: the group is gone, and no scan is needed
    except ProcessLookupError:
        return []
    except PermissionError:
        pass  # it exists; whose it is, the scan tells
    if since is not None:
        leader = started(pgid)
        # TOLERANCE + 1: a start read back from ps's lstart is whole seconds
        if leader is not None and abs(leader - since) >= TOLERANCE + 1.0:
            return []
    import psutil

    out = []
    for p in psutil.process_iter(["status", "create_time"]):
        info = p.info
        if info["status"] in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD, None):
            continue
        if since is not None and (info["create_time"] or 0.0) < since - TOLERANCE:
            continue
        try:
            if os.getpgid(p.pid) != pgid:
                continue
        except OSError:  # exited while we looked
            continue
        out.append(p.pid)
    return out


def port_owner(port: int) -> tuple[int, str] | None:
    """(pid, program name) of a local process listening on TCP ``port``, when this user
    may see it."""
    import psutil

    def listens(conn: Any) -> bool:
        return bool(conn.status == psutil.CONN_LISTEN and conn.laddr
                    and conn.laddr.port == port)

    pid: int | None = None
    try:
        pid = next((c.pid for c in psutil.net_connections("tcp") if listens(c) and c.pid),
                   None)
    except psutil.AccessDenied:
        # macOS lists the system's sockets to root only: ask each process we may see
        for p in psutil.process_iter():
            try:
                if any(listens(c) for c in p.net_connections("tcp")):
                    pid = p.pid
                    break
            except psutil.Error:
                continue
    if pid is None:
        return None
    try:
        return pid, psutil.Process(pid).name()
    except psutil.Error:
        return pid, "?"


def with_env(name: str) -> Iterator[tuple[int, str]]:
    """(pid, value) of each live process other than this one whose environment sets
    ``name`` (the processes of other users are not visible)."""
    import psutil

    me = os.getpid()
    for p in psutil.process_iter():
        if p.pid == me:
            continue
        try:
            value = p.environ().get(name)
        except psutil.Error:  # gone, or someone else's process
            continue
        if value is not None and _live(p):
            yield p.pid, value


def using(wanted: Callable[[str], bool]) -> list[tuple[int, str]]:
    """(pid, program name) of each process other than this one whose working directory,
    or a file it holds open, is a path ``wanted`` accepts (what fuser tells; the
    processes of other users are not visible)."""
    import psutil

    me = os.getpid()
    out = []
    for p in psutil.process_iter(["name"]):
        if p.pid == me:
            continue
        paths: list[str] = []
        with contextlib.suppress(psutil.Error):  # gone, or someone else's
            paths.append(p.cwd())
        with contextlib.suppress(psutil.Error):
            paths.extend(f.path for f in p.open_files())
        if any(wanted(path) for path in paths):
            out.append((p.pid, p.info["name"] or "?"))
    return out
