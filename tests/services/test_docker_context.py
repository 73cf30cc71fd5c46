"""The engine named by a docker context (``docker context use`` / ``DOCKER_CONTEXT``), as
the docker CLI would use it: a real context made with the real CLI, in a throw-away
DOCKER_CONFIG, pointing at the engine's socket through another path (or at nothing)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from devenv.services.docker import DockerBackend, _client_kwargs, _where

pytestmark = [pytest.mark.docker,
              pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI")]

ENGINE = Path("/var/run/docker.sock")


def docker_cli(config: Path, *args: str) -> None:
    subprocess.run(["docker", *args], check=True, capture_output=True, text=True,
                   env={**os.environ, "DOCKER_CONFIG": str(config)})


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    if not ENGINE.exists():
        pytest.fail(f"the docker tests need the engine at {ENGINE}")
    cfg = tmp_path / "docker-config"
    cfg.mkdir()
    (cfg / "config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(cfg))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    return cfg


def test_the_current_context_is_the_engine_used(config: Path, tmp_path: Path) -> None:
    sock = tmp_path / "engine.sock"
    sock.symlink_to(ENGINE)  # the same engine, under a name only the context knows
    docker_cli(config, "context", "create", "devenv-test", "--docker", f"host=unix://{sock}")
    docker_cli(config, "context", "use", "devenv-test")
    assert _client_kwargs()["base_url"] == f"unix://{sock}"
    ok, detail = DockerBackend().available()
    assert ok, detail
    assert detail == f"a Docker engine answers at unix://{sock}"
    client = DockerBackend().client()
    assert client.ping() is True
    assert _where(client) == f"unix://{sock}"


def test_docker_context_variable_wins_and_a_dead_one_is_named(
        config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone = tmp_path / "nothing-here.sock"
    docker_cli(config, "context", "create", "devenv-dead", "--docker", f"host=unix://{gone}")
    docker_cli(config, "context", "use", "default")  # the variable must win over the file
    monkeypatch.setenv("DOCKER_CONTEXT", "devenv-dead")
    ok, detail = DockerBackend().available()
    assert not ok
    assert detail == (f"no Docker engine answers at unix://{gone} (no such socket); start "
                      "Docker, or fix DOCKER_HOST / the docker context")


def test_doctor_asks_the_same_engine(config: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """doctor's engine checks (images, versions, port holders) use the context too: with a
    dead one it finds no engine, although the default socket would answer."""
    from devenv.doctor.context import _docker_info

    gone = tmp_path / "nothing-here.sock"
    docker_cli(config, "context", "create", "devenv-dead", "--docker", f"host=unix://{gone}")
    monkeypatch.setenv("DOCKER_CONTEXT", "devenv-dead")
    info = _docker_info()
    assert info.client is None and info.error
    monkeypatch.delenv("DOCKER_CONTEXT")
    assert _docker_info().error is None
