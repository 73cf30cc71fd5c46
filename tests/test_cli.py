"""The command line as a user meets it: exit codes, messages, formats, no tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

MakeProject = Callable[..., Path]


def devenv(*args: str, cwd: Path, env: dict[str, str] | None = None,
           ) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    full.pop("DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "devenv", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=120)


def test_version(tmp_path: Path) -> None:
    from devenv import __version__

    r = devenv("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == f"devenv {__version__}"


def test_help_lists_commands_and_exit_codes(tmp_path: Path) -> None:
    r = devenv("--help", cwd=tmp_path)
    assert r.returncode == 0
    for word in ("graph", "plan", "run", "Exit codes: 0 ready, 1 a step failed"):
        assert word in r.stdout


@pytest.mark.parametrize("args, expected, absent", [
    (("up", "--help"), "Usage: devenv up [OPTIONS]", None),
    (("--plain", "-f", "x.yaml", "plan", "--help"), "Usage: devenv plan [OPTIONS]", None),
    (("--file=x.yaml", "snapshot", "--help"), "save", None),
    (("upp",), "No such command 'upp'. Did you mean 'up'?", None),
    (("--help",), "refresh-db", None),
    (("snapshot", "list", "--help"), "Usage: devenv snapshot list", "refresh-db"),
])
def test_only_the_command_run_is_built_and_the_rest_still_answer(
        tmp_path: Path, args: tuple[str, ...], expected: str, absent: str | None) -> None:
    # devenv builds only the named command's options (start-up time); a mistyped command,
    # the global options before a command and the top-level help still see all of them
    r = devenv(*args, cwd=tmp_path)
    out = r.stdout + r.stderr
    assert expected in out, out
    assert absent is None or absent not in out


def test_config_error_exit_2_without_traceback(make_project: MakeProject) -> None:
    root = make_project("version: 1\nsteps:\n  a: {run: 'true', needs: [b]}\n")
    r = devenv("plan", cwd=root)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr + r.stdout
    assert r.stderr.strip() == "error: steps.yaml:3: steps.a.needs[0]: unknown step 'b'"


def test_no_project_exit_2(tmp_path: Path) -> None:
    r = devenv("graph", cwd=tmp_path)
    assert r.returncode == 2
    assert "no steps.yaml found" in r.stderr and "Traceback" not in r.stderr


def test_unknown_step_and_profile_are_usage_errors(make_project: MakeProject) -> None:
    root = make_project({"version": 1, "steps": {"seed-data": {"run": "true"}}})
    r = devenv("run", "seed", cwd=root)
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: 'seed' is not a step (did you mean 'seed-data'?); "
                                "steps: seed-data")
    r = devenv("plan", "--profile", "cii", cwd=root)
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: unknown profile 'cii' (did you mean 'ci'?); known "
                                "profiles: local, ci")


def test_file_option_and_subfolder(make_project: MakeProject, tmp_path: Path) -> None:
    root = make_project({"version": 1, "name": "demo", "steps": {"a": {"run": "true"}}})
    sub = root / "x" / "y"
    sub.mkdir(parents=True)
    assert "demo (1 steps)" in devenv("graph", cwd=sub).stdout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert "demo (1 steps)" in devenv("--file", str(root / "steps.yaml"), "graph",
                                      cwd=elsewhere).stdout


def test_a_folder_as_input_and_an_unreadable_input(make_project: Callable[..., Path]) -> None:
    """inputs: ["."] (the whole project) and ["sub/"] are folders, not glob patterns; an
    input the kernel refuses to read is a configuration error naming the line."""
    root = make_project({"version": 1, "steps": {
        "whole": {"run": "true", "inputs": ["."]},
        "sub": {"run": "true", "inputs": ["sub/"]},
    }}, files={"sub/a.txt": "a\n"})
    r = devenv("plan", "--json", cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    (root / "steps.yaml").write_text(
        "version: 1\nsteps:\n  bad:\n    run: 'true'\n    inputs: [/proc/self/mem]\n")
    r = devenv("plan", cwd=root)
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: steps.yaml:5: steps.bad.inputs: cannot read an input: "
                                "Input/output error; list files the step reads, or fix their "
                                "permissions")
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(("text", "where"), [
    ('version: 1\nsteps:\n  a:\n    run: "echo \\0 hi"\n', "steps.yaml:4: steps.a.run: "),
    ('version: 1\nenv:\n  A: "x\\0"\nsteps:\n  a: {run: "true"}\n', "steps.yaml:3: env.A: "),
    ('version: 1\nsteps:\n  a:\n    run: "true"\n    env: {B: "\\0"}\n',
     "steps.yaml:5: steps.a.env.B: "),
])
def test_a_nul_character_is_a_config_error(make_project: MakeProject, text: str,
                                           where: str) -> None:
    root = make_project(text)
    r = devenv("run", cwd=root)
    assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout
    assert r.stderr.strip() == (f"error: {where}contains a NUL character (\\0), which no "
                                "command, environment variable or file name can hold; "
                                "remove it")
    # a raw NUL byte in the file: YAML refuses it, on its line
    (root / "steps.yaml").write_bytes(b"version: 1\nsteps:\n  a:\n    run: echo \0\n")
    r = devenv("run", cwd=root)
    assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout
    assert r.stderr.startswith("error: steps.yaml:4: YAML syntax error: unacceptable character")


def test_an_unexpected_exception_is_a_bug_report_not_a_traceback(tmp_path: Path) -> None:
    """A real fault devenv does not expect (its state file is a folder): exit 70, one line,
    the traceback in a file whose path is printed."""
    (tmp_path / "steps.yaml").write_text("version: 1\nname: c\nsteps:\n  a: {run: 'true'}\n")
    (tmp_path / ".devenv" / "state.json").mkdir(parents=True)
    r = devenv("run", cwd=tmp_path)
    assert r.returncode == 70, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: devenv failed unexpectedly (IsADirectoryError")
    assert "this is a bug in devenv, please report it; the traceback is in " in line
    log = Path(line.rsplit("the traceback is in ", 1)[1])
    assert log.parent == tmp_path / ".devenv" / "logs"
    assert "Traceback (most recent call last)" in log.read_text()
    assert oct(log.stat().st_mode & 0o777) == "0o600"


def test_a_full_disk_under_devenvs_own_files_is_a_message(
        capsys: pytest.CaptureFixture[str]) -> None:
    """ENOSPC for real: /dev/full refuses every write with it."""
    import typer

    from devenv import cli

    def write_state() -> int:
        with open("/dev/full", "w") as fh:
            fh.write("{}")
        return 0

    with pytest.raises(typer.Exit) as info:
        cli._call(write_state)
    assert info.value.exit_code == 1
    err = capsys.readouterr().err
    assert "error: no space left on the device: free some space" in err, err
    assert "Traceback" not in err


def test_a_crash_report_masks_the_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The crash handler is the unit here: a stand-in command raises what a bug would, with
    a --database-url in argv and the URL in its message."""
    import typer

    from devenv import cli

    url = "postgresql://app:s3cret-pw@db.example/app"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "steps.yaml").write_text("version: 1\nname: c\nsteps:\n  a: {run: 'true'}\n")
    (tmp_path / ".devenv").mkdir()
    monkeypatch.setattr(sys, "argv", ["devenv", "run", "--database-url", url])

    def buggy() -> int:
        raise RuntimeError(f"lost {url}")

    with pytest.raises(typer.Exit) as info:
        cli._call(buggy)
    assert info.value.exit_code == 70
    err = capsys.readouterr().err
    assert "s3cret-pw" not in err and "app:***@db.example" in err
    (log,) = (tmp_path / ".devenv" / "logs").glob("devenv-crash-*.log")
    assert "s3cret-pw" not in log.read_text() and "app:***@db.example" in log.read_text()


