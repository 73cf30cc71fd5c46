"""A devenv killed for real (SIGKILL, SIGHUP: a closed terminal) leaves no step running,
and nothing of its run reaches a later build.

No fault-injection point here: the signal lands at a real moment of a real run. Each
step runs in its own session, so nothing but devenv's watchdog (devenv/watchdog.py) stops
a step whose devenv died; the tests assert the step's processes are gone within seconds,
and that the next refresh-db's database holds exactly what one run of the step made (and
equals a --no-cache build, by dump).
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
from tests.dbcompare import VOLATILE_COLUMNS, diff_dumps, dump_database
from tests.procs import alive, gone

PSQL = "psql -X -q -v ON_ERROR_STOP=1"
# A step that writes a row (its pid, a counter) every 0.25 s for 10 s, each on a new
# connection, as a seed script or a slow migration might; plus a `setsid` child, which
# leaves the step's process group and session.
WRITER = ("echo $$ > writer.pid; "
          "setsid sh -c 'echo $$ > child.pid; exec sleep 60' & "
          "i=0; while [ $i -lt 40 ]; do i=$((i+1)); "
          f"{PSQL} -c \"insert into app.t values ($$, $i)\"; sleep 0.25; done")
# The pid differs from run to run by nature; every other value and the row count are
# compared.
MASKED = VOLATILE_COLUMNS | {("app", "t", "pid")}


def devenv(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devenv", "--plain", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=180)


def wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.fixture
def writer_project(make_project: Callable[..., Path], pg_server: Any,
                   ) -> Iterator[tuple[Path, database.Target, dict[str, str]]]:
    db = pg_server.unique_db("kr")
    root = make_project({
        "version": 1, "name": "kr",
        "services": {"db": {"image": "postgres:15"}},
        "database": {"service": "db", "name": db, "schemas": ["public", "app"]},
        "steps": {
            "schema": {"run": f"{PSQL} -c 'create table app.t(pid int, i int)'",
                       "needs": ["db"]},
            "writer": {"run": WRITER, "needs": ["schema"], "inputs": ["input.txt"]},
        },
    }, files={"input.txt": "1\n"})
    env = {**os.environ, "DATABASE_URL": pg_server.url(db)}
    target = database.parse_url(pg_server.url(db))
    yield root, target, env
    for name in ("writer.pid", "child.pid"):
        p = root / name
        if p.exists() and p.read_text().strip() and alive(int(p.read_text())):
            os.kill(int(p.read_text()), signal.SIGKILL)
    for info in siblings.related(target, db):
        database.drop(target, info.datname)


def pids_in(target: database.Target) -> dict[int, int]:
    """pid -> rows it wrote, in the working database."""
    with psycopg.connect(target.url()) as conn:
        rows = conn.execute("select pid, count(*) from app.t group by pid").fetchall()
    return {int(p): int(n) for p, n in rows}


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP], ids=lambda s: s.name)
def test_killed_refresh_leaves_no_writer_behind(
        writer_project: tuple[Path, database.Target, dict[str, str]],
        sig: signal.Signals) -> None:
    root, target, env = writer_project
    p = subprocess.Popen([sys.executable, "-m", "devenv", "--plain", "refresh-db"], cwd=root,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(root / "writer.pid")
    wait_for(root / "child.pid")
    time.sleep(4)  # the step is writing now
    p.send_signal(sig)
    p.communicate(timeout=60)
    writer = int((root / "writer.pid").read_text())
    child = int((root / "child.pid").read_text())
    # devenv is dead; its steps, and the setsid child that left their session, must be too
    assert gone(writer, wait=5), f"the step (pid {writer}) outlived devenv killed by {sig.name}"
    assert gone(child, wait=5), f"its setsid child (pid {child}) outlived devenv"

    (root / "writer.pid").unlink()
    (root / "input.txt").write_text("2\n")
    r = devenv(root, env, "refresh-db")
    assert r.returncode == 0, r.stdout + r.stderr
    new_writer = int((root / "writer.pid").read_text())
    assert pids_in(target) == {new_writer: 40}, "rows of more than one run were swapped in"
    fresh = dump_database(target.url(), MASKED)
    r = devenv(root, env, "refresh-db", "--no-cache")
    assert r.returncode == 0, r.stdout + r.stderr
    clean = dump_database(target.url(), MASKED)
    assert fresh == clean, diff_dumps(fresh, clean, "after the kill", "--no-cache")
    left = {d.datname for d in siblings.related(target, target.dbname)}
    assert not [n for n in left if siblings.is_build(target.dbname, n)], left


def test_killed_run_stops_its_steps_and_their_setsid_children(
        make_project: Callable[..., Path]) -> None:
    root = make_project({"version": 1, "steps": {"slow": {"run": (
        "setsid sh -c 'echo $$ > child.pid; exec sleep 60' & echo $$ > step.pid; sleep 60")}}})
    p = subprocess.Popen([sys.executable, "-m", "devenv", "--plain", "run"], cwd=root,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(root / "step.pid")
        wait_for(root / "child.pid")
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=30)
        for name in ("step.pid", "child.pid"):
            pid = int((root / name).read_text())
            assert gone(pid, wait=5), f"{name}: pid {pid} outlived devenv killed by SIGKILL"
    finally:
        for name in ("step.pid", "child.pid"):
            f = root / name
            if f.exists() and f.read_text().strip() and alive(int(f.read_text())):
                os.kill(int(f.read_text()), signal.SIGKILL)


def test_setsid_child_escaping_a_timeout_is_stopped(make_project: Callable[..., Path]) -> None:
    root = make_project({"version": 1, "steps": {
        "hangs": {"run": "setsid sh -c 'echo $$ > child.pid; exec sleep 60' & sleep 60",
                  "timeout": 2},
        "next": {"run": "sleep 6; touch next.done"}}})
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "devenv", "--plain", "run", "--keep-going"],
                         cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(root / "child.pid")
        child = int((root / "child.pid").read_text())
        # the step timed out and the run goes on with the other step: the escaped child
        # is stopped with its step, not at the end of the run
        deadline = t0 + 2 + 10
        while alive(child) and time.monotonic() < deadline and not (root / "next.done").exists():
            time.sleep(0.05)
        assert not alive(child), "the setsid child outlived its step's timeout"
        out, _ = p.communicate(timeout=60)
        assert "timed out after 2s" in out, out
    finally:
        p.kill()
        f = root / "child.pid"
        if f.exists() and f.read_text().strip() and alive(int(f.read_text())):
            os.kill(int(f.read_text()), signal.SIGKILL)
