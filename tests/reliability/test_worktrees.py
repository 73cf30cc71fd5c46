"""Two git worktrees of one repository (same ``name:``, same database, one server), running
refresh-db at once: they take turns (the second says whom it waits for), and the database
swapped in holds the rows of exactly one run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from devenv.postgres import database, siblings

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
PSQL = "psql -X -q -v ON_ERROR_STOP=1"
ROWS = 12
# Each row says which checkout wrote it (the branch's input.txt), one every 0.25 s.
WRITER = ("v=$(cat input.txt); i=0; while [ $i -lt %d ]; do i=$((i+1)); "
          f"{PSQL} -c \"insert into app.t values ('$v', $i)\"; sleep 0.25; done") % ROWS


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                   check=True, capture_output=True)


@pytest.fixture
def worktrees(tmp_path: Path, pg_server: Any,
              ) -> Iterator[tuple[Path, Path, database.Target, dict[str, str]]]:
    db = pg_server.unique_db("wt")
    main = tmp_path / "repo"
    main.mkdir()
    (main / "steps.yaml").write_text(yaml.safe_dump({
        "version": 1, "name": "wt",
        "services": {"db": {"image": "postgres:15"}},
        "database": {"service": "db", "name": db, "schemas": ["public", "app"]},
        "steps": {
            "schema": {"run": f"{PSQL} -c 'create table app.t(v text, i int)'",
                       "needs": ["db"]},
            "writer": {"run": WRITER, "needs": ["schema"], "inputs": ["input.txt"]},
        },
    }, sort_keys=False))
    (main / "input.txt").write_text("main\n")
    git(main, "init", "-q", "-b", "main")
    git(main, "add", "-A")
    git(main, "commit", "-q", "-m", "init")
    other = tmp_path / "feature"
    git(main, "worktree", "add", "-q", "-b", "feature", str(other))
    (other / "input.txt").write_text("feature\n")
    env = {**os.environ, "DATABASE_URL": pg_server.url(db)}
    target = database.parse_url(pg_server.url(db))
    yield main, other, target, env
    for info in siblings.related(target, db):
        database.drop(target, info.datname)


def start(root: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "devenv", "--plain", "refresh-db", *args],
                            cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def rows(target: database.Target) -> dict[str, list[int]]:
    with psycopg.connect(target.url()) as conn:
        got = conn.execute("select v, i from app.t order by v, i").fetchall()
    out: dict[str, list[int]] = {}
    for v, i in got:
        out.setdefault(str(v), []).append(int(i))
    return out


def test_two_worktrees_refresh_at_once(
        worktrees: tuple[Path, Path, database.Target, dict[str, str]]) -> None:
    main, other, target, env = worktrees
    a = start(main, env)
    time.sleep(1.0)  # a is building (or about to); b must wait for it, not share its build
    b = start(other, env)
    out_a, _ = a.communicate(timeout=180)
    out_b, _ = b.communicate(timeout=180)
    assert a.returncode == 0, out_a
    assert b.returncode == 0, out_b
    # the holder's path as PostgreSQL keeps it (63 bytes of application_name: its end)
    assert "warning: waiting: another checkout (..." in out_b, out_b
    assert f"{str(main)[-20:]}) is running refresh-db (pid {a.pid}) on database " \
           f"{target.dbname} of this server" in out_b, out_b
    for out in (out_a, out_b):
        assert "unchanged" not in out, out
    # b ran last: its rows, all of them, and nothing of a's run
    assert rows(target) == {"feature": list(range(1, ROWS + 1))}
    left = {d.datname for d in siblings.related(target, target.dbname)}
    assert not [n for n in left if siblings.is_build(target.dbname, n)], left


def test_no_wait_names_the_other_checkout(
        worktrees: tuple[Path, Path, database.Target, dict[str, str]]) -> None:
    main, other, target, env = worktrees
    a = start(main, env)
    try:
        deadline = time.monotonic() + 60
        # wait until a's writer is running: a holds the database lock by then
        while not (main / ".devenv" / "logs" / "writer.log").exists():
            assert a.poll() is None, a.communicate()[0]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = subprocess.run([sys.executable, "-m", "devenv", "--plain", "refresh-db",
                            "--no-wait"], cwd=other, env=env, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 4, r.stdout + r.stderr  # busy
        assert (f"{str(main)[-20:]}) is running refresh-db (pid {a.pid}) on database "
                f"{target.dbname} of this server") in r.stdout + r.stderr, r.stdout + r.stderr
    finally:
        out_a, _ = a.communicate(timeout=180)
    assert a.returncode == 0, out_a
    assert rows(target) == {"main": list(range(1, ROWS + 1))}


def _docker_ok() -> bool:
    r = subprocess.run(["docker", "image", "inspect", "postgres:15"], capture_output=True)
    return r.returncode == 0


@pytest.mark.docker
def test_other_worktree_does_not_recreate_the_container_under_a_refresh(tmp_path: Path,
                                                                        ) -> None:
    """The container is shared too: a worktree whose branch changed the service definition
    waits before recreating it, instead of pulling it from under the other's build."""
    if not _docker_ok():
        pytest.skip("no Docker engine with the postgres:15 image")
    import uuid

    name = f"wtd{uuid.uuid4().hex[:8]}"
    main = tmp_path / "repo"
    main.mkdir()

    def config(extra_env: dict[str, str]) -> str:
        return yaml.safe_dump({
            "version": 1, "name": name,
            "services": {"db": {"image": "postgres:15", "backend": "docker",
                                "env": {"POSTGRES_PASSWORD": "pw", **extra_env},
                                "ports": ["5432"]}},
            "database": {"service": "db", "name": "app_dev", "schemas": ["public", "app"]},
            "steps": {
                "schema": {"run": f"{PSQL} -c 'create table app.t(v text, i int)'",
                           "needs": ["db"]},
                "writer": {"run": WRITER, "needs": ["schema"], "inputs": ["input.txt"]},
            },
        }, sort_keys=False)

    (main / "steps.yaml").write_text(config({}))
    (main / "input.txt").write_text("main\n")
    git(main, "init", "-q", "-b", "main")
    git(main, "add", "-A")
    git(main, "commit", "-q", "-m", "init")
    other = tmp_path / "feature"
    git(main, "worktree", "add", "-q", "-b", "feature", str(other))
    (other / "steps.yaml").write_text(config({"TZ": "UTC"}))  # the service changed here
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    try:
        r = subprocess.run([sys.executable, "-m", "devenv", "--plain", "up"], cwd=main,
                           env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        (main / "input.txt").write_text("main 2\n")
        # up's own writer.log would let b start before a holds the service
        (main / ".devenv" / "logs" / "writer.log").unlink()
        a = start(main, env)
        deadline = time.monotonic() + 120
        while not (main / ".devenv" / "logs" / "writer.log").exists():
            assert a.poll() is None, a.communicate()[0]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        b = subprocess.run([sys.executable, "-m", "devenv", "--plain", "run"], cwd=other,
                           env=env, capture_output=True, text=True, timeout=300)
        out_a, _ = a.communicate(timeout=300)
        assert a.returncode == 0, out_a  # its build was not cut off by a recreate
        assert b.returncode == 0, b.stdout + b.stderr
        assert "warning: waiting: another checkout (" in b.stdout, b.stdout
        assert ") is running refresh-db (pid " in b.stdout, b.stdout
    finally:
        for root in (other, main):
            subprocess.run([sys.executable, "-m", "devenv", "down", "--volumes", "--yes"],
                           cwd=root, env=env, capture_output=True, timeout=120)
