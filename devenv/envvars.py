"""The environment of steps and processes, and ``${NAME}`` expansion."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from devenv.errors import ConfigError
from devenv.schema import Command, Location

_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class UndefinedVariable(ConfigError):
    """``${NAME}`` names a variable that nothing defines."""


def references(text: str) -> list[str]:
    """The variable names ``text`` refers to without a default (``${X:-d}`` excluded)."""
    return [m.group(1) for m in _VAR.finditer(text) if m.group(1) and m.group(2) is None]


def expand(text: str, env: Mapping[str, str], loc: Location | None = None,
           path: str = "") -> str:
    """Replace ``${NAME}`` (and ``${NAME:-default}``) from ``env``; ``$${`` gives ``${``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise UndefinedVariable(
            f"${{{name}}} is not defined; set it under env: in steps.yaml or in your shell, "
            f"or write ${{{name}:-default}}",
            loc.file if loc else None, loc.line if loc else None, path)

    return _VAR.sub(sub, text)


def expand_command(cmd: Command, env: Mapping[str, str], loc: Location | None = None,
                   path: str = "") -> Command:
    if isinstance(cmd, str):
        return expand(cmd, env, loc, path)
    return tuple(expand(a, env, loc, f"{path}[{i}]") for i, a in enumerate(cmd))


def layered(base: Mapping[str, str],
            *layers: tuple[Mapping[str, str], Callable[[str], Location | None], str],
            ) -> dict[str, str]:
    """``base`` plus each layer of ``env:`` values, in order: a value may use the values
    before it (``URL: ${BASE}/app``). ``locate(key)`` gives the line for an error."""
    env = dict(base)
    for values, locate, path in layers:
        for k, v in values.items():
            env[k] = expand(v, env, locate(k), f"{path}.{k}")
    return env
