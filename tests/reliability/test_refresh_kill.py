"""refresh-db stopped for real at every phase, by every signal: nothing is lost.

devenv pauses at a named point (devenv/faults.py), the test sends a real signal to the
real process, then checks what a developer would see: the working database exists,
accepts connections, and equals either the old database or the complete new one (by
dump); the next run recovers whatever was left and produces a correct database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devenv.postgres import database, siblings
from tests.dbcompare import dump_database

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
PSQL = "psql -X -q -v ON_ERROR_STOP=1"

# point -> whether the new database is in place once the signal has landed
POINTS = {
    "snapshot-incomplete": False,  # the full snapshot half made, before the swap
    "before-swap": False,
    "swap-blocked": False,  # old database refusing new connections, sessions ended
    "swap-half-renamed": False,  # inside the rename transaction
    "swap-renamed": True,  # committed, before connections are allowed again
}
SIGNALS = [signal.SIGKILL, signal.SIGTERM, signal.SIGINT]


def config(db: str) -> dict[str, Any]:
    return {
        "version": 1, "name": "rk",
        "services": {"db": {"image": "postgres:15"}},
        "database": {"service": "db", "name": db, "schemas": ["public", "app"]},
        "steps": {
            "schema": {"run": f"{PSQL} -c 'create table app.t(id int)'", "needs": ["db"]},
            "seed": {"run": f"{PSQL} -f seed.sql", "needs": ["schema"],
                     "inputs": ["seed.sql"]},
        },
    }


@pytest.fixture
def proj(make_project: Callable[..., Path], pg_server: Any,
         ) -> Iterator[tuple[Path, database.Target, dict[str, str]]]:
    db = pg_server.unique_db("rk")
    root = make_project(config(db), files={"seed.sql": "insert into app.t values (1);\n"})
    env = {**os.environ, "DATABASE_URL": pg_server.url(db)}
    yield root, database.parse_url(pg_server.url(db)), env
    target = database.parse_url(pg_server.url(db))
    for info in siblings.related(target, db):
        database.drop(target, info.datname)


def devenv(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devenv", "--plain", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def connectable(target: database.Target) -> bool:
    try:
        with psycopg.connect(target.url(), connect_timeout=5) as conn:
            conn.execute("select 1")
        return True
    except psycopg.OperationalError:
        return False


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
@pytest.mark.parametrize("point", list(POINTS))
def test_kill_during_refresh(proj: tuple[Path, database.Target, dict[str, str]], point: str,
                             sig: signal.Signals) -> None:
    root, target, env = proj
    assert devenv(root, env, "refresh-db").returncode == 0
    old = dump_database(target.url())
    (root / "seed.sql").write_text("insert into app.t values (2);\n")
    pause = root / "paused"
    p = subprocess.Popen([sys.executable, "-m", "devenv", "--plain", "refresh-db"], cwd=root,
                         env={**env, "DEVENV_PAUSE_AT": point, "DEVENV_PAUSE_FILE": str(pause),
                              "DEVENV_PAUSE_SECONDS": "120"},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not pause.exists():
        assert p.poll() is None, p.communicate()[0]
        assert time.monotonic() < deadline, "never reached the pause point"
        time.sleep(0.02)
    p.send_signal(sig)
    out, _ = p.communicate(timeout=60)
    if sig is not signal.SIGKILL:
        assert p.returncode == 130, out

    have = {d.datname for d in siblings.related(target, target.dbname)}
    assert target.dbname in have, f"working database missing after {sig.name} at {point}"
    if sig is not signal.SIGKILL:
        # a catchable signal leaves nothing refusing connections
        assert connectable(target)
    else:
        siblings.allow_connections(target, [target.dbname])
    now = dump_database(target.url())
    if POINTS[point]:
        assert now != old  # the new database was committed in place
    else:
        assert now == old, f"working database changed after {sig.name} at {point}"

    # the next run repairs what is left and ends with the right database
    again = devenv(root, env, "refresh-db")
    assert again.returncode == 0, again.stdout + again.stderr
    assert connectable(target)
    fresh = dump_database(target.url())
    assert devenv(root, env, "refresh-db", "--no-cache").returncode == 0
    assert dump_database(target.url()) == fresh
    left = {d.datname for d in siblings.related(target, target.dbname)}
    assert not [n for n in left if siblings.is_build(target.dbname, n)], left


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_kill_during_snapshot_restore(proj: tuple[Path, database.Target, dict[str, str]],
                                      sig: signal.Signals) -> None:
    root, target, env = proj
    assert devenv(root, env, "refresh-db").returncode == 0
    assert devenv(root, env, "snapshot", "save", "before").returncode == 0
    (root / "seed.sql").write_text("insert into app.t values (3);\n")
    assert devenv(root, env, "refresh-db").returncode == 0
    current = dump_database(target.url())
    pause = root / "paused"
    p = subprocess.Popen([sys.executable, "-m", "devenv", "--plain", "snapshot", "restore",
                          "before"], cwd=root,
                         env={**env, "DEVENV_PAUSE_AT": "swap-half-renamed",
                              "DEVENV_PAUSE_FILE": str(pause)},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not pause.exists():
        assert p.poll() is None, p.communicate()[0]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    p.send_signal(sig)
    p.communicate(timeout=60)
    if sig is signal.SIGKILL:
        siblings.allow_connections(target, [target.dbname])
    assert connectable(target) and dump_database(target.url()) == current
    r = devenv(root, env, "snapshot", "restore", "before")
    assert r.returncode == 0, r.stdout + r.stderr
    assert dump_database(target.url()) != current


def test_kill_of_the_background_reclone(proj: tuple[Path, database.Target, dict[str, str]],
                                        ) -> None:
    root, target, env = proj
    assert devenv(root, env, "refresh-db").returncode == 0
    pause = root / "paused"
    # the detached re-clone inherits the pause: it stops after making its temporary copy
    r = subprocess.run([sys.executable, "-m", "devenv", "--plain", "refresh-db"], cwd=root,
                       env={**env, "DEVENV_PAUSE_AT": "reclone-cloned",
                            "DEVENV_PAUSE_FILE": str(pause)},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout
    deadline = time.monotonic() + 60
    while not pause.exists():
        assert time.monotonic() < deadline, "the re-clone never paused"
        time.sleep(0.02)
    os.kill(int(pause.read_text()), signal.SIGKILL)
    good = dump_database(target.url())
    again = devenv(root, env, "refresh-db")
    assert again.returncode == 0, again.stdout
    assert dump_database(target.url()) == good
    left = {d.datname for d in siblings.related(target, target.dbname)}
    assert not [n for n in left if "_tmp" in n], left


@pytest.mark.parametrize("recovers_with", [["snapshot", "save", "again"], ["up"],
                                           ["refresh-db"]], ids=lambda a: a[0])
def test_kill_during_snapshot_save(proj: tuple[Path, database.Target, dict[str, str]],
                                   recovers_with: list[str]) -> None:
    root, target, env = proj
    assert devenv(root, env, "refresh-db").returncode == 0
    before = dump_database(target.url())
    pause = root / "paused"
    p = subprocess.Popen([sys.executable, "-m", "devenv", "--plain", "snapshot", "save", "s"],
                         cwd=root, env={**env, "DEVENV_PAUSE_AT": "snapshot-save-blocked",
                                        "DEVENV_PAUSE_FILE": str(pause)},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not pause.exists():
        assert p.poll() is None, p.communicate()[0]
        assert time.monotonic() < deadline, "never reached the pause point"
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    assert not connectable(target)  # what the SIGKILL left: the working database refuses

    st = devenv(root, env, "status")
    assert st.returncode == 0, st.stdout + st.stderr
    assert "exists but REFUSES CONNECTIONS (a snapshot save or refresh-db swap was " \
           "interrupted)" in st.stdout, st.stdout
    assert f"devenv up would: let {target.dbname} accept connections again" in st.stdout
    doc = devenv(root, env, "doctor")
    assert f"database {target.dbname} refuses connections (a refresh-db swap or a snapshot " \
           "save was interrupted)" in doc.stdout + doc.stderr, doc.stdout + doc.stderr

    r = devenv(root, env, *recovers_with)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "refusing connections" in r.stdout + r.stderr, r.stdout + r.stderr
    assert connectable(target)
    assert dump_database(target.url()) == before
    st = devenv(root, env, "status")
    assert "REFUSES" not in st.stdout and "accept connections" not in st.stdout, st.stdout
