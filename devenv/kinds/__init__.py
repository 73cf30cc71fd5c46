"""Step kinds: what a step *is* (a shell command, a Django migrate, a SQL file...).

Each kind is a small module exposing an object that satisfies :class:`StepKind`, listed in
:data:`KINDS`. Every kind ends up as one command run in its own process group, so the
runner treats all kinds alike: logs, timeouts and Ctrl-C work the same for each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from devenv.fields import Field
from devenv.schema import Command, StepSpec


class OptionError(Exception):
    """A kind-specific option is wrong; ``key`` names it, ``path`` (dotted, optional) the
    value below it (the loader adds file:line, of the deepest value it can find)."""

    def __init__(self, key: str, message: str, path: str = "") -> None:
        self.key = key
        self.message = message
        self.path = path
        super().__init__(message)


@dataclass(frozen=True)
class StepContext:
    """What a kind needs to build its command."""

    root: Path
    cwd: Path
    env: Mapping[str, str]
    python: str


class StepKind(Protocol):
    """The interface of a step kind module."""

    name: str
    #: the kind's own keys, beside the step keys (devenv.fields.STEP_FIELDS); the loader
    #: reads them by type and puts the ones given in ``StepSpec.options``.
    options: tuple[Field, ...]
    #: True: the step needs ``run``; False: ``run`` is not allowed.
    uses_run: bool
    #: True: the command runs in the app's interpreter, which ``python:`` chooses; False:
    #: ``python:`` is refused (a ``run:`` command names its own; sql and faker run in
    #: devenv's interpreter).
    uses_python: bool
    #: True: the command speaks the runner's warm-start protocol (``DEVENV_WARM_FD``, then
    #: ``go`` on stdin; see :mod:`devenv.runner`), so it may be started early.
    warm_start: bool
    #: True: running it again on a database it already ran on applies only what is new (a
    #: migration tool); False: it would add its data a second time, so ``up`` builds the
    #: new state beside the working database instead (``rerun:`` overrides per step).
    incremental: bool

    def validate(self, options: Mapping[str, Any]) -> None:
        """Check option values beyond their types; raise :class:`OptionError`."""
        ...

    def default_inputs(self, step: StepSpec) -> tuple[str, ...]:
        """Input globs used when the step declares none."""
        ...

    def command(self, step: StepSpec, ctx: StepContext) -> Command:
        """The command that performs the step."""
        ...


def _load() -> dict[str, StepKind]:
    from devenv.kinds import (
        alembic_upgrade,
        django_command,
        django_loaddata,
        django_migrate,
        faker_data,
        flask_command,
        python_call,
        shell,
        sql_files,
    )

    kinds: dict[str, StepKind] = {shell.KIND.name: shell.KIND}
    for mod in (django_migrate, django_loaddata, django_command, alembic_upgrade,
                flask_command, sql_files, faker_data, python_call):
        kinds[mod.KIND.name] = mod.KIND
    return kinds


KINDS: dict[str, StepKind] = _load()
