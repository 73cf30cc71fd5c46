"""What the docker and native backends share: config hashes, readiness probes, messages."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from devenv import logtail, waiting
from devenv.postgres import database
from devenv.schema import PortSpec, Project, ServiceSpec

TAIL_LINES = 30


def config_hash(service: ServiceSpec) -> str:
    """A short hash of what the service is (image, env, ports, ...): changed -> recreate."""
    text = json.dumps(service.definition(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_postgres(service: ServiceSpec) -> bool:
    """A PostgreSQL-like service: an image named postgres*, or ``backend: native``."""
    if service.backend == "native":
        return True
    image = (service.image or "").rsplit("/", 1)[-1]
    return image.startswith("postgres")


def is_database(project: Project, service: ServiceSpec) -> bool:
    """The service holding the project's database (readiness is a real query for it)."""
    return project.database is not None and project.database.service == service.name


def credentials(project: Project, service: ServiceSpec) -> tuple[str, str]:
    """User and password to log in with: the database's, else the service's POSTGRES_*."""
    if is_database(project, service):
        assert project.database is not None
        return project.database.user, project.database.password
    return (service.env.get("POSTGRES_USER", "postgres"),
            service.env.get("POSTGRES_PASSWORD", ""))


@dataclass(frozen=True)
class Probe:
    """The outcome of one readiness attempt."""

    ready: bool
    detail: str = ""
    fatal: bool = False  # waiting longer will not help (wrong password)


def pg_probe(port: int, user: str, password: str, host: str = "127.0.0.1",
             timeout: float = 2) -> Probe:
    """A real TCP connection to ``host:port`` plus ``SELECT 1`` (see
    :func:`devenv.postgres.database.answers`: not ``pg_isready``)."""
    answer = database.answers({"host": host, "port": str(port), "user": user,
                               "password": password, "dbname": "postgres"}, timeout)
    return Probe(answer.ready, answer.detail, answer.fatal)


def tcp_probe(port: int, host: str = "127.0.0.1") -> Probe:
    """A TCP connection that stays open (Docker's port proxy accepts and then closes the
    connection while nothing listens inside the container)."""
    ok, detail = waiting.tcp(host, port, timeout=1, settle=0.2)
    return Probe(ok, "" if ok else detail)


def wrong_credentials_hint(service: ServiceSpec, where: str) -> str:
    return (f"the server refuses the configured user/password; the data in {where} was "
            f"probably initialised with other POSTGRES_USER/POSTGRES_PASSWORD values (they "
            f"only apply on first start). Put the old values back in {service.loc.file}, or "
            f"delete the data with `devenv down --volumes` and start again")


def failure_message(service: ServiceSpec, what: str, log_tail: Sequence[str]) -> str:
    """``what`` happened, the last lines of the service's log, and how to see the rest."""
    lines = [f"service {service.name} {what}"]
    if log_tail:
        lines.append(f"last {len(log_tail)} lines of its log:")
        lines.extend(f"  | {line}" for line in log_tail)
    else:
        lines.append("its log is empty")
    lines.append(f"see the whole log: devenv logs {service.name}")
    return "\n".join(lines)


def follow_file(path: Path, tail: int | None, follow: bool,
                poll: float = 0.2) -> Iterator[str]:
    """Lines of ``path`` (the last ``tail`` ones), then new lines as they come with
    ``follow`` (until the caller stops iterating, e.g. on Ctrl-C). Each line is capped."""
    if tail is not None:
        yield from logtail.tail_file(path, tail).lines
        try:
            pos = path.stat().st_size
        except OSError:
            pos = 0
    else:
        with path.open("rb") as fh:
            yield from logtail.all_lines(fh)
            pos = fh.tell()
    if not follow:
        return
    split = logtail.LineSplitter()
    while True:
        try:
            size = path.stat().st_size
        except OSError:
            size = 0
        if size < pos:  # truncated or replaced
            pos = 0
        if size > pos:
            with path.open("rb") as fh:
                fh.seek(pos)
                chunk = fh.read(min(size - pos, logtail.BLOCK * 16))
                pos = fh.tell()
            yield from split.feed(chunk)
        else:
            time.sleep(poll)


def with_ports(service: ServiceSpec, specs: tuple[PortSpec, ...]) -> ServiceSpec:
    """``service`` publishing ``specs`` (the ports chosen for it)."""
    from dataclasses import replace

    return replace(service, ports=specs)


def http_probe(port: int, path: str = "/", status: Sequence[int] = (),
               host: str = "127.0.0.1") -> Probe:
    """A real HTTP answer on ``host:port``: one of ``status``, else anything below 500."""
    code, why = waiting.http_status(host, port, path, timeout=2)
    if code is None:
        return Probe(False, f"GET http://{host}:{port}{path}: {why}")
    ok = code in status if status else code < 500
    return Probe(ok, "" if ok else f"GET http://{host}:{port}{path} answered {code}")
