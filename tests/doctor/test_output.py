"""What doctor prints: plain lines, a table on a terminal, JSON; exit codes through the CLI."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from devenv.commands.doctor import render
from devenv.console import Output
from devenv.doctor import Check, Remedy

MakeProject = Callable[..., Path]

CHECKS = [
    Check("config.load", "ok", "steps.yaml load: 2 steps"),
    Check("db.schemas", "fail", "schema app is missing from demo", "devenv run --force seed",
          remedies=(Remedy("create-schemas", ("app",)),)),
    Check("env.shared", "warn", "JWT_SECRET is empty in both apps", "set JWT_SECRET"),
]


def test_plain_lines() -> None:
    buf = io.StringIO()
    render(Output(plain=True, stream=buf), CHECKS, 1.234)
    assert buf.getvalue().splitlines() == [
        "ok    config.load  steps.yaml load: 2 steps",
        "FAIL  db.schemas   schema app is missing from demo",
        "                   fix: devenv run --force seed",
        "warn  env.shared   JWT_SECRET is empty in both apps",
        "                   fix: set JWT_SECRET",
        "1 ok, 1 warning, 1 failing (1.2s); devenv doctor --fix repairs 1 of them (db.schemas)",
    ]


def test_table_on_a_terminal() -> None:
    buf = io.StringIO()
    out = Output(plain=True, stream=buf)
    out.plain = False  # as on a TTY (a StringIO is not one)
    render(out, CHECKS, 0.5)
    text = buf.getvalue()
    assert "check" in text and "finding" in text
    assert "To fix:" in text
    assert "devenv run --force seed" in text
    assert text.rstrip().endswith("(db.schemas)")


def test_json_entries() -> None:
    data = [c.as_json() for c in CHECKS]
    assert data[1] == {"id": "db.schemas", "status": "fail",
                       "finding": "schema app is missing from demo",
                       "fix": "devenv run --force seed", "fixable": True}
    assert data[0]["fixable"] is False


def _devenv(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run([sys.executable, "-m", "devenv", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_json_and_exit_codes(make_project: MakeProject) -> None:
    root = make_project({"version": 1, "name": "doc-cli",
                         "steps": {"a": {"run": "true"}, "b": {"run": "no-such-prog-x"}}})
    done = _devenv(root, "doctor", "--json")
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    assert isinstance(data, list)
    assert {c["id"] for c in data} >= {"config.load", "config.commands", "db.connect",
                                       "drift.shared_tables", "snapshots.leftovers"}
    commands = next(c for c in data if c["id"] == "config.commands")
    assert commands["status"] == "fail"
    assert commands["finding"] == ("steps.b.run: 'no-such-prog-x' is not found on the PATH "
                                   "(steps.yaml:7)")
    # --fix: JSON alone on stdout, what it does on stderr (here: `up`, which fails on b).
    fixed = _devenv(root, "doctor", "--json", "--fix")
    assert fixed.returncode == 1
    assert json.loads(fixed.stdout)[0]["id"] == "config.load"
    assert fixed.stderr.startswith("doctor --fix will:\n  - devenv up --no-processes")
    assert "devenv up exited with 1" in fixed.stderr
    (root / "steps.yaml").write_text("version: 1\nname: doc-cli\nsteps:\n  a: {run: 'true'}\n")
    assert _devenv(root, "run").returncode == 0
    ok = _devenv(root, "--plain", "doctor")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines()[-1].startswith("25 ok, 0 warnings, 0 failing (")
    nothing = _devenv(root, "doctor", "--fix")
    assert nothing.returncode == 0
    assert nothing.stdout.startswith("doctor --fix: nothing it can repair safely\n")


def test_several_problems_are_listed_with_their_fixes() -> None:
    from devenv.doctor.base import FAIL, Problems

    problems = Problems("config.paths")
    problems.add(FAIL, "a missing", "create a")
    problems.add(FAIL, "b missing", "create b")
    check = problems.result("fine")
    assert check.finding == "a missing; b missing"
    assert check.fix == "create a; create b"
    buf = io.StringIO()
    render(Output(plain=True, stream=buf), [check], 0.1)
    assert buf.getvalue().splitlines()[:4] == [
        "FAIL  config.paths  2 problems:",
        "                    - a missing (fix: create a)",
        "                    - b missing (fix: create b)",
        "                    fix: create a; create b",
    ]
    assert check.as_json()["details"] == ["a missing (fix: create a)",
                                          "b missing (fix: create b)"]
