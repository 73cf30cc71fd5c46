"""``kind: flask-command``: one Flask CLI command (``flask --app APP COMMAND ARGS...``) run
in the app's interpreter; an unknown command fails before the database is touched, a
click usage error is click's message."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from devenv.fields import Field
from devenv.kinds import OptionError, StepContext
from devenv.kinds.base import expand, payload, script
from devenv.schema import Command, StepSpec


class FlaskCommandKind:
    name = "flask-command"
    #: The script loads the app and finds the command, then waits for its turn
    #: (DEVENV_WARM_FD).
    warm_start = True
    incremental = False
    options: tuple[Field, ...] = (
        Field("flask_app", str, None, "The app, as flask --app takes it (app.py, "
                                      "package:create_app()).", required=True),
        Field("command", str, None, "The Flask CLI command's name.", required=True),
        Field("args", tuple[str, ...], (), "Its arguments."),
    )
    uses_run = False
    uses_python = True

    def validate(self, options: Mapping[str, Any]) -> None:
        """``flask_app`` set; ``command`` one command name (its arguments go in ``args``)."""
        flask_app = str(options["flask_app"])
        if not flask_app.strip():
            raise OptionError("flask_app", "expected the app as flask --app takes it (e.g. "
                                           "app.py, or package:create_app())")
        command = str(options["command"])
        if "${" not in command and (not command.strip() or command.startswith("-")
                                    or any(c.isspace() for c in command)):
            hint = "; put its arguments in args: (a list)" if len(command.split()) > 1 else ""
            raise OptionError("command", f"expected one Flask command name (e.g. "
                                         f"load-fixtures), got '{command}'{hint}")

    def default_inputs(self, step: StepSpec) -> tuple[str, ...]:
        """None: a command's code can live anywhere the app imports from (a plugin, a
        package outside the step's folder), so the step lists its own ``inputs``."""
        return ()

    def command(self, step: StepSpec, ctx: StepContext) -> Command:
        opts = step.options
        values: dict[str, Any] = {
            "flask_app": expand(step, ctx, "flask_app", str(opts["flask_app"])),
            "command": expand(step, ctx, "command", str(opts["command"])),
            "args": [expand(step, ctx, f"args[{i}]", a)
                     for i, a in enumerate(opts.get("args", ()))],
        }
        return (ctx.python, script("_flask_command.py"), payload(step, values))


KIND = FlaskCommandKind()
