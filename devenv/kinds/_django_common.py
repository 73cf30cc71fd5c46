"""Django set-up shared by devenv's Django scripts. Standalone: runs in the app's own
interpreter, which may not have devenv installed, so it imports nothing from devenv.
Loaded by path (see ``_load_common`` in the scripts)."""

# Django ships no type information; the app may not have django-stubs.
# mypy: disable-error-code="import-untyped"

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

_SETTINGS_IN_MANAGE = re.compile(
    r"""DJANGO_SETTINGS_MODULE['"]\s*,\s*['"]([A-Za-z_][\w.]*)['"]""")

#: Set by devenv's runner for a warm start: the descriptor to write ``r`` to once set up.
WARM_FD_ENV = "DEVENV_WARM_FD"


class Fail(Exception):
    """A user-facing error: printed without a traceback, exit code 1."""


def fail(message: str) -> NoReturn:
    raise Fail(message)


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


def settings_from_manage(manage: Path) -> str | None:
    """The settings module manage.py would use (its ``os.environ.setdefault`` line)."""
    try:
        text = manage.read_text(errors="replace")
    except OSError:
        return None
    m = _SETTINGS_IN_MANAGE.search(text)
    return m.group(1) if m else None


def setup(opts: dict[str, Any]) -> str:
    """Put the project on sys.path, pick the settings, ``django.setup()``; returns the
    settings module name."""
    manage = Path(opts.get("manage") or "manage.py")
    cwd = Path.cwd()
    settings = opts.get("settings") or os.environ.get("DJANGO_SETTINGS_MODULE")
    if manage.is_file():
        project_dir = manage.resolve().parent
        settings = settings or settings_from_manage(manage)
    elif settings:
        project_dir = cwd
    else:
        fail(f"{manage} not found in {cwd}: set manage: to the project's manage.py, or "
             "settings: to its settings module (and cwd: to the folder that holds it)")
    if not settings:
        fail(f"cannot tell the settings module: {manage} does not set "
             "DJANGO_SETTINGS_MODULE; set settings: (e.g. mysite.settings)")
    # Replace the script's own folder (sys.path[0]), exactly as running manage.py does;
    # the scripts' folder must not shadow the app's packages.
    sys.path[0] = str(project_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = settings
    try:
        import django
    except ImportError:
        fail(f"Django is not installed for {sys.executable}; set python: to the app's "
             "virtualenv (or its interpreter)")
    try:
        django.setup()
    except ModuleNotFoundError as exc:
        fail(f"cannot import the settings module '{settings}' (from {project_dir}): {exc}")
    except Exception as exc:  # ImproperlyConfigured, errors in the settings file
        fail(f"Django could not start with settings '{settings}': "
             f"{type(exc).__name__}: {exc}")
    return settings


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
