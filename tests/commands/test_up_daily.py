"""The daily loop (issue 13): `up` after an edit never duplicates data, carries data
through new migrations, refuses phantom migrations, and running processes follow a swap.

Real ``devenv`` subprocesses against a real PostgreSQL (``DATABASE_URL``); the steps are
psql commands, the process a tiny HTTP server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from devenv import loader, processes
from devenv.postgres import database, siblings
from devenv.postgres.pgcluster import free_port

pytestmark = pytest.mark.postgres

PSQL = "psql -X -q -v ON_ERROR_STOP=1"
SERVER = """\
import http.server, os, sys
port = int(sys.argv[1])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{os.getpid()} {os.environ.get('PGOPTIONS', '')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


class Proj:
    def __init__(self, root: Path, url: str, port: int) -> None:
        self.root, self.url, self.port = root, url, port

    def devenv(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("CI", "NO_COLOR")}
        env["DATABASE_URL"] = self.url
        return subprocess.run([sys.executable, "-m", "devenv", "--plain", *args],
                              cwd=self.root, env=env, capture_output=True, text=True,
                              timeout=120)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(sql).fetchall()

    def edit(self, name: str, text: str) -> None:
        (self.root / name).write_text(text)

    def config(self) -> dict[str, Any]:
        return dict(yaml.safe_load((self.root / "steps.yaml").read_text()))

    def write_config(self, cfg: dict[str, Any]) -> None:
        (self.root / "steps.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    def get(self) -> str:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{self.port}/", timeout=5) as resp:
            return str(resp.read().decode())


@pytest.fixture
def proj(make_project: Callable[..., Path], pg_server: Any) -> Iterator[Proj]:
    db = pg_server.unique_db("daily")
    port = free_port()
    root = make_project({
        "version": 1, "name": "daily",
        "services": {"db": {"image": "postgres:15"}},
        "database": {"service": "db", "name": db, "schemas": ["public", "app"]},
        "steps": {
            "migrate": {"run": f"{PSQL} -f migrations/all.sql", "rerun": "incremental",
                        "inputs": ["migrations/**"], "needs": ["db"]},
            "fake-data": {"run": f"{PSQL} -f fake.sql", "inputs": ["fake.sql"],
                          "needs": ["migrate"]},
        },
        "processes": {"web": {"run": [sys.executable, "server.py", str(port)],
                              "search_path": ["app", "public"],
                              "ready": f"http://127.0.0.1:{port}/", "ready_timeout": 20}},
    }, files={
        "migrations/0001_users.sql": "",
        "migrations/all.sql": "create table if not exists app.users(id serial, name text);\n",
        "fake.sql": "insert into app.users(name) select 'u' || g from generate_series(1, 20) g;\n",
        "server.py": SERVER,
    })
    p = Proj(root, pg_server.url(db), port)
    try:
        yield p
    finally:
        processes.stop_all(loader.load(root / "steps.yaml"), grace=1)
        target = database.parse_url(pg_server.url(db))
        for info in siblings.related(target, db):
            database.drop(target, info.datname)


def test_edited_data_step_is_never_run_on_top(proj: Proj) -> None:
    r = proj.devenv("up", "--no-processes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert proj.rows("select count(*) from app.users") == [(20,)]
    with psycopg.connect(proj.url, autocommit=True) as conn:
        conn.execute("insert into app.users(name) values ('made by hand')")

    proj.edit("fake.sql", "insert into app.users(name) select 'v' || g "
                          "from generate_series(1, 20) g;\n")
    r = proj.devenv("up", "--no-processes")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    # 20 rows, not 40: built beside and swapped in, never on top
    assert proj.rows("select count(*), min(name) from app.users") == [(20, "v1")]
    assert "not running on top of" in out and "fake-data" in out
    prev = f"{database.parse_url(proj.url).dbname}__prev"
    assert f"kept as {prev}" in out
    # the hand-made row is where the message said
    prev_url = database.parse_url(proj.url).with_db(prev).url()
    with psycopg.connect(prev_url) as conn:
        assert conn.execute("select count(*) from app.users where name = 'made by hand'"
                            ).fetchone() == (1,)
    # up again: nothing to do, still 20
    r = proj.devenv("up", "--no-processes")
    assert r.returncode == 0 and proj.rows("select count(*) from app.users") == [(20,)]


def test_new_migration_runs_on_top_and_carries_the_data(proj: Proj) -> None:
    assert proj.devenv("up", "--no-processes").returncode == 0
    with psycopg.connect(proj.url, autocommit=True) as conn:
        conn.execute("insert into app.users(name) values ('made by hand')")
    proj.edit("migrations/0002_email.sql", "")
    proj.edit("migrations/all.sql",
              "create table if not exists app.users(id serial, name text);\n"
              "alter table app.users add column if not exists email text;\n")
    r = proj.devenv("up", "--no-processes")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    # the migration ran on top; fake data was not run again; the hand-made row stays
    assert proj.rows("select count(*) from app.users") == [(21,)]
    assert proj.rows("select count(*) from information_schema.columns "
                     "where table_name = 'users' and column_name = 'email'") == [(1,)]
    assert "not running on top" not in out
    r = proj.devenv("plan", "--json")
    assert '"would_run": 0' in r.stdout, r.stdout


def test_phantom_migration_is_never_run_on(proj: Proj) -> None:
    proj.edit("migrations/0002_email.sql", "")
    assert proj.devenv("up", "--no-processes").returncode == 0
    (proj.root / "migrations/0002_email.sql").unlink()  # a branch switch, a revert
    r = proj.devenv("up", "--no-processes")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "phantom migration" in out and "migrations/0002_email.sql" in out
    assert proj.rows("select count(*) from app.users") == [(20,)]


def test_rebuild_stop_names_the_command(proj: Proj) -> None:
    cfg = proj.config()
    cfg["up"] = {"rebuild": "stop"}
    proj.write_config(cfg)
    assert proj.devenv("up", "--no-processes").returncode == 0
    proj.edit("fake.sql", "insert into app.users(name) values ('x');\n")
    r = proj.devenv("up", "--no-processes")
    assert r.returncode == 6, r.stdout + r.stderr
    assert "devenv refresh-db" in r.stderr + r.stdout
    assert proj.rows("select count(*) from app.users") == [(20,)]  # untouched
    r = proj.devenv("up", "--no-processes", "--rebuild")
    assert r.returncode == 0 and proj.rows("select count(*) from app.users") == [(1,)]


def test_rerun_value_is_checked(proj: Proj) -> None:
    cfg = proj.config()
    good = dict(cfg["steps"]["fake-data"])
    cfg["steps"]["fake-data"]["rerun"] = "incremantal"
    proj.write_config(cfg)
    r = proj.devenv("plan")
    cfg["steps"]["fake-data"] = good
    proj.write_config(cfg)
    assert r.returncode == 2
    assert "steps.fake-data.rerun: invalid value 'incremantal' (did you mean 'incremental'?)" \
        in r.stderr + r.stdout


def test_processes_follow_a_swap_and_take_search_path(proj: Proj) -> None:
    r = proj.devenv("up", "--detach")
    assert r.returncode == 0, r.stdout + r.stderr
    pid, opts = proj.get().split(" ", 1)
    assert opts == "-c search_path=app,public"
    r = proj.devenv("refresh-db")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "restarted web" in out
    deadline = time.monotonic() + 10
    while True:
        try:
            new_pid = proj.get().split(" ", 1)[0]
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert new_pid != pid
    # reconnects: true leaves it running
    cfg = proj.config()
    cfg["processes"]["web"]["reconnects"] = True
    proj.write_config(cfg)
    r = proj.devenv("refresh-db", "--undo")
    assert r.returncode == 0 and "left web running" in r.stdout + r.stderr
    assert proj.get().split(" ", 1)[0] == new_pid


def test_a_foreground_up_restarts_its_processes_after_a_swap(proj: Proj) -> None:
    """refresh-db in another terminal: the foreground `up` (asked with SIGUSR1) restarts
    its process, which answers its ready check again on the new database."""
    import signal
    import threading

    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NO_COLOR")}
    env["DATABASE_URL"] = proj.url
    up = subprocess.Popen([sys.executable, "-m", "devenv", "--plain", "up"], cwd=proj.root,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True)
    lines: list[str] = []
    done = threading.Event()

    def pump() -> None:
        assert up.stdout is not None
        for line in up.stdout:
            lines.append(line.rstrip("\n"))
        done.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + 120
        while not any("all processes are ready" in ln for ln in lines):
            assert up.poll() is None and time.monotonic() < deadline, "\n".join(lines)
            time.sleep(0.1)
        pid = proj.get().split(" ", 1)[0]
        r = proj.devenv("refresh-db")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "asked the foreground `devenv up`" in r.stdout + r.stderr
        while not any("all processes are ready again" in ln for ln in lines):
            assert up.poll() is None and time.monotonic() < deadline, "\n".join(lines)
            time.sleep(0.1)
        assert proj.get().split(" ", 1)[0] != pid
    finally:
        os.killpg(up.pid, signal.SIGINT)
        up.wait(timeout=60)
