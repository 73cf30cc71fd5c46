"""devenv's alembic step: refuse several heads (saying how to merge them), then upgrade
in this same interpreter: ``alembic.command.upgrade`` (what ``alembic -c CONFIG upgrade
TARGET`` runs) or, for Flask-Migrate, the Flask app loaded as ``flask --app APP`` loads it
and ``flask_migrate.upgrade`` (what ``flask db upgrade --directory DIR TARGET`` runs).
Not a second interpreter: that start-up and the re-imports were most of the step's time.

Standalone: run by path with the app's interpreter, which may not have devenv installed,
so it imports nothing from devenv. Output is the step's log; problems go to stderr.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alembic.config import Config

PROG = "alembic"


if TYPE_CHECKING:
    from devenv.kinds import _script_common as shared
else:
    # Run by path in the app's interpreter, which may lack devenv: this folder is
    # sys.path[0] until main() gives it to the app (shared.use_app_folder).
    import _script_common as shared  # the warm-start handshake, shared with the other scripts


class Fail(Exception):
    pass


def say(text: str) -> None:
    print(f"{PROG}: {text}", flush=True)


def check_heads(opts: dict[str, Any]) -> tuple[Config, list[str], str]:
    """The alembic Config, the script directory's heads and its versions folder; refuses
    several heads when the target is ``head``."""
    try:
        from alembic.config import Config
        from alembic.script import ScriptDirectory
        from alembic.util import CommandError
    except ImportError:
        raise Fail(f"alembic is not installed for {sys.executable}; set python: to the "
                   "app's virtualenv (or its interpreter)") from None
    config = opts["config"]
    if not Path(config).is_file():
        raise Fail(f"config file not found: {config} (in {Path.cwd()})")
    flask_app = opts.get("flask_app")
    directory = os.path.dirname(config) or "."
    if flask_app:
        # Flask-Migrate's alembic.ini has no script_location: the folder is the one
        # holding it (flask db ... --directory).
        cfg = Config(config)
        cfg.set_main_option("script_location", directory)
    else:
        try:  # as alembic's CLI (1.16+) builds it: [tool.alembic] of ./pyproject.toml too
            cfg = Config(config, toml_file="pyproject.toml")
        except TypeError:  # an older alembic: the ini only
            cfg = Config(config)
    if not flask_app and not cfg.get_main_option("script_location"):
        raise Fail(f"{config} has no script_location in its [alembic] section; for a "
                   "Flask-Migrate folder, set flask_app: to the Flask app")
    try:
        script = ScriptDirectory.from_config(cfg)
        heads = sorted(script.get_heads())
    except CommandError as exc:
        raise Fail(f"{config}: {exc}") from None
    versions = os.path.relpath(script.versions)
    if opts["target"] == "head" and len(heads) > 1:
        if flask_app:
            merge = ["flask", "--app", flask_app, "db", "merge", "--directory", directory]
        else:
            merge = ["alembic", "-c", config, "merge"]
        merge += ["-m", "merge heads", *heads]
        raise Fail(f"{versions} has {len(heads)} heads ({', '.join(heads)}), so 'upgrade "
                   f"head' is ambiguous; merge them first:\n  {shlex.join(merge)}")
    return cfg, heads, versions


class LastMigration(logging.Filter):
    """Remembers the last "Running upgrade a -> b" that alembic logged, to say where a
    failure happened. A filter on the ``alembic.runtime.migration`` logger rather than a
    handler: env.py's ``logging.config.fileConfig`` empties the handlers of every logger
    below one its ini names (this one is below ``alembic``) but leaves their filters.
    Like the log line itself, it needs alembic's logging at INFO."""

    def __init__(self) -> None:
        super().__init__()
        self.last = ""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Running upgrade"):
            self.last = message.split("Running ", 1)[1].strip()
        return True


def exception_line(exc: BaseException) -> str:
    """The line a traceback ends with (``module.Error: message``), its first line only."""
    lines = "".join(traceback.format_exception_only(type(exc), exc)).splitlines()
    return next((ln for ln in lines if ln and not ln[0].isspace()), type(exc).__name__)


def plain_upgrade(cfg: Config, config: str, target: str) -> None:
    """``alembic -c CONFIG upgrade TARGET``, with the options alembic's CLI would give
    env.py (``context.config.cmd_opts``, ``-x`` arguments...)."""
    from alembic import command
    from alembic.config import CommandLine

    cfg.cmd_opts = CommandLine(prog="alembic").parser.parse_args(
        ["-c", config, "upgrade", target])
    command.upgrade(cfg, target)


