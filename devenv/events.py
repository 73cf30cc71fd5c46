"""What the core tells the user, as values. A reporter (``devenv.console``) shows them."""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class Status(enum.Enum):
    """The outcome of a step in a run."""

    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"  # not run: unchanged, other profile, not selected
    BLOCKED = "blocked"  # not run: something it needs failed
    CANCELLED = "cancelled"  # not run: the run stopped early (a failure without --keep-going)
    INTERRUPTED = "interrupted"  # was running when Ctrl-C / SIGTERM arrived


class Action(enum.Enum):
    RUN = "run"
    SKIP = "skip"


@dataclass(frozen=True)
class Decision:
    """What the planner decided for one step, and why."""

    step: str
    action: Action
    reason: str
    fingerprint: str | None = None


@dataclass(frozen=True)
class StepResult:
    name: str
    status: Status
    reason: str
    duration: float = 0.0
    log: Path | None = None
    returncode: int | None = None
    fingerprint: str | None = None


@dataclass(frozen=True)
class RunResult:
    results: Sequence[StepResult]
    interrupted: bool = False
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(
            r.status in (Status.OK, Status.SKIPPED) for r in self.results)


# ----- events


@dataclass(frozen=True)
class RunStarted:
    decisions: Sequence[Decision]
    jobs: int
    database: str | None = None


@dataclass(frozen=True)
class StepStarted:
    name: str
    command: str
    log: Path


@dataclass(frozen=True)
class StepFinished:
    result: StepResult


@dataclass(frozen=True)
class RunFinished:
    result: RunResult


@dataclass(frozen=True)
class Message:
    """A line for the user: ``level`` is info, warn, error or ok."""

    text: str
    level: str = "info"
    detail: str = ""


@dataclass(frozen=True)
class PhaseStarted:
    """A named phase that is not a step (starting a service, creating the database)."""

    name: str
    text: str


@dataclass(frozen=True)
class PhaseFinished:
    name: str
    text: str
    ok: bool = True
    duration: float = 0.0


Event = (RunStarted | StepStarted | StepFinished | RunFinished | Message | PhaseStarted
         | PhaseFinished)


@contextlib.contextmanager
def phase(reporter: Reporter, name: str, text: str, done: str) -> Iterator[None]:
    """Report a phase that is not a step: ``text`` while it runs, ``done`` (with its
    duration) when it ends, or ``text: failed`` if it raises."""
    reporter.emit(PhaseStarted(name, text))
    t0 = time.monotonic()
    try:
        yield
    except BaseException:
        reporter.emit(PhaseFinished(name, f"{text}: failed", ok=False,
                                    duration=time.monotonic() - t0))
        raise
    reporter.emit(PhaseFinished(name, done, duration=time.monotonic() - t0))


class Reporter(Protocol):
    """Receives events; the rich and plain reporters live in ``devenv.console``."""

    def emit(self, event: Event) -> None: ...

    def close(self) -> None: ...


@dataclass
class RecordingReporter:
    """Keeps every event (for tests and for --json reports)."""

    events: list[Event] = field(default_factory=list)

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        return None


def fmt_size(n: float) -> str:
    """A byte count as PostgreSQL's pg_size_pretty counts (1 kB = 1024 bytes): ``512 B``,
    ``123 kB``, ``3.4 MB``, ``312 MB``."""
    if n < 1024:
        return f"{n:.0f} B"
    value = float(n)
    unit = "B"
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1024
        if value < 1024 or unit == "TB":
            break
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
