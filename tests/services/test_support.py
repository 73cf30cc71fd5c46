"""Ports, config hashes, log files and the logs command: no engine, no server needed."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from devenv import loader, logtail
from devenv.commands import logs as logs_cmd
from devenv.commands.status import uptime
from devenv.errors import ServiceError, UsageError
from devenv.services import ports as portlib
from devenv.services.docker import _split_image, _started_at, published
from devenv.services.support import config_hash, follow_file, is_postgres
from tests.services.conftest import pg_service, write_project


def test_is_free_sees_a_listener_and_not_a_closed_one() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    assert not portlib.is_free(port)
    s.close()
    assert portlib.is_free(port)


def test_choose_remembers_reuses_and_replaces_a_taken_port(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", "t-ports", {"db": pg_service()})
    svc = project.services["db"]
    (first,) = portlib.choose(project, svc)
    assert first.note == "" and portlib.is_free(first.host)
    portlib.PortStore(project.state_dir).remember("db", {5432: first.host})
    assert json.loads((project.state_dir / "ports.json").read_text()) == {
        "db": {"5432": first.host}}
    assert portlib.choose(project, svc)[0].host == first.host
    holder = socket.socket()
    holder.bind(("127.0.0.1", first.host))
    holder.listen(1)
    try:
        (again,) = portlib.choose(project, svc, holder=lambda p: "container x-db")
    finally:
        holder.close()
    assert again.host != first.host
    assert again.note == (f"port {first.host} (remembered for db:5432) is taken by "
                          f"container x-db now; using {again.host} instead")


def test_a_fixed_port_in_use_names_it_and_what_to_do(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        project = write_project(tmp_path / "p", "t-ports", {"db": pg_service(
            ports=[f"{port}:5432"])})
        with pytest.raises(ServiceError, match=f"host port {port} on 127.0.0.1 is already in "
                                               "use by another program"):
            portlib.choose(project, project.services["db"])
    finally:
        holder.close()


def test_config_hash_follows_the_definition_only(tmp_path: Path) -> None:
    a = write_project(tmp_path / "a", "t-hash", {"db": pg_service()}).services["db"]
    b = write_project(tmp_path / "b", "t-other", {"db": pg_service()}).services["db"]
    c = write_project(tmp_path / "c", "t-hash", {"db": pg_service(
        env={"POSTGRES_USER": "app", "POSTGRES_PASSWORD": "x"})}).services["db"]
    assert config_hash(a) == config_hash(b) != config_hash(c)
    assert len(config_hash(a)) == 16
    assert is_postgres(a)


def test_docker_helpers_parse_engine_values() -> None:
    assert _split_image("postgres:15") == ("postgres", "15")
    assert _split_image("localhost:5000/pg") == ("localhost:5000/pg", "latest")
    assert _split_image("ghcr.io/x/pg:16.2") == ("ghcr.io/x/pg", "16.2")
    assert _started_at("1970-01-01T00:01:40.123456789Z") == pytest.approx(100.123456)
    assert _started_at("0001-01-01T00:00:00Z") is None
    attrs = {"NetworkSettings": {"Ports": {"5432/tcp": [
        {"HostIp": "127.0.0.1", "HostPort": "40001"}], "80/tcp": None}}}
    assert published(attrs) == {5432: 40001}


def test_uptime_is_short() -> None:
    assert [uptime(s) for s in (None, 5, 65, 7260, 90000)] == [
        "", "5s", "1m05s", "2h01m", "1d01h"]


def test_read_tail_and_follow_a_growing_file(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(5000)))
    assert logtail.tail_file(log, 3).lines == ["line 4997", "line 4998", "line 4999"]
    seen: list[str] = []

    def reader() -> None:
        for line in follow_file(log, 1, follow=True, poll=0.02):
            seen.append(line)
            if line == "done":
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    time.sleep(0.1)
    with log.open("a") as fh:
        fh.write("new 1\nne")
        fh.flush()
        time.sleep(0.1)
        fh.write("w 2\ndone\n")
    t.join(5)
    assert seen == ["line 4999", "new 1", "new 2", "done"]


def test_logs_command_finds_step_logs_and_names_unknown_ones(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", "t-logs", {"db": pg_service()})
    (project.state_dir / "logs").mkdir(parents=True)
    (project.state_dir / "logs" / "noop.log").write_text("a\nb\nc\n")
    assert list(logs_cmd.lines_for(project, "noop", tail=2)) == ["b", "c"]
    with pytest.raises(UsageError) as err:
        logs_cmd.lines_for(project, "nop")
    assert str(err.value) == ("no service, step or process named 'nop' (did you mean "
                              "'noop'?); known: db, noop")
    (project.state_dir / "logs" / "noop.log").unlink()
    with pytest.raises(UsageError, match=r"step noop has no log yet \(.devenv/logs/noop.log\)"):
        logs_cmd.lines_for(project, "noop")
    r = subprocess.run([sys.executable, "-m", "devenv", "-f", str(project.file), "logs",
                        "nope"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no service, step or process named 'nope'" in r.stderr
    assert loader.load(project.file).name == "t-logs"
