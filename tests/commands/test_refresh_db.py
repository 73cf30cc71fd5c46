"""`devenv refresh-db` as a user runs it: Ctrl-C, SIGTERM and SIGKILL lose nothing, a
second run is told who holds the project, --undo swaps the previous database back."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devenv.events import RecordingReporter
from devenv.postgres import database
from devenv.workingdb import rebuild
from tests.dbcompare import dump_database
from tests.refreshproj import builds, lc_project, refresh

pytestmark = pytest.mark.postgres


@pytest.fixture
def lc(make_project: Callable[..., Path], pg_server: Any, monkeypatch: pytest.MonkeyPatch,
       ) -> Iterator[tuple[Path, database.Target]]:
    yield from lc_project(make_project, pg_server, monkeypatch)


def _devenv(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "devenv", "--plain", *args], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_signal_during_build_loses_nothing(lc: tuple[Path, database.Target],
                                           sig: signal.Signals) -> None:
    root, target = lc
    refresh(root, target)
    before = dump_database(target.url())
    # the seed step now hangs until it is killed
    (root / "seed.sql").write_text(
        "insert into app.items values (9999, 'x');\n\\! touch started; sleep 60\n")
    p = _devenv(root, "refresh-db")
    _wait_for(root / "started")
    p.send_signal(sig)
    out, _ = p.communicate(timeout=60)
    if sig is not signal.SIGKILL:
        assert p.returncode == 130, out
    assert dump_database(target.url()) == before
    if sig is signal.SIGKILL:
        # the next run (or doctor --fix) cleans up what a SIGKILL left
        rebuild.recover(target, target.dbname, RecordingReporter())
    assert not builds(target)
    (root / "started").unlink()


def test_second_refresh_fails_fast_naming_the_holder(lc: tuple[Path, database.Target]) -> None:
    root, _target = lc
    (root / "seed.sql").write_text("\\! touch started; sleep 30\n")
    first = _devenv(root, "refresh-db")
    try:
        _wait_for(root / "started")
        second = subprocess.run([sys.executable, "-m", "devenv", "refresh-db", "--no-wait"],
                                cwd=root, capture_output=True, text=True, timeout=60)
        assert second.returncode == 4  # busy, not "a step failed"
        assert f"another devenv is working on this project: pid {first.pid} (refresh-db" \
               in second.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)


def test_output_says_what_ran_and_undo_swaps_back(lc: tuple[Path, database.Target]) -> None:
    root, target = lc
    first = subprocess.run([sys.executable, "-m", "devenv", "--plain", "refresh-db"], cwd=root,
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"{target.dbname} is fresh: 4 steps ran, starting from empty database, in " \
        in first.stdout
    built = dump_database(target.url())
    (root / "seed.sql").write_text("insert into app.items values (1, 'one');\n")
    second = subprocess.run([sys.executable, "-m", "devenv", "--plain", "refresh-db"],
                            cwd=root, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    assert dump_database(target.url()) != built
    undo = subprocess.run([sys.executable, "-m", "devenv", "--plain", "refresh-db", "--undo"],
                          cwd=root, capture_output=True, text=True, timeout=120)
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert f"{target.dbname}__prev is {target.dbname} again" in undo.stdout
    assert dump_database(target.url()) == built
