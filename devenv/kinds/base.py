"""What the typed kinds share: paths under a step's ``cwd``, the shipped scripts, payloads.

A typed kind turns its options into one argv: either a standalone script shipped beside
this module, run by path with the app's interpreter (it must import nothing from devenv,
since the app's virtualenv does not have devenv), or ``python -m devenv.kinds.<mod>`` for
kinds that only need devenv's own dependencies. Options travel as one JSON argument.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from devenv.envvars import expand as _expand
from devenv.kinds import StepContext
from devenv.schema import StepSpec

SCRIPTS = Path(__file__).resolve().parent


def script(name: str) -> str:
    """The absolute path of a standalone script shipped in this package."""
    return str(SCRIPTS / name)


def under_cwd(step: StepSpec, paths: Iterable[str]) -> tuple[str, ...]:
    """``paths`` (relative to the step's ``cwd``) as globs relative to the project root.

    Inputs are hashed relative to the root, while a kind's files are named relative to
    the folder it runs in. A ``cwd`` holding ``${VAR}`` is only known at run time, so no
    default inputs can be derived from it: the step must list its ``inputs``.
    """
    base = step.cwd or ""
    if "${" in base:
        return ()
    out: list[str] = []
    for p in paths:
        if "${" in p:
            continue
        joined = p if p.startswith("/") or not base else posixpath.join(base, p)
        out.append(posixpath.normpath(joined))
    return tuple(out)


def expand(step: StepSpec, ctx: StepContext, key: str, value: str) -> str:
    """``${VAR}`` in a string option, like the runner does for ``run:``."""
    return _expand(value, ctx.env, step.loc, f"steps.{step.name}.{key}")


def payload(step: StepSpec, values: Mapping[str, Any]) -> str:
    """The JSON argument a kind's script reads: its options plus where the step is."""
    data = {"step": step.name, "where": str(step.loc), **values}
    return json.dumps(data, separators=(",", ":"), sort_keys=True, default=str)


def key_line(step: StepSpec, key: str) -> str:
    """``steps.yaml:LINE`` of one of the step's keys (the step's own line if unknown)."""
    return f"{step.loc.file}:{step.key_lines.get(key, step.loc.line)}"
