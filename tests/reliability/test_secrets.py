"""The database password never shows: not on the terminal, in logs, state, JSON, JUnit,
status or plan output. A unique password is used so a match cannot be a coincidence."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from devenv.postgres import database, siblings

pytestmark = pytest.mark.postgres
PSQL = "psql -X -q -v ON_ERROR_STOP=1"


@pytest.fixture
def secret_user(pg_server: Any) -> Iterator[tuple[str, str]]:
    user = f"u_{uuid.uuid4().hex[:8]}"
    password = f"Pw-{uuid.uuid4().hex}"
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
            sql.Identifier(user), sql.Literal(password)))
    yield user, password
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))


def test_password_appears_nowhere(make_project: Callable[..., Path], pg_server: Any,
                                  secret_user: tuple[str, str], tmp_path: Path) -> None:
    user, password = secret_user
    db = pg_server.unique_db("sec")
    root = make_project({
        "version": 1, "name": "sec",
        "services": {"db": {"image": "postgres:15",
                            "env": {"POSTGRES_USER": user, "POSTGRES_PASSWORD": password}}},
        "database": {"service": "db", "name": db},
        "steps": {
            "schema": {"run": f"{PSQL} -c 'create table t(id int)'", "needs": ["db"]},
            "broken": {"run": f"{PSQL} -c 'select * from nope'", "needs": ["schema"],
                       "profiles": ["local"]},
        },
        "processes": {"web": {"run": "sleep 30", "ready": "cmd: true"}},
    })
    url = f"postgresql://{user}:{password}@127.0.0.1:{pg_server.port}/{db}"
    env = {**os.environ, "DATABASE_URL": url}
    reports = tmp_path / "reports"
    commands = [
        ["plan"], ["plan", "--json"], ["run", "schema"], ["run"], ["status"],
        ["status", "--json"], ["refresh-db", "--profile", "ci"],
        ["ci-setup", "--junit", str(reports / "j.xml"), "--json", str(reports / "r.json"),
         "--cache-dir", str(tmp_path / "cache")],
        ["up", "--detach", "--profile", "ci"], ["logs", "schema"], ["down", "--yes"],
        ["run", "--database-url", url, "nope-not-a-step"],
    ]
    seen = []
    codes: dict[str, int] = {}
    try:
        for args in commands:
            r = subprocess.run([sys.executable, "-m", "devenv", *args], cwd=root, env=env,
                               capture_output=True, text=True, timeout=120)
            seen.append((args, r.stdout + r.stderr))
            codes[args[0] + (" " + args[1] if len(args) > 1 else "")] = r.returncode
        # a server that refuses the password: the error shows the URL, masked
        bad = url.replace("127.0.0.1", "127.0.0.2")
        r = subprocess.run([sys.executable, "-m", "devenv", "ci-setup"], cwd=root,
                           env={**env, "DATABASE_URL": bad}, capture_output=True, text=True,
                           timeout=120)
        seen.append((["ci-setup (unreachable)"], r.stdout + r.stderr))
        assert f"{user}:***@" in r.stdout + r.stderr
    finally:
        target = database.parse_url(url)
        for info in siblings.related(target, db):
            database.drop(target, info.datname)
    # the commands really ran (a failing step among them: its output is grepped too)
    assert codes["run schema"] == 0 and codes["refresh-db --profile"] == 0
    assert codes["ci-setup --junit"] == 0 and codes["up --detach"] == 0
    assert codes["run"] == 1 and codes["status"] == 0
    for args, out in seen:
        assert password not in out, f"password shown by devenv {' '.join(args)}"
    assert any(f"{user}:***@" in out for _, out in seen)
    files = [p for p in [*(root / ".devenv").rglob("*"), *reports.rglob("*")] if p.is_file()]
    assert len(files) > 5
    for p in files:
        assert password.encode() not in p.read_bytes(), f"password in {p}"
    # the cache dump holds the data, not the credentials
    dumps = list((tmp_path / "cache").glob("*"))
    assert dumps, "ci-setup saved no cache dump to search"
    for p in dumps:
        assert password.encode() not in p.read_bytes()


def _cmdlines() -> dict[int, bytes]:
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):  # gone meanwhile
                out[int(d.name)] = (d / "cmdline").read_bytes()
    return out


def test_run_with_database_url_keeps_the_password_out_of_ps_logs_and_reports(
        make_project: Callable[..., Path], pg_server: Any, secret_user: tuple[str, str],
        tmp_path: Path) -> None:
    """A ``run:`` that uses ``${DATABASE_URL}`` gets the value through its environment:
    the shell's command line (``ps``), the started line, the step log, the JUnit and JSON
    reports show the reference or a masked URL, never the password."""
    user, password = secret_user
    db = pg_server.unique_db("secrun")
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    root = make_project({
        "version": 1, "name": "secrun",
        "services": {"db": {"image": "postgres:15",
                            "env": {"POSTGRES_USER": user, "POSTGRES_PASSWORD": password}}},
        "database": {"service": "db", "name": db},
        "steps": {
            # printf and test are shell builtins: no program of the step's own gets the
            # value as an argument (one that does shows it in ps: that is its own argv)
            "uses-url": {"run": f"echo {marker} length $(printf %s ${{DATABASE_URL}} | wc -c)"
                                "; sleep 3", "needs": ["db"]},
            "fails": {"run": "echo failing on purpose; test -z ${DATABASE_URL}",
                      "needs": ["uses-url"]},
        },
    })
    url = f"postgresql://{user}:{password}@127.0.0.1:{pg_server.port}/{db}"
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "j.xml").write_text("old report")
    (reports / "j.xml").chmod(0o644)  # a report from before is replaced, not reused
    seen_marker = False
    leaks: set[bytes] = set()
    try:
        p = subprocess.Popen(
            [sys.executable, "-m", "devenv", "ci-setup", "--junit", str(reports / "j.xml"),
             "--json", str(reports / "r.json")], cwd=root,
            env={**os.environ, "DATABASE_URL": url}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        while p.poll() is None:
            for cmdline in _cmdlines().values():
                seen_marker = seen_marker or marker.encode() in cmdline
                if password.encode() in cmdline:
                    leaks.add(cmdline.replace(b"\0", b" "))
            time.sleep(0.02)
        assert p.stdout is not None
        out = p.stdout.read().decode()
    finally:
        target = database.parse_url(url)
        for info in siblings.related(target, db):
            database.drop(target, info.datname)
    assert seen_marker, "the step's shell was never seen running"
    assert not leaks, f"the password in a command line: {leaks}"
    assert p.returncode == 1, out  # `fails` failed, so its log's tail is in the JUnit file
    assert 'started: echo failing on purpose; test -z "${DATABASE_URL}"' in out
    assert password not in out
    log = (root / ".devenv/ci-logs/uses-url.log").read_text()  # ci-setup keeps its own
    assert log.startswith(f'$ echo {marker} length $(printf %s "${{DATABASE_URL}}" | wc -c)')
    assert f"{marker} length {len(url)}" in log  # the step had the value
    junit = (reports / "j.xml").read_text()
    assert "failing on purpose" in junit and 'test -z "${DATABASE_URL}"' in junit
    for p_ in [*reports.iterdir(), *(root / ".devenv").rglob("*")]:
        if p_.is_file():
            assert password.encode() not in p_.read_bytes(), f"password in {p_}"
    for report in ("j.xml", "r.json"):
        assert oct((reports / report).stat().st_mode & 0o777) == oct(0o600), report
