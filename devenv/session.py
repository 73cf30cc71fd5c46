"""One command's runtime session, resolved once in the CLI and passed down (as tox's
``State``): the project, the profile, the reporter, where the database lives, and which
backend runs each service. Nothing below re-derives these facts.

Where the database lives is decided here, once: a URL given with ``--database-url`` or
``DATABASE_URL`` makes the database service :class:`ExternalBackend` (checked, never
started); otherwise its ``backend:``, or docker, then the local server binaries.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from devenv import graph
from devenv.errors import DevenvError, ImageUnavailable, ServiceError, first_line
from devenv.events import Message, PhaseFinished, PhaseStarted, Reporter
from devenv.lock import database_lock
from devenv.postgres import dumpfiles
from devenv.postgres.database import DatabaseError, Target
from devenv.schema import Project
from devenv.services import BACKENDS, Backend, Endpoint, launch
from devenv.services.external import ExternalBackend


def external_url(project: Project, database_url: str | None,
                 environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """The URL of a database someone else runs, and where it came from."""
    if project.database is None:
        return None
    if database_url:
        return database_url, "--database-url"
    env_url = (os.environ if environ is None else environ).get("DATABASE_URL")
    if env_url:
        return env_url, "DATABASE_URL is set"
    return None


@dataclass
class Session:
    """What one devenv command works with. ``database_url``: ``--database-url``."""

    project: Project
    reporter: Reporter
    profile: str = "local"
    database_url: str | None = None
    external: ExternalBackend | None = field(init=False)
    _backends: dict[str, tuple[Backend, str] | ServiceError] = field(
        default_factory=dict, init=False, repr=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        ext = external_url(self.project, self.database_url)
        self.external = ExternalBackend(*ext) if ext is not None else None

    def with_reporter(self, reporter: Reporter) -> Session:
        """The same session reporting elsewhere (a phase with its own output)."""
        other = Session(self.project, reporter, self.profile, self.database_url)
        other._backends = self._backends
        return other

    # ------------------------------------------------------------------ backends

    def is_database(self, service: str) -> bool:
        return self.project.database is not None and self.project.database.service == service

    def backend(self, service: str) -> tuple[Backend, str]:
        """The backend that runs ``service`` and why, chosen once per session (raises
        :class:`ServiceError` when none can)."""
        if self.external is not None and self.is_database(service):
            return self.external, self.external.why
        with self._guard:
            got = self._backends.get(service)
            if got is None:
                try:
                    got = launch.choose_backend(self.project.services[service], self.project)
                except ServiceError as exc:
                    got = exc
                self._backends[service] = got
        if isinstance(got, ServiceError):
            raise got
        return got

    def _switched(self, service: str, backend: Backend, why: str) -> None:
        with self._guard:
            self._backends[service] = (backend, why)

    # ------------------------------------------------------------------ services

    def start(self, names: Sequence[str]) -> dict[str, Endpoint]:
        """See :meth:`_start`; what :meth:`current_target` found before is forgotten."""
        try:
            return self._start(names)
        finally:
            self.__dict__.pop("_current", None)

    def _start(self, names: Sequence[str]) -> dict[str, Endpoint]:
        """Start ``names`` and the services they need (a database someone else runs is
        only checked) and wait for health: a service starts once those it needs are
        ready, the others in parallel. The first failure stops the start of the rest."""
        project = self.project
        names = launch.with_needed(project, names)
        # every backend chosen before anything starts: a machine without Docker hears of
        # all the services it cannot run at once, not of one after the database started
        failed: dict[str, ServiceError] = {}
        for name in names:
            try:
                self.backend(name)
            except ServiceError as exc:
                failed[name] = exc
        if failed:
            raise launch.no_backend(project, failed)
        endpoints: dict[str, Endpoint] = {}
        walk = graph.Frontier(names, lambda n: project.services[n].needs)
        waiting = set(names)
        if len(names) > 1:
            endpoints = self._up_now(walk, waiting)
            names = [n for n in names if n not in endpoints]
        if len(names) <= 1:
            for name in names:
                endpoints[name] = self._start_one(name)
            return endpoints
        results: queue.Queue[tuple[str, Endpoint | BaseException]] = queue.Queue()

        def start(name: str) -> None:
            try:
                results.put((name, self._start_one(name)))
            except BaseException as exc:
                results.put((name, exc))

        failure: BaseException | None = None
        running: set[str] = set()
        while waiting or running:
            if failure is None:
                for name in walk.ready(waiting):
                    waiting.discard(name)
                    running.add(name)
                    # daemon threads: Ctrl-C (or SIGTERM) stops `up` at once, not after
                    # the slowest service's wait; the containers stay as they are, like a
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
            walk.done(name)
        if failure is not None:
            raise failure
        return endpoints

    def _up_now(self, walk: graph.Frontier, waiting: set[str]) -> dict[str, Endpoint]:
        """The services (of ``waiting``, in ``walk``'s order) that already run as defined
        and are ready now, checked one after another: on a daily `up` that is all of
        them, and a thread each would cost more than the checks (their starts wait for
        the interpreter's lock). Those found are done in ``walk`` and leave ``waiting``;
        the others, and those needing them, go through the full start."""
        project, reporter = self.project, self.reporter
        found: dict[str, Endpoint] = {}
        tried: set[str] = set()
        while batch := [n for n in walk.ready(waiting) if n not in tried]:
            for name in batch:
                tried.add(name)
                backend, _why = self.backend(name)
                t0 = time.monotonic()
                try:
                    endpoint = backend.up_now(project, project.services[name])
                except (DevenvError, OSError):
                    endpoint = None  # the full start says what is wrong
                if endpoint is None:
                    continue
                reporter.emit(PhaseStarted(name, f"starting {name} ({backend.name})"))
                reporter.emit(PhaseFinished(name, f"{name} is healthy ({backend.name})",
                                            duration=time.monotonic() - t0))
                found[name] = endpoint
                waiting.discard(name)
                walk.done(name)
        return found

    def _start_one(self, name: str) -> Endpoint:
        """Start one service (or check the external database) and wait until it is ready."""
        project, reporter = self.project, self.reporter
        service = project.services[name]
        backend, _why = self.backend(name)
        if isinstance(backend, ExternalBackend):
            started = f"checking {backend.target(project).redacted()} ({backend.why})"
            healthy, failed = (f"{name}: external database answers",
                               f"{name}: external database does not answer")
        else:
            started = f"starting {name} ({backend.name})"
            healthy, failed = "", f"{name} did not become healthy"
        reporter.emit(PhaseStarted(name, started))
        t0 = time.monotonic()
        try:
            if service.ready_timeout is not None:
                endpoint = backend.up(project, service, reporter, timeout=service.ready_timeout)
            else:
                endpoint = backend.up(project, service, reporter)
        except ImageUnavailable as exc:
            # backend: auto on a machine with Docker but no registry (or offline): the
            # local server binaries can still run a PostgreSQL service.
            native = BACKENDS["native"]() if service.backend == "auto" else None
            if native is None or not native.available()[0]:
                reporter.emit(PhaseFinished(name, f"{name} did not start", ok=False,
                                            duration=time.monotonic() - t0))
                raise
            reporter.emit(PhaseFinished(name, f"{name}: no image, so not in docker",
                                        ok=False, duration=time.monotonic() - t0))
            reporter.emit(Message(f"{exc}; using the local PostgreSQL binaries instead "
                                  "(backend: native)", "warn"))
            launch.remember_fallback(project, service,
                                     f"image {service.image} could not be pulled")
            self._switched(name, native, "native: its image could not be pulled")
            reporter.emit(PhaseStarted(name, f"starting {name} (native)"))
            t0 = time.monotonic()
            endpoint = native.up(project, service, reporter)
            backend = native  # the one that runs it now, for the line below
        except ServiceError:
            reporter.emit(PhaseFinished(name, failed, ok=False,
                                        duration=time.monotonic() - t0))
            raise
        reporter.emit(PhaseFinished(name, healthy or f"{name} is healthy ({backend.name})",
                                    duration=time.monotonic() - t0))
        return endpoint

    def needed_services(self, steps: Sequence[str] | None = None) -> list[str]:
        return launch.needed_services(self.project, steps, self.profile)

    # ------------------------------------------------------------------ the database

    def target(self, endpoints: Mapping[str, Endpoint]) -> Target | None:
        """Where the project's database is, once its service is up."""
        db = self.project.database
        if db is None:
            return None
        if self.external is not None:
            return self.external.target(self.project)
        ep = endpoints.get(db.service)
        if ep is None:
            return None
        return launch.target_at(self.project, ep)

    @functools.cached_property
    def _current(self) -> tuple[Target | None, str]:
        db = self.project.database
        if db is None:
            return None, "no database: section in steps.yaml"
        if self.external is not None:
            return self.external.target(self.project), self.external.why
        service = self.project.services[db.service]
        try:
            backend, _ = self.backend(db.service)
        except ServiceError as exc:
            return None, str(exc)
        try:
            ep = backend.endpoint(self.project, service)
        except (DevenvError, OSError) as exc:  # the engine or the server's folder
            return None, f"service {service.name}: {first_line(exc)}"
        if ep is None:
            return None, f"service {service.name} is not running"
        return launch.target_at(self.project, ep), f"service {service.name} ({ep.backend})"

    def current_target(self) -> tuple[Target | None, str]:
        """The database target if its service runs now (nothing is started), and a note.
        Looked up once per session, again after :meth:`start`."""
        return self._current

    def service_log_tail(self, lines: int = 80) -> str:
        """The last lines of the database service's own log ("" when it cannot be read)."""
        if self.project.database is None:
            return ""
        service = self.project.services[self.project.database.service]
        try:
            backend, _ = self.backend(service.name)
            return "\n".join(list(backend.logs(self.project, service, follow=False,
                                               tail=lines)))
        except Exception:  # diagnosis must never hide the failure it explains
            return ""

    @contextlib.contextmanager
    def service_lock(self, command: str, wait: bool = True,
                     external: bool = True) -> Iterator[None]:
        """The database lock, taken before devenv touches the database's service: another
        checkout's ``up`` must not recreate (or ``down`` stop) the container a refresh-db
        of this one is building in. Only when the service runs now (nothing to protect
        otherwise); ``external=False`` skips a server that ``DATABASE_URL`` names
        (``down`` never touches it). The commands take :func:`database_lock` again once
        the service is up: within one process that is a no-op."""
        target = None
        if self.project.database is not None and (external or self.external is None):
            with contextlib.suppress(DevenvError):
                target, _ = self.current_target()
        with contextlib.ExitStack() as held:
            if target is not None:
                with contextlib.suppress(DatabaseError):  # not answering: nothing to protect
                    held.enter_context(database_lock(target, self.project.root, command,
                                                     self.reporter, wait))
            yield

    def open_database(self, held: contextlib.ExitStack | None = None,
                      command: str = "snapshot", wait: bool = True,
                      ) -> tuple[Target, dumpfiles.ServiceExec | None]:
        """Start the database's service (or check the external one); where it is, and how
        to run commands with the service's own tools (a pg_dump as new as the server).
        With ``held``, also take the database lock (other checkouts share these
        databases) for as long as ``held`` lasts."""
        project = self.project
        assert project.database is not None
        service = project.database.service
        endpoints = self.start([service])
        target = self.target(endpoints)
        assert target is not None
        if held is not None:
            held.enter_context(database_lock(target, project.root, command, self.reporter,
                                             wait=wait))
        return target, self.tools()

    def tools(self) -> dumpfiles.ServiceExec | None:
        """How to run the database service's own tools (pg_dump, pg_restore as new as the
        server) beside it, or None for someone else's server (only local tools). The
        service must be running."""
        project = self.project
        if self.external is not None or project.database is None:
            return None
        service = project.database.service
        backend, _ = self.backend(service)
        where = (f"in container {project.name}-{service}" if backend.name == "docker"
                 else f"with the {backend.name} server's own binaries")
        return dumpfiles.ServiceExec(
            where, functools.partial(backend.exec, project, project.services[service]))

