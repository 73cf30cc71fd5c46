"""``kind: django-loaddata``: Django fixtures, loaded in the given order in one transaction;
a fixture that fails names its file and the object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from devenv.fields import Field
from devenv.kinds import OptionError, StepContext
from devenv.kinds.base import expand, payload, script, under_cwd
from devenv.kinds.django_migrate import _MODULE, MANAGE, SETTINGS
from devenv.schema import Command, StepSpec


class DjangoLoaddataKind:
    name = "django-loaddata"
    #: The script sets Django up, then waits for its turn (DEVENV_WARM_FD).
    warm_start = True
    incremental = False
    options: tuple[Field, ...] = (
        Field("fixtures", tuple[str, ...], (), "Fixture files or names, loaded in this order.",
              required=True),
        SETTINGS,
        MANAGE,
    )
    uses_run = False
    uses_python = True

    def validate(self, options: Mapping[str, Any]) -> None:
        """At least one fixture; settings a dotted module path."""
        if not options.get("fixtures"):
            raise OptionError("fixtures", "expected at least one fixture (a file such as "
                                          "fixtures/plans.json, or a fixture name)")
        settings = options.get("settings")
        if settings is not None and "${" not in settings and not _MODULE.match(settings):
            raise OptionError("settings", f"'{settings}' is not a Python module path "
                                          "(e.g. mysite.settings)")

    def default_inputs(self, step: StepSpec) -> tuple[str, ...]:
        """The fixture files; a bare fixture name also matches the apps' fixtures/ folders."""
        paths: list[str] = []
        for fixture in step.options.get("fixtures", ()):
            paths.append(fixture)
            if "/" not in fixture:
                paths += [f"*/fixtures/{fixture}", f"*/fixtures/{fixture}.*"]
        return under_cwd(step, paths)

    def command(self, step: StepSpec, ctx: StepContext) -> Command:
        opts = step.options
        values: dict[str, Any] = {
            "fixtures": [expand(step, ctx, f"fixtures[{i}]", f)
                         for i, f in enumerate(opts["fixtures"])],
            "manage": expand(step, ctx, "manage", opts.get("manage", "manage.py")),
            "settings": expand(step, ctx, "settings", opts["settings"])
            if "settings" in opts else None,
        }
        return (ctx.python, script("_django_loaddata.py"), payload(step, values))


KIND = DjangoLoaddataKind()
