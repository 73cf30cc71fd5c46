"""The docker backend through the engine's local socket (devenv.services.engine), against
the real engine: `up` creates, starts and reuses containers without the docker SDK, the
container it creates is the one the SDK would have made, readiness stays a connection from
the host, and where the socket is not a plain local one the SDK does the same work.

The service is a tiny Perl server in the local debian:bookworm-slim (../shared/images/
build-debian-base): no build, no download.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest

from devenv.errors import ServiceError
from devenv.events import Message, RecordingReporter
from devenv.schema import Project
from devenv.services.docker import DockerBackend, container_name
from devenv.services.engine import DEFAULT_SOCKET, local

pytestmark = pytest.mark.docker

BASE = "debian:bookworm-slim"
SERVE = ("use IO::Socket::INET; $SIG{TERM} = sub { exit 0 }; "
         "my $s = IO::Socket::INET->new(LocalPort => $ENV{PORT} || 8080, Listen => 5, "
         "ReuseAddr => 1) "
         "or die $!; while (my $c = $s->accept) { print $c \"hi\\n\"; close $c }")


def server(**over: Any) -> dict[str, Any]:
    svc: dict[str, Any] = {"image": BASE, "command": ["perl", "-e", SERVE],
                           "ports": ["8080"], "ready": "tcp",
                           "env": {"GREETING": "a=b c"}, "volumes": {"data": "/data"}}
    svc.update(over)
    return svc


@pytest.fixture(scope="module", autouse=True)
def base_image() -> None:
    client = docker.from_env()
    try:
        client.images.get(BASE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{BASE} is not here: run ../shared/images/build-debian-base once")
    finally:
        client.close()


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No DOCKER_HOST/DOCKER_CONTEXT, and a docker config of our own (no current context)."""
    cfg = tmp_path / "docker-config"
    cfg.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(cfg))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    return cfg


STARTER = """
import sys
from devenv import loader
from devenv.events import RecordingReporter
from devenv.session import Session
project = loader.load(sys.argv[1])
ep = Session(project, RecordingReporter()).start(list(project.services))
print(ep["web"].port(8080), "docker" in sys.modules)
"""


