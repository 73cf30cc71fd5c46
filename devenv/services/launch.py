"""Starting the services the steps need (a database someone else runs is only checked),
choosing each one's backend, and finding the project's database target."""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from devenv import graph, jsonfile
from devenv.errors import DevenvError, ImageUnavailable, ServiceError
from devenv.events import (
    Message,
    PhaseFinished,
    PhaseStarted,
    Reporter,
)
from devenv.jsonfile import ensure_state_dir
from devenv.lock import database_lock
from devenv.postgres import database, dumpfiles
from devenv.postgres.database import DatabaseError
from devenv.schema import Project, ServiceSpec
from devenv.services import BACKENDS, Backend, Endpoint
from devenv.services.docker import connect
from devenv.services.support import is_postgres


def external_url(project: Project, database_url: str | None) -> tuple[str, str] | None:
    """The URL of a database someone else runs, and where it came from."""
    if project.database is None:
        return None
    if database_url:
        return database_url, "--database-url"
    env_url = os.environ.get("DATABASE_URL")
    if env_url:
        return env_url, "DATABASE_URL is set"
    return None


def _fallback_file(project: Project) -> Path:
    return project.state_dir / "backends.json"


def _remembered_fallback(project: Project, service: ServiceSpec) -> str | None:
    """Why ``service`` runs natively although Docker answers (its image could not be had),
    or None once that no longer holds (the image is there now)."""

    record = jsonfile.read(_fallback_file(project)).get(service.name)
    if not isinstance(record, dict) or record.get("image") != service.image:
        return None
    try:

        connect(timeout=5).images.get(service.image)
    except Exception:
        return str(record.get("reason", "its image could not be pulled"))
    _forget_fallback(project, service)
    return None


def _remember_fallback(project: Project, service: ServiceSpec, reason: str) -> None:

    ensure_state_dir(project.state_dir)
    with jsonfile.update(_fallback_file(project), indent=1) as data:
        data[service.name] = {"backend": "native", "image": service.image, "reason": reason}


def _forget_fallback(project: Project, service: ServiceSpec) -> None:

    with jsonfile.update(_fallback_file(project), indent=1) as data:
        data.pop(service.name, None)


def choose_backend(service: ServiceSpec, project: Project | None = None,
                   ) -> tuple[Backend, str]:
    """The backend for ``service`` and why it was chosen (``project``: to honour a
    fallback to native that an earlier ``up`` made because the image was missing)."""
    if service.backend in BACKENDS:
        backend = BACKENDS[service.backend]()
        ok, why = backend.available()
        if not ok:
            raise ServiceError(f"service {service.name}: backend {service.backend} is not "
                               f"available: {why}")
        return backend, f"backend: {service.backend} in {service.backend_loc or service.loc}"
    if service.backend == "external":
        raise ServiceError(f"service {service.name} is external: set DATABASE_URL or pass "
                           "--database-url")
    if project is not None:
        why_native = _remembered_fallback(project, service)
        if why_native is not None:
            native = BACKENDS["native"]()
            if native.available()[0]:
                return native, f"native: {why_native} (the local PostgreSQL binaries run it)"
    reasons: list[str] = []
    for name in ("docker", "native"):
        if name == "native" and not is_postgres(service):
            # the native backend runs a local PostgreSQL server, nothing else
            reasons.append("native: runs PostgreSQL only")
            continue
        backend = BACKENDS[name]()
        ok, why = backend.available()
        if ok:
            suffix = f" ({'; '.join(reasons)})" if reasons else ""
            return backend, f"{why}{suffix}"
        reasons.append(f"{name}: {why}")
    if not is_postgres(service):
        raise ServiceError(f"service {service.name}: no backend can run it here: "
                           + "; ".join(reasons)
                           + f". It has no native backend: start a Docker engine ({service.loc})")
    raise ServiceError(f"service {service.name}: no backend can run it here: "
                       + "; ".join(reasons)
                       + ". Start a Docker engine, install PostgreSQL's server binaries, or "
                         "point DATABASE_URL at a running server")


def with_needed(project: Project, names: Sequence[str]) -> list[str]:
    """``names`` and every service they need (``needs:`` between services), in declaration
    order."""
    wanted: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        todo.extend(project.services[name].needs)
    return [s for s in project.services if s in wanted]


