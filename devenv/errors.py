"""devenv's exceptions. Each carries the exit code the CLI returns for it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# The README's "Exit codes" table; every exit of every command is one of these.
EXIT_OK = 0
EXIT_FAILED = 1  # a step failed (up: a process; doctor: a check), or a database action did
#                  or a command devenv ran itself (proc.ProcessError: pg_dump, git, ...)
EXIT_CONFIG = 2  # configuration or usage error
EXIT_SERVICE = 3  # a service never became healthy, or is not running for a command needing it
#                   (also pgcluster.ClusterError: a native cluster not created or started)
EXIT_BUSY = 4  # another devenv holds the project (--no-wait), or its processes already run
EXIT_REFUSED = 5  # a snapshot file refused: missing, truncated, damaged, or from a newer server
EXIT_REBUILD = 6  # up would run a data step on top of its own data (up.rebuild: stop)
EXIT_BUG = 70  # devenv failed unexpectedly (a bug; the traceback is in a file it names)
EXIT_INTERRUPTED = 130


class DevenvError(Exception):
    """An error the user can act on; the CLI prints its message, never a traceback."""

    exit_code = EXIT_FAILED


class ConfigError(DevenvError):
    """A mistake in steps.yaml or services/: where it is, which key, what is wrong.

    ``str(err)`` reads ``steps.yaml:14: steps.migrate.needs[0]: unknown step 'seed'
    (did you mean 'seed-data'?)``.
    """

    exit_code = EXIT_CONFIG

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 path: str = "") -> None:
        self.message = message
        self.file = file
        self.line = line
        self.path = path
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        key = f"{self.path}: " if self.path else ""
        return f"{where}{key}{self.message}"


class UsageError(DevenvError):
    """A wrong command-line argument (unknown step name, unknown profile...)."""

    exit_code = EXIT_CONFIG


class ServiceError(DevenvError):
    """A service did not start or never became healthy."""

    exit_code = EXIT_SERVICE


class ImageUnavailable(ServiceError):
    """A service's image is missing and could not be pulled."""


class RebuildNeeded(DevenvError):
    """``up`` found a change it cannot apply on top of the working database, and the
    project says to stop rather than build beside (``up: {rebuild: stop}``)."""

    exit_code = EXIT_REBUILD


class BusyError(DevenvError):
    """Something else holds what the command needs: try again once it is done."""

    exit_code = EXIT_BUSY


class LockedError(BusyError):
    """Another devenv holds the project's lock."""


class RefusedFileError(DevenvError):
    """A file devenv was given that it will not load (a snapshot file that is missing,
    truncated, damaged or too new); nothing was changed."""

    exit_code = EXIT_REFUSED


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def first_line(exc: BaseException) -> str:
    """An exception as one line for a message: its first line, or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