def test_a_read_only_devenv_folder_is_a_message(tmp_path: Path) -> None:
    """A real read-only file system (a read-only bind mount) under .devenv/."""
    (tmp_path / "steps.yaml").write_text("version: 1\nname: c\nsteps:\n  a: {run: 'true'}\n")
    state = tmp_path / ".devenv"
    state.mkdir()
    r = subprocess.run(["mount", "--bind", "-o", "ro", str(state), str(state)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot bind-mount read-only here: {r.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(state)], check=False)
        r = devenv("run", cwd=tmp_path)
    finally:
        subprocess.run(["umount", str(state)], check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert "cannot write" in r.stderr and "Read-only file system" in r.stderr, r.stderr


def test_a_failed_command_is_a_user_facing_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A command devenv runs itself fails for real (proc.run of a failing shell): exit 1,
    what ran and the tail of what it said, no traceback and no crash report."""
    import typer

    from devenv import cli, proc
    from devenv.errors import EXIT_FAILED, DevenvError

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".devenv").mkdir()

    def failing() -> int:
        proc.run(["sh", "-c", "echo first; echo 'it went wrong' >&2; exit 3"])
        return 0

    with pytest.raises(typer.Exit) as info:
        cli._call(failing)
    assert info.value.exit_code == EXIT_FAILED == proc.ProcessError.exit_code
    assert issubclass(proc.ProcessError, DevenvError)
    err = capsys.readouterr().err
    assert "command exited with 3: sh -c" in err, err
    assert "| it went wrong" in err
    assert "Traceback" not in err and "bug in devenv" not in err
    assert not list(tmp_path.glob(".devenv/logs/devenv-crash-*.log"))


def test_a_cluster_that_cannot_start_is_exit_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """ClusterError is a DevenvError with the service exit code: a bindir without initdb."""
    import typer

    from devenv import cli
    from devenv.errors import EXIT_SERVICE
    from devenv.postgres import pgcluster

    monkeypatch.chdir(tmp_path)
    (tmp_path / "bin").mkdir()
    cluster = pgcluster.Cluster(tmp_path / "data", 5999, bindir=tmp_path / "bin")

    def start() -> int:
        cluster.init()
        return 0

    with pytest.raises(typer.Exit) as info:
        cli._call(start)
    assert info.value.exit_code == EXIT_SERVICE == pgcluster.ClusterError.exit_code
    err = capsys.readouterr().err
    assert "initdb failed in" in err, err
    assert "Traceback" not in err and "bug in devenv" not in err


def test_a_bug_and_a_failed_step_exit_differently(tmp_path: Path) -> None:
    """The same project, run for real: a failing step exits 1; devenv's own unexpected
    exception (its state file is a folder) exits 70 with a one-line report."""
    (tmp_path / "steps.yaml").write_text("version: 1\nname: c\nsteps:\n  a: {run: 'false'}\n")
    r = devenv("run", "--plain", cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "bug in devenv" not in r.stdout + r.stderr
    (tmp_path / ".devenv" / "state.json").unlink(missing_ok=True)
    (tmp_path / ".devenv" / "state.json").mkdir(parents=True)
    r = devenv("run", "--plain", cwd=tmp_path)
    assert r.returncode == 70, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert len([line for line in r.stderr.splitlines() if "bug in devenv" in line]) == 1


def test_a_deleted_virtualenv_stops_only_the_commands_that_run_steps(
        make_project: MakeProject) -> None:
    """python: is checked when the file loads for run/up/plan (an error naming the line),
    not for commands that run no step: a developer can still look and stop."""
    root = make_project({"version": 1, "steps": {
        "seed": {"kind": "python", "python": ".venv/bin/python", "call": "seed:run"}}},
        files={"seed.py": "def run(conn, fake):\n    pass\n"})
    for args in (["run"], ["plan"]):
        r = devenv(*args, cwd=root)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "steps.seed.python: .venv/bin/python is not an interpreter or a virtualenv " \
               "in the project folder" in r.stderr
        assert "e.g. python3 -m venv .venv, or fix the path" in r.stderr
    (root / ".devenv/logs").mkdir(parents=True)
    (root / ".devenv/logs/seed.log").write_text("seeded (an earlier run)\n")
    for args in (["graph"], ["fingerprint"], ["logs", "seed"], ["down"], ["status"]):
        r = devenv(*args, cwd=root)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        assert "is not an interpreter" not in r.stdout + r.stderr


def test_the_collector_runs_while_a_command_runs(tmp_path: Path) -> None:
    # main() stops garbage collection while the command's modules import; the command
    # itself (an `up` supervising processes for hours) must run with it on again
    script = (
        "import gc, sys\n"
        "from devenv import cli\n"
        "seen = []\n"
        "real = cli._call\n"
        "def spy(fn, *a, **k):\n"
        "    return real(lambda *x, **y: seen.append(gc.isenabled()) or 0)\n"
        "cli._call = spy\n"
        "sys.argv = ['devenv', 'graph']\n"
        "try:\n"
        "    cli.main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(seen)\n")
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert r.stdout.strip().splitlines()[-1] == "[True]", r.stdout + r.stderr
