"""A database name too long for devenv's suffixes (PostgreSQL keeps 63 bytes of a name and
cuts the rest): every derived name still fits, and stays unique per database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devenv.postgres import database, siblings

PSQL = "psql -X -q -v ON_ERROR_STOP=1"


def derived(db: str) -> list[str]:
    return [siblings.build_name(db), siblings.build_name(db, "0123456789ab"),
            siblings.prev_name(db), siblings.ready_name(db) + "_tmp99999",
            siblings.cache_name(db, "f" * 64), siblings.user_name(db, "a" * 19),
            siblings.retired_name(db), siblings.exchange_name(db),
            siblings.branch_name(db, "feature/" + "x" * 80)]


@pytest.mark.parametrize("length", [1, 40, 41, 45, 60, 63])
def test_every_derived_name_fits(length: int) -> None:
    db = ("d" * length)
    for name in derived(db):
        assert len(name.encode()) <= siblings.MAX_NAME, name
    # a name short enough keeps the names it always had
    if length <= 40:
        assert siblings.prev_name(db) == f"{db}__prev"


def test_long_names_stay_unique_and_multibyte_safe() -> None:
    a, b = "x" * 59 + "_a", "x" * 59 + "_b"  # the same first 59 bytes
    assert not set(derived(a)) & set(derived(b))
    umlaut = "ü" * 30  # 60 bytes: a cut must not split a character
    for name in derived(umlaut):
        assert len(name.encode()) <= siblings.MAX_NAME
        name.encode().decode()


@pytest.fixture
def long_db(make_project: Callable[..., Path], pg_server: Any,
            ) -> Iterator[tuple[Path, database.Target, dict[str, str]]]:
    # what tells two such names apart is at the end, past what a cut would keep
    db = ("long_name_" * 5)[:49] + "_" + uuid.uuid4().hex[:10]
    assert len(db.encode()) == 60
    root = make_project({
        "version": 1, "name": "ln",
        "services": {"db": {"image": "postgres:15"}},
        "database": {"service": "db", "name": "short", "schemas": ["public", "app"]},
        "steps": {
            "schema": {"run": f"{PSQL} -c 'create table app.t(id int)'", "needs": ["db"]},
            "seed": {"run": f"{PSQL} -f seed.sql", "needs": ["schema"], "inputs": ["seed.sql"]},
        },
    }, files={"seed.sql": "insert into app.t values (1);\n"})
    # steps.yaml takes at most 40 bytes; a DATABASE_URL can name any database
    env = {**os.environ, "DATABASE_URL": pg_server.url(db)}
    target = database.parse_url(pg_server.url(db))
    yield root, target, env
    for info in siblings.related(target, db):
        database.drop(target, info.datname)


def devenv(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devenv", "--plain", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=180)


def ids(target: database.Target) -> list[int]:
    with psycopg.connect(target.url()) as conn:
        return [int(r[0]) for r in conn.execute("select id from app.t order by id")]


@pytest.mark.postgres
def test_sixty_byte_database_name(long_db: tuple[Path, database.Target, dict[str, str]],
                                  ) -> None:
    root, target, env = long_db
    for _ in range(2):  # the second run finds the first's snapshot by its (derived) name
        r = devenv(root, env, "refresh-db")
        assert r.returncode == 0, r.stdout + r.stderr
    # (the ready copy, if the background re-clone made it in time; else the snapshot)
    assert "ready copy" in r.stdout or "starting from snapshot" in r.stdout, r.stdout
    (root / "seed.sql").write_text("insert into app.t values (2);\n")
    r = devenv(root, env, "refresh-db")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "starting from snapshot" in r.stdout, r.stdout
    assert ids(target) == [2]
    r = devenv(root, env, "snapshot", "save", "long_names_ok")
    assert r.returncode == 0, r.stdout + r.stderr
    r = devenv(root, env, "refresh-db", "--undo")
    assert r.returncode == 0, r.stdout + r.stderr
    assert ids(target) == [1]
    r = devenv(root, env, "snapshot", "restore", "long_names_ok")
    assert r.returncode == 0, r.stdout + r.stderr
    assert ids(target) == [2]
    names = {d.datname for d in siblings.related(target, target.dbname)}
    assert siblings.user_name(target.dbname, "long_names_ok") in names
    assert siblings.prev_name(target.dbname) in names
    for name in names:
        assert len(name.encode()) <= 63, name
    r = devenv(root, env, "snapshot", "list")
    assert r.returncode == 0 and "long_names_ok" in r.stdout, r.stdout + r.stderr
