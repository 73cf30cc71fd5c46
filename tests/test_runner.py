"""The runner on real subprocesses: order, parallelism, failures, fingerprints, Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devenv import building, loader, runner
from devenv.errors import ConfigError
from devenv.events import RecordingReporter, Status, StepStarted
from devenv.session import Session
from tests.procs import alive, gone

MakeProject = Callable[..., Path]


def build(root: Path, **kwargs: Any) -> tuple[Any, RecordingReporter]:
    project = loader.load(root / "steps.yaml")
    rep = RecordingReporter()
    result = building.build(Session(project, rep, kwargs.pop("profile", "local")), None, **kwargs)
    return result, rep


def statuses(result: Any) -> dict[str, Status]:
    return {r.name: r.status for r in result.result.results}


def started_order(rep: RecordingReporter) -> list[str]:
    return [e.name for e in rep.events if isinstance(e, StepStarted)]


def test_dependency_order(make_project: MakeProject) -> None:
    root = make_project({"version": 1, "steps": {
        "c": {"run": "echo c >> order.txt", "needs": ["a", "b"]},
        "a": {"run": "echo a >> order.txt"},
        "b": {"run": "echo b >> order.txt", "needs": ["a"]},
    }})
    result, _ = build(root, jobs=4)
    assert result.result.ok
    assert (root / "order.txt").read_text().split() == ["a", "b", "c"]


def test_independent_steps_overlap(make_project: MakeProject) -> None:
    # Each step waits until the other has started: they can only both finish if they run
    # at the same time (with one job they would time out).
    wait_for = "i=0; while [ ! -f {f} ]; do i=$((i+1)); [ $i -gt 200 ] && exit 7; sleep 0.05; done"
    root = make_project({"version": 1, "steps": {
        "left": {"run": "touch left.started; " + wait_for.format(f="right.started")},
        "right": {"run": "touch right.started; " + wait_for.format(f="left.started")},
    }})
    result, _ = build(root, jobs=2)
    assert statuses(result) == {"left": Status.OK, "right": Status.OK}


def test_one_job_runs_one_at_a_time(make_project: MakeProject) -> None:
    root = make_project({"version": 1, "steps": {
        "left": {"run": "touch left.started; sleep 0.2; test ! -f right.started"},
        "right": {"run": "touch right.started; sleep 0.2; test -f left.started"},
    }})
    result, _ = build(root, jobs=1)
    assert statuses(result) == {"left": Status.OK, "right": Status.OK}


def test_failure_blocks_dependants_and_stops_new_steps(make_project: MakeProject) -> None:
    root = make_project({"version": 1, "steps": {
        "broken": {"run": "echo about to fail; exit 3"},
        "after": {"run": "touch after.ran", "needs": ["broken"]},
        "unrelated": {"run": "touch unrelated.ran"},
    }})
    result, _ = build(root, jobs=1)
    st = statuses(result)
    assert st["broken"] is Status.FAILED
    assert st["after"] is Status.BLOCKED
    assert st["unrelated"] is Status.CANCELLED
    assert not (root / "after.ran").exists()
    failed = next(r for r in result.result.results if r.name == "broken")
    assert failed.reason == "exit code 3"
    assert failed.log is not None and "about to fail" in failed.log.read_text()
    blocked = next(r for r in result.result.results if r.name == "after")
    assert blocked.reason == "needs broken, which failed"


def test_keep_going_runs_independent_steps(make_project: MakeProject) -> None:
    root = make_project({"version": 1, "steps": {
        "broken": {"run": "exit 1"},
        "after": {"run": "true", "needs": ["broken"]},
        "unrelated": {"run": "touch unrelated.ran"},
    }})
    result, _ = build(root, jobs=1, keep_going=True)
    st = statuses(result)
    assert st == {"broken": Status.FAILED, "after": Status.BLOCKED, "unrelated": Status.OK}


def test_unchanged_steps_are_skipped_with_reason(make_project: MakeProject) -> None:
    root = make_project({"version": 1, "steps": {
        "load": {"run": "cat data/a.txt >> out.txt", "inputs": ["data/**"]},
        "report": {"run": "wc -l out.txt", "needs": ["load"]},
        "other": {"run": "true"},
    }}, files={"data/a.txt": "one\n", "data/b.txt": "two\n"})
    first, _ = build(root)
    assert set(statuses(first).values()) == {Status.OK}

    second, _ = build(root)
    assert set(statuses(second).values()) == {Status.SKIPPED}
    assert all(r.reason.startswith("unchanged since") for r in second.result.results)

    (root / "data" / "b.txt").write_text("changed\n")
    third, rep = build(root)
    reasons = {d.step: d.reason for d in third.decisions}
    assert reasons["load"] == "input changed: data/b.txt"
    assert reasons["report"] == "upstream changed: load"
    assert reasons["other"].startswith("unchanged since")
    assert started_order(rep) == ["load", "report"]


def test_pycache_does_not_change_fingerprints(make_project: MakeProject) -> None:
    root = make_project({"version": 1, "steps": {"m": {"run": "true", "inputs": ["mig/**"]}}},
                        files={"mig/0001.py": "x = 1\n"})
    build(root)
    (root / "mig" / "__pycache__").mkdir()
    (root / "mig" / "__pycache__" / "0001.cpython-311.pyc").write_bytes(b"\0junk")
    again, _ = build(root)
    assert statuses(again) == {"m": Status.SKIPPED}


def test_definition_change_is_named(make_project: MakeProject) -> None:
    root = make_project({"version": 1, "steps": {"s": {"run": "true"}}})
    build(root)
    text = (root / "steps.yaml").read_text().replace("run: 'true'", "run: 'true '")
    (root / "steps.yaml").write_text(text)
    again, _ = build(root)
    assert again.decisions[0].reason == "definition changed (run)"


def test_failed_step_runs_again_and_says_why(make_project: MakeProject) -> None:
    root = make_project({"version": 1, "steps": {"s": {"run": "test -f ok"}}})
    first, _ = build(root)
    assert statuses(first) == {"s": Status.FAILED}
    (root / "ok").touch()
    second, _ = build(root)
    assert second.decisions[0].reason == "its last run failed"
    assert statuses(second) == {"s": Status.OK}


def test_force_and_only(make_project: MakeProject) -> None:
    root = make_project({"version": 1, "steps": {
        "a": {"run": "echo a >> ran.txt"},
        "b": {"run": "echo b >> ran.txt", "needs": ["a"]},
    }})
    build(root)
    forced, _ = build(root, targets=["b"], force=True)
    assert {d.step: d.reason for d in forced.decisions} == {
        "a": forced.decisions[0].reason, "b": "forced (--force)"}
    assert forced.decisions[0].reason.startswith("unchanged since")
    only, _ = build(root, targets=["b"], only=True, force=True)
    assert statuses(only) == {"a": Status.SKIPPED, "b": Status.OK}
    assert (root / "ran.txt").read_text().split() == ["a", "b", "b", "b"]


def test_profile_skips_steps_of_other_profiles(make_project: MakeProject) -> None:
    root = make_project({"version": 1, "steps": {
        "seed": {"run": "true"},
        "local-user": {"run": "true", "profiles": ["local"], "needs": ["seed"]},
    }})
    result, _ = build(root, profile="ci")
    reasons = {d.step: d.reason for d in result.decisions}
    assert reasons["local-user"] == "not in profile ci (runs in: local)"
    assert statuses(result)["local-user"] is Status.SKIPPED


def test_timeout_kills_the_step(make_project: MakeProject) -> None:
    root = make_project({"version": 1, "steps": {
        "hang": {"run": "sleep 30", "timeout": 0.5}}})
    t0 = time.monotonic()
    result, _ = build(root)
    assert statuses(result) == {"hang": Status.FAILED}
    assert result.result.results[0].reason == "timed out after 0.5s"
    assert time.monotonic() - t0 < 20  # not a speed check: the step was stopped, not awaited


def test_environment_and_expansion(make_project: MakeProject) -> None:
    root = make_project({"version": 1, "env": {"BASE": "/srv", "URL": "${BASE}/app"},
                         "steps": {"show": {
                             "run": "echo \"$URL|$MODE|$DEVENV_STEP|$LITERAL\" > env.txt",
                             "env": {"MODE": "${URL}-dev", "LITERAL": "$${NOT_EXPANDED}"},
                         }}})
    result, _ = build(root)
    assert result.result.ok
    assert (root / "env.txt").read_text().strip() == "/srv/app|/srv/app-dev|show|${NOT_EXPANDED}"


def test_undefined_variable_stops_before_anything_runs(make_project: MakeProject) -> None:
    root = make_project("""\
