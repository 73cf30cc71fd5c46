"""devenv's flask-command step: ``flask --app APP COMMAND ARGS...`` in this interpreter.

The app is loaded as flask's CLI loads it (``.flaskenv``/``.env`` first unless
``FLASK_SKIP_DOTENV``, ``app.run()`` at import a no-op), and the command is looked up in
it before the database is touched: an unknown command fails then, and a warm start
(``DEVENV_WARM_FD``) does all of that ahead of the step's turn. The command then runs
through flask's own command group, with the app already loaded.

Standalone: run by path with the app's interpreter, which may not have devenv installed,
so it imports nothing from devenv; what it shares with the other scripts
(``_script_common.py``) it imports by name (see there). Output is the step's log; problems go to stderr.
"""

from __future__ import annotations

import difflib
import json
import os
import shlex
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

PROG = "flask-command"


if TYPE_CHECKING:
    from devenv.kinds import _script_common as shared
else:
    # Run by path in the app's interpreter, which may lack devenv: this folder is
    # sys.path[0] until main() gives it to the app (shared.use_app_folder).
    import _script_common as shared
Fail = shared.Fail


def fail(message: str) -> NoReturn:
    raise Fail(message)


first_line = shared.first_line
warm_wait = shared.warm_wait


def say(text: str) -> None:
    print(f"{PROG}: {text}", flush=True)


def setup(opts: dict[str, Any]) -> Any:
    """Load the app as ``flask --app APP`` does and check the command exists; returns the
    ``ScriptInfo`` holding the loaded app. Nothing here opens a database connection
    (Flask-SQLAlchemy connects on first use)."""
    app_path = opts["flask_app"]
    name = opts["command"]
    shared.use_app_folder(str(Path.cwd()))  # as ``python -m flask`` has it
    try:
        import click
        from flask.cli import NoAppException, ScriptInfo, cli, load_dotenv
        from flask.helpers import get_load_dotenv
    except ImportError as exc:
        fail(f"Flask is not installed for {sys.executable} ({exc}); set python: to the "
             "app's virtualenv (or its interpreter)")
    # As flask's CLI: app.run() at import level becomes a no-op, and .flaskenv/.env are
    # read before the app is imported.
    os.environ["FLASK_RUN_FROM_CLI"] = "true"
    if get_load_dotenv():
        load_dotenv()
    info = ScriptInfo(app_import_path=app_path)
    try:
        info.load_app()
    except NoAppException as exc:  # flask's CLI prints these without a traceback too
        fail(f"cannot load the Flask app (flask_app: {app_path}, in {Path.cwd()}): "
             f"{exc.format_message()}")
    except Exception as exc:
        sys.stdout.flush()
        traceback.print_exc()
        fail(f"cannot load the Flask app (flask_app: {app_path}): {type(exc).__name__}: "
             f"{first_line(exc)}")
    # The group's own lookup: built-in, plugin (flask db...) and app commands. The
    # context's close pops the app context the lookup pushes.
    with click.Context(cli, info_name="flask", obj=info) as ctx:
        if cli.get_command(ctx, name) is None:
            names = cli.list_commands(ctx)
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            fail(f"unknown command '{name}' (flask_app {app_path}; commands: "
                 f"{', '.join(names)}){hint}")
    return info


def run(info: Any, opts: dict[str, Any]) -> int:
    """Run the command with the loaded app; the exit code ``flask`` would give."""
    import click
    from flask.cli import cli

    name = opts["command"]
    args = [name, *(opts.get("args") or [])]
    say(f"flask --app {shlex.quote(opts['flask_app'])} {shlex.join(args)}")
    try:
        # What cli.main(args, obj=info, standalone_mode=False) does, minus its turning a
        # ctx.exit(N) into a return value (indistinguishable from a command returning
        # N). The given obj is the ScriptInfo above: the group reuses its loaded app.
        with cli.make_context("flask", args, obj=info) as ctx:
            cli.invoke(ctx)
    except click.exceptions.Exit as exc:  # ctx.exit(N)
        if exc.exit_code:
            print(f"{PROG}: {name} exited with code {exc.exit_code}", file=sys.stderr,
                  flush=True)
        return int(exc.exit_code)
    except click.exceptions.Abort:
        print("Aborted!", file=sys.stderr, flush=True)
        return 1
    except click.ClickException as exc:
        # Click's own formatting (usage and "Error: ..."); exit 2 for usage errors.
        sys.stdout.flush()
        exc.show()
        return int(exc.exit_code)
    except SystemExit as exc:  # a command may sys.exit() after writing its own message
        return int(shared.exit_code(PROG, name, exc))
    except Exception as exc:
        return int(shared.crashed(PROG, name, exc))
    return 0


def main(argv: list[str]) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if len(argv) != 2:
        print(f"usage: {argv[0]} JSON (devenv runs this script for kind flask-command)",
              file=sys.stderr)
        return 2
    opts = json.loads(argv[1])
    try:
        info = setup(opts)
        if not warm_wait():
            return 0  # not needed after all: the database stays untouched
    except Fail as exc:
        print(f"{PROG}: {exc}", file=sys.stderr, flush=True)
        return 1
    return run(info, opts)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
