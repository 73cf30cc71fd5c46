"""Every exit of every command is one of the README's exit codes, with its meaning.

0 ready, 1 a step failed, 2 configuration or usage error, 3 a service never became healthy
(or is not running for a command that needs it), 4 busy, 5 a snapshot file refused,
130 interrupted. Each path is caused for real: a broken steps.yaml, a held lock (a real
flock from this process), a truncated file, a closed port, a failing step, SIGINT.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devenv.lock import project_lock
from devenv.postgres import dumpfiles
from tests.conftest import PgServer

MakeProject = Callable[..., Path]

CONFIG: dict[str, Any] = {
    "version": 1, "name": "codes",
    "services": {"db": {"image": "postgres:15", "env": {"POSTGRES_PASSWORD": "pw"},
                        "ports": ["5432"]}},
    "database": {"service": "db", "name": "codes_dev"},
    "steps": {"ok": {"run": "true", "needs": ["db"]}},
}


def devenv(root: Path, *args: str, env: dict[str, str] | None = None,
           ) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run([sys.executable, "-m", "devenv", "--plain", *args], cwd=root,
                          env=base | (env or {}), capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def snapshot_file(path: Path, project: str = "codes", data: bytes = b"x" * 1000) -> Path:
    """A well-formed snapshot file (its dump is not a real one: nothing gets that far)."""
    header = dumpfiles.Header(project=project, database="codes_dev", name="s", key="k" * 64,
                          steps=["ok"], fingerprints={"ok": "f"}, server_version_num=150000,
                          pg_dump_major=15, created=time.time())
    dumpfiles.write(path, header, lambda sink: sink(data))
    return path


EVERY_COMMAND = [
    ["graph"], ["plan"], ["run"], ["up"], ["refresh-db"], ["ci-setup"], ["fingerprint"],
    ["status"], ["logs", "db"], ["down"], ["psql", "-c", "select 1"],
    ["snapshot", "save", "s"], ["snapshot", "restore", "s"], ["snapshot", "list"],
    ["snapshot", "delete", "s"], ["snapshot", "gc"], ["snapshot", "export", "s", "f"],
    ["snapshot", "import", "f"],
]


@pytest.mark.parametrize("args", EVERY_COMMAND, ids=" ".join)
def test_a_config_error_is_2_for_every_command(make_project: MakeProject,
                                               args: list[str]) -> None:
    root = make_project("version: 1\nsteps:\n  a:\n    run: 'true'\n    nedds: [b]\n")
    r = devenv(root, *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "steps.yaml:5: steps.a.nedds: unknown key 'nedds'" in r.stdout + r.stderr


def test_doctor_reports_a_config_error_as_a_failing_check(make_project: MakeProject) -> None:
    root = make_project("version: 1\nsteps:\n  a:\n    run: 'true'\n    nedds: [b]\n")
    r = devenv(root, "doctor")
    assert r.returncode == 1  # doctor: 1 when a check fails, as the README says


@pytest.mark.parametrize(("args", "said"), [
    (["run", "nope"], "'nope' is not a step; steps: ok"),
    (["plan", "nope"], "'nope' is not a step; steps: ok"),
    (["up", "--profile", "nope"], "unknown profile 'nope'"),
    (["refresh-db", "--profile", "nope"], "unknown profile 'nope'"),
    (["ci-setup", "--profile", "nope"], "unknown profile 'nope'"),
    (["fingerprint", "--profile", "nope"], "unknown profile 'nope'"),
    (["status", "--profile", "nope"], "unknown profile 'nope'"),
    (["graph", "--format", "nope"], "unknown format 'nope'"),
    (["logs", "nope"], "no service, step or process named 'nope'"),
    (["snapshot", "save", "Bad Name!"], "invalid snapshot name"),
    (["run", "--bogus-option"], "No such option"),
    (["bogus-command"], "No such command"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_a_usage_error_is_2(make_project: MakeProject, args: list[str], said: str) -> None:
    root = make_project(CONFIG)
    r = devenv(root, *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert said in r.stdout + r.stderr


@pytest.mark.parametrize("args", [["refresh-db"], ["snapshot", "list"], ["snapshot", "save",
                                                                          "s"]], ids=" ".join)
def test_no_database_section_is_a_usage_error(make_project: MakeProject,
                                              args: list[str]) -> None:
    root = make_project({"version": 1, "steps": {"a": {"run": "true"}}})
    r = devenv(root, *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "needs a database: add a 'database:' section" in r.stderr


@pytest.fixture
def held(make_project: MakeProject) -> Iterator[Path]:
    """A project whose lock this test process holds (a real flock)."""
    root = make_project(CONFIG)
    with project_lock(root / ".devenv", "the test", wait=False):
        yield root


@pytest.mark.parametrize("args", [
    ["refresh-db"], ["snapshot", "save", "s"], ["snapshot", "restore", "s"],
    ["snapshot", "list"], ["snapshot", "delete", "s"], ["snapshot", "gc"],
    ["snapshot", "export", "s", "out.snap"], ["snapshot", "import", "good.snap"],
], ids=" ".join)
def test_no_wait_on_a_held_lock_is_4_busy(held: Path, args: list[str]) -> None:
    snapshot_file(held / "good.snap")
    r = devenv(held, *args, "--no-wait")
    assert r.returncode == 4, r.stdout + r.stderr
    assert f"another devenv is working on this project: pid {os.getpid()} (the test" \
        in r.stderr


def _truncated(root: Path) -> Path:
    good = snapshot_file(root / "good.snap").read_bytes()
    (root / "cut.snap").write_bytes(good[:-100])
    return root / "cut.snap"


def _flipped(root: Path) -> Path:
    good = snapshot_file(root / "good.snap").read_bytes()
    (root / "flipped.snap").write_bytes(good[:-1] + b"y")
    return root / "flipped.snap"


def _bare(root: Path) -> Path:
    (root / "bare.dump").write_bytes(b"PGDMP\x01\x0e\x00" + b"\x00" * 100)
    return root / "bare.dump"


def _header_cut(root: Path) -> Path:
    (root / "head.snap").write_bytes(dumpfiles.MAGIC + b'{"project": "co')
    return root / "head.snap"


def _missing(root: Path) -> Path:
    return root / "no-such.snap"


@pytest.mark.parametrize(("make", "said"), [
    (_truncated, "is truncated: its header promises a dump of 1000 bytes, the file holds 900"),
    (_flipped, "is damaged: the dump's sha256 does not match its header"),
    (_bare, "is a bare pg_dump archive, not a devenv snapshot file"),
    (_header_cut, "is truncated: its header line is incomplete"),
    (_missing, "no-such.snap: no such file"),
], ids=["truncated", "flipped", "bare-pg_dump", "header-cut", "missing"])
def test_a_refused_snapshot_file_is_5(make_project: MakeProject, make: Callable[[Path], Path],
                                      said: str) -> None:
    root = make_project(CONFIG)
    r = devenv(root, "snapshot", "import", str(make(root)))
    assert r.returncode == 5, r.stdout + r.stderr
    assert said in r.stderr


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("args", [
    ["run"], ["up"], ["refresh-db"], ["ci-setup"], ["snapshot", "save", "s"],
    ["snapshot", "list"],
], ids=" ".join)
def test_a_database_that_does_not_answer_is_3(make_project: MakeProject,
                                              args: list[str]) -> None:
    root = make_project(CONFIG)
    url = f"postgresql://u:pw@127.0.0.1:{_closed_port()}/codes_dev"
    r = devenv(root, *args, env={"DATABASE_URL": url})
    assert r.returncode == 3, r.stdout + r.stderr


def test_logs_of_a_service_never_started_here_is_3(make_project: MakeProject) -> None:
    root = make_project({**CONFIG, "services": {"db": {**CONFIG["services"]["db"],
                                                       "backend": "native"}}})
    r = devenv(root, "logs", "db")
    assert r.returncode == 3, r.stdout + r.stderr


@pytest.mark.postgres
@pytest.mark.parametrize("args", [["run"], ["up"], ["refresh-db"], ["ci-setup"]],
                         ids=" ".join)
def test_a_failing_step_is_1(make_project: MakeProject, pg_server: PgServer,
                             args: list[str]) -> None:
    db = pg_server.unique_db("codes")
    root = make_project({**CONFIG, "database": {**CONFIG["database"], "name": db},
                         "steps": {"bad": {"run": "exit 7", "needs": ["db"]}}})
    r = devenv(root, *args, env={"DATABASE_URL": pg_server.url(db)})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "exit code 7" in r.stdout


@pytest.mark.postgres
@pytest.mark.parametrize("args", [["run"], ["refresh-db"], ["ci-setup"]], ids=" ".join)
def test_sigint_during_a_step_is_130(make_project: MakeProject, pg_server: PgServer,
                                     args: list[str]) -> None:
    db = pg_server.unique_db("codes")
    root = make_project({**CONFIG, "database": {**CONFIG["database"], "name": db},
                         "steps": {"slow": {"run": "touch started; sleep 30",
                                            "needs": ["db"]}}})
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["DATABASE_URL"] = pg_server.url(db)
    p = subprocess.Popen([sys.executable, "-m", "devenv", "--plain", *args], cwd=root,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (root / "started").exists():
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()[0]
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        out = p.communicate(timeout=60)[0]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, out
