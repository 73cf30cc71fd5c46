"""What every service backend is (:class:`Backend`) and what it reports."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from devenv.events import Reporter
from devenv.schema import Project, ServiceSpec


@dataclass(frozen=True)
class Endpoint:
    """Where a started service answers: host and container port -> host port."""

    host: str
    ports: Mapping[int, int]
    backend: str

    def port(self, container: int) -> int:
        return self.ports.get(container, container)


@dataclass(frozen=True)
class ServiceState:
    """What ``devenv status`` shows for a service."""

    name: str
    backend: str
    state: str  # running, stopped, missing, exited, unhealthy
    health: str = ""  # healthy, starting, unhealthy, or "" when unknown
    address: str | None = None
    started_at: float | None = None
    config_matches: bool | None = None
    detail: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecResult:
    """A command run beside a service (see :meth:`Backend.exec`)."""

    returncode: int
    output: str  # its stderr (and stdout when that was not sent to a file)


class Backend(Protocol):
    """What every service backend does."""

    name: str

    def available(self) -> tuple[bool, str]:
        """Whether this backend can run services here, and a one-line reason."""
        ...

    def up(self, project: Project, service: ServiceSpec, reporter: Reporter,
           timeout: float = 120) -> Endpoint:
        """Start (or reuse) the service and wait until it is healthy."""
        ...

    def up_now(self, project: Project, service: ServiceSpec) -> Endpoint | None:
        """Where the service answers when it already runs as defined and passes its
        readiness check right now (one check: nothing started, no wait); None when
        :meth:`up` has more to do. Lets `up` go through a dozen running services one
        after another instead of starting a thread for each."""
        ...

    def status(self, project: Project, service: ServiceSpec) -> ServiceState: ...

    def endpoint(self, project: Project, service: ServiceSpec) -> Endpoint | None:
        """Where the service answers if it runs now (nothing is started)."""
        ...

    def down(self, project: Project, service: ServiceSpec, volumes: bool = False) -> list[str]:
        """Stop the service; with ``volumes`` delete its data. Returns what it removed."""
        ...

    def logs(self, project: Project, service: ServiceSpec, follow: bool = False,
             tail: int | None = None) -> Iterator[str]: ...

    def data(self, project: Project, service: ServiceSpec) -> list[str]:
        """What ``down(volumes=True)`` would delete (volume names, folders), for a prompt."""
        ...

    def exec(self, project: Project, service: ServiceSpec, argv: Sequence[str], *,
             stdin: Path | None = None, stdout: Path | None = None,
             env: Mapping[str, str] | None = None) -> ExecResult:
        """Run ``argv`` with the service's own tools (``pg_dump``/``psql`` of the server's
        version, whatever the host has): inside its container, or with the native server's
        binaries. The service must be running.

        ``stdin``/``stdout`` are host files streamed in or out (a dump can be large; use
        one of them at a time); ``env`` is added to the command's environment. For
        PostgreSQL services PGHOST/PGUSER point at the server's local socket as its
        superuser, so no password is needed.
        """
        ...
