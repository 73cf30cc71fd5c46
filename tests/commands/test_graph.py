"""`devenv graph` in each format."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.test_cli import devenv

MakeProject = Callable[..., Path]


@pytest.mark.parametrize("fmt", ["tree", "mermaid", "dot", "json"])
def test_graph_formats(make_project: MakeProject, fmt: str) -> None:
    root = make_project({"version": 1, "name": "demo", "steps": {
        "a": {"run": "true"}, "b": {"run": "true", "needs": ["a"]}}})
    r = devenv("graph", "--format", fmt, cwd=root)
    assert r.returncode == 0, r.stderr
    expected = {"tree": "└── b", "mermaid": "n0 --> n1", "dot": '"a" -> "b";',
                "json": '"edges"'}[fmt]
    assert expected in r.stdout
