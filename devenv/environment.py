"""Bringing up what the steps need, and running them against a database.

The commands (`run`, `up`, `refresh-db`, `ci-setup`) are thin layers over
:func:`start_services` and :func:`build`.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from devenv import database, fingerprint, graph, logtail
from devenv.errors import ConfigError, ImageUnavailable, ServiceError
from devenv.events import (
    Action,
    Decision,
    Message,
    PhaseFinished,
    PhaseStarted,
    Reporter,
    RunResult,
)
from devenv.schema import Location, Project, ServiceSpec, StepSpec
from devenv.services import BACKENDS, Backend, Endpoint
from devenv.services.support import is_postgres
from devenv.state import NO_DATABASE, StateStore

if TYPE_CHECKING:
    from devenv import runner


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
    from devenv import jsonfile

    record = jsonfile.read(_fallback_file(project)).get(service.name)
    if not isinstance(record, dict) or record.get("image") != service.image:
        return None
    try:
        from devenv.services.docker import connect

        connect(timeout=5).images.get(service.image)
    except Exception:
        return str(record.get("reason", "its image could not be pulled"))
    _forget_fallback(project, service)
    return None


def _remember_fallback(project: Project, service: ServiceSpec, reason: str) -> None:
    from devenv import jsonfile
    from devenv.lock import ensure_state_dir

    ensure_state_dir(project.state_dir)
    with jsonfile.update(_fallback_file(project), indent=1) as data:
        data[service.name] = {"backend": "native", "image": service.image, "reason": reason}


def _forget_fallback(project: Project, service: ServiceSpec) -> None:
    from devenv import jsonfile

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
    wanted = graph.reachable(names, lambda n: project.services[n].needs)
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

    walk = graph.Frontier(names, lambda n: project.services[n].needs)
    waiting = set(names)
    failure: BaseException | None = None
    running: set[str] = set()
    while waiting or running:
        if failure is None:
            for name in walk.ready(waiting):
                waiting.discard(name)
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
        walk.done(name)
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


def service_prefix(name: str) -> str:
    """The variable prefix of service ``name``: ``redis`` -> ``REDIS``, ``mail-catcher``
    -> ``MAIL_CATCHER`` (a leading digit gets a ``_``)."""
    prefix = re.sub(r"[^A-Za-z0-9]", "_", name).upper()
    return f"_{prefix}" if prefix[:1].isdigit() else prefix


def service_variables(project: Project, target: database.Target | None = None,
                      stand_in: bool = False) -> dict[str, str]:
    """Each service's address for steps and processes: NAME_HOST, NAME_PORT (its first
    port), NAME_PORT_<container port> when it has several, NAME_URL from its ``url:``.

    The ports are the ones the service publishes since its last start (.devenv/ports.json,
    written by every backend's ``up``); the database service's are ``target``'s (it may
    be a server someone else runs). A service never started has none; with ``stand_in``
    (checking ${X} before anything starts, as `up` does) its container ports stand in.
    """
    from devenv.services import ports as portlib
    from devenv.services.docker import port_specs

    store = portlib.PortStore(project.state_dir)
    out: dict[str, str] = {}
    for service in project.services.values():
        specs = port_specs(project, service)
        is_db = project.database is not None and project.database.service == service.name
        host = portlib.HOST
        found: dict[int, int] = {}
        for spec in specs:
            port = store.get(service.name, spec.container)
            if port is not None:
                found[spec.container] = port
        if is_db and target is not None and specs:
            host = target.host
            found[specs[0].container] = target.port
        if stand_in:
            for spec in specs:
                found.setdefault(spec.container, spec.host or spec.container)
        if not found or specs[0].container not in found:
            continue
        prefix = service_prefix(service.name)
        values = {"host": host, "port": str(found[specs[0].container])}
        values |= {f"port_{c}": str(p) for c, p in found.items()}
        out[f"{prefix}_HOST"] = host
        out[f"{prefix}_PORT"] = values["port"]
        if len(specs) > 1:
            out |= {f"{prefix}_PORT_{c}": str(p) for c, p in found.items()}
        if service.url:
            # the loader checked the names; a port not published yet stays as written
            out[f"{prefix}_URL"] = _fill(service.url, values)
    return out


def service_variable_names(project: Project) -> set[str]:
    """Every name :func:`service_variables` gives once all services have started."""
    return {n for s in project.services.values() for n in _names_of(project, s)}


def _names_of(project: Project, service: ServiceSpec) -> set[str]:
    from devenv.services.docker import port_specs

    specs = port_specs(project, service)
    if not specs:
        return set()
    prefix = service_prefix(service.name)
    out = {f"{prefix}_HOST", f"{prefix}_PORT"}
    if len(specs) > 1:
        out |= {f"{prefix}_PORT_{p.container}" for p in specs}
    if service.url:
        out.add(f"{prefix}_URL")
    return out


def with_service_hint(project: Project, exc: ConfigError, owner: str) -> ConfigError:
    """``exc`` (an undefined ``${X}``) saying how to get X when it is a service's address
    that is not known because the service has not started."""
    m = re.match(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\} is not defined", exc.message)
    if m is None:
        return exc
    for service in project.services.values():
        if m.group(1) in _names_of(project, service):
            return type(exc)(
                f"${{{m.group(1)}}} is the address of service {service.name}, known once it "
                f"has started: add {service.name} to needs: of {owner}", exc.file, exc.line,
                exc.path)
    return exc


def _fill(template: str, values: Mapping[str, str]) -> str:
    return re.sub(r"\$\{([^}]*)\}", lambda m: values.get(m.group(1), m.group(0)), template)


def step_environment(project: Project, target: database.Target | None, dbname: str | None,
                     extra: Mapping[str, str] | None = None, *,
                     stand_in: bool = False) -> dict[str, str]:
    """The environment every step and process starts from (before its own ``env:``)."""
    env = dict(os.environ)
    # Steps find the tools installed beside devenv (flask, django-admin) without an
    # activated virtualenv.
    bindir = str(Path(sys.executable).parent)
    if bindir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["DEVENV_PROJECT"] = project.name
    env["DEVENV_ROOT"] = str(project.root)
    # before the database's variables: a service named "database" must not shadow them
    env.update(service_variables(project, target, stand_in))
    if target is not None:
        # The target holds the service's entries already (database.parse_url); the file
        # itself would override the PG* variables below, the database name among them.
        env.pop("PGSERVICE", None)
        env.update(target.env(dbname))
    if extra:
        env.update(extra)
    return env


def with_search_path(env: Mapping[str, str], search_path: Sequence[str]) -> dict[str, str]:
    """``env`` with ``search_path`` added to ``PGOPTIONS`` (libpq reads it): a step's or
    process's ``search_path:``. Applied before their own ``env:``, which may override it."""
    out = dict(env)
    if search_path:
        opts = f"-c search_path={','.join(search_path)}"
        out["PGOPTIONS"] = (out.get("PGOPTIONS", "") + " " + opts).strip()
    return out