version: 1
steps:
  first:
    run: touch first.ran
  second:
    run: echo ${NOPE_NOT_SET}
""")
    with pytest.raises(ConfigError) as info:
        build(root)
    assert str(info.value) == (
        "steps.yaml:5: steps.second.run: ${NOPE_NOT_SET} is not defined; set it under env: in "
        "steps.yaml or in your shell, or write ${NOPE_NOT_SET:-default}")
    assert not (root / "first.ran").exists()


def test_missing_cwd_fails_that_step_with_location(make_project: MakeProject) -> None:
    root = make_project({"version": 1, "steps": {"s": {"run": "true", "cwd": "nowhere"}}})
    result, _ = build(root)
    r = result.result.results[0]
    assert r.status is Status.FAILED
    assert r.reason == f"working directory not found: {root / 'nowhere'} (steps.yaml:3: steps.s.cwd)"


def test_logs_one_file_per_run_with_latest_link(make_project: MakeProject) -> None:
    root = make_project({"version": 1, "steps": {"s": {"run": "echo run-$RANDOM"}}})
    build(root)
    build(root, force=True)
    logs = sorted((root / ".devenv" / "logs" / "s").glob("*.log"))
    assert len(logs) == 2
    link = root / ".devenv" / "logs" / "s.log"
    assert link.is_symlink() and link.resolve() == logs[-1].resolve()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_kills_the_whole_process_group(make_project: MakeProject,
                                                 sig: signal.Signals) -> None:
    root = make_project({"version": 1, "steps": {
        "server": {"run": "sleep 300 & echo $! > child.pid; touch started; wait"},
        "later": {"run": "touch later.ran", "needs": ["server"]},
    }})
    p = subprocess.Popen([sys.executable, "-m", "devenv", "--plain", "run"], cwd=root,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 20
    while not (root / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int((root / "child.pid").read_text())
    assert alive(child)
    p.send_signal(sig)
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 130, out
    assert "[server] interrupted" in out
    assert gone(child, wait=10)
    assert not (root / "later.ran").exists()


def test_state_dir_is_private_and_ignored(make_project: MakeProject) -> None:
    root = make_project({"version": 1, "steps": {"s": {"run": "true"}}})
    r = subprocess.run([sys.executable, "-m", "devenv", "run"], cwd=root, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    state = root / ".devenv"
    assert (state.stat().st_mode & 0o777) == 0o700
    assert (state / ".gitignore").read_text().splitlines()[-1] == "*"


def test_huge_output_is_streamed_to_disk_not_memory(make_project: MakeProject) -> None:
    # 200 MB of output: the runner must not hold it; its peak RSS stays far below that
    # (about 25 MB here, the same as for a step that prints one line).
    root = make_project({"version": 1, "steps": {
        "loud": {"run": "head -c 200000000 /dev/zero | tr '\\\\0' 'x' | fold -w 100"}}})
    # VmHWM, not ru_maxrss: ru_maxrss survives fork+exec, so it would report the peak of
    # the (large) pytest worker that started this process.
    code = ("from pathlib import Path; from devenv import loader, "
            "building; from devenv.events import RecordingReporter; "
            "from devenv.session import Session; "
            "r = building.build(Session(loader.load(Path('steps.yaml')), RecordingReporter()), None); "
            "assert r.result.ok; "
            "print(next(l.split()[1] for l in open('/proc/self/status') "
            "if l.startswith('VmHWM')))")
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    peak_kb = int(r.stdout.strip())
    log = (root / ".devenv" / "logs" / "loud.log").resolve()
    assert log.stat().st_size > 200_000_000
    assert peak_kb < 100_000, f"peak RSS {peak_kb} kB"


def test_started_line_of_a_typed_kind_summarises_nested_options(
        make_project: MakeProject) -> None:
    # A faker step's tables: mapping would print every column's generator on one line.
    root = make_project({"version": 1, "steps": {
        "seed": {"kind": "faker", "seed": 7, "tables": {
            "members": {"rows": 3, "columns": {"name": "name", "email": "email"}},
            "plans": {"rows": 2, "columns": {"title": "word"}}}},
        "hello": {"run": "echo hi"}}})
    project = loader.load(root / "steps.yaml")
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": "postgresql://u@localhost/x"}
    seed = runner.prepare(project, project.steps["seed"], env)
    assert seed.display == "faker (seed: 7, tables: members, plans)"
    assert runner.prepare(project, project.steps["hello"], env).display == "echo hi"