def load_flask_app(flask_app: str) -> Any:
    """The app, loaded as ``flask --app APP`` does (.flaskenv/.env, app.run() a no-op)."""
    try:
        import flask_migrate  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
        from flask.cli import NoAppException, ScriptInfo, load_dotenv
        from flask.helpers import get_load_dotenv
    except ImportError as exc:
        raise Fail(f"Flask-Migrate is not installed for {sys.executable} ({exc}); set "
                   "python: to the app's virtualenv (or its interpreter)") from None
    os.environ["FLASK_RUN_FROM_CLI"] = "true"
    if get_load_dotenv():
        load_dotenv()
    try:
        app = ScriptInfo(app_import_path=flask_app).load_app()
    except NoAppException as exc:  # flask's CLI prints these without a traceback too
        raise Fail(f"cannot load the Flask app (flask_app: {flask_app}, in {Path.cwd()}): "
                   f"{exc}") from None
    return app


def flask_upgrade(app: Any, directory: str, target: str) -> None:
    """``flask --app APP db upgrade --directory DIR TARGET``: Flask-Migrate's upgrade in the
    app's context."""
    import flask_migrate  # type: ignore[import-untyped,unused-ignore]

    with app.app_context():
        flask_migrate.upgrade(directory=directory, revision=target)


def upgrade(opts: dict[str, Any]) -> int:
    cfg, heads, versions = check_heads(opts)
    target = opts["target"]
    config = opts["config"]
    flask_app = opts.get("flask_app")
    directory = os.path.dirname(config) or "."
    head = heads[0] if len(heads) == 1 else ", ".join(heads) or "none"
    say(f"{versions}: head {head}; upgrading to {target}")
    if flask_app:
        say(f"upgrade {target} in-process (flask_migrate.upgrade, app {flask_app}, "
            f"directory {directory})")
    else:
        say(f"upgrade {target} in-process (alembic.command.upgrade, config {config})")
    from alembic.util import CommandError

    # Everything up to here touches no database: a warm start waits here for its turn.
    app = load_flask_app(flask_app) if flask_app else None
    if app is None:
        import alembic.command  # noqa: F401
    if not shared.warm_wait():
        return 0
    # alembic's own output (the ini's logging, usually stderr) is the log; the migration
    # that ran last and the exception's line say where and why a failure happened.
    running = LastMigration()
    migration_log = logging.getLogger("alembic.runtime.migration")
    migration_log.addFilter(running)
    rc, error = 0, ""
    try:
        if app is not None:
            flask_upgrade(app, directory, target)
        else:
            plain_upgrade(cfg, config, target)
    except Fail:
        raise
    except SystemExit as exc:
        # Flask-Migrate logs alembic's CommandError (or a RuntimeError) and sys.exit(1)s;
        # argparse exits 2 on a target it can't parse.
        if isinstance(exc.code, int) or exc.code is None:
            rc = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            rc = 1
        cause = exc.__context__
        if isinstance(cause, CommandError):
            error = f"FAILED: {cause}"
        elif cause is not None:
            sys.stdout.flush()
            traceback.print_exception(type(cause), cause, cause.__traceback__)
            error = exception_line(cause)
    except CommandError as exc:
        # What alembic's CLI prints for its own errors (an unknown revision...).
        rc, error = 1, f"FAILED: {exc}"
    except Exception as exc:
        sys.stdout.flush()
        traceback.print_exc()
        rc, error = 1, exception_line(exc)
    finally:
        migration_log.removeFilter(running)
        sys.stdout.flush()
        sys.stderr.flush()
    if rc != 0:
        where = f" while running {running.last}" if running.last else ""
        why = f": {error}" if error else "; the error is above"
        raise Fail(f"upgrade to {target} failed{where} (exit code {rc}){why}")
    say(f"upgraded to {target}")
    return 0


def main(argv: list[str]) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if len(argv) != 2:
        print(f"usage: {argv[0]} JSON (devenv runs this script for kind alembic)",
              file=sys.stderr)
        return 2
    shared.use_app_folder(os.getcwd())  # as when its tools run from it
    opts = json.loads(argv[1])
    try:
        return upgrade(opts)
    except Fail as exc:
        print(f"{PROG}: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
