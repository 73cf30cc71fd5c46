"""``kind: django-migrate``: Django's ``migrate``, checked against the live database first.

Another app (Flask, SQL scripts) may already have created some of the tables a Django
migration creates. The script compares the plan with the database: a migration whose
tables and columns all exist is applied with ``--fake`` (and reported), one whose tables
only partly exist, or exist with other columns, stops the step before anything changes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from devenv.fields import Field
from devenv.kinds import OptionError, StepContext
from devenv.kinds.base import expand, payload, script, under_cwd
from devenv.schema import Command, StepSpec

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# the options every Django kind takes
SETTINGS = Field("settings", str, None, "The settings module (default: "
                                        "DJANGO_SETTINGS_MODULE, else the one manage.py sets).")
MANAGE = Field("manage", str, "manage.py", "The project's manage.py, relative to cwd:.")


class DjangoMigrateKind:
    name = "django-migrate"
    #: The script sets Django up, then waits for its turn (DEVENV_WARM_FD).
    warm_start = True
    incremental = True
    options: tuple[Field, ...] = (
        SETTINGS,
        MANAGE,
        Field("apps", tuple[str, ...], (), "App labels to migrate; omitted: every app."),
        Field("compare_types", bool, True, "A table another app made counts as the "
                                           "migration's only when its column types match too."),
    )
    uses_run = False
    uses_python = True

    def validate(self, options: Mapping[str, Any]) -> None:
        """Settings must be a dotted module path; apps plain app labels."""
        settings = options.get("settings")
        if settings is not None and "${" not in settings and not _MODULE.match(settings):
            raise OptionError("settings", f"'{settings}' is not a Python module path "
                                          "(e.g. mysite.settings)")
        for label in options.get("apps", ()):
            if not _LABEL.match(label):
                raise OptionError("apps", f"'{label}' is not a Django app label (the last "
                                          "part of the app's name, e.g. members)")

    def default_inputs(self, step: StepSpec) -> tuple[str, ...]:
        """Every app's migration files under the step's folder."""
        return under_cwd(step, ["*/migrations/*.py"])

    def command(self, step: StepSpec, ctx: StepContext) -> Command:
        opts = step.options
        values: dict[str, Any] = {
            "manage": expand(step, ctx, "manage", opts.get("manage", "manage.py")),
            "settings": expand(step, ctx, "settings", opts["settings"])
            if "settings" in opts else None,
            "apps": list(opts.get("apps", ())),
            "compare_types": bool(opts.get("compare_types", True)),
        }
        return (ctx.python, script("_django_migrate.py"), payload(step, values))


KIND = DjangoMigrateKind()
