"""The database lock (devenv/lock.py) on a real server: held on the process's kept
maintenance connection, named for who holds it, and let go without closing it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devenv import lock
from devenv.errors import LockedError
from devenv.postgres import database, libpq
from tests.conftest import PgServer

pytestmark = pytest.mark.postgres


def _advisory(conn: libpq.Connection, key: int) -> list[tuple[object, ...]]:
    classid, objid = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    return conn.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                        "AND classid = %s AND objid = %s", (classid, objid)).fetchall()


def test_the_lock_rides_the_maintenance_connection_and_is_let_go(pg_server: PgServer,
                                                                 tmp_path: Path) -> None:
    target = database.parse_url(pg_server.url(pg_server.unique_db("lockdb")))
    key = lock.database_lock_key(target.dbname)
    kept = database.maintenance(target)
    pid = kept.execute("SELECT pg_backend_pid()").fetchone()
    with libpq.connect(target.conninfo("postgres"), timeout=5) as other:
        with lock.database_lock(target, tmp_path, "up"):
            # one session holds it: devenv's kept one, named for the checkout and command
            assert _advisory(other, key) == [pid]
            name = other.execute("SELECT application_name FROM pg_stat_activity "
                                 "WHERE pid = %s", pid).fetchone()
            assert name == (lock._app_name(tmp_path, "up"),)
            assert name[0].startswith(f"devenv|{os.getpid()}|up|")
            holder = lock.database_lock_holder(target) or ""
            assert holder.startswith("another checkout (") and holder.endswith(
                f"{tmp_path.name}) is running up (pid {os.getpid()})"), holder
            # a second take in this process does not wait for itself
            with lock.database_lock(target, tmp_path, "refresh-db"):
                pass
            assert _advisory(other, key) == [pid]
        assert _advisory(other, key) == []
        assert other.execute("SELECT application_name FROM pg_stat_activity WHERE pid = %s",
                             pid).fetchone() == ("devenv",)
    # the same session, still open: no new password exchange for the next command's work
    assert database.maintenance(target).execute("SELECT pg_backend_pid()").fetchone() == pid
    assert lock.database_lock_holder(target) is None


def test_a_lock_held_elsewhere_fails_fast_with_no_wait(pg_server: PgServer,
                                                       tmp_path: Path) -> None:
    target = database.parse_url(pg_server.url(pg_server.unique_db("lockdb")))
    key = lock.database_lock_key(target.dbname)
    info = {**target.conninfo("postgres"), "application_name": "devenv|1|refresh-db|/else"}
    with libpq.connect(info, timeout=5) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (key,))
        busy = r"another checkout \(/else\) is running refresh-db \(pid 1\) on database lockdb_"
        with pytest.raises(LockedError, match=busy), \
                lock.database_lock(target, tmp_path, "up", wait=False):
            pass
        # nothing taken, and the kept session's name is its own again
        pid = database.maintenance(target).execute("SELECT pg_backend_pid()").fetchone()
        assert other.execute("SELECT application_name FROM pg_stat_activity WHERE pid = %s",
                             pid).fetchone() == ("devenv",)
