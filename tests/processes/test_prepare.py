"""Preparing processes (devenv.processes.prepare): which ones a profile runs, and their
expanded commands."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from devenv import processes
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
