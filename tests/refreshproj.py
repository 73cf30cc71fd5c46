"""A small refresh-db project on the test server (four steps, two of them side by side),
shared by the rebuild tests (tests/workingdb) and the refresh-db command's (tests/commands)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devenv import loader
from devenv.events import RecordingReporter
from devenv.postgres import database, siblings
from devenv.session import Session
from devenv.workingdb import rebuild

PSQL = "psql -X -q -v ON_ERROR_STOP=1"


def config(db: str) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "lc",
        "services": {"db": {"image": "postgres:15", "env": {"POSTGRES_PASSWORD": "x"}}},
        "database": {"service": "db", "name": db, "schemas": ["public", "app"]},
        "steps": {
            "schema": {"run": f"{PSQL} -f schema.sql", "needs": ["db"], "inputs": ["schema.sql"]},
            "seed": {"run": f"{PSQL} -f seed.sql", "needs": ["schema"], "inputs": ["seed.sql"]},
            "extra": {"run": f"{PSQL} -c 'insert into app.extra values (1)'",
                      "needs": ["schema"]},
            "final": {"run": f"{PSQL} -c \"insert into app.log values ('final')\"",
                      "needs": ["seed", "extra"]},
        },
    }


FILES = {
    "schema.sql": "create table app.items(id int primary key, v text);\n"
                  "create table app.extra(x int);\ncreate table app.log(msg text);\n",
    "seed.sql": "insert into app.items select g, 'v' || g from generate_series(1, 200) g;\n",
}


def lc_project(make_project: Callable[..., Path], pg_server: Any,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, database.Target]]:
    """The project on a database of its own (DATABASE_URL), and that database's target;
    every database beside it dropped afterwards. Each test module's ``lc`` fixture."""
    db = pg_server.unique_db("lc")
    root = make_project(config(db), files=FILES)
    url = pg_server.url(db)
    monkeypatch.setenv("DATABASE_URL", url)
    target = database.parse_url(url)
    yield root, target
    for info in siblings.related(target, db):
        database.drop(target, info.datname)


def refresh(root: Path, target: database.Target, **kw: Any,
            ) -> tuple[rebuild.RefreshResult, RecordingReporter]:
    project = loader.load(root / "steps.yaml")
    rep = RecordingReporter()
    res = rebuild.refresh(Session(project, rep), target, background_reclone=False, **kw)
    return res, rep


def names(target: database.Target) -> set[str]:
    return {d.datname for d in siblings.related(target, target.dbname)}


def builds(target: database.Target) -> set[str]:
    """The builds beside the working database (each refresh-db run names its own)."""
    return {n for n in names(target) if siblings.is_build(target.dbname, n)}
