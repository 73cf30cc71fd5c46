"""``kind: alembic``: ``alembic upgrade`` (or Flask-Migrate's ``flask db upgrade`` when
``flask_app:`` is set), refusing a history with several heads and saying how to merge."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

from devenv.fields import Field
from devenv.kinds import OptionError, StepContext
from devenv.kinds.base import expand, payload, script, under_cwd
from devenv.schema import Command, StepSpec


def config_path(options: Mapping[str, Any]) -> str:
    """The alembic.ini: ``config:``, else Flask-Migrate's or alembic's usual place."""
    if "config" in options:
        return str(options["config"])
    return "migrations/alembic.ini" if options.get("flask_app") else "alembic.ini"


class AlembicKind:
    name = "alembic"
    options: tuple[Field, ...] = (
        Field("config", str, None, "The alembic .ini file, relative to cwd: (default: "
                                   "migrations/alembic.ini with flask_app:, else alembic.ini)."),
        Field("target", str, "head", "The revision to upgrade to (head, heads, a revision id "
                                     "or branch@head)."),
        Field("flask_app", str, None, "A Flask-Migrate app, as flask --app takes it: its "
                                      "config gives the database and migrations/."),
    )
    uses_run = False
    uses_python = True
    warm_start = True  # loads the app (and alembic) before its turn
    incremental = True

    def validate(self, options: Mapping[str, Any]) -> None:
        """``config`` must name an .ini file; ``target`` one word (a revision, head...)."""
        config = config_path(options)
        if "${" not in config and not config.endswith(".ini"):
            raise OptionError("config", f"expected the path of an alembic .ini file, got "
                                        f"'{config}'")
        target = str(options.get("target", "head"))
        if not target.strip() or any(ch.isspace() for ch in target):
            raise OptionError("target", f"expected one revision (head, heads, a revision id "
                                        f"or branch@head), got '{target}'")

    def default_inputs(self, step: StepSpec) -> tuple[str, ...]:
        """The ini file and the migration scripts beside it.

        Flask-Migrate keeps ``versions/`` next to its alembic.ini; plain alembic usually
        one folder down (``script_location``), hence both patterns.
        """
        config = config_path(step.options)
        folder = posixpath.dirname(config)

        def rel(p: str) -> str:
            return posixpath.join(folder, p) if folder else p

        return under_cwd(step, [config, rel("env.py"), rel("versions/*.py"),
                                rel("*/env.py"), rel("*/versions/*.py")])

    def command(self, step: StepSpec, ctx: StepContext) -> Command:
        opts = step.options
        values: dict[str, Any] = {
            "config": expand(step, ctx, "config", config_path(opts)),
            "target": expand(step, ctx, "target", str(opts.get("target", "head"))),
            "flask_app": expand(step, ctx, "flask_app", opts["flask_app"])
            if "flask_app" in opts else None,
        }
        return (ctx.python, script("_alembic_upgrade.py"), payload(step, values))


KIND = AlembicKind()
