"""Services taken from a compose file, and the service keys for many services (build:,
url:, needs:, ready:) as the loader reads them: every mistake names file, line and key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv import building, loader
from devenv.errors import ConfigError, ServiceError
from devenv.schema import BuildSpec, PortSpec, ReadySpec
from devenv.services import addresses, launch
from devenv.services import ports as portlib


def load(root: Path, services: dict[str, Any], compose: str | None = None) -> Any:
    root.mkdir(parents=True, exist_ok=True)
    if compose is not None:
        (root / "compose.yaml").write_text(compose)
    (root / "steps.yaml").write_text(yaml.safe_dump(
        {"version": 1, "name": "c", "services": services, "steps": {"s": {"run": "true"}}},
        sort_keys=False))
    return loader.load(root / "steps.yaml")


COMPOSE = """services:
  redis:
    image: redis:7
    command: redis-server --appendonly yes
    ports: ["127.0.0.1:16379:6379"]
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
      interval: 2s
      retries: 5
    volumes: [redisdata:/data]
    restart: unless-stopped
  worker:
    build:
      context: ./worker
      dockerfile: Dockerfile.dev
      args: [PY=3.12]
    environment:
      REDIS: redis://redis:6379
    depends_on: [redis]
  api:
    image: api:dev
    ports: ["127.0.0.1::8000", 9000]
    depends_on:
      redis: {condition: service_healthy}
      worker: {condition: service_started}
volumes:
  redisdata:
