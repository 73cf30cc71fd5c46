"""The third backend: a PostgreSQL someone else runs (``DATABASE_URL`` or
``--database-url``). devenv checks that it answers and uses it; it never starts, stops,
recreates or runs a command beside it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from devenv.errors import ServiceError
from devenv.events import Reporter
from devenv.postgres import database
from devenv.schema import Project, ServiceSpec
from devenv.services.base import Endpoint, ExecResult, ServiceState


class ExternalBackend:
    """The database service of a project whose database lives at ``url`` (``why``: where
    the URL came from, shown with every line about it)."""

    name = "external"

    def __init__(self, url: str, why: str) -> None:
        self.url = url
        self.why = why
        self._targets: dict[str, database.Target] = {}

    def target(self, project: Project) -> database.Target:
        """The user's URL, kept whole; steps.yaml's database name where it names none
        (parsed once: a ``service=`` or ``PGSERVICE`` entry is read from its file)."""
        assert project.database is not None
        name = project.database.name
        if name not in self._targets:
            self._targets[name] = database.parse_url(self.url, name)
        return self._targets[name]

    def available(self) -> tuple[bool, str]:
        return True, self.why

    def up(self, project: Project, service: ServiceSpec, reporter: Reporter,
           timeout: float = 10) -> Endpoint:
        """Check that the server answers a real query (nothing is started)."""
        target = self.target(project)
        try:
            with database.connect(target, "postgres", timeout=min(timeout, 10)) as conn:
                conn.execute("SELECT 1")
        except database.DatabaseError as exc:
            raise ServiceError(f"{exc} ({self.why}); check that the server runs and the URL "
                               "is right") from None
        return Endpoint(target.host, {}, self.name)

    def status(self, project: Project, service: ServiceSpec) -> ServiceState:
        target = self.target(project)
        try:
            with database.connect(target, "postgres", timeout=3) as conn:
                conn.execute("SELECT 1")
        except database.DatabaseError as exc:
            return ServiceState(service.name, self.name, "unreachable",
                                address=f"{target.host}:{target.port}", detail=str(exc))
        return ServiceState(service.name, self.name, "running", "healthy",
                            address=f"{target.host}:{target.port}", detail=target.redacted())

    def up_now(self, project: Project, service: ServiceSpec) -> Endpoint | None:
        return None  # one server at most: up's own check is as quick

    def endpoint(self, project: Project, service: ServiceSpec) -> Endpoint | None:
        return Endpoint(self.target(project).host, {}, self.name)

    def down(self, project: Project, service: ServiceSpec, volumes: bool = False) -> list[str]:
        return []  # someone else's server: never stopped, its data never deleted

    def logs(self, project: Project, service: ServiceSpec, follow: bool = False,
             tail: int | None = None) -> Iterator[str]:
        return iter(())  # its log is on its own machine

    def data(self, project: Project, service: ServiceSpec) -> list[str]:
        return []

    def exec(self, project: Project, service: ServiceSpec, argv: Sequence[str], *,
             stdin: Path | None = None, stdout: Path | None = None,
             env: Mapping[str, str] | None = None) -> ExecResult:
        raise ServiceError(f"service {service.name} is someone else's server ({self.why}): "
                           "devenv runs no command beside it; the local tools are used")
