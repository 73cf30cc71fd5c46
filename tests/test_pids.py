"""Process identity, groups, port owners and environment tags through psutil
(devenv.pids), on real processes."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv import pids

# A group leader with one child; both print their pids and sleep.
GROUP = (
    "import subprocess, sys, time\n"
    "c = subprocess.Popen(['sleep', '300'])\n"
    "print(c.pid, flush=True)\n"
    "time.sleep(300)\n")


@pytest.fixture
def group() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    leader = subprocess.Popen([sys.executable, "-c", GROUP], stdout=subprocess.PIPE,
                              start_new_session=True)
    assert leader.stdout is not None
    child = int(leader.stdout.readline())
    try:
        yield leader, child
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, 9)
        leader.wait()


def test_start_id_names_one_process_and_a_zombie_runs_nothing() -> None:
    p = subprocess.Popen(["sleep", "300"])
    try:
        sid = pids.start_id(p.pid)
        assert sid is not None and pids.is_same(p.pid, sid) and pids.alive(p.pid)
        assert abs(float(sid) - time.time()) < 60
        assert not pids.is_same(p.pid, f"{float(sid) - 3:.2f}")
        assert not pids.is_same(p.pid, "") and not pids.is_same(p.pid, "garbage")
        p.kill()
        time.sleep(0.2)  # a zombie until we reap it (no poll() before the check)
        assert not pids.alive(p.pid) and pids.start_id(p.pid) is None
    finally:
        p.kill()
        p.wait()
    assert pids.start_id(p.pid) is None and not pids.is_same(p.pid, sid)


def test_group_members_are_the_live_processes_of_the_group(
        group: tuple[subprocess.Popen[bytes], int]) -> None:
    leader, child = group
    assert sorted(pids.group_members(leader.pid)) == sorted([leader.pid, child])
    started = pids.started(leader.pid)
    assert started is not None
    assert sorted(pids.group_members(leader.pid, since=started)) == sorted([leader.pid, child])
    # members started before the recorded leader are not of its group
    assert pids.group_members(leader.pid, since=started + 60) == []
    os.kill(child, 9)
    deadline = time.monotonic() + 5
    while child in pids.group_members(leader.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pids.group_members(leader.pid) == [leader.pid]  # the zombie child does not count
    os.killpg(leader.pid, 9)
    leader.wait()
    assert pids.group_members(leader.pid) == []


def test_port_owner_names_the_listening_process() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert pids.port_owner(port) is None  # bound, not listening
        s.listen()
        owner = pids.port_owner(port)
        assert owner is not None and owner[0] == os.getpid()
        assert owner[1] and owner[1] != "?"
    assert pids.port_owner(port) is None


def test_with_env_finds_the_processes_that_carry_a_variable() -> None:
    env = {**os.environ, "DEVENV_TEST_TAG": "run1:run1-2"}
    p = subprocess.Popen(["sleep", "300"], env=env)
    try:
        time.sleep(0.05)
        found = dict(pids.with_env("DEVENV_TEST_TAG"))
        assert found.get(p.pid) == "run1:run1-2"
        assert os.getpid() not in found  # never this process
    finally:
        p.kill()
        p.wait()
    assert p.pid not in dict(pids.with_env("DEVENV_TEST_TAG"))


def test_using_names_the_processes_working_in_or_holding_a_folder(tmp_path: Path) -> None:
    inside = tmp_path / "data"
    inside.mkdir()
    held = inside / "held.txt"
    held.write_text("x")
    cwd = subprocess.Popen(["sleep", "300"], cwd=inside)
    opener = subprocess.Popen([sys.executable, "-c", f"f = open({str(held)!r}); "
                               "print(1, flush=True); import time; time.sleep(300)"],
                              stdout=subprocess.PIPE)
    try:
        assert opener.stdout is not None and opener.stdout.readline()
        found = dict(pids.using(lambda path: path.startswith(str(inside))))
        assert found.get(cwd.pid) == "sleep"
        assert opener.pid in found
        assert os.getpid() not in found
        assert pids.using(lambda path: path.startswith(str(tmp_path / "other"))) == []
    finally:
        for p in (cwd, opener):
            p.kill()
            p.wait()
