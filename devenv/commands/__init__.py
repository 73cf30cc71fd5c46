"""The commands behind the CLI: plain functions that return an exit code."""

from __future__ import annotations

from devenv.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from devenv.events import RunResult


def exit_code(result: RunResult) -> int:
    """0 when every step passed or was skipped, 130 when interrupted, else 1."""
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if result.ok else EXIT_FAILED