"""


def test_compose_services_are_read(tmp_path: Path) -> None:
    p = load(tmp_path, {"from": "compose.yaml", "extra": {"image": "x"}}, COMPOSE)
    assert list(p.services) == ["redis", "worker", "api", "extra"]
    redis = p.services["redis"]
    assert redis.command == ("redis-server", "--appendonly", "yes")
    assert redis.ports == (PortSpec(6379, 16379),)
    assert redis.healthcheck == ("redis-cli", "ping")
    assert redis.volumes == {"redisdata": "/data"}
    assert str(redis.loc) == "compose.yaml:2"
    worker = p.services["worker"]
    assert worker.build == BuildSpec("worker", "Dockerfile.dev", {"PY": "3.12"})
    assert worker.env == {"REDIS": "redis://redis:6379"} and worker.needs == ("redis",)
    assert p.services["api"].needs == ("redis", "worker")
    assert p.services["api"].ports == (PortSpec(8000), PortSpec(9000))


@pytest.mark.parametrize(("snippet", "line", "key"), [
    ("services:\n  a:\n    image: x\n    networks: [front]\n", 4, "networks"),
    ("services:\n  a:\n    image: x\n    deploy:\n      replicas: 2\n", 4, "deploy"),
    ("services:\n  a:\n    build:\n      context: .\n      target: dev\n", 5, "target"),
    ("services:\n  a:\n    image: x\nnetworks:\n  front: {}\n", 4, "networks"),
])
def test_an_unsupported_compose_key_is_named_with_its_line(
        tmp_path: Path, snippet: str, line: int, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"from": "compose.yaml"}, snippet)
    err = info.value
    assert (err.file, err.line) == ("compose.yaml", line)
    assert f"compose key '{key}' is not supported by devenv" in err.message


def test_a_bind_mount_in_compose_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bind mounts are not supported") as info:
        load(tmp_path, {"from": "compose.yaml"},
             "services:\n  a:\n    image: x\n    volumes:\n      - ./src:/src\n")
    assert info.value.line == 5


def test_a_missing_compose_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such compose file") as info:
        load(tmp_path, {"from": "nope.yaml"})
    assert info.value.file == "steps.yaml"


@pytest.mark.parametrize(("service", "message"), [
    ({"image": "x", "needs": ["nope"]}, "unknown service 'nope'"),
    ({"image": "x", "needs": ["a"]}, "service 'a' cannot need itself"),
    ({"image": "x", "ready": "udp"}, "invalid ready check 'udp'"),
    ({"image": "x", "ready": {"http": "health"}}, "expected a path starting with /"),
    ({"image": "x", "ready": {"tcp": 1, "cmd": "true"}}, "exactly one of"),
    ({"image": "x", "url": "redis://${hots}:${port}"}, "unknown ${hots}"),
    ({"build": {"dockerfile": "D"}}, "missing 'context'"),
    ({"env": {}}, "missing 'image' (e.g. image: postgres:16) or 'build'"),
])
def test_service_key_mistakes(tmp_path: Path, service: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"a": service})
    assert message in str(info.value)


def test_a_cycle_between_services(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dependency cycle between services"):
        load(tmp_path, {"a": {"image": "x", "needs": ["b"]},
                        "b": {"image": "x", "needs": ["a"]}})


def test_service_keys_are_read(tmp_path: Path) -> None:
    p = load(tmp_path, {"cache": {
        "build": {"context": "cache", "args": {"V": 7}, "network": "host"},
        "ports": ["6379", "16380:6380"], "url": "redis://${host}:${port_6380}/0",
        "ready": {"http": "/up", "port": 6379, "status": [204]}, "ready_timeout": 9}})
    svc = p.services["cache"]
    assert svc.build == BuildSpec("cache", None, {"V": "7"}, "host")
    assert svc.ready == ReadySpec("http", 6379, "/up", None, (204,))
    assert svc.ready_timeout == 9


def test_every_service_and_port_becomes_variables(tmp_path: Path) -> None:
    """From the ports the services published at their last start (.devenv/ports.json)."""
    p = load(tmp_path, {
        "redis": {"image": "redis", "ports": ["6379"], "url": "redis://${host}:${port}/0"},
        "mail-catcher": {"image": "m", "ports": ["1025", "8025"],
                         "url": "http://${host}:${port_8025}/"},
        "idle": {"image": "i", "ports": ["80"]}})
    store = portlib.PortStore(p.state_dir)
    p.state_dir.mkdir()
    store.remember("redis", {6379: 41000})
    store.remember("mail-catcher", {1025: 41001, 8025: 41002})
    env = addresses.service_variables(p)
    assert env == {
        "REDIS_HOST": "127.0.0.1", "REDIS_PORT": "41000",
        "REDIS_URL": "redis://127.0.0.1:41000/0",
        "MAIL_CATCHER_HOST": "127.0.0.1", "MAIL_CATCHER_PORT": "41001",
        "MAIL_CATCHER_PORT_1025": "41001", "MAIL_CATCHER_PORT_8025": "41002",
        "MAIL_CATCHER_URL": "http://127.0.0.1:41002/"}
    assert building.step_environment(p, None, None)["REDIS_URL"] == env["REDIS_URL"]


def test_without_docker_a_service_that_is_not_postgres_is_not_run_natively(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The native backend runs a local PostgreSQL: it must not take a Redis service when
    no Docker engine answers (a real unreachable engine, no mock)."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    p = load(tmp_path / "p", {"redis": {"image": "redis:7", "ports": ["6379"]}})
    with pytest.raises(ServiceError) as info:
        launch.choose_backend(p.services["redis"], p)
    assert "native: runs PostgreSQL only" in str(info.value)
    assert "It has no native backend: start a Docker engine (steps.yaml:" in str(info.value)


def test_doctor_knows_service_variables_before_the_services_start(
        make_project: Callable[..., Path]) -> None:
    """`devenv doctor` on a fresh checkout: ${REDIS_URL} is defined (by the service), not
    a variable nobody defines."""
    from tests.doctor.conftest import checks

    root = make_project({"version": 1, "name": "doc-svc", "services": {
        "redis": {"image": "redis", "ports": ["6379"], "url": "redis://${host}:${port}/0"},
        "mail": {"image": "m", "ports": ["1025", "8025"]}, "bare": {"image": "b"}},
        "steps": {"s": {"run": "echo ${REDIS_URL} ${MAIL_PORT_8025}"}}})
    assert checks(root)["env.undefined"].status == "ok"
    p = loader.load(root / "steps.yaml")
    assert addresses.service_variable_names(p) == {
        "REDIS_HOST", "REDIS_PORT", "REDIS_URL", "MAIL_HOST", "MAIL_PORT", "MAIL_PORT_1025",
        "MAIL_PORT_8025"}


def test_a_step_using_an_address_of_a_service_it_does_not_need(tmp_path: Path) -> None:
    p = load(tmp_path, {"web": {"image": "w", "ports": ["8080"], "url": "http://${host}/"}})
    p = loader.load_text((tmp_path / "steps.yaml").read_text().replace(
        "run: 'true'", "run: curl ${WEB_URL}"), tmp_path, tmp_path / "steps.yaml")
    with pytest.raises(ConfigError) as info:
        building.prepare_steps(p, ["s"], building.step_environment(p, None, None))
    assert info.value.message == ("${WEB_URL} is the address of service web, known once it "
                                  "has started: add web to needs: of steps.s")
    assert info.value.path == "steps.s.run"


def test_the_json_schema_takes_the_new_service_keys() -> None:
    import jsonschema

    from devenv import config_schema

    doc = {"version": 1, "steps": {"s": {"run": "true"}}, "services": {
        "from": "compose.yaml",
        "cache": {"build": {"context": "cache", "network": "host", "args": {"V": "1"}},
                  "ports": ["8080"], "ready": {"http": "/", "status": [200]},
                  "url": "http://${host}:${port}/", "needs": ["db"], "ready_timeout": 30},
        "db": {"image": "postgres:15", "ready": "tcp"},
        "mail": {"build": "mail", "ready": {"cmd": ["true"]}}}}
    validator = jsonschema.Draft202012Validator(config_schema.steps_schema())
    assert list(validator.iter_errors(doc)) == []
    doc["services"]["cache"]["ready"] = {"http": "health"}
    assert list(validator.iter_errors(doc)) != []