def start_services(project: Project, names: Sequence[str], reporter: Reporter,
                   database_url: str | None = None) -> dict[str, Endpoint]:
    """Start ``names`` and the services they need (a database someone else runs is only
    checked) and wait for health: a service starts once those it needs are ready, the
    others in parallel. The first failure stops the start of the rest."""
    import queue
    import threading

    names = with_needed(project, names)
    endpoints: dict[str, Endpoint] = {}
    waiting = {n: {d for d in project.services[n].needs if d in names} for n in names}
    if len(names) <= 1:
        for name in names:
            endpoints[name] = _start_one(project, name, reporter, database_url)
        return endpoints
    results: queue.Queue[tuple[str, Endpoint | BaseException]] = queue.Queue()

    def start(name: str) -> None:
        try:
            results.put((name, _start_one(project, name, reporter, database_url)))
        except BaseException as exc:
            results.put((name, exc))

    failure: BaseException | None = None
    running: set[str] = set()
    while waiting or running:
        if failure is None:
            for name in [n for n, deps in waiting.items() if not deps]:
                del waiting[name]
                running.add(name)
                # daemon threads: Ctrl-C (or SIGTERM) stops `up` at once, not after the
                # slowest service's wait; the containers stay as they are, like a
                # sequential start interrupted midway
                threading.Thread(target=start, args=(name,), daemon=True,
                                 name=f"start-{name}").start()
        if not running:
            break
        name, got = results.get()
        running.discard(name)
        if isinstance(got, BaseException):
            failure = failure or got  # the first one wins; the rest finish starting
            continue
        endpoints[name] = got
        for deps in waiting.values():
            deps.discard(name)
    if failure is not None:
        raise failure
    return endpoints


def _start_one(project: Project, name: str, reporter: Reporter,
               database_url: str | None) -> Endpoint:
    """Start one service (or check the external database) and wait until it is ready."""
    ext = external_url(project, database_url)
    endpoints: dict[str, Endpoint] = {}
    service = project.services[name]
    if ext is not None and project.database is not None and name == project.database.service:
        target = database.parse_url(ext[0], project.database.name)
        reporter.emit(PhaseStarted(name, f"checking {target.redacted()} ({ext[1]})"))
        t0 = time.monotonic()
        try:
            with database.connect(target, "postgres", timeout=10) as conn:
                conn.execute("SELECT 1")
        except database.DatabaseError as exc:
            reporter.emit(PhaseFinished(name, f"{name}: external database does not answer",
                                        ok=False, duration=time.monotonic() - t0))
            raise ServiceError(f"{exc} ({ext[1]}); check that the server runs and the URL "
                               "is right") from None
        endpoints[name] = Endpoint(target.host, {}, "external")
        reporter.emit(PhaseFinished(name, f"{name}: external database answers",
                                    duration=time.monotonic() - t0))
        return endpoints[name]
    backend, _why = choose_backend(service, project)
    reporter.emit(PhaseStarted(name, f"starting {name} ({backend.name})"))
    t0 = time.monotonic()
    try:
        if service.ready_timeout is not None:
            endpoints[name] = backend.up(project, service, reporter,
                                         timeout=service.ready_timeout)
        else:
            endpoints[name] = backend.up(project, service, reporter)
    except ImageUnavailable as exc:
        # backend: auto on a machine with Docker but no registry (or offline): the local
        # server binaries can still run a PostgreSQL service.
        native = BACKENDS["native"]() if service.backend == "auto" else None
        if native is None or not native.available()[0]:
            reporter.emit(PhaseFinished(name, f"{name} did not start", ok=False,
                                        duration=time.monotonic() - t0))
            raise
        reporter.emit(PhaseFinished(name, f"{name}: no image, so not in docker", ok=False,
                                    duration=time.monotonic() - t0))
        reporter.emit(Message(f"{exc}; using the local PostgreSQL binaries instead "
                              "(backend: native)", "warn"))
        _remember_fallback(project, service, f"image {service.image} could not be pulled")
        reporter.emit(PhaseStarted(name, f"starting {name} (native)"))
        t0 = time.monotonic()
        endpoints[name] = native.up(project, service, reporter)
        backend = native  # the one that runs it now, for the line below
    except ServiceError:
        reporter.emit(PhaseFinished(name, f"{name} did not become healthy", ok=False,
                                    duration=time.monotonic() - t0))
        raise
    reporter.emit(PhaseFinished(name, f"{name} is healthy ({backend.name})",
                                duration=time.monotonic() - t0))
    return endpoints[name]


def database_target(project: Project, endpoints: Mapping[str, Endpoint],
                    database_url: str | None = None) -> database.Target | None:
    """Where the project's database is, once its service is up."""
    db = project.database
    if db is None:
        return None
    ext = external_url(project, database_url)
    if ext is not None:
        return database.parse_url(ext[0], db.name)
    ep = endpoints.get(db.service)
    if ep is None:
        return None
    svc = project.services[db.service]
    container_port = svc.ports[0].container if svc.ports else 5432
    return database.Target(ep.host, ep.port(container_port), db.user, db.password, db.name)


