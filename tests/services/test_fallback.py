"""backend: auto on a machine where no Docker engine answers: devenv falls back to the
local PostgreSQL binaries and says so (DOCKER_HOST points at a socket nobody serves)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from devenv.postgres import pgcluster

pytestmark = pytest.mark.postgres


def test_up_falls_back_to_native_and_says_so(make_project: Callable[..., Path]) -> None:
    if pgcluster.find_bindir() is None:
        pytest.skip("no PostgreSQL server binaries")
    name = f"fb{uuid.uuid4().hex[:8]}"
    root = make_project({
        "version": 1, "name": name,
        "services": {"db": {"image": "postgres:15", "env": {"POSTGRES_PASSWORD": "pw"},
                            "ports": ["5432"]}},
        "database": {"service": "db", "name": "app_dev"},
        "steps": {"schema": {"run": "psql -X -q -v ON_ERROR_STOP=1 -c 'create table t(i int)'",
                             "needs": ["db"]}},
    })
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["DOCKER_HOST"] = "unix:///tmp/devenv-no-engine-here.sock"

    def devenv(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "devenv", "--plain", *args], cwd=root,
                              env=env, capture_output=True, text=True, timeout=180)

    try:
        up = devenv("up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "starting db (native)" in up.stdout
        assert "[schema] ok in" in up.stdout
        status = devenv("status")
        assert status.returncode == 0
        assert "native" in status.stdout
        assert "no Docker engine answers at unix:///tmp/devenv-no-engine-here.sock" in \
            status.stdout
    finally:
        devenv("down", "--volumes", "--yes")


@pytest.mark.docker
def test_missing_image_falls_back_to_native_and_every_command_agrees(
        make_project: Callable[..., Path]) -> None:
    if pgcluster.find_bindir() is None:
        pytest.skip("no PostgreSQL server binaries")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine")
    name = f"fi{uuid.uuid4().hex[:8]}"
    root = make_project({
        "version": 1, "name": name,
        "services": {"db": {"image": "postgres:99-devenv-missing",
                            "env": {"POSTGRES_PASSWORD": "pw"}, "ports": ["5432"]}},
        "database": {"service": "db", "name": "app_dev"},
        "steps": {"schema": {"run": "psql -X -q -v ON_ERROR_STOP=1 -c 'create table t(i int)'",
                             "needs": ["db"]}},
    })
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}

    def devenv(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "devenv", "--plain", *args], cwd=root,
                              env=env, capture_output=True, text=True, timeout=300)

    try:
        up = devenv("up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "image postgres:99-devenv-missing is not on this machine and could not be " \
               "pulled" in up.stdout
        assert "using the local PostgreSQL binaries instead (backend: native)" in up.stdout
        assert "db is healthy (native)" in up.stdout  # the backend that runs it, not docker
        assert "[schema] ok in" in up.stdout
        status = devenv("status")
        assert "native: image postgres:99-devenv-missing could not be pulled" in status.stdout
        again = devenv("up")
        assert again.returncode == 0
        assert "pulling" not in again.stdout and "starting db (native)" in again.stdout
        assert "[schema] skipped: unchanged since" in again.stdout
    finally:
        devenv("down", "--volumes", "--yes")


# Uninstalling PostgreSQL is not something a test can do here: the subprocess below runs
# the real CLI with the server-binary search pointed at nowhere (PATH without pg_ctl,
# no search folders), which is what a machine without them looks like to devenv.
NO_BINARIES = ("import sys, devenv.postgres.pgcluster as p; p.SEARCH_DIRS = (); "
               "from devenv.cli import main; sys.argv = ['devenv', *sys.argv[1:]]; main()")


def test_no_engine_and_no_binaries_is_a_clear_error_naming_both(
        make_project: Callable[..., Path]) -> None:
    root = make_project({
        "version": 1, "name": f"nb{uuid.uuid4().hex[:8]}",
        "services": {"db": {"image": "postgres:15", "env": {"POSTGRES_PASSWORD": "pw"}}},
        "database": {"service": "db", "name": "app_dev"},
        "steps": {"schema": {"run": "true", "needs": ["db"]}},
    })
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["DOCKER_HOST"] = "unix:///tmp/devenv-no-engine-here.sock"
    env["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    assert subprocess.run(["sh", "-c", "command -v pg_ctl"], env=env,
                          capture_output=True).returncode != 0
    up = subprocess.run([sys.executable, "-c", NO_BINARIES, "--plain", "up"], cwd=root,
                        env=env, capture_output=True, text=True, timeout=120)
    assert up.returncode == 3, up.stdout + up.stderr
    out = up.stdout + up.stderr
    assert "no Docker engine answers at unix:///tmp/devenv-no-engine-here.sock" in out
    assert "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in the usual " \
           "places" in out
    assert "Traceback" not in out
