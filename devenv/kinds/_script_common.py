"""What devenv's standalone step scripts share: the warm-start handshake and how a
command's ending becomes an exit code and a last line.

Standalone: the scripts run in the app's own interpreter, which may not have devenv
installed, so this imports nothing from devenv (nor anything outside the standard
library). The scripts import it (and the Django ones ``_django_common``) by name: run by
path, a script's folder is ``sys.path[0]`` until :func:`use_app_folder` gives that place to
the app. That is the one way the scripts load their shared modules; mypy sees them as
``devenv.kinds._script_common`` (the ``TYPE_CHECKING`` branch of each import).
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from typing import NoReturn

#: Set by devenv's runner for a warm start: the descriptor to write ``r`` to once set up.
WARM_FD_ENV = "DEVENV_WARM_FD"


class Fail(Exception):
    """A user-facing error: printed without a traceback, exit code 1."""


def fail(message: str) -> NoReturn:
    raise Fail(message)


def use_app_folder(folder: str) -> None:
    """Give the app's folder the place of the scripts' own (``sys.path[0]``), as running the
    app's tool from ``folder`` would: the scripts' folder must not shadow the app's
    packages. Call it after the shared modules are imported (they are found there)."""
    sys.path[0] = folder


def warm_wait() -> bool:
    """Warm start: with ``DEVENV_WARM_FD`` set, say "set up" and wait for our turn.

    The runner starts the script early, while the steps it needs still run; by the time
    this is called the script has done everything that does not touch the database. One
    byte ``r`` on the inherited descriptor tells the runner so; then the line on stdin
    decides: ``go`` -> True (run now), anything else (end-of-file: a dependency failed,
    the run stopped) -> False (exit 0, the database untouched). Without the variable
    (run by hand, or warm start off) -> True at once.
    """
    value = os.environ.pop(WARM_FD_ENV, None)  # not for anything the step starts
    if not value:
        return True
    try:
        fd = int(value)
    except ValueError:
        fail(f"{WARM_FD_ENV}={value!r} is not a file descriptor number")
    sys.stdout.flush()  # what set-up printed goes to the log before the wait
    with contextlib.suppress(OSError):  # the runner stopped listening: stdin tells
        os.write(fd, b"r")
    with contextlib.suppress(OSError):
        os.close(fd)
    line = sys.stdin.readline() if sys.stdin is not None else ""
    return line.strip() == "go"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def exit_code(prog: str, name: str, exc: SystemExit) -> int:
    """A command's ``sys.exit(...)``: the code it meant, with a last line when non-zero
    (``sys.exit("message")`` prints the message and means 1, as Python does)."""
    sys.stdout.flush()
    if exc.code is None or isinstance(exc.code, int):
        code = exc.code or 0
    else:
        print(exc.code, file=sys.stderr)
        code = 1
    if code:
        print(f"{prog}: {name} exited with code {code}", file=sys.stderr, flush=True)
    return code


def crashed(prog: str, name: str, exc: BaseException) -> int:
    """An unexpected exception from a command: its traceback in the log, then one line."""
    sys.stdout.flush()
    traceback.print_exception(type(exc), exc, exc.__traceback__)
    print(f"{prog}: {name} failed: {type(exc).__name__}: {first_line(exc)}",
          file=sys.stderr, flush=True)
    return 1