def start_in_a_process(project: Project, env: dict[str, str] | None = None,
                       ) -> tuple[int, bool]:
    """`up`'s service start in a fresh interpreter: the host port, and whether the docker
    SDK got imported."""
    done = subprocess.run([sys.executable, "-c", STARTER, str(project.file)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stdout + done.stderr
    port, sdk = done.stdout.split()
    return int(port), sdk == "True"


def answer(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        return s.recv(16)


@pytest.fixture
def web_project(tmp_path: Path, docker_project: Callable[..., Project]) -> Project:
    return docker_project({"web": server()}, database=False)


def test_first_start_and_reuse_need_no_sdk_and_make_the_container_the_sdk_would(
        clean_env: Path, web_project: Project) -> None:
    port, sdk = start_in_a_process(web_project)
    assert not sdk
    assert answer(port) == b"hi\n"
    again, sdk = start_in_a_process(web_project)
    assert (again, sdk) == (port, False)

    client = docker.from_env()
    try:
        c = client.containers.get(container_name(web_project, web_project.services["web"]))
        attrs = c.attrs
    finally:
        client.close()
    assert c.labels["devenv.project"] == web_project.name
    assert c.labels["devenv.service"] == "web"
    assert attrs["Config"]["Cmd"] == ["perl", "-e", SERVE]
    assert "GREETING=a=b c" in attrs["Config"]["Env"]
    assert attrs["HostConfig"]["PortBindings"] == {
        "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert attrs["HostConfig"]["Binds"] == [f"{web_project.name}_web_data:/data:rw"]
    mounts = [(m["Type"], m["Name"], m["Destination"]) for m in attrs["Mounts"]]
    assert mounts == [("volume", f"{web_project.name}_web_data", "/data")]


def test_the_sdk_does_the_same_where_the_socket_is_not_known(
        clean_env: Path, web_project: Project) -> None:
    """An unreadable docker config: devenv does not guess a socket, the SDK decides (and
    falls back to the default engine, as the docker SDK does)."""
    (clean_env / "config.json").write_text("{ not json")
    assert local() is None
    port, sdk = start_in_a_process(web_project)
    assert sdk
    assert answer(port) == b"hi\n"
    assert start_in_a_process(web_project) == (port, True)


def test_a_running_container_that_does_not_answer_is_not_ready_on_the_second_up_either(
        clean_env: Path, docker_project: Callable[..., Project]) -> None:
    """Reuse through the socket checks the port from the host as a first start does: the
    container runs as defined, but nothing listens inside."""
    project = docker_project({"web": server(command=["sleep", "600"])}, database=False)
    b = DockerBackend()
    svc = project.services["web"]
    for _ in range(2):
        with pytest.raises(ServiceError, match="service web did not become healthy within 2s"):
            b.up(project, svc, RecordingReporter(), timeout=2)
        assert b.status(project, svc).state == "running"


def test_a_port_a_stopped_container_claims_is_not_reused(
        clean_env: Path, tmp_path: Path, docker_project: Callable[..., Project]) -> None:
    """The remembered port is free on the host, but a stopped container (of no devenv
    project) is bound to it and would take it back when started: another one is used."""
    client = docker.from_env()
    claimed = socket.socket()
    claimed.bind(("127.0.0.1", 0))
    port = claimed.getsockname()[1]
    claimed.close()
    holder = client.containers.create(BASE, ["true"], ports={"8080/tcp": ("127.0.0.1", port)})
    try:
        project = docker_project({"web": server()}, database=False)
        project.state_dir.mkdir(parents=True, exist_ok=True)
        (project.state_dir / "ports.json").write_text(json.dumps({"web": {"8080": port}}))
        rec = RecordingReporter()
        ep = DockerBackend().up(project, project.services["web"], rec, timeout=60)
        assert ep.port(8080) != port
        assert answer(ep.port(8080)) == b"hi\n"
        notes = [e.text for e in rec.events if isinstance(e, Message)]
        assert notes == [f"web: port {port} (remembered for web:8080) is taken by something "
                         f"else now; using {ep.port(8080)} instead"]
    finally:
        holder.remove(force=True)
        client.close()


def test_which_socket_is_used(clean_env: Path, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """DOCKER_HOST first, then the current context (a unix one only), else the default; a
    tcp engine, or a context with TLS, is left to the SDK."""
    default = local()
    assert default is not None and (default.path, default.where) == (
        DEFAULT_SOCKET, f"unix://{DEFAULT_SOCKET}")

    sock = tmp_path / "engine.sock"
    sock.symlink_to(DEFAULT_SOCKET)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    found = local()
    assert found is not None and found.path == str(sock) and found.ping()
    assert DockerBackend().available() == (True, f"a Docker engine answers at unix://{sock}")
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    assert local() is None
    ok, why = DockerBackend().available()
    assert not ok and "tcp://127.0.0.1:1" in why
    monkeypatch.delenv("DOCKER_HOST")

    if shutil.which("docker") is None:
        return
    env = {**os.environ, "DOCKER_CONFIG": str(clean_env)}
    for args in (["devenv-unix", "--docker", f"host=unix://{sock}"],
                 ["devenv-tcp", "--docker", "host=tcp://127.0.0.1:1"]):
        subprocess.run(["docker", "context", "create", *args], check=True,
                       capture_output=True, env=env)
    monkeypatch.setenv("DOCKER_CONTEXT", "devenv-unix")
    found = local()
    assert found is not None and found.where == f"unix://{sock}"
    monkeypatch.setenv("DOCKER_CONTEXT", "devenv-tcp")
    assert local() is None


def test_every_published_port_must_answer(clean_env: Path,
                                          docker_project: Callable[..., Project]) -> None:
    """The ports are asked at once, and each one counts: a second port with nothing
    behind it keeps the service from being ready; serve it too and it is."""
    one = ["sh", "-c", 'PORT=8080 exec perl -e "$S"']
    both = ["sh", "-c", 'PORT=9090 perl -e "$S" & PORT=8080 exec perl -e "$S"']
    project = docker_project({"web": server(command=one, ports=["8080", "9090"],
                                            env={"S": SERVE})}, database=False)
    b = DockerBackend()
    with pytest.raises(ServiceError) as err:
        b.up(project, project.services["web"], RecordingReporter(), timeout=2)
    assert b.status(project, project.services["web"]).state == "running"
    client = docker.from_env()
    try:
        c = client.containers.get(container_name(project, project.services["web"]))
        silent = c.ports["9090/tcp"][0]["HostPort"]
    finally:
        client.close()
    assert f"did not become healthy within 2s (port {silent}: " in str(err.value)
    project = docker_project({"web": server(command=both, ports=["8080", "9090"],
                                            env={"S": SERVE})}, database=False)
    ep = b.up(project, project.services["web"], RecordingReporter(), timeout=60)
    assert answer(ep.port(8080)) == b"hi\n" and answer(ep.port(9090)) == b"hi\n"


def test_a_container_that_cannot_start_is_named_and_removed(
        clean_env: Path, docker_project: Callable[..., Project]) -> None:
    project = docker_project({"web": server(command=["/no/such/program"])}, database=False)
    with pytest.raises(ServiceError) as err:
        DockerBackend().up(project, project.services["web"], RecordingReporter(), timeout=10)
    name = container_name(project, project.services["web"])
    assert f"service web: docker could not start container {name}: " in str(err.value)
    assert "/no/such/program" in str(err.value)
    client = docker.from_env()
    try:
        assert client.containers.list(all=True, filters={"name": name}) == []
    finally:
        client.close()


def test_a_second_up_of_a_project_with_its_database_needs_no_sdk(
        clean_env: Path, docker_project: Callable[..., Project]) -> None:
    """`devenv up` (the command: its lock on the running database, the start, the steps)
    with everything running. The first start writes the data volume's ready marker with
    the SDK (a tar upload), so only the second is free of it."""
    from tests.services.conftest import pg_service

    project = docker_project({"db": pg_service()})
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('SDK', 'docker' in sys.modules))\n"
            "from devenv.cli import main\n"
            f"sys.argv = ['devenv', '--plain', '-f', {str(project.file)!r}, 'up']\n"
            "main()\n")
    outputs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        outputs.append(done.stdout)
    assert "db is healthy (docker)" in outputs[1]
    assert outputs[1].splitlines()[-1] == "SDK False"


def test_exec_runs_a_command_in_the_container_as_the_sdk_does(
        clean_env: Path, web_project: Project) -> None:
    """The local socket's exec: exit code and output (stdout and stderr) are what the
    SDK's exec_run gives for the same command; a command that is not there is a code."""
    start_in_a_process(web_project)
    engine = local()
    assert engine is not None
    cid = container_name(web_project, web_project.services["web"])
    script = ["sh", "-c", "echo out; echo err >&2; exit 3"]
    code, out = engine.exec(cid, script)
    client = docker.from_env()
    try:
        sdk = client.containers.get(cid).exec_run(script)
    finally:
        client.close()
    assert code == sdk.exit_code == 3
    # the two streams come as the engine reads them: their order is not fixed
    assert sorted(out.splitlines()) == sorted(sdk.output.splitlines()) == [b"err", b"out"]
    missing, _ = engine.exec(cid, ["no-such-program-here"])
    assert missing not in (None, 0)


def test_a_ready_cmd_is_run_without_the_sdk(clean_env: Path,
                                            docker_project: Callable[..., Project]) -> None:
    """`ready: {cmd: ...}` on every `up`: through the local socket, so a daily `up` of a
    service checked that way (the example's Redis) does not import the SDK. A command
    that fails keeps the service from being ready, named with the command's last line."""
    ok = docker_project({"web": server(ready={"cmd": ["sh", "-c", "test -d /data"]})},
                        database=False)
    start_in_a_process(ok)
    port, sdk = start_in_a_process(ok)
    assert not sdk and answer(port) == b"hi\n"
    assert DockerBackend().up_now(ok, ok.services["web"]) is not None
    never = docker_project({"late": server(
        ready={"cmd": ["sh", "-c", "echo not yet >&2; exit 1"]}, ready_timeout=2)},
        database=False)
    with pytest.raises(ServiceError) as failed:
        DockerBackend().up(never, never.services["late"], RecordingReporter(), timeout=2)
    assert "ready command exited with 1: not yet" in str(failed.value)