def prepare_steps(project: Project, names: Sequence[str], base: Mapping[str, str],
                  ) -> dict[str, runner.Prepared]:
    """Expand every step that will run before any runs: an undefined ``${X}`` stops the
    run before it changes anything."""
    from devenv import runner
    from devenv.envvars import layered

    out = {}
    file = project.file.name

    def project_line(key: str) -> Location:
        return Location(file, project.env_lines.get(key, 1))

    for name in names:
        step = project.steps[name]
        step_base = with_search_path(base, step.search_path)

        def step_line(key: str, step: StepSpec = step) -> Location:
            return Location(step.loc.file, step.key_lines.get(f"env.{key}", step.loc.line))

        try:
            env = layered(step_base, (project.env, project_line, "env"),
                          (step.env, step_line, f"steps.{name}.env"))
            env["DEVENV_STEP"] = name
            out[name] = runner.prepare(project, step, env)
        except ConfigError as exc:
            raise with_service_hint(project, exc, f"steps.{name}") from None
    return out


@dataclass(frozen=True)
class BuildResult:
    result: RunResult
    decisions: Sequence[Decision]
    key: str


def database_key(target: database.Target | None, dbname: str | None) -> str | None:
    if target is None or dbname is None:
        return NO_DATABASE
    return database.identity(target, dbname)


def build(
    project: Project,
    reporter: Reporter,
    target: database.Target | None,
    *,
    dbname: str | None = None,
    targets: Sequence[str] = (),
    only: bool = False,
    force: bool = False,
    profile: str = "local",
    jobs: int | None = None,
    keep_going: bool = False,
    create: bool = True,
    carried: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
) -> BuildResult:
    """Plan and run the steps against database ``dbname`` (default: the project's); step
    logs go to ``log_dir`` (default ``.devenv/logs``)."""
    held = contextlib.ExitStack()
    if target is not None and project.database is not None:
        from devenv.lock import database_lock

        # Another checkout of the project (a git worktree) shares this server's databases.
        held.enter_context(database_lock(target, project.root, "steps", reporter))
    with held:
        return _build(project, reporter, target, dbname=dbname, targets=targets, only=only,
                      force=force, profile=profile, jobs=jobs, keep_going=keep_going,
                      create=create, carried=carried, log_dir=log_dir)


