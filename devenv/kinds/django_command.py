"""``kind: django-command``: one Django management command (``manage.py COMMAND ARGS...``),
run through ``call_command`` in the app's interpreter; an unknown command is named with
the settings module, a ``CommandError`` is one line, not a traceback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from devenv.fields import Field
from devenv.kinds import OptionError, StepContext
from devenv.kinds.base import expand, payload, script, under_cwd
from devenv.kinds.django_migrate import _MODULE, MANAGE, SETTINGS
from devenv.schema import Command, StepSpec


class DjangoCommandKind:
    name = "django-command"
    #: The script sets Django up and loads the command, then waits for its turn
    #: (DEVENV_WARM_FD).
    warm_start = True
    incremental = False
    options: tuple[Field, ...] = (
        Field("command", str, None, "The management command's name.", required=True),
        Field("args", tuple[str, ...], (), "Its arguments."),
        SETTINGS,
        MANAGE,
    )
    uses_run = False
    uses_python = True

    def validate(self, options: Mapping[str, Any]) -> None:
        """``command`` one command name (its arguments go in ``args``); settings a dotted
        module path."""
        command = str(options["command"])
        if "${" not in command and (not command.strip() or command.startswith("-")
                                    or "/" in command or any(c.isspace() for c in command)):
            hint = "; put its arguments in args: (a list)" if len(command.split()) > 1 else ""
            raise OptionError("command", f"expected one management command name (e.g. "
                                         f"seed_data), got '{command}'{hint}")
        settings = options.get("settings")
        if settings is not None and "${" not in settings and not _MODULE.match(settings):
            raise OptionError("settings", f"'{settings}' is not a Python module path "
                                          "(e.g. mysite.settings)")

    def default_inputs(self, step: StepSpec) -> tuple[str, ...]:
        """The command's module in any app under the step's folder."""
        command = str(step.options.get("command", ""))
        if not command:
            return ()
        return under_cwd(step, [f"*/management/commands/{command}.py"])

    def command(self, step: StepSpec, ctx: StepContext) -> Command:
        opts = step.options
        values: dict[str, Any] = {
            "command": expand(step, ctx, "command", str(opts["command"])),
            "args": [expand(step, ctx, f"args[{i}]", a)
                     for i, a in enumerate(opts.get("args", ()))],
            "manage": expand(step, ctx, "manage", opts.get("manage", "manage.py")),
            "settings": expand(step, ctx, "settings", opts["settings"])
            if "settings" in opts else None,
        }
        return (ctx.python, script("_django_command.py"), payload(step, values))


KIND = DjangoCommandKind()