def _service_log_tail(project: Project, lines: int = 80) -> str:
    """The last lines of the database service's own log ("" when it cannot be read)."""
    if project.database is None:
        return ""
    service = project.services[project.database.service]
    try:
        backend, _ = choose_backend(service, project)
        return "\n".join(list(backend.logs(project, service, follow=False, tail=lines)))
    except Exception:  # diagnosis must never hide the failure it explains
        return ""


def needed_services(project: Project, steps: Sequence[str] | None = None) -> list[str]:
    """Services the given steps need, plus the database's service."""
    names = list(project.steps) if steps is None else list(steps)
    wanted = set(graph.services_for(project, names))
    if project.database is not None:
        wanted.add(project.database.service)
    return [s for s in project.services if s in wanted]


def current_target(project: Project, database_url: str | None = None,
                   ) -> tuple[database.Target | None, str]:
    """The database target if its service runs now (nothing is started), and a note."""
    db = project.database
    if db is None:
        return None, "no database configured"
    ext = external_url(project, database_url)
    if ext is not None:
        return database.parse_url(ext[0], db.name), ext[1]
    service = project.services[db.service]
    try:
        backend, _ = choose_backend(service, project)
        ep = backend.endpoint(project, service)
    except ServiceError as exc:
        return None, str(exc)
    if ep is None:
        return None, f"service {service.name} is not running"
    return database_target(project, {service.name: ep}), f"service {service.name} ({ep.backend})"


@contextlib.contextmanager
def service_lock(project: Project, database_url: str | None, command: str,
                 reporter: Reporter | None = None, wait: bool = True,
                 external: bool = True) -> Iterator[None]:
    """The database lock, taken before devenv touches the database's service: another
    checkout's ``up`` must not recreate (or ``down`` stop) the container a refresh-db of
    this one is building in. Only when the service runs now (nothing to protect
    otherwise); ``external=False`` skips a server that ``DATABASE_URL`` names (``down``
    never touches it). The commands take :func:`database_lock` again once the service is
    up: within one process that is a no-op."""
    target = None
    if project.database is not None and (
            external or external_url(project, database_url) is None):
        with contextlib.suppress(DevenvError):
            target, _ = current_target(project, database_url)
    with contextlib.ExitStack() as held:
        if target is not None:
            with contextlib.suppress(DatabaseError):  # not answering: nothing to protect
                held.enter_context(database_lock(target, project.root, command, reporter,
                                                 wait))
        yield


def open_database(project: Project, reporter: Reporter, database_url: str | None,
                  held: contextlib.ExitStack | None = None, command: str = "snapshot",
                  wait: bool = True) -> tuple[database.Target, dumpfiles.ServiceExec | None]:
    """Start the database's service (or check the external one); where it is, and how to
    run commands with the service's own tools (a pg_dump as new as the server). With
    ``held``, also take the database lock (other checkouts share these databases) for as
    long as ``held`` lasts."""
    assert project.database is not None
    service = project.database.service
    endpoints = start_services(project, [service], reporter, database_url)
    target = database_target(project, endpoints, database_url)
    assert target is not None
    if held is not None:
        held.enter_context(database_lock(target, project.root, command, reporter, wait=wait))
    ep = endpoints.get(service)
    if ep is None or ep.backend not in BACKENDS:
        return target, None  # someone else's server: only local tools
    backend = BACKENDS[ep.backend]()
    where = (f"in container {project.name}-{service}" if ep.backend == "docker"
             else f"with the {ep.backend} server's own binaries")
    return target, dumpfiles.ServiceExec(
        where, functools.partial(backend.exec, project, project.services[service]))


def candidates(service: ServiceSpec) -> list[tuple[Backend, str]]:
    """The backends that may hold ``service`` here, with why: its ``backend:`` when that is
    available, else (``auto``) every available one, docker first. For commands that act
    on what exists (down, logs), not only on what ``up`` would choose."""

    names = [service.backend] if service.backend in BACKENDS else (
        ["docker", "native"] if service.backend == "auto" else [])
    out: list[tuple[Backend, str]] = []
    for name in names:
        backend = BACKENDS[name]()
        ok, why = backend.available()
        if ok:
            out.append((backend, why))
    return out


def locate(project: Project, service: ServiceSpec) -> Backend | None:
    """The backend that has something of ``service`` (a container, a data folder)."""
    for backend, _why in candidates(service):
        if backend.status(project, service).state != "missing":
            return backend
    return None