def _build(project: Project, reporter: Reporter, target: database.Target | None, *,
           dbname: str | None, targets: Sequence[str], only: bool, force: bool, profile: str,
           jobs: int | None, keep_going: bool, create: bool,
           carried: Mapping[str, str] | None, log_dir: Path | None) -> BuildResult:
    from devenv import planner, runner

    store = StateStore(project.state_dir)
    dbname = dbname or (target.dbname if target else None)
    if target is not None and dbname is not None and project.database is not None and create:
        from devenv import snapshots

        # A refresh killed mid-swap can leave the working database refusing connections;
        # the caller holds the project lock, so no swap is running now.
        for name in snapshots.allow_connections(target, [dbname]):
            reporter.emit(Message(f"{name} was left refusing connections by an interrupted "
                                  "swap or snapshot save; opened it again", "warn"))
        reporter.emit(PhaseStarted("database", f"database {dbname}"))
        created = database.ensure(target, dbname, project.database.schemas)
        reporter.emit(PhaseFinished("database", f"database {dbname} "
                                    + ("created" if created else "exists")))
    key = database_key(target, dbname) or NO_DATABASE
    label = target.redacted(dbname) if target else None
    fps = fingerprint.compute(project)
    decisions = planner.decide(project, store.steps(key), targets=targets, only=only,
                               force=force, profile=profile, fingerprints=fps)
    carried = dict(carried or {})
    decisions = [Decision(d.step, Action.SKIP, f"carried: {carried[d.step]}", d.fingerprint)
                 if d.step in carried and d.action is Action.RUN else d for d in decisions]
    to_run = [d.step for d in decisions if d.action is Action.RUN]
    base = step_environment(project, target, dbname)
    prepared = prepare_steps(project, to_run, base)
    if not to_run:
        reporter.emit(Message("everything is up to date: no step needs to run", "ok"))

    def ok(name: str, duration: float) -> None:
        store.record_success(key, label or "no database", name, fps[name], duration)

    def failed(name: str) -> None:
        store.record_failure(key, label or "no database", name)

    options = runner.RunOptions(jobs=jobs or os.cpu_count() or 2, keep_going=keep_going,
                                log_dir=log_dir or project.state_dir / "logs")
    with store.batched():
        result = runner.run(project, decisions, prepared, reporter, options, ok, failed,
                            database=label)
    if result.ok and carried:
        # The migrations that carried these steps' data along ran: the data is what the
        # steps would make on this code, so their records say so now.
        for name in carried:
            store.record_success(key, label or "no database", name, fps[name], 0.0)
        store.flush()
    if not result.ok and not result.interrupted:
        for line in diagnose(project, target, dbname, result):
            reporter.emit(Message(line, "error"))
    return BuildResult(result, decisions, key)


_DISK_FULL = ("No space left on device", "could not extend file", "disk full")
_GONE = ("server closed the connection unexpectedly", "Connection refused",
         "terminating connection due to administrator command", "connection to server at",
         "the database system is shutting down", "could not connect to server")


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


def is_disk_full(text: str) -> bool:
    """Whether a server's or a step's message says the database's disk is full."""
    return any(p in text for p in _DISK_FULL)


def disk_full_advice(project: Project, then: str = "then run again") -> str:
    where = f"service {project.database.service}" if project.database else "the server"
    return (f"the database server ran out of disk space ({where}): free space on its "
            f"volume (devenv snapshot gc drops old snapshots), {then}")


def diagnose(project: Project, target: database.Target | None, dbname: str | None,
             result: RunResult) -> list[str]:
    """Causes behind failed steps that are not the step's own fault: the database's disk
    is full, or the database went away during the run. Each line names cause and fix."""
    tails = [logtail.tail(r.log, 60) for r in result.results
             if r.status.value == "failed" and r.log is not None]
    if any(p in t for t in tails for p in _GONE):
        # The server may have died of the cause (a full disk makes PostgreSQL stop): the
        # client only saw the connection drop, the server's own log says why.
        tails.append(_service_log_tail(project))
    out: list[str] = []
    if any(is_disk_full(t) for t in tails):
        out.append(disk_full_advice(project))
    if target is not None and any(p in t for t in tails for p in _GONE):
        try:
            with database.connect(target, "postgres", timeout=3) as conn:
                conn.execute("SELECT 1")
        except database.DatabaseError as exc:
            out.append(f"the database went away during the run ({exc}); `devenv status` "
                       "shows the service, `devenv up` starts it again")
        else:
            out.append("the database connection was cut during the run (the server answers "
                       "again now; it may have restarted): run again")
    return out


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
