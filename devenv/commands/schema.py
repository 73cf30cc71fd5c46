"""``devenv schema``: the JSON Schema of steps.yaml / services/NAME.yaml, printed or
written to .devenv/schema/ for editors."""

from __future__ import annotations

from pathlib import Path

from devenv import config_schema, loader
from devenv.console import Output
from devenv.errors import EXIT_OK, ConfigError, UsageError


def run(out: Output, which: str = "steps", *, write: bool = False,
        file: Path | None = None) -> int:
    if which not in config_schema.FILES:
        raise UsageError(f"unknown schema '{which}'; one of: "
                         f"{', '.join(config_schema.FILES)}")
    if not write:
        out.text(config_schema.render(which).rstrip("\n"))
        return EXIT_OK
    try:
        root = loader.find_config(None, file).parent
    except ConfigError:
        root = Path.cwd()
    for path in config_schema.write(root):
        out.text(f"wrote {path}")
    return EXIT_OK
