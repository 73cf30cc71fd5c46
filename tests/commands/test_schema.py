"""``devenv schema``: prints the JSON Schema, or writes both files for editors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from devenv import config_schema

ROOT = Path(__file__).resolve().parents[2]


def devenv(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DEVENV_") or k == "DEVENV_PRELOAD"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "devenv", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_prints_the_steps_and_the_service_schema(tmp_path: Path) -> None:
    steps = devenv(tmp_path, "schema")
    assert steps.returncode == 0, steps.stderr
    assert json.loads(steps.stdout) == config_schema.steps_schema()
    service = devenv(tmp_path, "schema", "service")
    assert json.loads(service.stdout) == config_schema.service_schema()
    wrong = devenv(tmp_path, "schema", "stepz")
    assert wrong.returncode == 2
    assert "unknown schema 'stepz'; one of: steps, service" in wrong.stderr


def test_write_puts_both_files_beside_the_nearest_steps_yaml(tmp_path: Path) -> None:
    (tmp_path / "steps.yaml").write_text("version: 1\nsteps: {a: {run: 'true'}}\n")
    (tmp_path / "sub").mkdir()
    proc = devenv(tmp_path / "sub", "schema", "--write")
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / ".devenv" / "schema"
    assert json.loads((folder / "steps.json").read_text()) == config_schema.steps_schema()
    assert json.loads((folder / "service.json").read_text()) == \
        config_schema.service_schema()
    assert (tmp_path / ".devenv").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / ".devenv" / ".gitignore").read_text().endswith("\n*\n")
