"""What the checks share: the loaded project, the backends, the database, the apps.

Checks run at the same time in threads; each fact here is computed once, by the first
check that asks for it, while the others asking wait for that result (a failure is kept
and raised again to each of them). Nothing here starts, creates or changes anything.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from devenv import building, fingerprint, loader, planner
from devenv.doctor import apps
from devenv.envvars import expand
from devenv.errors import ConfigError, ServiceError, first_line
from devenv.events import Action, RecordingReporter
from devenv.postgres import database, libpq, siblings
from devenv.schema import Project, StepSpec
from devenv.services.docker import connect
from devenv.session import Session
from devenv.state import NO_DATABASE, StateStore

if TYPE_CHECKING:
    from devenv.doctor.apps import App, Introspection
    from devenv.events import Decision
    from devenv.fingerprint import Fingerprint
    from devenv.postgres.siblings import DbInfo
    from devenv.services import Backend, Endpoint, ServiceState

T = TypeVar("T")

# A stand-in database for expanding ${...} when the real one is not known (as `up` does
# before its services run): only the names of the variables matter then. Port 1 refuses
# at once, so an app looked at meanwhile fails fast instead of finding some other server.
STAND_IN = database.Target("127.0.0.1", 1, "user", "password", "db")
CONNECT_TIMEOUT = 3.0
STATEMENT_TIMEOUT_MS = 5000


@dataclass(frozen=True)
class BackendChoice:
    """The backend that runs a service here and why, or why none can."""

    backend: Backend | None
    why: str
    error: str | None = None


@dataclass(frozen=True)
class TargetInfo:
    """Where the project's database is (``None`` when unknown now) and how we know."""

    target: database.Target | None
    note: str
    external: bool = False


@dataclass(frozen=True)
class ServerInfo:
    """What one connection to the server says about the project's database."""

    error: str | None = None
    version: str = ""
    exists: bool = False
    allows_connections: bool = True
    identity: str | None = None
    size: int = 0
    data_directory: str | None = None
    schemas: frozenset[str] | None = None
    schema_error: str | None = None


@dataclass(frozen=True)
class DockerInfo:
    client: Any
    version: str | None
    error: str | None
    root_dir: str | None = None


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


@contextlib.contextmanager
def _statement_timeout(conn: libpq.Connection) -> Iterator[None]:
    """Doctor's queries give up after STATEMENT_TIMEOUT_MS. The maintenance connection is
    the process's, kept and shared (``--fix`` then creates, clones and swaps databases on
    it, and the database lock waits on it): the setting is put back after the block."""
    conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
    try:
        yield
    finally:
        with contextlib.suppress(Exception):  # a connection that broke is dropped anyway
            conn.execute("RESET statement_timeout")


