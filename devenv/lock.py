"""One devenv at a time per project: an advisory lock on ``.devenv/lock``; and one at a
time per database, across checkouts: a PostgreSQL advisory lock (:func:`database_lock`).

The kernel releases an ``flock`` when its holder dies, so a lock left by a killed devenv
is taken over without any clean-up. The file records who holds it, so a second devenv
can say whom it waits for.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from devenv.errors import LockedError
from devenv.events import Message, Reporter
from devenv.jsonfile import ensure_state_dir
from devenv.postgres.database import Target, connect, maintenance


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another devenv"
    since = time.strftime("%H:%M:%S", time.localtime(info.get("since", 0)))
    return f"pid {info.get('pid', '?')} ({info.get('command', '?')}, since {since})"


@contextlib.contextmanager
def project_lock(state_dir: Path, command: str, reporter: Reporter | None = None,
                 wait: bool = True) -> Iterator[None]:
    """Hold the project's lock; wait for it (saying for whom) or fail fast with ``wait=False``."""
    ensure_state_dir(state_dir)
    path = state_dir / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            if not wait:
                raise LockedError(f"another devenv is working on this project: {holder}; "
                                  "wait for it to finish, or run without --no-wait to "
                                  "queue") from None
            if reporter is not None:
                reporter.emit(Message(f"waiting for the project lock held by {holder}", "warn"))
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": command,
                                  "since": time.time(), "argv": sys.argv[1:]}).encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


# --------------------------------------------------------------------------- the database

# Checkouts of one project (git worktrees, clones) with the same ``name:`` share the
# database service and every database beside the working one (its builds, snapshots,
# backup): the file lock above is per checkout and does not keep them apart. A command that
# changes those databases also holds a PostgreSQL advisory lock keyed by the working
# database's name, on the process's maintenance connection, whose application_name says
# who holds it while it is held. The server releases the lock when devenv lets go of it or
# that connection ends (devenv exits, or is killed).

# Keys this process holds. By key alone: the same server may be reached as "localhost"
# before its service is started and as "127.0.0.1" after, and taking the lock again on a
# second connection would wait for ourselves.
_HELD: set[int] = set()
_APP = "devenv"
_MAX_APP = 63  # bytes PostgreSQL keeps of an application_name


def database_lock_key(dbname: str) -> int:
    """A signed 64-bit advisory-lock key for ``dbname`` (pg_try_advisory_lock(bigint))."""
    raw = hashlib.sha256(f"devenv-database:{dbname}".encode()).digest()[:8]
    return int.from_bytes(raw, "big", signed=True)


def _app_name(checkout: Path, command: str) -> str:
    """``devenv|PID|COMMAND|PATH``, the path cut from the left to fit 63 bytes."""
    head = f"{_APP}|{os.getpid()}|{command}|"
    path = str(checkout)
    room = _MAX_APP - len(head.encode())
    if len(path.encode()) > room:
        raw = path.encode()[-(room - 3):]
        path = "..." + raw.decode(errors="ignore")
    return head + path


def _describe(app: str) -> str:
    parts = app.split("|", 3)
    if len(parts) != 4 or parts[0] != _APP:
        return "another devenv"
    _, pid, command, path = parts
    return f"another checkout ({path}) is running {command} (pid {pid})"


def database_lock_holder(target: Target) -> str | None:
    """Who holds the database lock of ``target.dbname`` now ("another checkout (PATH) is
    running refresh-db (pid N)"), or ``None``."""
    key = database_lock_key(target.dbname)
    classid, objid = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    with connect(target, "postgres") as conn:
        row = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s "
            "AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database "
            "WHERE datname = 'postgres') LIMIT 1", (classid, objid)).fetchone()
    return _describe(str(row[0] or "")) if row is not None else None


@contextlib.contextmanager
def database_lock(target: Target, checkout: Path, command: str,
                  reporter: Reporter | None = None, wait: bool = True) -> Iterator[None]:
    """Hold the lock on ``target.dbname`` and the databases beside it for every checkout
    using this server; wait for it (saying for whom) or fail fast with ``wait=False``."""
    key = database_lock_key(target.dbname)
    mine = key
    if mine in _HELD:  # taken further up in this process (the lock is per connection)
        yield
        return
    # On the process's kept maintenance connection (a connection costs a password
    # exchange, a good part of a daily `up`), whose application_name says who holds the
    # lock while it is held. It ends with the process (killed or not): the server lets go.
    conn = maintenance(target, timeout=10)
    locked = False
    before: tuple[object, ...] | None = None
    try:
        before = conn.execute("SELECT current_setting('application_name'), "
                              "set_config('application_name', %s, false)",
                              (_app_name(checkout, command),)).fetchone()
        said = False
        while True:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if row is not None and row[0]:
                locked = True
                break
            holder = database_lock_holder(target) or "another devenv"
            if not wait:
                raise LockedError(f"{holder} on database {target.dbname} of this server; "
                                  "wait for it to finish, or run without --no-wait to "
                                  "queue")
            if not said and reporter is not None:
                reporter.emit(Message(f"waiting: {holder} on database {target.dbname} of "
                                      "this server", "warn"))
                said = True
            time.sleep(0.25)
        _HELD.add(mine)
        try:
            yield
        finally:
            _HELD.discard(mine)
    finally:
        with contextlib.suppress(Exception):
            if locked:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            if before is not None:
                conn.execute("SELECT set_config('application_name', %s, false)", (before[0],))
