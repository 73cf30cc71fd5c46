"""Preparing processes (devenv.processes.prepare): which ones a profile runs, and their
expanded commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from devenv import loader, processes
from devenv.errors import ServiceError
from devenv.events import RecordingReporter
from devenv.schema import Project
from tests.processes.app import web


def test_undefined_variable_in_a_process_is_a_config_error(
        project: Callable[..., Project]) -> None:
    p = project({"web": {"run": "serve --port ${WEB_PORT}"}})
    with pytest.raises(Exception, match=r"processes\.web\.run: \$\{WEB_PORT\} is not defined"):
        processes.prepare(p, ["web"], None)


def test_profiles_choose_the_processes(project: Callable[..., Project]) -> None:
    p = project({"web": web(1), "ci-probe": {"run": "true", "profiles": ["ci"]}})
    assert processes.selected(p, "local") == ["web"]
    assert processes.selected(p, "ci") == ["web", "ci-probe"]


def test_a_built_process_without_docker_is_named_with_its_line(
        make_project: Callable[..., Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`build:` on a process and no Docker engine: one error naming each such process and
    where it is declared, before anything starts; its image tag is still known (so `up`
    can check the processes before the services start)."""
    root = make_project({"version": 1, "name": "boxed", "steps": {"noop": {"run": "true"}},
                         "processes": {"plain": {"run": "true"},
                                       "boxed": {"run": "true", "build": "box"}}},
                        files={"box/Dockerfile": "FROM debian:bookworm-slim\n"})
    p = loader.load(root / "steps.yaml")
    tag = processes.image_of(p, p.processes["boxed"])
    assert tag is not None and tag.startswith("devenv/boxed-boxed:")
    assert processes.image_of(p, p.processes["plain"]) is None
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    processes.build_images(p, ["plain"], RecordingReporter())  # nothing to build: no engine asked
    with pytest.raises(ServiceError) as info:
        processes.build_images(p, ["plain", "boxed"], RecordingReporter())
    assert "these processes run in an image built from the repository (build:): boxed " \
           "(steps.yaml:" in str(info.value)
    assert "Start a Docker engine" in str(info.value)
    # prepared, it is a docker run of that tag
    prepared = processes.prepare(p, ["boxed"], None)[0]
    assert tag in prepared.command
