"""The one place devenv runs subprocesses.

Every call that can fail raises :class:`ProcessError`, whose message names the command,
its exit code and the tail of its output, so a failure deep in a backend still tells the
user what ran and what it said.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from devenv import logtail, pids, waiting
from devenv.errors import EXIT_FAILED, DevenvError

TAIL_LINES = 20


def format_command(argv: Sequence[str] | str) -> str:
    """A command as a user could paste it into a shell."""
    if isinstance(argv, str):
        return argv
    return shlex.join(argv)


class ProcessError(DevenvError):
    """A command failed: carries the command, its exit code and the tail of its output.

    A user-facing error (exit code 1): what ran and what it said is what the user acts on;
    devenv's own mistakes surface as other exceptions (a bug report, see ``cli._crash``)."""

    exit_code = EXIT_FAILED

    def __init__(self, argv: Sequence[str] | str, returncode: int | None, output: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.output = output
        code = "timed out" if returncode is None else f"exited with {returncode}"
        msg = f"command {code}: {format_command(argv)}"
        if output.strip():
            msg += "\n" + "\n".join("  | " + line
                                     for line in logtail.tail_text(output, TAIL_LINES))
        super().__init__(msg)


@dataclass(frozen=True)
class Completed:
    """The result of a finished command."""

    argv: Sequence[str]
    returncode: int
    stdout: str
    stderr: str


def run(
    argv: Sequence[str],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float | None = None,
    input: str | None = None,
) -> Completed:
    """Run a short command to completion and capture its output."""
    try:
        cp = subprocess.run(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise ProcessError(argv, 127, f"{exc.filename or argv[0]}: command not found") from exc
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        text = out.decode(errors="replace") if isinstance(out, bytes) else out
        raise ProcessError(argv, None, text) from exc
    if check and cp.returncode != 0:
        raise ProcessError(argv, cp.returncode, (cp.stdout or "") + (cp.stderr or ""))
    return Completed(argv, cp.returncode, cp.stdout, cp.stderr)


def stream(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    sink: Callable[[bytes], None] | None = None,
    source: Iterable[bytes] | None = None,
    cwd: str | Path | None = None,
    chunk: int = 1 << 20,
    check: bool = True,
) -> Completed:
    """Run a command whose stdout (to ``sink``) or stdin (from ``source``) is a large byte
    stream (a database dump), one chunk at a time: never more than a chunk in memory.

    stderr (and stdout when there is no ``sink``) goes to a temporary file, so a chatty
    command cannot block on a full pipe; its text is the :class:`ProcessError`'s tail.
    """
    with tempfile.TemporaryFile() as errf:
        try:
            p = subprocess.Popen(
                list(argv), cwd=cwd, env=dict(env),
                stdin=subprocess.PIPE if source is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE if sink is not None else errf,
                stderr=errf)
        except FileNotFoundError as exc:
            raise ProcessError(argv, 127, f"{exc.filename or argv[0]}: command not found") from exc
        try:
            if source is not None:
                assert p.stdin is not None
                try:
                    for data in source:
                        p.stdin.write(data)
                except BrokenPipeError:
                    pass  # the command stopped reading: its exit code and stderr say why
                finally:
                    with contextlib.suppress(BrokenPipeError):
                        p.stdin.close()
            if sink is not None:
                out = p.stdout
                assert out is not None
                for data in iter(lambda: out.read(chunk), b""):
                    sink(data)
            rc = p.wait()
        except BaseException:
            p.kill()
            p.wait()
            raise
        errf.seek(0)
        err = errf.read().decode(errors="replace")
    if check and rc != 0:
        raise ProcessError(argv, rc, err)
    return Completed(argv, rc, "", err)


def spawn(
    argv: Sequence[str] | str,
    *,
    cwd: str | Path | None,
    env: Mapping[str, str],
    stdout: IO[bytes] | int | None,
    shell: bool = False,
    stdin: int = subprocess.DEVNULL,
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen[bytes]:
    """Start a long-running command in its own process group (so it can be stopped whole).

    Output goes straight to ``stdout`` (a file): nothing is buffered in memory, however
    much the command writes. ``stdin=subprocess.PIPE`` and ``pass_fds`` serve warm starts
    (see :mod:`devenv.runner`).
    """
    try:
        return subprocess.Popen(
            argv if shell else list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=stdin,
            pass_fds=tuple(pass_fds),
            stdout=stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            shell=shell,
            executable="/bin/sh" if shell else None,
        )
    except FileNotFoundError as exc:
        raise ProcessError(argv, 127, f"{exc.filename}: command not found") from exc
    except NotADirectoryError as exc:
        raise ProcessError(argv, 127, f"{cwd}: not a directory") from exc


def start_watchdog(run_id: str) -> subprocess.Popen[bytes]:
    """Start run ``run_id``'s watchdog (:mod:`devenv.watchdog`) in its own session. Its
    stdin is a pipe whose only writer is this process (the pipe is close-on-exec, so no
    step inherits it): closing it, or dying, tells the watchdog to stop the run's steps."""
    return spawn([sys.executable, "-m", "devenv.watchdog", run_id], cwd=None,
                 env=os.environ, stdout=subprocess.DEVNULL, stdin=subprocess.PIPE)


def detach(argv: Sequence[str], *, env: Mapping[str, str], log: Path) -> int:
    """Start a command that outlives devenv (its own session, output appended to ``log``);
    returns its pid. Nothing waits for it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        try:
            p = subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.DEVNULL, stdout=fh,
                                 stderr=subprocess.STDOUT, start_new_session=True,
                                 close_fds=True)
        except FileNotFoundError as exc:
            raise ProcessError(argv, 127, f"{exc.filename}: command not found") from exc
    return p.pid


def replace_process(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """Become ``argv`` (``exec``): for interactive tools such as psql, which need the
    terminal to themselves. Does not return."""
    try:
        os.execve(argv[0], list(argv), dict(env))
    except OSError as exc:
        raise ProcessError(argv, 127, f"{argv[0]}: {exc.strerror}") from exc


def kill_group(target: subprocess.Popen[bytes] | int, grace: float = 3.0, *,
               since: float | None = None) -> bool:
    """Stop a process group (one :func:`spawn` started) and everything in it: SIGTERM to
    the whole group, then SIGKILL to whatever is left after ``grace`` seconds. The one
    place devenv stops a group, whether it holds the :class:`subprocess.Popen` (which is
    reaped here) or only a recorded group id (``target`` an int).

    ``since``: the group leader's recorded start time; a group whose id is someone else's
    now (:func:`devenv.pids.group_members`) is not signalled. Returns whether anything
    of it ran.

    Zombies do not count: where PID 1 reaps slowly (many containers), a stopped group can
    keep zombies for a while, and waiting for them would stall every stop.
    """
    popen = None if isinstance(target, int) else target
    pgid = target if isinstance(target, int) else target.pid

    def gone() -> bool:
        # the leader first: a poll is cheap, the group scan is not
        if popen is not None and popen.poll() is None:
            return False
        return not pids.group_members(pgid, since)

    if gone():
        return False
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        if waiting.until(lambda _left: gone(), wait, pause=0.02, factor=1.5,
                         longest=0.1).done:
            return True
    if popen is not None:
        popen.poll()
    return True
