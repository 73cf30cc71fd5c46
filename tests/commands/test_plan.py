"""`devenv plan` --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devenv.postgres import database, siblings
from tests.test_cli import devenv

MakeProject = Callable[..., Path]


def test_plan_json(make_project: MakeProject) -> None:
    root = make_project({"version": 1, "steps": {
        "a": {"run": "true"}, "b": {"run": "true", "needs": ["a"], "profiles": ["local"]}}})
    r = devenv("plan", "--json", "--profile", "ci", cwd=root)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["profile"] == "ci"
    assert [(s["name"], s["action"], s["reason"]) for s in data["steps"]] == [
        ("a", "run", "never run on this database"),
        ("b", "skip", "not in profile ci (runs in: local)")]
    assert data["would_run"] == 1


@pytest.mark.postgres
def test_plan_says_what_up_does_about_a_changed_data_step(make_project: MakeProject,
                                                         pg_server: Any) -> None:
    """`plan` says a changed data step would run, and that up builds beside for it rather
    than run it on top of its rows (issue 13: users ask why up rebuilt)."""
    db = pg_server.unique_db("plan")
    url = pg_server.url(db)
    psql = "psql -X -q -v ON_ERROR_STOP=1"
    root = make_project({"version": 1, "name": "plan",
                         "services": {"db": {"image": "postgres:15"}},
                         "database": {"service": "db", "name": db, "schemas": ["public"]},
                         "steps": {"schema": {"run": f"{psql} -c 'create table t(v int)'",
                                              "rerun": "incremental"},
                                   "seed": {"run": f"{psql} -f seed.sql", "needs": ["schema"],
                                            "inputs": ["seed.sql"]}}},
                        files={"seed.sql": "insert into t values (1);\n"})
    env = {**os.environ, "DATABASE_URL": url}

    def devenv_db(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "devenv", *args], cwd=root, env=env,
                              capture_output=True, text=True, timeout=120)

    try:
        assert devenv_db("run").returncode == 0
        (root / "seed.sql").write_text("insert into t values (2);\n")
        r = devenv_db("plan")
        assert r.returncode == 0, r.stderr
        [line] = [x for x in r.stdout.splitlines() if x.startswith("seed")]
        assert line.split(None, 2)[2] == "input changed: seed.sql (up: beside)"
        assert r.stdout.rstrip().endswith(
            "1 of 2 steps would run (profile local); up would build 1 of them (up: beside) in "
            f"a new database beside {db} and swap it in, never on top of their data (the "
            "current database kept as its __prev)")
        data = json.loads(devenv_db("plan", "--json").stdout)
        assert [(s["name"], s["action"], s["up"]) for s in data["steps"]] == [
            ("schema", "skip", "skip"), ("seed", "run", "rebuild")]
    finally:
        target = database.parse_url(url)
        for info in siblings.related(target, db):
            database.drop(target, info.datname)
