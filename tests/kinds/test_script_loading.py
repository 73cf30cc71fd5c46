"""The standalone kind scripts load their shared modules without devenv importable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devenv.kinds.base import SCRIPTS

SCRIPT_NAMES = ["_alembic_upgrade", "_flask_command", "_django_command", "_django_loaddata",
                "_django_migrate", "_python_call"]


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_script_runs_by_path_without_devenv(name: str, tmp_path: Path) -> None:
    # As devenv runs it (by path: its folder is sys.path[0]), from an unrelated folder,
    # without PYTHONPATH; the probe tells what got imported.
    script = str(SCRIPTS / f"{name}.py")
    probe = (f"import runpy, sys; sys.argv = [{script!r}]; sys.path[0] = {str(SCRIPTS)!r}\n"
             "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
             "except SystemExit as e:\n"
             "    print(e.code, '_script_common' in sys.modules,"
             " any(m.startswith('devenv') for m in sys.modules))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert "usage:" in done.stderr, done.stderr
    # usage's exit code; the shared module loaded; nothing of devenv imported
    assert done.stdout.split() == ["2", "True", "False"], done.stdout


def test_app_folder_takes_the_scripts_place(tmp_path: Path) -> None:
    # A module of the app named like a shared one must not be shadowed by ours, and ours
    # are already loaded when the swap happens.
    (tmp_path / "helper_mod.py").write_text("VALUE = 'app'\n")
    code = ("import sys; sys.path[0] = " + repr(str(SCRIPTS)) + "\n"
            "import _script_common as s\n"
            f"s.use_app_folder({str(tmp_path)!r})\n"
            "import helper_mod; print(helper_mod.VALUE, sys.path[0])")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert done.stdout.split() == ["app", str(tmp_path)], done.stderr
