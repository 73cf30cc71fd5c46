"""`devenv run`: exit codes and plain output when not a terminal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.test_cli import devenv

MakeProject = Callable[..., Path]


def test_run_exit_codes_and_plain_output(make_project: MakeProject) -> None:
    root = make_project({"version": 1, "steps": {
        "ok": {"run": "echo fine"}, "bad": {"run": "echo broken-output; exit 4",
                                            "needs": ["ok"]}}})
    r = devenv("run", "--plain", cwd=root)
    assert r.returncode == 1
    assert "[ok] ok in" in r.stdout
    assert "[bad] FAILED (exit code 4)" in r.stdout
    assert "log: .devenv/logs/bad.log" in r.stdout
    assert "  | broken-output" in r.stdout
    assert "\x1b[" not in r.stdout  # no colour codes when not a terminal
    r = devenv("run", "ok", cwd=root)  # no --plain: stdout is a pipe, not a terminal
    assert r.returncode == 0 and "[ok] skipped: unchanged since" in r.stdout
    assert "\x1b[" not in r.stdout  # no colour codes when not a terminal
