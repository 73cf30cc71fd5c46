"""The docker backend against the real engine and the local postgres:15 image."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import psycopg
import pytest

from devenv.errors import EXIT_SERVICE, ServiceError
from devenv.events import Message, PhaseFinished, RecordingReporter
from devenv.schema import Project
from devenv.services import Endpoint
from devenv.services import ports as portlib
from devenv.services.docker import DockerBackend, container_name, volume_name
from devenv.services.support import config_hash
from devenv.session import Session
from tests.services.conftest import PASSWORD, pg_service, purge, unique_name, write_project

pytestmark = pytest.mark.docker


def listen(port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # as any server would: connections the engine's proxy left in TIME_WAIT do not count
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(1)
    return s


def labelled(name: str) -> tuple[list[Any], list[Any]]:
    client = docker.from_env()
    try:
        flt = {"label": f"devenv.project={name}"}
        return client.containers.list(all=True, filters=flt), client.volumes.list(filters=flt)
    finally:
        client.close()


def query(port: int, sql: str, dbname: str = "postgres", password: str = PASSWORD) -> Any:
    with psycopg.connect(host="127.0.0.1", port=port, user="app", password=password,
                         dbname=dbname, autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else None


def cli(root: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devenv", "--plain", "-f",
                           str(root / "steps.yaml"), *args], capture_output=True, text=True,
                          input=input if input is not None else "", timeout=120)


@dataclass
class Started:
    project: Project
    backend: DockerBackend
    endpoint: Endpoint
    events: list[Any]
    held: int  # the remembered port something else held during the first up


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    """One database container for the read-only tests. Its remembered port is held by
    another socket during the first up (so that case is exercised on the way)."""
    name = unique_name()
    root = tmp_path_factory.mktemp("docker") / "proj"
    project = write_project(root, name, {"db": pg_service()})
    sock = listen()
    held = sock.getsockname()[1]
    try:
        project.state_dir.mkdir(parents=True, exist_ok=True)
        (project.state_dir / "ports.json").write_text(json.dumps({"db": {"5432": held}}))
        backend = DockerBackend()
        rec = RecordingReporter()
        ep = backend.up(project, project.services["db"], rec, timeout=60)
        sock.close()
        yield Started(project, backend, ep, rec.events, held)
    finally:
        sock.close()
        purge(name)


def _container(s: Started) -> Any:
    return s.backend.client().containers.get(container_name(s.project,
                                                            s.project.services["db"]))


def test_start_publishes_on_loopback_only_labels_and_answers_a_query(started: Started) -> None:
    port = started.endpoint.port(5432)
    assert started.endpoint.host == "127.0.0.1" and started.endpoint.backend == "docker"
    c = _container(started)
    assert c.attrs["HostConfig"]["PortBindings"] == {
        "5432/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    bound = c.attrs["NetworkSettings"]["Ports"]["5432/tcp"]
    assert bound and {b["HostIp"] for b in bound} == {"127.0.0.1"}
    svc = started.project.services["db"]
    assert c.labels["devenv.project"] == started.project.name
    assert c.labels["devenv.service"] == "db"
    assert c.labels["devenv.config-hash"] == config_hash(svc)
    assert c.attrs["Config"]["StopSignal"] == "SIGINT"
    vol = started.backend.client().volumes.get(volume_name(started.project, svc, "data"))
    assert vol.attrs["Labels"]["devenv.project"] == started.project.name
    assert query(port, "SELECT 1") == [(1,)]


def test_a_remembered_port_taken_by_something_else_is_replaced_and_said(started: Started,
                                                                        ) -> None:
    port = started.endpoint.port(5432)
    assert port != started.held
    warnings = [e.text for e in started.events if isinstance(e, Message) and e.level == "warn"]
    assert warnings == [f"db: port {started.held} (remembered for db:5432) is taken by "
                        f"something else now; using {port} instead"]
    saved = json.loads((started.project.state_dir / "ports.json").read_text())
    assert saved == {"db": {"5432": port}}


def test_second_up_reuses_the_running_container_quickly(started: Started) -> None:
    before = _container(started).id
    t0 = time.monotonic()
    ep = started.backend.up(started.project, started.project.services["db"],
                            RecordingReporter(), timeout=30)
    assert time.monotonic() - t0 < 1.0
    assert ep == started.endpoint
    assert _container(started).id == before


def test_status_and_endpoint_of_a_running_service(started: Started) -> None:
    svc = started.project.services["db"]
    st = started.backend.status(started.project, svc)
    port = started.endpoint.port(5432)
    assert (st.backend, st.state, st.health, st.address, st.config_matches) == (
        "docker", "running", "healthy", f"127.0.0.1:{port}", True)
    assert st.started_at is not None and 0 <= time.time() - st.started_at < 600
    assert st.extra["volumes"] == volume_name(started.project, svc, "data")
    assert started.backend.endpoint(started.project, svc) == started.endpoint


def test_logs_tail_and_whole(started: Started) -> None:
    svc = started.project.services["db"]
    whole = list(started.backend.logs(started.project, svc))
    assert any("database system is ready to accept connections" in line for line in whole)
    assert list(started.backend.logs(started.project, svc, tail=2)) == whole[-2:]


def test_exec_streams_a_dump_out_and_back_in_through_host_files(started: Started,
                                                              tmp_path: Path) -> None:
    svc = started.project.services["db"]
    b, p = started.backend, started.project
    src, dst = f"src_{uuid.uuid4().hex[:6]}", f"dst_{uuid.uuid4().hex[:6]}"
    port = started.endpoint.port(5432)
    query(port, f"CREATE DATABASE {src}")
    query(port, f"CREATE DATABASE {dst}")
    query(port, "CREATE TABLE t AS SELECT g AS n, md5(g::text) AS h "
                "FROM generate_series(1, 20000) g", dbname=src)
    dump = tmp_path / "src.dump"
    r = b.exec(p, svc, ["pg_dump", "-Fc", "-d", src], stdout=dump)
    assert r.returncode == 0, r.output
    assert dump.read_bytes()[:5] == b"PGDMP"
    r = b.exec(p, svc, ["pg_restore", "--no-owner", "-d", dst], stdin=dump)
    assert r.returncode == 0, r.output
    assert query(port, "SELECT count(*), sum(n) FROM t", dbname=dst) == [(20000, 200010000)]
    bad = b.exec(p, svc, ["psql", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c",
                          "SELECT * FROM no_such_table"])
    assert bad.returncode == 1
    assert 'relation "no_such_table" does not exist' in bad.output


def test_psql_command_with_local_psql_and_inside_the_container(started: Started) -> None:
    root = started.project.root
    # -d postgres: appdb is made by the steps, which these tests do not run
    r = cli(root, "psql", "-d", "postgres", "-At", "-c",
            "select current_user || '@' || inet_server_port()")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "app@5432"  # the server's own port, reached via the publish
    from devenv.commands import psql

    argv, env = psql.command(Session(started.project, RecordingReporter()), ["-d", "postgres", "-At", "-c", "select 7*6"], psql="", tty=False)
    assert argv[:3] == [argv[0], "exec", "-i"] and "-t" not in argv
    assert PASSWORD not in " ".join(argv)
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    assert (out.returncode, out.stdout.strip()) == (0, "42"), out.stderr


def test_status_command_json_and_text_never_show_the_password(started: Started) -> None:
    r = cli(started.project.root, "status", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    port = started.endpoint.port(5432)
    (svc,) = data["services"]
    assert (svc["name"], svc["backend"], svc["state"], svc["health"], svc["address"]) == (
        "db", "docker", "running", "healthy", f"127.0.0.1:{port}")
    assert svc["why"].startswith("a Docker engine answers at ")
    assert data["database"]["url"] == f"postgresql://app:***@127.0.0.1:{port}/appdb"
    assert data["database"]["exists"] is False  # no step has created it
    text = cli(started.project.root, "status")
    assert text.returncode == 0
    assert "database appdb on postgresql://app:***@" in text.stdout
    for out in (r.stdout, r.stderr, text.stdout, text.stderr):
        assert PASSWORD not in out


# --------------------------------------------------------------------------- lifecycle


def test_recreate_on_change_keeps_data_stop_start_and_down_volumes(
        docker_project: Callable[..., Project]) -> None:
    fixed = portlib.free_port()
    project = docker_project({"db": pg_service(ports=[f"{fixed}:5432"])})
    b = DockerBackend()
    ep = b.up(project, project.services["db"], RecordingReporter(), timeout=60)
    assert ep.port(5432) == fixed
    first = b.status(project, project.services["db"]).extra["id"]
    query(fixed, "CREATE TABLE kept AS SELECT 42 AS answer")

    # a fixed host port held by another project's container: named in the error
    other = write_project(project.root.parent / "other", unique_name(),
                          {"db": pg_service(ports=[f"{fixed}:5432"])})
    try:
        with pytest.raises(ServiceError) as err:
            b.up(other, other.services["db"], RecordingReporter(), timeout=10)
        assert (f"host port {fixed} on 127.0.0.1 is already in use by container "
                f"{project.name}-db") in str(err.value)
        assert labelled(other.name) == ([], [])  # not even a volume was left behind
    finally:
        purge(other.name)

    # the definition changes: a new container on the same volume and port
    changed = docker_project({"db": pg_service(ports=[f"{fixed}:5432"],
                                               env={"POSTGRES_USER": "app",
                                                    "POSTGRES_PASSWORD": PASSWORD,
                                                    "TZ": "UTC"})})
    rec = RecordingReporter()
    st = b.status(changed, changed.services["db"])
    assert st.config_matches is False
    b.up(changed, changed.services["db"], rec, timeout=60)
    second = b.status(changed, changed.services["db"]).extra["id"]
    assert second != first
    assert any(isinstance(e, Message) and "its definition changed" in e.text
               and "volumes are kept" in e.text for e in rec.events)
    assert query(fixed, "SELECT answer FROM kept") == [(42,)]

    # down stops (keeps) the container; up starts that same one again
    assert b.down(changed, changed.services["db"]) == [f"stopped container {changed.name}-db"]
    assert b.endpoint(changed, changed.services["db"]) is None
    assert b.status(changed, changed.services["db"]).state == "stopped"
    # ... unless its fixed port was taken meanwhile: the same clear error, nothing removed
    sock = listen(fixed)
    try:
        with pytest.raises(ServiceError, match=f"host port {fixed} on 127.0.0.1 is already "
                                               "in use by another program"):
            b.up(changed, changed.services["db"], RecordingReporter(), timeout=10)
    finally:
        sock.close()
    assert b.status(changed, changed.services["db"]).extra["id"] == second
    t0 = time.monotonic()
    b.up(changed, changed.services["db"], RecordingReporter(), timeout=60)
    assert time.monotonic() - t0 < 15
    assert b.status(changed, changed.services["db"]).extra["id"] == second
    assert query(fixed, "SELECT answer FROM kept") == [(42,)]

    # a password changed after the data was made: a clear error at once, not a timeout
    wrong = docker_project({"db": pg_service(ports=[f"{fixed}:5432"],
                                             env={"POSTGRES_USER": "app",
                                                  "POSTGRES_PASSWORD": "other-pw"})})
    t0 = time.monotonic()
    with pytest.raises(ServiceError) as err:
        b.up(wrong, wrong.services["db"], RecordingReporter(), timeout=60)
    assert time.monotonic() - t0 < 20
    assert 'password authentication failed for user "app"' in str(err.value)
    assert "devenv down --volumes" in str(err.value)
    assert "other-pw" not in str(err.value)

    # down --volumes: refused without a terminal or --yes, then everything goes
    r = cli(wrong.root, "down", "--volumes")
    assert r.returncode == 2
    assert "there is no terminal to ask for confirmation: pass --yes" in r.stderr
    assert f"volume {wrong.name}_db_data" in r.stderr
    assert len(labelled(wrong.name)[0]) == 1
    r = cli(wrong.root, "down", "--volumes", "--yes")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"removed container {wrong.name}-db",
                                     f"removed volume {wrong.name}_db_data"]
    assert labelled(wrong.name) == ([], [])


def test_fixed_host_port_held_by_a_socket_is_a_clear_error(
        docker_project: Callable[..., Project]) -> None:
    sock = listen()
    port = sock.getsockname()[1]
    try:
        project = docker_project({"db": pg_service(ports=[f"{port}:5432"])})
        with pytest.raises(ServiceError) as err:
            DockerBackend().up(project, project.services["db"], RecordingReporter(),
                               timeout=10)
    finally:
        sock.close()
    assert err.value.exit_code == EXIT_SERVICE
    assert str(err.value) == (
        f"service db: host port {port} on 127.0.0.1 is already in use by another program; "
        f'steps.yaml (services.db.ports "{port}:5432") asks for it. Stop what holds port '
        f"{port} (e.g. `ss -ltnp 'sport = :{port}'` shows it), or change the host port in "
        'steps.yaml (write "5432" to let devenv pick a free one)')
    assert labelled(project.name)[0] == []


def test_a_container_that_dies_while_starting_shows_its_log(
        docker_project: Callable[..., Project]) -> None:
    project = docker_project({"db": pg_service(
        command=["sh", "-c", "echo starting >&2; echo boom-from-db >&2; exit 3"])})
    t0 = time.monotonic()
    with pytest.raises(ServiceError) as err:
        DockerBackend().up(project, project.services["db"], RecordingReporter(), timeout=60)
    assert time.monotonic() - t0 < 20
    msg = str(err.value)
    assert msg.startswith(f"service db exited with code 3 while starting (container "
                          f"{project.name}-db)\n")
    assert "  | starting\n  | boom-from-db\n" in msg
    assert msg.endswith("see the whole log: devenv logs db")


def test_a_healthcheck_that_never_passes_times_out_with_its_output(
        docker_project: Callable[..., Project]) -> None:
    project = docker_project({"cache": {
        "image": "postgres:15", "command": ["sh", "-c", "echo cache up; exec sleep 300"],
        "healthcheck": "echo not-yet >&2; false"}}, database=False)
    t0 = time.monotonic()
    with pytest.raises(ServiceError) as err:
        DockerBackend().up(project, project.services["cache"], RecordingReporter(),
                           timeout=3)
    assert 3 <= time.monotonic() - t0 < 10
    msg = str(err.value)
    assert msg.startswith("service cache did not become healthy within 3s (health check ")
    assert "not-yet" in msg.splitlines()[0]
    assert "  | cache up" in msg and msg.endswith("see the whole log: devenv logs cache")


def test_a_missing_image_with_no_registry_is_a_clear_error(
        docker_project: Callable[..., Project]) -> None:
    image = f"devenv-test-missing-{uuid.uuid4().hex[:8]}:1"
    project = docker_project({"db": pg_service(image=image)})
    rec = RecordingReporter()
    with pytest.raises(ServiceError) as err:
        DockerBackend().up(project, project.services["db"], rec, timeout=10)
    assert str(err.value).startswith(
        f"service db: image {image} is not on this machine and could not be pulled (")
    assert f"(docker pull {image})" in str(err.value)
    assert any(isinstance(e, PhaseFinished) and not e.ok for e in rec.events)


def test_a_container_of_that_name_not_made_by_devenv_is_left_alone(
        docker_project: Callable[..., Project]) -> None:
    project = docker_project({"db": pg_service()})
    client = docker.from_env()
    name = f"{project.name}-db"
    foreign = client.containers.create("postgres:15", name=name, command=["true"])
    try:
        with pytest.raises(ServiceError) as err:
            DockerBackend().up(project, project.services["db"], RecordingReporter())
        assert str(err.value).startswith(
            f"a container named {name} exists but devenv did not create it for service db")
        foreign.reload()
        assert foreign.status == "created"
    finally:
        foreign.remove(force=True)
        client.close()


def test_down_with_nothing_running_says_so(docker_project: Callable[..., Project]) -> None:
    project = docker_project({"db": pg_service()})
    r = cli(project.root, "down")
    assert (r.returncode, r.stdout) == (0, "nothing was running\n")
    assert os.path.isdir(project.state_dir)


def test_up_unpauses_a_paused_container(started: Started) -> None:
    c = _container(started)
    c.pause()
    try:
        ep = started.backend.up(started.project, started.project.services["db"],
                                RecordingReporter(), timeout=30)
    finally:
        c.reload()
        if c.status == "paused":
            c.unpause()
    assert ep == started.endpoint and c.status == "running" and c.id == _container(started).id


def test_a_stopped_container_whose_free_port_was_taken_is_recreated_on_another(
        docker_project: Callable[..., Project]) -> None:
    """No fixed port: devenv chose one. Stopped, then something else takes that port: the
    next up recreates the container on a new port, says so, and the data (volume) stays."""
    project = docker_project({"db": pg_service()})
    b = DockerBackend()
    svc = project.services["db"]
    first = b.up(project, svc, RecordingReporter(), timeout=60).port(5432)
    query(first, "CREATE TABLE kept AS SELECT 7 AS answer")
    first_id = b.status(project, svc).extra["id"]
    b.down(project, svc)
    sock = listen(first)
    try:
        rec = RecordingReporter()
        ep = b.up(project, svc, rec, timeout=60)
    finally:
        sock.close()
    second = ep.port(5432)
    assert second != first
    warnings = [e.text for e in rec.events if isinstance(e, Message) and e.level == "warn"]
    assert warnings == [f"db: port {first} (remembered for db:5432) is taken by something "
                        f"else now; using {second} instead; recreating container "
                        f"{project.name}-db on it (volumes are kept)"]
    assert b.status(project, svc).extra["id"] != first_id
    assert query(second, "SELECT answer FROM kept") == [(7,)]
    saved = json.loads((project.state_dir / "ports.json").read_text())
    assert saved == {"db": {"5432": second}}
