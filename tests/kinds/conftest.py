"""Fixtures for the step-kind tests: a fresh database per test on the session's real
PostgreSQL, and a helper that runs a project's steps through the real runner."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devenv import building, loader, logtail
from devenv.console import PlainReporter
from devenv.events import Status
from devenv.postgres import database
from devenv.session import Session
from tests.conftest import PgServer


@pytest.fixture
def db(pg_server: PgServer) -> Iterator[database.Target]:
    """A target for a database only this test uses; dropped afterwards (build creates it)."""
    name = pg_server.unique_db("kind")
    target = database.Target(pg_server.host, pg_server.port, pg_server.user,
                             pg_server.password, name)
    try:
        yield target
    finally:
        database.drop(target, name)


def sql(target: database.Target, *statements: str) -> list[tuple[Any, ...]]:
    """Run statements on the test database (created if needed); rows of the last one."""
    database.ensure(target, target.dbname, ["public"])
    rows: list[tuple[Any, ...]] = []
    with psycopg.connect(target.url(), autocommit=True) as conn:
        for s in statements:
            cur = conn.execute(s)
            rows = cur.fetchall() if cur.description else []
    return rows


@dataclass
class Outcome:
    root: Path
    statuses: dict[str, Status]
    output: str

    def log(self, step: str) -> str:
        return (self.root / ".devenv" / "logs" / f"{step}.log").read_text()

    def ok(self) -> bool:
        return all(s in (Status.OK, Status.SKIPPED) for s in self.statuses.values())


def project_config(target: database.Target, steps: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "kinds",
        "services": {"db": {"image": "postgres:15"}},
        "database": {"service": "db", "name": target.dbname},
        "steps": steps,
    }


@pytest.fixture
def run_steps(make_project: Callable[..., Path], db: database.Target,
              ) -> Callable[..., Outcome]:
    """Write steps.yaml (+ files) and build it against the test database, for real."""

    def run(steps: dict[str, Any] | None = None, files: dict[str, str] | None = None,
            root: Path | None = None, **build: Any) -> Outcome:
        if root is None:
            assert steps is not None
            root = make_project(project_config(db, steps), files=files)
        project = loader.load(root / "steps.yaml")
        out = io.StringIO()
        res = building.build(Session(project, PlainReporter(out)), db, dbname=db.dbname, jobs=2,
                                **build)
        statuses = {r.name: r.status for r in res.result.results}
        return Outcome(root, statuses, out.getvalue())

    return run


def last_lines(text: str, n: int) -> str:
    return "\n".join(logtail.tail_text(text, n))
