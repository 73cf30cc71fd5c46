"""Fixtures for the service backends: throw-away projects with unique names, and a purge of
everything the docker engine holds under such a name (containers and volumes), always."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv import loader
from devenv.schema import Project

PASSWORD = "s3cret-pw"


def pg_service(**over: Any) -> dict[str, Any]:
    """A postgres:15 service as a project would declare it."""
    svc: dict[str, Any] = {
        "image": "postgres:15",
        "env": {"POSTGRES_USER": "app", "POSTGRES_PASSWORD": PASSWORD},
        "ports": ["5432"],
        "volumes": {"data": "/var/lib/postgresql/data"},
    }
    svc.update(over)
    return svc


def write_project(root: Path, name: str, services: dict[str, Any],
                  database: bool = True) -> Project:
    """Write steps.yaml into ``root`` (again: a changed config) and load it."""
    root.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {"version": 1, "name": name, "services": services,
                              "steps": {"noop": {"run": "true"}}}
    if database:
        config["database"] = {"service": "db", "name": "appdb"}
    (root / "steps.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return loader.load(root / "steps.yaml")


def unique_name() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def purge(name: str) -> None:
    """Remove every container and volume labelled with project ``name``."""
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
def docker_project(tmp_path: Path) -> Iterator[Callable[..., Project]]:
    """``make(services, database=True)``: a project with a unique name (the same one on
    every call in a test, so a second call changes its config); purged afterwards."""
    name = unique_name()
    try:
        yield lambda services, database=True: write_project(tmp_path / "proj", name,
                                                            services, database)
    finally:
        purge(name)
