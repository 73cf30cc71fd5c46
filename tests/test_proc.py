"""The one kill helper (devenv.proc.kill_group), on real process groups."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from devenv import pids, proc
from tests.procs import alive, gone

# The leader starts a child that ignores SIGTERM, says its pid, and sleeps.
STUBBORN = (
    "import subprocess, sys\n"
    "c = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); "
    "time.sleep(300)'], stdout=subprocess.PIPE)\n"
    "c.stdout.readline()\n"
    "print(c.pid, flush=True)\n"
    "import time; time.sleep(300)\n")


def start(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    leader = proc.spawn([sys.executable, "-c", STUBBORN], cwd=tmp_path, env={},
                        stdout=subprocess.PIPE)
    assert leader.stdout is not None
    return leader, int(leader.stdout.readline())


def test_a_group_whose_child_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    leader, child = start(tmp_path)
    t0 = time.monotonic()
    assert proc.kill_group(leader, grace=0.5)
    took = time.monotonic() - t0
    assert gone(child) and not alive(leader.pid)
    assert leader.returncode == -15  # the leader went at SIGTERM, and was reaped
    assert 0.5 <= took < 5  # the child only at SIGKILL, after the grace
    assert not proc.kill_group(leader)  # nothing of it runs any more


def test_a_recorded_group_is_killed_by_its_id(tmp_path: Path) -> None:
    leader, child = start(tmp_path)
    since = pids.started(leader.pid)
    assert since is not None
    try:
        # the group's id, recorded with another start: its leader's pid was reused by a
        # stranger, whose group is not signalled
        assert not proc.kill_group(leader.pid, grace=0.5, since=since - 60)
        assert not proc.kill_group(leader.pid, grace=0.5, since=since + 60)
        assert alive(leader.pid) and alive(child)
        assert proc.kill_group(leader.pid, grace=0.5, since=since)
        assert gone(child)
        assert leader.wait(timeout=5) == -15
    finally:
        leader.kill()
        leader.wait()
