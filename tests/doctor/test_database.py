"""Database, up-to-date and snapshot checks on a real PostgreSQL: drop a schema, drop the
database, edit an input, leave a __build behind, use a wrong password; and --fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devenv import loader
from devenv.events import RecordingReporter
from devenv.lock import project_lock
from devenv.postgres import database, siblings
from devenv.session import Session
from devenv.workingdb import rebuild
from tests.doctor.conftest import build, checks, final, run_doctor, sql

pytestmark = pytest.mark.postgres

MakeProject = Callable[..., Path]
PSQL = "psql -X -q -v ON_ERROR_STOP=1"
FILES = {
    "schema.sql": "create table app.items(id int primary key, v text);\n",
    "seed.sql": "delete from app.items;\n"
                "insert into app.items select g, 'v' || g from generate_series(1, 50) g;\n",
}


def config(db: str) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "doc-db",
        "services": {"db": {"image": "postgres:15", "env": {"POSTGRES_PASSWORD": "x"}}},
        "database": {"service": "db", "name": db, "schemas": ["public", "app"]},
        "steps": {
            "schema": {"run": f"{PSQL} -f schema.sql", "inputs": ["schema.sql"],
                       "search_path": ["app"]},
            "seed": {"run": f"{PSQL} -f seed.sql", "needs": ["schema"], "inputs": ["seed.sql"],
                     "search_path": ["app"]},
        },
    }


@pytest.fixture
def built(make_project: MakeProject, pgdb: tuple[str, str]) -> tuple[Path, str, str]:
    db, url = pgdb
    root = make_project(config(db), files=FILES)
    build(root)
    return root, db, url


def count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("select count(*) from app.items").fetchone()
        assert row is not None
        return int(row[0])


def test_healthy(built: tuple[Path, str, str]) -> None:
    root, db, _url = built
    found = checks(root)
    bad = {k: c for k, c in found.items() if c.status != "ok"}
    assert not bad, bad
    assert found["db.connect"].finding.startswith("postgresql://postgres:***@127.0.0.1:")
    assert "answers: PostgreSQL 1" in found["db.connect"].finding
    assert found["db.exists"].finding.startswith(f"database {db} exists (")
    assert found["db.schemas"].finding == "schemas present: public, app"
    assert found["steps.fingerprints"].finding == \
        f"all 2 steps of profile local are up to date on {db}"
    assert found["engine.backend"].finding.startswith(
        "db: external database postgresql://postgres:***@127.0.0.1:")
    assert found["snapshots.leftovers"].finding == \
        f"no leftover of an interrupted refresh-db beside {db}"


def test_dropped_schema_then_fix(built: tuple[Path, str, str]) -> None:
    root, db, url = built
    sql(url, "drop schema app cascade")
    found = checks(root)["db.schemas"]
    assert found.status == "fail"
    assert found.finding == (f"schema app is missing from {db} (declared at steps.yaml:8; "
                             "used by schema, seed)")
    assert found.fix == ("devenv run --force schema seed (creates the schema and reruns the "
                         "steps that use it; devenv doctor --fix does the same)")
    code, out = run_doctor(root, fix=True)
    assert "  - create schema app in" in out
    assert "  - devenv run --force schema seed\n" in out
    assert code == 0, out
    assert final(out)["db.schemas"][0] == "ok"
    assert count(url) == 50


def test_missing_database_then_fix(make_project: MakeProject, pgdb: tuple[str, str]) -> None:
    db, url = pgdb
    root = make_project(config(db), files=FILES)
    found = checks(root)
    exists = found["db.exists"]
    assert exists.status == "fail"
    assert exists.finding.startswith(f"database {db} does not exist on 127.0.0.1:")
    assert exists.fix == "devenv up (creates it and runs the steps)"
    steps = found["steps.fingerprints"]
    assert steps.status == "fail"
    assert steps.finding == (f"2 of 2 steps would run on {db} (it does not exist yet): "
                             "schema, seed (never run on this database)")
    assert found["db.schemas"].finding == "not checked: the database is not there"
    code, out = run_doctor(root, fix=True)
    assert code == 0, out
    assert count(url) == 50


def test_edited_input_then_fix(built: tuple[Path, str, str]) -> None:
    root, db, url = built
    (root / "seed.sql").write_text(FILES["seed.sql"].replace("50", "70"))
    found = checks(root)["steps.fingerprints"]
    assert found.status == "warn"
    assert found.finding == f"1 of 2 steps would run on {db}: seed (input changed: seed.sql)"
    assert found.fix == "devenv up (runs them)"
    code, out = run_doctor(root, fix=True)
    assert code == 0, out
    assert final(out)["steps.fingerprints"][0] == "ok"
    assert count(url) == 70


def test_leftover_build_database_then_fix(built: tuple[Path, str, str]) -> None:
    root, db, url = built
    target = database.parse_url(url)
    database.create(target, siblings.build_name(db), [])
    found = checks(root)["snapshots.leftovers"]
    assert found.status == "warn"
    assert found.finding.startswith(f"{db}__build left by a refresh-db that crashed or ran "
                                    "with --keep-failed (")
    assert found.finding.endswith(f"the working database {db} is not affected")
    assert found.fix == ("devenv doctor --fix (drops it; so would devenv snapshot gc or the "
                         "next refresh-db)")
    # While a devenv holds the project, the build may be its own: left alone.
    project = loader.load(root / "steps.yaml")
    with project_lock(project.state_dir, "refresh-db"):
        held = checks(root)["snapshots.leftovers"]
    assert held.status == "ok"
    assert held.finding.startswith(f"{db}__build: in use by a running devenv (pid ")
    code, out = run_doctor(root, fix=True)
    assert "  - drop what an interrupted refresh-db left beside" in out
    assert code == 0, out
    assert siblings.build_name(db) not in {d.datname for d in siblings.related(target, db)}


def test_snapshot_cache(built: tuple[Path, str, str]) -> None:
    root, db, url = built
    project = loader.load(root / "steps.yaml")
    rebuild.refresh(Session(project, RecordingReporter()), database.parse_url(url),
                      background_reclone=False)
    found = checks(root)["snapshots.cache"]
    assert found.status == "ok"
    assert found.finding.startswith("2 snapshots, a ready copy, the backup "
                                    f"{db}__prev: ")
    (root / "seed.sql").write_text(FILES["seed.sql"].replace("50", "60"))
    changed = checks(root)["snapshots.cache"]
    assert "a ready copy (of older steps)" in changed.finding
    assert "; 1 made from older steps (kept for switching back; the cache keeps the newest " \
           "5)" in changed.finding


def test_wrong_password(built: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    root, _db, url = built
    monkeypatch.setenv("DATABASE_URL", url.replace(":devenv@", ":wrong@"))
    found = checks(root)
    connect = found["db.connect"]
    assert connect.status == "fail"
    assert "password authentication failed" in connect.finding
    assert "wrong" not in connect.finding and "devenv@" not in connect.finding
    assert connect.fix.startswith("check the user and password (database: in steps.yaml, or "
                                  "DATABASE_URL)")
    assert found["db.exists"].finding == "not checked: the server does not answer"
    assert found["db.exists"].fix == "fix db.connect first"


def test_server_not_answering(built: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch,
                              ) -> None:
    root, _db, url = built
    from devenv.postgres.pgcluster import free_port

    target = database.parse_url(url)
    bad = free_port()
    monkeypatch.setenv("DATABASE_URL", url.replace(f":{target.port}/", f":{bad}/"))
    code, out = run_doctor(root)
    assert code == 1
    assert (f"FAIL  db.connect           cannot connect to postgresql://postgres:***@127.0.0.1:"
            f"{bad}/postgres: ") in out
    assert "fix: start the server DATABASE_URL points at, or fix DATABASE_URL" in out
    assert "warn  db.schemas           not checked: the server does not answer" in out


def test_checks_leave_the_shared_connection_as_they_found_it(built: tuple[Path, str, str],
                                                              ) -> None:
    """Doctor's queries run with a statement timeout on the process's kept maintenance
    connection, which --fix then uses to create, clone and swap databases (and the
    database lock waits on): the timeout must not outlive the checks."""
    root, _db, url = built
    found = checks(root)
    assert found["db.connect"].status == "ok", found["db.connect"]
    target = database.parse_url(url)
    row = database.maintenance(target).execute("SHOW statement_timeout").fetchone()
    assert row == ("0",)


_IMPORTING = """
import sys, time
from devenv.postgres import database, dumpfiles
target = database.parse_url(sys.argv[1])
_password, verifier = dumpfiles._prepare_import_role(target)
dumpfiles._open_import_role(target, verifier)
print("importing", flush=True)
time.sleep(120)
"""


def _wait(what: Any, timeout: float = 10) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_an_interrupted_import_leaves_the_role_open_then_fix_closes_it(
        built: tuple[Path, str, str]) -> None:
    """An import killed between letting devenv_import log in and closing it (kill -9: no
    cleanup ran) leaves the role able to log in; doctor says so, and --fix closes it. While
    an import runs, the same state is the import's and doctor leaves it alone."""
    import os
    import signal
    import subprocess
    import sys

    from devenv.postgres import dumpfiles

    root, _db, url = built
    target = database.parse_url(url)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.Popen([sys.executable, "-c", _IMPORTING, target.url("postgres")],
                             env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "importing"
        running = checks(root)["db.import_role"]
        assert running.status == "ok", running
        assert running.finding.startswith("an import is running (server process "), running
        assert running.finding.endswith(": devenv_import may log in until it ends")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    # its session ends with it, and the lock with the session
    _wait(lambda: dumpfiles.import_role(target).restoring_pid is None)
    left = checks(root)["db.import_role"]
    assert (left.status, left.finding, left.fix) == (
        "warn", "role devenv_import can still log in: an import was interrupted before it "
                "closed the role (with a password nobody kept)",
        "devenv doctor --fix (closes it; so would the next import)"), left
    code, out = run_doctor(root, fix=True)
    assert "fixing: close role devenv_import, which an interrupted import left able to log in" \
        in out, out
    assert final(out)["db.import_role"] == (
        "ok", "role devenv_import (restores dumps from files and the remote cache) cannot log "
              "in outside an import"), out
    assert code == 0, out
    assert dumpfiles.import_role(target).can_log_in is False
