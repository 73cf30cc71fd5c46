"""``devenv down`` and ``status`` after a service switched backend: a real Docker container
and volume, a real native cluster, the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devenv import loader
from devenv.postgres import pgcluster
from devenv.services import native
from tests.services.conftest import pg_service, purge, unique_name, write_project

pytestmark = [pytest.mark.docker, pytest.mark.postgres]


@pytest.fixture
def switching(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    if pgcluster.find_bindir() is None:
        pytest.skip("no PostgreSQL server binaries")
    name = unique_name()
    root = tmp_path / "proj"
    try:
        yield root, name
    finally:
        if (root / "steps.yaml").exists():
            devenv(root, "down", "--volumes", "--yes")
        purge(name)


def devenv(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run([sys.executable, "-m", "devenv", "--plain", *args], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)


def engine(name: str) -> tuple[list[str], list[str]]:
    """The project's containers and volumes the Docker engine holds."""
    import docker

    client = docker.from_env()
    try:
        label = {"label": f"devenv.project={name}"}
        return ([c.name for c in client.containers.list(all=True, filters=label)],
                [v.name for v in client.volumes.list(filters=label)])
    finally:
        client.close()


def test_leftovers_of_the_other_backend_are_listed_and_removed(
        switching: tuple[Path, str]) -> None:
    root, name = switching

    def use(backend: str) -> dict[str, Any]:
        write_project(root, name, {"db": pg_service(backend=backend)})
        up = devenv(root, "up")
        assert up.returncode == 0, up.stdout + up.stderr
        st = devenv(root, "status", "--json")
        assert st.returncode == 0, st.stderr
        service: dict[str, Any] = json.loads(st.stdout)["services"][0]
        return service

    # docker first: a container and a named volume; nothing left elsewhere
    db = use("docker")
    assert db["backend"] == "docker" and "leftovers" not in db
    containers, volumes = engine(name)
    assert containers == [f"{name}-db"] and len(volumes) == 1

    # switched to native: the container and the volume are the docker backend's
    # leftovers; status names them and how to remove them
    db = use("native")
    assert db["backend"] == "native"
    [left] = db["leftovers"]
    assert left["backend"] == "docker"
    assert left["note"] == "left by the docker backend; db now uses native"
    assert f"container {name}-db (and anything stored inside it)" in left["items"]
    assert f"volume {volumes[0]}" in left["items"]
    text = devenv(root, "status").stdout
    assert (f"  db: left by the docker backend; db now uses native: volume {volumes[0]}, "
            f"container {name}-db (and anything stored inside it); `devenv down --volumes` "
            "removes them (and the native data)") in text

    # back to docker: now the native data folder is the leftover
    db = use("docker")
    [left] = db["leftovers"]
    project = loader.load(root / "steps.yaml")
    native_dir = native.layout(project, project.services["db"]).base
    assert left["backend"] == "native" and left["items"] == [f"folder {native_dir}"]

    # down --volumes removes what every backend holds for the service, and says which
    # were leftovers
    down = devenv(root, "down", "--volumes", "--yes")
    assert down.returncode == 0, down.stdout + down.stderr
    lines = down.stdout.splitlines()
    assert f"removed container {name}-db" in lines
    assert f"removed volume {volumes[0]}" in lines
    assert (f"deleted {native_dir} (left by the native backend; db now uses docker)"
            in lines), lines
    assert engine(name) == ([], [])
    assert not native_dir.exists()
    db = json.loads(devenv(root, "status", "--json").stdout)["services"][0]
    assert "leftovers" not in db


def test_volumes_names_what_the_data_holds_besides_the_working_database(
        switching: tuple[Path, str]) -> None:
    """down --volumes lists, before deleting, the snapshots saved by name and the backup
    refresh-db kept, which live in the same data as the working database."""
    root, name = switching
    write_project(root, name, {"db": pg_service()})
    assert devenv(root, "refresh-db").returncode == 0
    r = devenv(root, "refresh-db")  # the ready copy in, the first build kept as __prev
    assert r.returncode == 0, r.stdout + r.stderr
    r = devenv(root, "snapshot", "save", "before-demo")
    assert r.returncode == 0, r.stdout + r.stderr
    r = devenv(root, "down", "--volumes")  # no terminal: refused, naming what would go
    assert r.returncode == 2
    assert ("the snapshot saved by name before-demo (inside that data; devenv snapshot "
            "export keeps one as a file)") in r.stderr, r.stderr
    assert "the backup appdb__prev (inside that data)" in r.stderr, r.stderr
    r = devenv(root, "down", "--volumes", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "deleted with the data: the snapshot saved by name before-demo" in r.stdout
    assert engine(name) == ([], [])
