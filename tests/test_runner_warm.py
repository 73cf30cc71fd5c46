"""Warm start on real processes: a step of a warm-capable kind sets up while the steps it
needs still run, and only touches anything after ``go``; it is told it is not needed when
a dependency fails; a set-up failure is reported as the step's failure; Ctrl-C leaves no
process behind. The kind is tests/warmkind.py (a real script speaking the protocol)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devenv import building, loader
from devenv.events import RecordingReporter, Status
from devenv.session import Session
from tests import warmkind
from tests.procs import alive, gone

MakeProject = Callable[..., Path]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _warm_kind(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("DEVENV_WARM_START", raising=False)
    warmkind.register()
    yield
    from devenv.kinds import KINDS

    KINDS.pop("warmtest", None)


def build(root: Path, **kwargs: Any) -> Any:
    project = loader.load(root / "steps.yaml")
    return building.build(Session(project, RecordingReporter()), None, **kwargs).result


def events(root: Path) -> dict[tuple[str, str], float]:
    out = {}
    for line in (root / "events.txt").read_text().splitlines():
        name, what, stamp, _pid = line.split()
        out[(name, what)] = float(stamp)
    return out


def dep_then_warm(make_project: MakeProject, dep: str, **warm_opts: Any) -> Path:
    return make_project({"version": 1, "steps": {
        "dep": {"run": dep},
        "late": {"kind": "warmtest", "needs": ["dep"], **warm_opts},
    }})


DEP_1S = "sleep 1; python3 -c 'import time; print(\"dep done\", time.time())' > dep.out"


def dep_done(root: Path) -> float:
    return float((root / "dep.out").read_text().split()[-1])


def test_sets_up_while_its_dependency_runs(make_project: MakeProject) -> None:
    root = dep_then_warm(make_project, DEP_1S, setup=0.8, work=0.1)
    result = build(root, jobs=2)
    assert result.ok
    ev = events(root)
    assert ev[("late", "setup")] < dep_done(root) - 0.5  # set up beside dep
    assert ev[("late", "parked")] < dep_done(root)
    assert ev[("late", "work")] >= dep_done(root)  # touched nothing before its turn
    late = next(r for r in result.results if r.name == "late")
    assert late.duration < 0.6  # its 0.8 s of set-up was not on the critical path
    log = (root / ".devenv" / "logs" / "late.log").read_text()
    assert "# warm start: set up ahead of its turn" in log


def test_turned_off_by_environment(make_project: MakeProject,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVENV_WARM_START", "0")
    root = dep_then_warm(make_project, DEP_1S, setup=0.3)
    assert build(root, jobs=2).ok
    ev = events(root)
    assert ev[("late", "setup")] >= dep_done(root)
    assert ("late", "parked") not in ev


def test_no_idle_cpu_no_warm_start(make_project: MakeProject) -> None:
    root = dep_then_warm(make_project, DEP_1S, setup=0.3)
    assert build(root, jobs=1).ok
    assert events(root)[("late", "setup")] >= dep_done(root)


def test_dependency_fails_so_it_is_told_not_needed(make_project: MakeProject) -> None:
    root = dep_then_warm(make_project, "sleep 1; exit 3", setup=0.1)
    result = build(root, jobs=2)
    st = {r.name: r for r in result.results}
    assert st["dep"].status is Status.FAILED
    assert st["late"].status is Status.BLOCKED
    ev = events(root)
    assert ("late", "parked") in ev
    assert ("late", "not-needed") in ev
    assert ("late", "work") not in ev
    log = (root / ".devenv" / "logs" / "late.log").read_text()
    assert log.rstrip().endswith("devenv: not run: needs dep, which failed")


def test_setup_failure_is_the_steps_failure(make_project: MakeProject) -> None:
    root = dep_then_warm(make_project, DEP_1S, fail_setup=True)
    result = build(root, jobs=2)
    late = next(r for r in result.results if r.name == "late")
    assert late.status is Status.FAILED
    assert late.reason == "exit code 4"
    assert late.log is not None and "setup exploded" in late.log.read_text()
    assert events(root)[("late", "setup")] < dep_done(root)


def test_a_chain_warms_behind_a_warm_step(make_project: MakeProject) -> None:
    """c needs b needs a: while a runs, b and then c set up (b is parked, not running)."""
    root = make_project({"version": 1, "steps": {
        "a": {"run": DEP_1S},
        "b": {"kind": "warmtest", "needs": ["a"], "setup": 0.2},
        "c": {"kind": "warmtest", "needs": ["b"], "setup": 0.2},
    }})
    assert build(root, jobs=2).ok
    ev = events(root)
    assert ev[("c", "parked")] < dep_done(root)
    assert ev[("b", "work")] >= dep_done(root)
    assert ev[("c", "work")] >= ev[("b", "work")]


def test_ctrl_c_stops_parked_processes(make_project: MakeProject) -> None:
    root = dep_then_warm(make_project, "touch dep.started; sleep 300", setup=0.1)
    p = subprocess.Popen([sys.executable, "-m", "tests.warmkind", "--plain", "--file",
                          str(root / "steps.yaml"), "run"],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if (root / "events.txt").exists() and " parked " in (root / "events.txt").read_text():
            break
        time.sleep(0.05)
    line = next(x for x in (root / "events.txt").read_text().splitlines() if " parked " in x)
    pid = int(line.split()[-1])
    assert alive(pid)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 130, out
    assert gone(pid, wait=10)
    assert ("late", "work") not in events(root)


@pytest.mark.postgres
def test_a_warm_step_connected_during_setup_costs_a_snapshot_not_the_step(
        make_project: MakeProject, pg_server: Any) -> None:
    """refresh-db snapshots the build after `a` (nothing else runs then), but `b`, parked,
    holds a connection its app opened while importing: no snapshot this time, said so,
    and `b` still runs (its session was not ended under it)."""
    from devenv.events import Message
    from devenv.postgres import database, siblings
    from devenv.workingdb import rebuild

    db = pg_server.unique_db("warm")
    root = make_project({
        "version": 1, "name": "warm",
        "services": {"db": {"image": "postgres:15"}},
        "database": {"service": "db", "name": db},
        "steps": {"a": {"run": DEP_1S, "needs": ["db"]},
                  "b": {"kind": "warmtest", "needs": ["a"], "connect": True, "setup": 0.1}},
    })
    target = database.parse_url(pg_server.url(db))
    rep = RecordingReporter()
    try:
        res = rebuild.refresh(Session(loader.load(root / "steps.yaml"), rep), target, jobs=2,
                                background_reclone=False)
        assert res.result is not None and res.result.ok
        warnings = [e.text for e in rep.events if isinstance(e, Message) and e.level == "warn"]
        assert any(t.startswith(f"kept no snapshot after a: 1 session(s) open on {db}__b_")
                   for t in warnings), warnings
        ev = events(root)
        assert ev[("b", "parked")] < dep_done(root) <= ev[("b", "work")]
        kept = [d for d in siblings.related(target, db) if d.kind == "snapshot"]
        assert [d.steps for d in kept] == [["a", "b"]]  # only the full one
    finally:
        for info in siblings.related(target, db):
            database.drop(target, info.datname)
