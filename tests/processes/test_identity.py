"""Whether a recorded process is still ours (devenv.processes.identity): a pid counts only
with the start time it was recorded with, so a reused pid is never signalled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devenv import pids, processes
from devenv.postgres.pgcluster import free_port
from devenv.processes import identity
from devenv.schema import Project
from tests.processes.app import web
from tests.procs import alive, gone


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process in a group of its own, as devenv starts them."""
    p = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        yield p
    finally:
        p.kill()
        p.wait()


def record(p: Project, **rec: object) -> None:
    p.state_dir.mkdir(exist_ok=True)
    (p.state_dir / "processes.json").write_text(json.dumps(
        {"version": 1, "processes": {"web": {"detached": True, **rec}}}))


def test_a_recycled_pid_is_never_signalled(project: Callable[..., Project]) -> None:
    p = project({"web": web(free_port())})
    # A record naming this very test process, but with another start time: as if the
    # recorded process died and the pid was reused.
    record(p, pid=os.getpid(), start_id="1")
    assert [s.alive for s in processes.status(p)] == [False]
    assert processes.stop_all(p) == []
    assert processes.read_records(p) == {}


def test_a_live_pid_with_another_start_time_is_not_ours(
        project: Callable[..., Project], sleeper: subprocess.Popen[bytes]) -> None:
    started = pids.started(sleeper.pid)
    assert started is not None and abs(started - time.time()) < 60
    p = project({"web": web(free_port())})
    # The pid runs, but it started 5 s after the process the record names: another one.
    record(p, pid=sleeper.pid, start_id=f"{started - 5:.2f}")
    assert not identity.alive(processes.read_records(p)["web"])
    assert [s.alive for s in processes.status(p)] == [False]
    assert processes.stop_all(p, grace=1) == []
    assert alive(sleeper.pid)  # not signalled
    # The same pid with its own start time is ours: status sees it, stop_all stops it.
    record(p, pid=sleeper.pid, start_id=pids.start_id(sleeper.pid))
    assert [s.alive for s in processes.status(p)] == [True]
    assert processes.stop_all(p, grace=1) == ["web"]
    assert sleeper.wait(timeout=5) == -15  # SIGTERM was enough


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux's /proc")
def test_records_of_an_older_devenv_are_still_read(
        project: Callable[..., Project], sleeper: subprocess.Popen[bytes]) -> None:
    # Before psutil, devenv recorded /proc's start time in clock ticks since boot.
    stat = Path(f"/proc/{sleeper.pid}/stat").read_text()
    ticks = stat[stat.rindex(")") + 2:].split()[19]
    assert identity.alive({"pid": sleeper.pid, "start_id": ticks})
    assert not identity.alive({"pid": sleeper.pid, "start_id": str(int(ticks) - 1000)})
    # ...and on macOS, ps's lstart (local time, whole seconds)
    started = pids.started(sleeper.pid)
    assert started is not None
    lstart = time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(started))
    assert identity.alive({"pid": sleeper.pid, "start_id": lstart})
    assert not identity.alive({"pid": sleeper.pid, "start_id": time.strftime(
        "%a %b %d %H:%M:%S %Y", time.localtime(started - 10))})
    # no start time at all: nothing to tell it from a stranger by, never stopped
    assert not identity.stop({"pid": sleeper.pid, "start_id": ""})
    assert alive(sleeper.pid)


def test_the_owner_of_a_foreground_record_must_be_that_very_process(
        sleeper: subprocess.Popen[bytes]) -> None:
    own = pids.start_id(sleeper.pid)
    assert own is not None
    assert identity.live_owner({"owner": sleeper.pid, "owner_start": own}) == sleeper.pid
    assert identity.live_owner({"owner": sleeper.pid,
                                "owner_start": f"{float(own) + 30:.2f}"}) is None
    # records of a devenv that did not keep the owner's start: a live pid counts
    assert identity.live_owner({"owner": sleeper.pid}) == sleeper.pid
    sleeper.kill()
    sleeper.wait()
    assert identity.live_owner({"owner": sleeper.pid, "owner_start": own}) is None


def test_stop_takes_the_whole_group_of_the_record(tmp_path: Path) -> None:
    # the leader starts a child that ignores SIGTERM: stop() still ends both
    script = tmp_path / "leader.py"
    script.write_text(
        "import signal, subprocess, sys, time\n"
        "c = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); "
        "time.sleep(300)'], stdout=subprocess.PIPE)\n"
        "c.stdout.readline()\n"
        "print(c.pid, flush=True)\n"
        "time.sleep(300)\n")
    leader = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                              start_new_session=True)
    try:
        assert leader.stdout is not None
        child = int(leader.stdout.readline())
        rec = {"pid": leader.pid, "start_id": pids.start_id(leader.pid)}
        t0 = time.monotonic()
        assert identity.stop(rec, grace=0.5)
        assert gone(child) and time.monotonic() - t0 < 5
        assert leader.wait(timeout=5) == -15
        assert not identity.stop(rec, grace=0.5)  # nothing of it runs any more
    finally:
        leader.kill()
        leader.wait()
