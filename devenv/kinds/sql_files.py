"""``kind: sql``: SQL files run in one transaction with psycopg; an error names the file,
the line and the server's message.

The files are split into statements here (strings, quoted names, dollar quotes, comments
and ``COPY ... FROM stdin`` data understood), so a failing statement can be located even
when the server gives no position.

The work happens in :mod:`devenv.kinds._sql_run` (``python -m devenv.kinds._sql_run JSON``,
in the step's folder).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from devenv.fields import Field
from devenv.kinds import OptionError, StepContext
from devenv.kinds.base import expand, payload, under_cwd
from devenv.schema import Command, StepSpec


def files_of(options: Mapping[str, Any]) -> list[str]:
    if "file" in options:
        return [str(options["file"])]
    return [str(f) for f in options.get("files", ())]


class SqlKind:
    name = "sql"
    options: tuple[Field, ...] = (
        Field("file", str, None, "One SQL file, relative to cwd:."),
        Field("files", tuple[str, ...], (), "SQL files, run in order in one transaction."),
    )
    uses_run = False
    uses_python = False
    warm_start = False
    incremental = False

    def validate(self, options: Mapping[str, Any]) -> None:
        """Exactly one of ``file`` and ``files``."""
        if "file" in options and "files" in options:
            raise OptionError("files", "use either file: or files:, not both")
        if "file" not in options and not options.get("files"):
            key = "files" if "files" in options else "kind"
            raise OptionError(key, "missing 'file' (one SQL file) or 'files' (a list, run in "
                                   "order in one transaction)")

    def default_inputs(self, step: StepSpec) -> tuple[str, ...]:
        """The SQL files."""
        return under_cwd(step, files_of(step.options))

    def command(self, step: StepSpec, ctx: StepContext) -> Command:
        files = [expand(step, ctx, "files", f) for f in files_of(step.options)]
        return (sys.executable, "-m", "devenv.kinds._sql_run", payload(step, {"files": files}))


KIND = SqlKind()
