"""``run:``: any command, as a shell string or an argv list."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from devenv.envvars import expand_command
from devenv.fields import Field
from devenv.kinds import StepContext
from devenv.schema import Command, StepSpec


class ShellKind:
    name = "shell"
    options: tuple[Field, ...] = ()
    uses_run = True
    uses_python = False
    warm_start = False
    incremental = False

    def validate(self, options: Mapping[str, Any]) -> None:
        return None

    def default_inputs(self, step: StepSpec) -> tuple[str, ...]:
        return ()

    def command(self, step: StepSpec, ctx: StepContext) -> Command:
        """``run:`` with its ``${VAR}`` expanded: in a shell string, as references the
        shell resolves from the step's environment, so a value is never parsed as code
        (see :mod:`devenv.envvars`); an undefined one is a ConfigError."""
        assert step.run is not None  # the loader requires run for this kind
        return expand_command(step.run, ctx.env, step.loc, f"steps.{step.name}.run")


KIND = ShellKind()
