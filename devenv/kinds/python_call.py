"""``kind: python``: call ``package.module:function(conn, fake, **args)`` with a psycopg
connection (one transaction, committed when the function returns) and a seeded Faker,
for custom data the faker kind cannot describe."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from devenv.errors import did_you_mean
from devenv.fields import Field
from devenv.kinds import OptionError, StepContext
from devenv.kinds.base import expand, payload, script, under_cwd
from devenv.schema import Command, StepSpec

_CALL = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


class PythonKind:
    name = "python"
    options: tuple[Field, ...] = (
        Field("call", str, None, "package.module:function, called with a psycopg connection "
                                 "and a seeded Faker.", required=True),
        Field("seed", int, 0, "The Faker seed."),
        Field("locale", str, "en_US", "The Faker locale."),
        Field("args", dict, {}, "Keyword arguments for the function."),
    )
    uses_run = False
    uses_python = True
    warm_start = False
    incremental = False

    def validate(self, options: Mapping[str, Any]) -> None:
        """``call`` is ``package.module:function``; the locale is one Faker knows."""
        call = str(options["call"])
        if "${" not in call and not _CALL.match(call):
            raise OptionError("call", f"expected package.module:function, got '{call}'")
        locale = options.get("locale")
        if locale is not None:
            from faker.config import AVAILABLE_LOCALES

            if locale not in AVAILABLE_LOCALES:
                raise OptionError("locale", f"unknown Faker locale '{locale}'"
                                            f"{did_you_mean(locale, AVAILABLE_LOCALES)}")

    def default_inputs(self, step: StepSpec) -> tuple[str, ...]:
        """The called module (a file, or a package's files)."""
        call = str(step.options.get("call", ""))
        if ":" not in call:
            return ()
        path = call.split(":", 1)[0].replace(".", "/")
        return under_cwd(step, [f"{path}.py", f"{path}/**/*.py"])

    def command(self, step: StepSpec, ctx: StepContext) -> Command:
        opts = step.options
        values: dict[str, Any] = {
            "call": expand(step, ctx, "call", str(opts["call"])),
            "seed": int(opts.get("seed", 0)),
            "locale": str(opts.get("locale", "en_US")),
            "args": dict(opts.get("args", {})),
        }
        return (ctx.python, script("_python_call.py"), payload(step, values))


KIND = PythonKind()
