"""``devenv up`` end to end: a real ``devenv`` subprocess, a real PostgreSQL (through
``DATABASE_URL``), a step that creates a table and a tiny HTTP app as the process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devenv import loader, processes
from devenv.lock import project_lock
from devenv.postgres import database
from devenv.postgres.pgcluster import free_port
from tests.procs import gone

pytestmark = pytest.mark.postgres

MakeProject = Callable[..., Path]

SERVER = """\
import http.server, os, subprocess, sys
port = int(sys.argv[1])
child = subprocess.Popen(["sleep", "300"])  # the process group must stop, not just the app
with open("web.pids", "w") as fh:
    fh.write(f"{os.getpid()} {child.pid}\\n")
print(f"web booting on {port}")
if os.environ.get("CRASH"):
    print("boom: SECRET_KEY is not set")
    sys.exit(3)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["GREETING"].encode()
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, fmt, *args):
        print("request", self.path)
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""

MAKE_TABLE = """\
import os, psycopg
with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
    conn.execute("CREATE TABLE items (id int)")
print("table created")
"""


@dataclass
class Up:
    """A ``devenv up`` running in the background, its output collected line by line."""

    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait_for(self, text: str, timeout: float = 30) -> None:
        with self.changed:
            ok = self.changed.wait_for(lambda: any(text in ln for ln in self.lines)
                                       or self.popen.poll() is not None, timeout)
        assert ok and any(text in ln for ln in self.lines), "\n".join(self.lines)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Env:
    root: Path
    dbname: str
    url: str
    port: int
    ups: list[Up] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        full = {k: v for k, v in os.environ.items() if k not in ("CI", "NO_COLOR")}
        full["DATABASE_URL"] = self.url
        return full

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "devenv", *args], cwd=self.root,
                              env={**self.env(), **extra}, capture_output=True, text=True,
                              timeout=60)

    def start(self, *args: str) -> Up:
        p = subprocess.Popen([sys.executable, "-m", "devenv", *args], cwd=self.root,
                             env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
        up = Up(p)
        threading.Thread(target=up.pump, daemon=True).start()
        self.ups.append(up)
        return up

    def table_exists(self) -> bool:
        with psycopg.connect(self.url) as conn:
            row = conn.execute("SELECT to_regclass('public.items') IS NOT NULL").fetchone()
        return bool(row and row[0])

    def get(self, path: str) -> tuple[int, str]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()

    def pids(self) -> tuple[int, int]:
        leader, child = (self.root / "web.pids").read_text().split()
        return int(leader), int(child)


@pytest.fixture
def up_env(make_project: MakeProject, pg_server: Any) -> Iterator[Callable[..., Env]]:
    """A project (step ``create-table``, process ``web``) on its own database. Stops every
    ``devenv up`` and process it started and drops the database at the end."""
    made: list[Env] = []

    def make(step: str = MAKE_TABLE, **web_env: str) -> Env:
        port = free_port()
        dbname = pg_server.unique_db("up")
        root = make_project({
            "version": 1,
            "name": f"up-{uuid.uuid4().hex[:8]}",
            "services": {"db": {"image": "postgres:15"}},
            "database": {"service": "db", "name": "app"},
            "steps": {"create-table": {"run": [sys.executable, "make_table.py"]}},
            "processes": {"web": {
                "run": [sys.executable, "server.py", str(port)],
                "env": {"GREETING": "hello from ${PGDATABASE}", **web_env},
                "ready": f"http://127.0.0.1:{port}/health",
                "ready_timeout": 20,
            }},
        }, files={"server.py": SERVER, "make_table.py": step})
        made.append(Env(root, dbname, pg_server.url(dbname), port))
        return made[-1]

    try:
        yield make
    finally:
        for e in made:
            for up in e.ups:
                if up.popen.poll() is None:
                    os.killpg(up.popen.pid, signal.SIGKILL)
                    up.popen.wait()
            processes.stop_all(loader.load(e.root / "steps.yaml"), grace=1)
            database.drop(database.parse_url(pg_server.url()), e.dbname)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_up_runs_the_step_starts_the_process_and_stops_it_on_ctrl_c(
        up_env: Callable[..., Env], sig: signal.Signals) -> None:
    e = up_env()
    up = e.start("--plain", "up")
    up.wait_for("devenv | all processes are ready (web); press Ctrl-C to stop them "
                "(services keep running)")
    # The step ran first, on the database devenv created; the process got the steps'
    # environment with its own env expanded.
    assert "[create-table] ok" in up.output
    assert e.table_exists()
    assert e.get("/health") == (200, f"hello from {e.dbname}")
    up.wait_for("web    | request /health")
    assert f"web    | web booting on {e.port}" in up.lines
    assert f"devenv | web is ready (http://127.0.0.1:{e.port}/health: HTTP 200)" in up.output
    leader, child = e.pids()
    # Once its processes are ready, up no longer holds the project lock (refresh-db may run).
    with project_lock(e.root / ".devenv", "test", wait=False):
        pass

    up.popen.send_signal(sig)
    assert up.popen.wait(timeout=20) == 130, up.output
    assert "devenv | interrupted: stopping the processes (services keep running)" in up.lines
    assert "devenv | stopped web" in up.lines
    assert gone(leader) and gone(child)
    # The database and what the step made are still there.
    assert e.table_exists()
    assert processes.read_records(loader.load(e.root / "steps.yaml")) == {}


def test_up_detach_twice_keeps_processes_then_stop_all(up_env: Callable[..., Env]) -> None:
    e = up_env()
    r = e.run("--plain", "up", "--detach")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[create-table] ok" in r.stdout
    assert "devenv | web started (pid " in r.stdout
    assert "running in the background; stop them with `devenv down`" in r.stdout
    assert e.get("/health")[0] == 200
    project = loader.load(e.root / "steps.yaml")
    (st,) = processes.status(project)
    assert (st.name, st.alive, st.ready, st.detached) == ("web", True, True, True)
    assert st.since is not None and abs(time.time() - st.since) < 60
    record = (e.root / ".devenv/processes.json").read_text()
    assert f"web booting on {e.port}" in (e.root / ".devenv/logs/web.log").read_text()
    assert "secret" not in record  # no password (the test cluster's is 'secret...')

    r = e.run("--plain", "up", "--detach")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "everything is up to date: no step needs to run" in r.stdout
    assert "running 0 of" not in r.stdout  # nothing to run is said once
    assert f"devenv | web is already running (pid {st.pid}, since " in r.stdout
    assert "all processes were already running" in r.stdout
    assert [s.pid for s in processes.status(project)] == [st.pid]

    # A foreground up refuses to start a second copy.
    r = e.run("--plain", "up")
    assert r.returncode == 4  # busy: its processes already run
    assert (f"error: processes already running in the background: web (pid {st.pid}); stop "
            "them with `devenv down`, or keep them with `devenv up --detach`") in r.stderr

    leader, child = e.pids()
    assert processes.stop_all(project) == ["web"]
    assert gone(leader) and gone(child)
    assert [s.alive for s in processes.status(project)] == [False]
    assert processes.stop_all(project) == []


def test_process_crashing_before_ready_exits_1_with_its_tail(
        up_env: Callable[..., Env]) -> None:
    e = up_env(CRASH="1")
    r = e.run("--plain", "up")
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout.splitlines()
    i = out.index("devenv | web exited with code 3 before it was ready; its last output:")
    assert out[i + 1:i + 3] == [f"devenv |   | web booting on {e.port}",
                                "devenv |   | boom: SECRET_KEY is not set"]
    assert gone(e.pids()[1])


def test_failing_step_starts_no_process(up_env: Callable[..., Env]) -> None:
    e = up_env(step="import sys\nprint('migration 0042 failed')\nsys.exit(2)\n")
    r = e.run("--plain", "up")
    assert r.returncode == 1
    assert "[create-table] FAILED (exit code 2)" in r.stdout
    assert "  | migration 0042 failed" in r.stdout
    assert "error: a step failed: not starting the processes" in r.stdout
    assert not (e.root / "web.pids").exists()
    assert processes.read_records(loader.load(e.root / "steps.yaml")) == {}


def test_unknown_profile_and_no_processes(up_env: Callable[..., Env]) -> None:
    e = up_env()
    r = e.run("--plain", "up", "--profile", "lcoal")
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: unknown profile 'lcoal' (did you mean 'local'?); "
                                "known profiles: local, ci")
    r = e.run("--plain", "up", "--no-processes", "--jobs", "1",
              "--database-url", e.url, DATABASE_URL="")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[create-table] ok" in r.stdout and "devenv |" not in r.stdout
    assert e.table_exists() and not (e.root / "web.pids").exists()
