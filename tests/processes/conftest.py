"""Fixtures of the process tests: a project of processes, all stopped at the end."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from devenv import loader, processes
from devenv.schema import Project
from tests.processes.app import SERVER, MakeProject


@pytest.fixture
def project(make_project: MakeProject) -> Iterator[Callable[..., Project]]:
    """A project with ``processes`` (and server.py); every process it started is stopped
    at the end."""
    made: list[Project] = []

    def make(procs: dict[str, dict[str, object]], **kw: object) -> Project:
        root = make_project({"version": 1, "steps": {"noop": {"run": "true"}},
                             "processes": procs, **kw}, files={"server.py": SERVER})
        made.append(loader.load(root / "steps.yaml"))
        return made[-1]

    yield make
    for p in made:
        processes.stop_all(p, grace=1)
