"""Engine and service checks: an occupied host port, a missing image, a stopped container,
a container started from an older definition; and --fix."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devenv import loader
from devenv.events import RecordingReporter
from devenv.postgres.pgcluster import free_port
from devenv.services import launch
from devenv.session import Session
from tests.doctor.conftest import checks, final, run_doctor

MakeProject = Callable[..., Path]


def config(name: str, service: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": 1,
        "name": name,
        "services": {"db": service},
        "database": {"service": "db", "name": "appdb"},
        "steps": {"noop": {"run": "true"}},
    }


def test_host_port_held_by_another_program(make_project: MakeProject,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    port = free_port()
    root = make_project(config("doc-port", {
        "image": "postgres:15", "env": {"POSTGRES_PASSWORD": "x"}, "ports": [f"{port}:5432"]}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        found = checks(root)["engine.ports"]
    assert found.status == "fail"
    holder = found.finding.split(" is in use by ", 1)[1]
    assert found.finding == f"host port {port} (service db) is in use by {holder}"
    assert holder.startswith(f"pid {os.getpid()} (")
    assert found.fix.startswith(f"stop {holder}, or publish db on a free port: ports: [\"")
    assert found.fix.endswith(':5432"] in steps.yaml')
    # Once the port is free again, nothing to report.
    assert checks(root)["engine.ports"].finding == f"host ports: {port} free (db)"


# --------------------------------------------------------------------------- docker


def _purge(name: str) -> None:
    import docker

    client = docker.from_env()
    try:
        for c in client.containers.list(all=True, filters={"label": f"devenv.project={name}"}):
            c.remove(force=True, v=True)
        for v in client.volumes.list(filters={"label": f"devenv.project={name}"}):
            v.remove(force=True)
    finally:
        client.close()


@pytest.fixture
def docker_name(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    pytest.importorskip("devenv.services.docker")
    from devenv.services.docker import DockerBackend

    ok, why = DockerBackend().available()
    if not ok:
        pytest.skip(why)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    name = f"doc-{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        _purge(name)


@pytest.mark.docker
def test_missing_image(make_project: MakeProject, docker_name: str) -> None:
    image = f"devenv-doctor-missing-{docker_name}:v0"
    root = make_project(config(docker_name, {"image": image, "env": {"POSTGRES_PASSWORD": "x"}}))
    everything = checks(root)
    found = everything["engine.images"]
    assert found.status == "fail"
    assert found.finding == f"image {image} (service db) is not on this machine"
    assert found.fix == f"docker pull {image}"
    backend = everything["engine.backend"]
    assert backend.status == "ok"
    assert backend.finding.startswith("db: docker engine ")


@pytest.mark.docker
def test_stopped_container_and_changed_definition(make_project: MakeProject,
                                                  docker_name: str) -> None:
    port = free_port()
    service = {"image": "postgres:15", "env": {"POSTGRES_PASSWORD": "x"},
               "ports": [f"{port}:5432"], "volumes": {"data": "/var/lib/postgresql/data"}}
    root = make_project(config(docker_name, service))
    project = loader.load(root / "steps.yaml")
    Session(project, RecordingReporter()).start(["db"])
    found = checks(root)
    assert found["services.running"].status == "ok"
    assert found["services.running"].finding.startswith("db healthy at 127.0.0.1:")
    assert found["services.config"].finding == "running services match their definitions: db"
    assert found["db.connect"].status == "ok"
    # Its fixed host port is held by its own container: fine.
    assert found["engine.ports"].finding == f"host ports: {port} held by db (this project's)"

    # Stop the container for real.
    backend, _ = launch.choose_backend(project.services["db"])
    backend.down(project, project.services["db"])
    found = checks(root)
    running = found["services.running"]
    assert running.status == "fail"
    assert running.finding.startswith(f"db is stopped (docker): container {docker_name}-db")
    assert running.fix == "devenv up (starts what is stopped)"
    assert found["db.connect"].finding == "not checked: service db is not running"
    code, out = run_doctor(root, fix=True)
    assert "  - start db (as devenv up does)\n" in out
    assert code == 0, out
    assert final(out)["services.running"][0] == "ok"

    # Change the service's definition: the running container no longer matches it.
    service["env"] = {"POSTGRES_PASSWORD": "x", "TZ": "UTC"}
    root = make_project(config(docker_name, service))
    found = checks(root)
    assert found["services.config"].status == "warn"
    assert found["services.config"].finding == ("db runs with an older definition than "
                                                "steps.yaml (its config hash differs)")
    assert found["services.config"].fix == "devenv up (recreates it from the current definition)"
    code, out = run_doctor(root, fix=True)
    assert code == 0, out
    assert final(out)["services.config"][0] == "ok"


@pytest.mark.postgres
def test_native_service_never_started_then_fix(make_project: MakeProject,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("devenv.services.native")
    from devenv.services.native import NativeBackend

    ok, why = NativeBackend().available()
    if not ok:
        pytest.skip(why)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    root = make_project(config(f"doc-{uuid.uuid4().hex[:8]}", {
        "image": "postgres:15", "backend": "native", "env": {"POSTGRES_PASSWORD": "x"}}))
    project = loader.load(root / "steps.yaml")
    try:
        found = checks(root)
        # the backend: key's own line (5 is image:, 4 the service's name)
        assert found["engine.backend"].finding == "db: native (backend: native in steps.yaml:6)"
        running = found["services.running"]
        assert running.status == "fail"
        assert running.finding.startswith("db has never been started (native): no data yet")
        assert running.fix == "devenv up (starts what is stopped)"
        assert found["db.connect"].finding == "not checked: service db is not running"
        code, out = run_doctor(root, fix=True)
        assert "  - start db (as devenv up does)\n" in out
        # Once it runs, the database turns out missing: the next round runs up.
        assert "  - devenv up --no-processes (runs the steps that changed)\n" in out
        assert code == 0, out
        assert final(out)["services.running"][1].startswith("db healthy at 127.0.0.1:")
    finally:
        NativeBackend().down(project, project.services["db"], volumes=True)


@pytest.mark.docker
def test_a_built_image_is_checked_for_its_context_as_it_is_now(
        make_project: MakeProject, docker_name: str) -> None:
    import docker as sdk

    from devenv.services import docker as backend

    root = make_project({"version": 1, "name": docker_name,
                         "services": {"web": {"build": {"context": "web"}}},
                         "steps": {"noop": {"run": "true"}}},
                        files={"web/Dockerfile": "FROM debian:bookworm-slim\nCMD sleep 60\n"})
    project = loader.load(root / "steps.yaml")
    svc = project.services["web"]
    assert svc.build is not None
    tag = backend.image_tag(project, "web", svc.build, "service web", svc.loc)
    found = checks(root)["engine.images"]
    assert (found.status, found.finding, found.fix) == (
        "warn", f"service web's image is not built for its context as it is now ({tag})",
        "devenv up (builds it)")
    client = sdk.from_env()
    repo, _, version = tag.rpartition(":")
    try:
        # what a build of that context would leave: an image under the context's tag
        client.images.get("debian:bookworm-slim").tag(repo, version)
        found = checks(root)["engine.images"]
        assert (found.status, found.finding) == ("ok", f"images present: {tag} (built here)")
        (root / "web/Dockerfile").write_text("FROM debian:bookworm-slim\nCMD sleep 61\n")
        assert checks(root)["engine.images"].status == "warn"  # edited: a new tag to build
    finally:
        client.images.remove(tag)
        client.close()
