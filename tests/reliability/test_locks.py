"""Two devenv on one project: the second waits (naming the holder) or fails fast; a lock
left by a killed devenv is taken over at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

MakeProject = Callable[..., Path]


def _start(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "devenv", "--plain", *args], cwd=root,
                            env=env or dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_second_waits_naming_the_holder_then_runs(make_project: MakeProject) -> None:
    root = make_project({"version": 1, "steps": {
        "slow": {"run": "touch started; while [ ! -f release ]; do sleep 0.05; done"}}})
    first = _start(root, "run")
    try:
        _wait_for(root / "started")
        second = _start(root, "run", "--force")
        deadline = time.monotonic() + 10
        while second.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert second.poll() is None, "the second devenv did not wait"
        (root / "release").touch()
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 0, out
        assert f"waiting for the project lock held by pid {first.pid} (run, since" in out
    finally:
        (root / "release").touch()
        first.communicate(timeout=60)


def test_lock_of_a_killed_devenv_is_taken_over(make_project: MakeProject) -> None:
    root = make_project({"version": 1, "steps": {
        "slow": {"run": "touch started; sleep 60"}, "quick": {"run": "true"}}})
    first = _start(root, "run", "slow")
    _wait_for(root / "started")
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "devenv", "run", "quick"], cwd=root,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "waiting for the project lock" not in r.stdout + r.stderr
    assert time.monotonic() - t0 < 30  # not a speed check: it did not wait for the dead one
