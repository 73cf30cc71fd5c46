"""`devenv psql` on a database outside devenv (DATABASE_URL): the local psql opens the
project database, with the password in the environment, never on the command line. (The
docker-exec path, when no psql is installed, is tested with a real container in
tests/services/test_docker.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devenv import loader
from devenv.commands import psql
from devenv.events import RecordingReporter
from devenv.postgres import database
from devenv.session import Session

pytestmark = pytest.mark.postgres


def test_opens_the_project_database_without_the_password_in_argv(
        make_project: Callable[..., Path], pg_server: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    db = pg_server.unique_db("psql")
    url = pg_server.url(db)
    target = database.parse_url(url)
    database.create(target, db, ["public"])
    try:
        root = make_project({"version": 1, "name": "p",
                             "database": {"service": "db", "name": db},
                             "services": {"db": {"image": "postgres:15"}}, "steps": {}})
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["DATABASE_URL"] = url
        r = subprocess.run([sys.executable, "-m", "devenv", "psql", "-X", "-At", "-c",
                            "select current_database() || ' as ' || current_user"],
                           cwd=root, env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"{db} as {target.user}"

        monkeypatch.setenv("DATABASE_URL", url)
        project = loader.load(root / "steps.yaml")
        argv, penv = psql.command(Session(project, RecordingReporter()), ["-c", "select 1"])
        assert argv[1:] == ["-c", "select 1"]
        assert target.password and target.password not in " ".join(argv)
        assert penv["PGDATABASE"] == db and penv["PGPASSWORD"] == target.password
    finally:
        database.drop(target, db)