@dataclass
class Context:
    """The facts of one doctor run (``file``: the steps.yaml, or ``None`` to look upwards).
    Doctor's own session: a broken steps.yaml is a finding here, not an error."""

    file: Path | None = None
    profile: str = "local"
    database_url: str | None = None
    _values: dict[str, Any] = field(default_factory=dict, repr=False)
    _locks: dict[str, threading.Lock] = field(default_factory=dict, repr=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def memo(self, key: str, fn: Callable[[], T]) -> T:
        """``fn()`` computed once per run, whichever thread asks first."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._values:
                try:
                    self._values[key] = fn()
                except Exception as exc:
                    self._values[key] = _Raised(exc)
            value = self._values[key]
        if isinstance(value, _Raised):
            raise value.exc
        return value  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ configuration

    def project(self) -> Project:
        """The loaded project; raises the loader's :class:`ConfigError`."""
        return self.memo("project", lambda: loader.load(self.file))

    def config_error(self) -> ConfigError | None:
        try:
            self.project()
        except ConfigError as exc:
            return exc
        return None

    # ------------------------------------------------------------------ services

    def session(self) -> Session:
        """The runtime session doctor checks (its reporter records; doctor prints its own
        findings)."""
        return self.memo("session", lambda: Session(self.project(), RecordingReporter(),
                                                    self.profile, self.database_url))

    def external(self) -> tuple[str, str] | None:
        """The database someone else runs (``DATABASE_URL``), and where it came from."""
        ext = self.session().external
        return (ext.url, ext.why) if ext is not None else None

    def is_external(self, service: str) -> bool:
        db = self.project().database
        return db is not None and db.service == service and self.external() is not None

    def backend(self, name: str) -> BackendChoice:
        """The session's backend for service ``name``, its refusal kept as a finding."""
        try:
            backend, why = self.session().backend(name)
        except ServiceError as exc:
            return BackendChoice(None, "", str(exc))
        return BackendChoice(backend, why)

    def endpoint(self, name: str) -> Endpoint | None:
        """Where service ``name`` answers now, if it runs (raises what the backend raises)."""
        choice = self.backend(name)
        if choice.backend is None:
            return None
        backend = choice.backend
        project = self.project()
        return self.memo(f"endpoint:{name}",
                         lambda: backend.endpoint(project, project.services[name]))

    def status(self, name: str) -> ServiceState | None:
        choice = self.backend(name)
        if choice.backend is None:
            return None
        backend = choice.backend
        project = self.project()
        return self.memo(f"status:{name}",
                         lambda: backend.status(project, project.services[name]))

    def docker(self) -> DockerInfo:
        return self.memo("docker", _docker_info)

    # ------------------------------------------------------------------ the database

    def target(self) -> TargetInfo:
        return self.memo("target", self._target)

    def _target(self) -> TargetInfo:
        target, note = self.session().current_target()
        return TargetInfo(target, note, external=self.session().external is not None)

    def server(self) -> ServerInfo:
        return self.memo("server", self._server)

    def _server(self) -> ServerInfo:
        info = self.target()
        target = info.target
        if target is None:
            return ServerInfo(error=info.note)
        db = target.dbname
        try:
            with database.connect(target, "postgres", timeout=CONNECT_TIMEOUT) as conn, \
                    _statement_timeout(conn):
                row = conn.execute(
                    "SELECT current_setting('server_version'), d.datallowconn, "
                    "(SELECT system_identifier FROM pg_control_system()), d.oid, "
                    "pg_database_size(d.oid) "
                    "FROM (SELECT 1) one LEFT JOIN pg_database d ON d.datname = %s",
                    (db,)).fetchone()
                assert row is not None
                data_dir = None
                try:
                    got = conn.execute("SELECT current_setting('data_directory')").fetchone()
                    data_dir = str(got[0]) if got else None
                except Exception:
                    pass  # only superusers (or pg_read_all_settings) may read it
        except database.DatabaseError as exc:
            return ServerInfo(error=str(exc))
        version, allow, sysid, oid, size = row
        exists = oid is not None
        schemas: frozenset[str] | None = None
        schema_error = None
        if exists and allow:
            try:
                with database.connect(target, db, timeout=CONNECT_TIMEOUT) as conn:
                    rows = conn.execute("SELECT nspname FROM pg_namespace").fetchall()
                    schemas = frozenset(str(r[0]) for r in rows)
            except database.DatabaseError as exc:
                schema_error = str(exc)
        return ServerInfo(
            version=str(version), exists=exists, allows_connections=bool(allow) if exists
            else True, identity=f"pg:{sysid}:{oid}" if exists else None,
            size=int(size or 0), data_directory=data_dir, schemas=schemas,
            schema_error=schema_error)

    def related(self) -> list[DbInfo]:
        """The databases named after the project's (``db__build``, snapshots...)."""

        def get() -> list[DbInfo]:
            target = self.target().target
            if target is None or self.server().error:
                return []
            return siblings.related(target, target.dbname, sizes=True)

        return self.memo("related", get)

    def live_columns(self) -> dict[tuple[str, str], dict[str, tuple[str, bool]]]:
        """(schema, table) -> column -> (type as PostgreSQL formats it, NOT NULL)."""

        def get() -> dict[tuple[str, str], dict[str, tuple[str, bool]]]:
            target = self.target().target
            server = self.server()
            if target is None or server.error or not server.exists:
                return {}
            out: dict[tuple[str, str], dict[str, tuple[str, bool]]] = {}
            with database.connect(target, timeout=CONNECT_TIMEOUT) as conn:
                conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
                rows = conn.execute(
                    "SELECT n.nspname, c.relname, a.attname, "
                    "format_type(a.atttypid, a.atttypmod), a.attnotnull "
                    "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE a.attnum > 0 AND NOT a.attisdropped "
                    "AND c.relkind IN ('r', 'p', 'v', 'm', 'f') "
                    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                    "AND n.nspname NOT LIKE 'pg_toast%%' ORDER BY a.attnum").fetchall()
            for schema, table, col, typ, notnull in rows:
                out.setdefault((str(schema), str(table)), {})[str(col)] = (str(typ),
                                                                          bool(notnull))
            return out

        return self.memo("live_columns", get)

    # ------------------------------------------------------------------ steps

    def fingerprints(self) -> dict[str, Fingerprint]:
        return self.memo("fingerprints", lambda: fingerprint.compute(self.project()))

    def recorded(self) -> dict[str, dict[str, Any]] | None:
        """The records of the project's database, ``None`` when it cannot be told."""

        def get() -> dict[str, dict[str, Any]] | None:
            project = self.project()
            store = StateStore(project.state_dir)
            if project.database is None:
                return store.steps(NO_DATABASE)
            server = self.server()
            if server.error:
                return None
            return store.steps(server.identity) if server.identity else {}

        return self.memo("recorded", get)

    def decisions(self) -> list[Decision] | None:
        """What `up` would run and skip now, ``None`` when the database cannot be told."""

        def get() -> list[Decision] | None:
            recorded = self.recorded()
            if recorded is None:
                return None
            return planner.decide(self.project(), recorded, profile=self.profile,
                                  fingerprints=self.fingerprints())

        return self.memo("decisions", get)

    def would_run(self) -> set[str]:
        return {d.step for d in self.decisions() or [] if d.action is Action.RUN}

    # ------------------------------------------------------------------ environments

    def base_env(self) -> dict[str, str]:
        """What every step and process starts from (with the real database if known)."""

        def get() -> dict[str, str]:
            project = self.project()
            target = self.target().target if project.database is not None else None
            return building.step_environment(project, target or STAND_IN,
                                                target.dbname if target else None)

        return dict(self.memo("base_env", get))

    def project_env(self) -> dict[str, str]:
        """``base_env`` plus the top-level ``env:``; an undefined ``${X}`` stays as is."""
        return dict(self.memo("project_env",
                              lambda: lenient(self.base_env(), self.project().env)))

    def step_env(self, step: StepSpec) -> dict[str, str]:
        env = lenient(building.with_search_path(self.project_env(), step.search_path), step.env)
        env["DEVENV_STEP"] = step.name
        return env

    def process_env(self, name: str) -> dict[str, str]:
        spec = self.project().processes[name]
        env = lenient(building.with_search_path(self.project_env(), spec.search_path), spec.env)
        env["DEVENV_PROCESS"] = name
        return env

    # ------------------------------------------------------------------ the apps

    def apps(self) -> list[App]:
        return self.memo("apps", lambda: apps.discover(self))

    def introspection(self) -> dict[str, Introspection]:
        """Each app's models and migration state (the apps' own interpreters, in parallel)."""
        return self.memo("introspection", lambda: apps.introspect_all(self, self.apps()))


def lenient(base: Mapping[str, str], values: Mapping[str, str]) -> dict[str, str]:
    """``base`` plus ``values`` expanded like ``env:`` is; what cannot be expanded stays as
    written (the environment check reports it)."""
    env = dict(base)
    for k, v in values.items():
        try:
            env[k] = expand(v, env)
        except ConfigError:
            env[k] = v
    return env


def _docker_info() -> DockerInfo:
    try:
        # the engine devenv itself uses: DOCKER_HOST, else the current docker context

        client = connect(timeout=3)
        version = client.version()
    except Exception as exc:
        return DockerInfo(None, None, first_line(exc))
    root = None
    with contextlib.suppress(Exception):
        root = str(client.info().get("DockerRootDir") or "") or None
    return DockerInfo(client, str(version.get("Version", "?")), None, root)


def lock_holder(state_dir: Path) -> str | None:
    """Who holds the project's lock now (a running devenv), or ``None``."""
    import fcntl
    import json

    path = state_dir / "lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                info = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                return "another devenv"
            return f"pid {info.get('pid', '?')} ({info.get('command', '?')})"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
