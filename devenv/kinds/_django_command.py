"""devenv's django-command step: ``call_command(COMMAND, *ARGS)`` after ``django.setup()``,
what ``python manage.py COMMAND ARGS...`` does (without the system checks, as
``call_command`` skips them).

The command is found and its module imported before the database is touched: an unknown
command fails then, naming the settings module, and a warm start (``DEVENV_WARM_FD``)
does all of that ahead of the step's turn.

Standalone: run by path with the app's interpreter, which may not have devenv installed,
so it imports nothing from devenv. Output is the step's log; problems go to stderr.
"""

# Django ships no type information; the app may not have django-stubs.
# mypy: disable-error-code="import-untyped"

from __future__ import annotations

import difflib
import json
import shlex
import sys
import traceback
from typing import TYPE_CHECKING, Any

PROG = "django-command"


if TYPE_CHECKING:
    from devenv.kinds import _django_common as common
else:
    # Run by path in the app's interpreter, which may lack devenv: this folder is
    # sys.path[0] until main() gives it to the app (shared.use_app_folder).
    import _django_common as common
fail = common.fail


def say(text: str) -> None:
    print(f"{PROG}: {text}", flush=True)


def load(name: str, settings: str) -> Any:
    """The command object, as ``call_command`` would find it: an unknown name, or a
    command module that does not import, fails here, before any database work."""
    from django.core.management import get_commands, load_command_class
    from django.core.management.base import BaseCommand

    commands = get_commands()
    app = commands.get(name)
    if app is None:
        close = difflib.get_close_matches(name, list(commands), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        fail(f"unknown management command '{name}' (settings {settings}){hint}")
    if isinstance(app, BaseCommand):  # registered as an object (Django allows it)
        return app
    try:
        return load_command_class(app, name)
    except Exception as exc:
        sys.stdout.flush()
        traceback.print_exc()
        fail(f"cannot load the management command '{name}' "
             f"({app}.management.commands.{name}): {type(exc).__name__}: "
             f"{common.first_line(exc)}")


def system_checks(command: Any, name: str) -> int | None:
    """The system checks manage.py runs before a command (those it asks for), run during
    set-up: they read no database, so a warm start does them ahead of its turn. An exit
    code when they fail, else None."""
    from django.core.management.base import ALL_CHECKS, SystemCheckError

    wanted = command.requires_system_checks
    if not wanted:
        return None
    try:
        if wanted == ALL_CHECKS:
            command.check()
        else:
            command.check(tags=wanted)
    except SystemCheckError as exc:
        sys.stdout.flush()
        # Django's message starts "SystemCheckError: System check identified ...".
        print(f"{PROG}: {name}: {exc}", file=sys.stderr, flush=True)
        return 1
    return None


def run(command: Any, name: str, args: list[str], settings: str) -> int:
    """Run the loaded command; the exit code ``manage.py`` would give."""
    from django.core.management import call_command
    from django.core.management.base import CommandError

    say(f"manage.py {shlex.join([name, *args])} (settings {settings})")
    try:
        # The object, not the name: the module loaded during set-up is the one that runs.
        # (call_command skips the system checks: system_checks() ran them already.)
        call_command(command, *args)
    except CommandError as exc:
        # What manage.py prints for it, without the traceback; usage errors included.
        sys.stdout.flush()
        print(f"{PROG}: {name}: {exc}", file=sys.stderr, flush=True)
        return int(getattr(exc, "returncode", 1))  # 1 unless the command chose another
    except SystemExit as exc:  # a command may sys.exit() after writing its own message
        return int(common.shared.exit_code(PROG, name, exc))
    except Exception as exc:
        return int(common.shared.crashed(PROG, name, exc))
    return 0


def main(argv: list[str]) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if len(argv) != 2:
        print(f"usage: {argv[0]} JSON (devenv runs this script for kind django-command)",
              file=sys.stderr)
        return 2
    opts = json.loads(argv[1])
    name = opts["command"]
    try:
        settings = common.setup(opts)
        command = load(name, settings)
        failed = system_checks(command, name)
        if failed is not None:
            return failed
        if not common.warm_wait():
            return 0  # not needed after all: the database stays untouched
    except common.Fail as exc:
        print(f"{PROG}: {exc}", file=sys.stderr, flush=True)
        return 1
    return run(command, name, list(opts.get("args") or []), settings)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
