"""`devenv plan` --json."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.test_cli import devenv

MakeProject = Callable[..., Path]


def test_plan_json(make_project: MakeProject) -> None:
    root = make_project({"version": 1, "steps": {
        "a": {"run": "true"}, "b": {"run": "true", "needs": ["a"], "profiles": ["local"]}}})
    r = devenv("plan", "--json", "--profile", "ci", cwd=root)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["profile"] == "ci"
    assert [(s["name"], s["action"], s["reason"]) for s in data["steps"]] == [
        ("a", "run", "never run on this database"),
        ("b", "skip", "not in profile ci (runs in: local)")]
    assert data["would_run"] == 1
