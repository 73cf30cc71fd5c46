"""Talking to the project's PostgreSQL: targets, identity, creation. devenv's own catalog
work goes through :mod:`devenv.pgwire` (psycopg's import alone costs more than a warm
refresh). Names are always quoted as identifiers (``pgwire.ident``), values bound as
parameters; nothing is pasted into SQL."""

from __future__ import annotations

import atexit
import contextlib
import threading
import urllib.parse
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from devenv.errors import EXIT_SERVICE, DevenvError

if TYPE_CHECKING:
    from devenv import pgwire


DUPLICATE_DATABASE = "42P04"  # SQLSTATE


class DatabaseError(DevenvError):
    """The database could not be reached or changed."""


class Unreachable(DatabaseError):
    """No connection to the server: exit code 3 like a service that is not up, not 1."""

    exit_code = EXIT_SERVICE


@dataclass(frozen=True)
class Target:
    """Where the project's database lives."""

    host: str
    port: int
    user: str
    password: str
    dbname: str

    def with_db(self, dbname: str) -> Target:
        return replace(self, dbname=dbname)

    def url(self, dbname: str | None = None) -> str:
        user = urllib.parse.quote(self.user, safe="")
        pw = urllib.parse.quote(self.password, safe="")
        auth = f"{user}:{pw}@" if self.password else f"{user}@"
        return f"postgresql://{auth}{self.host}:{self.port}/{dbname or self.dbname}"

    def redacted(self, dbname: str | None = None) -> str:
        """The URL with the password masked, for anything a user or a log sees."""
        auth = f"{self.user}:***@" if self.password else f"{self.user}@"
        return f"postgresql://{auth}{self.host}:{self.port}/{dbname or self.dbname}"

    def env(self, dbname: str | None = None) -> dict[str, str]:
        """``DATABASE_URL`` and the libpq variables for steps and processes."""
        db = dbname or self.dbname
        return {
            "DATABASE_URL": self.url(db),
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": db,
        }


def parse_url(url: str, default_db: str | None = None) -> Target:
    """A ``postgresql://`` URL as a :class:`Target`; its database name wins over the default."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql") and not parts.scheme.startswith(
            "postgresql+"):
        raise DatabaseError(f"not a PostgreSQL URL: {redact_url(url)} "
                            "(expected postgresql://USER:PASSWORD@HOST:PORT/DBNAME)")
    try:
        port = parts.port or 5432
    except ValueError:
        raise DatabaseError(f"invalid port in database URL {redact_url(url)}") from None
    dbname = urllib.parse.unquote(parts.path.lstrip("/")) or default_db or "postgres"
    return Target(
        host=parts.hostname or "127.0.0.1",
        port=port,
        user=urllib.parse.unquote(parts.username or "postgres"),
        password=urllib.parse.unquote(parts.password or ""),
        dbname=dbname,
    )


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "")
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


_MAINTENANCE: dict[str, pgwire.Connection] = {}
_MAINTENANCE_LOCK = threading.Lock()


def _open(target: Target, dbname: str, timeout: float) -> pgwire.Connection:
    from devenv import pgwire

    try:
        return pgwire.connect(target.host, target.port, target.user, target.password, dbname,
                              timeout=max(1.0, timeout), application_name="devenv")
    except pgwire.OperationalError as exc:
        raise Unreachable(f"cannot connect to {target.redacted(dbname)}: {exc}") from None


@contextmanager
def connect(target: Target, dbname: str | None = None, *, timeout: float = 5,
            ) -> Iterator[pgwire.Connection]:
    """An autocommit connection; errors become :class:`DatabaseError` with a redacted URL.

    Connections to the maintenance database (``postgres``), which every catalog operation
    uses, are kept for the life of the process: a connection costs a password exchange
    (SCRAM) each time, and a refresh makes a dozen such operations.
    """
    from devenv import pgwire

    db = dbname or target.dbname
    if db != "postgres":
        conn = _open(target, db, timeout)
        try:
            yield conn
        finally:
            conn.close()
        return
    key = target.url("postgres")
    with _MAINTENANCE_LOCK:
        kept = _MAINTENANCE.get(key)
        if kept is not None:
            try:
                kept.execute("SELECT 1")  # a restarted server leaves a dead connection
            except pgwire.Error:
                kept.close()
                kept = None
        conn = kept if kept is not None else _open(target, db, timeout)
        _MAINTENANCE[key] = conn
    try:
        yield conn
    except pgwire.OperationalError:
        # the server went away or restarted: the next caller gets a new connection
        with _MAINTENANCE_LOCK:
            if _MAINTENANCE.get(key) is conn:
                del _MAINTENANCE[key]
        conn.close()
        raise


def close_all() -> None:
    """Close the kept maintenance connections (a stopped server must not find them)."""
    with _MAINTENANCE_LOCK:
        conns = list(_MAINTENANCE.values())
        _MAINTENANCE.clear()
    for conn in conns:
        with contextlib.suppress(Exception):
            conn.close()


atexit.register(close_all)


def exists(target: Target, dbname: str) -> bool:
    with connect(target, "postgres") as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        return row is not None


def identity(target: Target, dbname: str) -> str | None:
    """``pg:<system identifier>:<database oid>``, or ``None`` if the database is missing."""
    with connect(target, "postgres") as conn:
        row = conn.execute(
            "SELECT (SELECT system_identifier FROM pg_control_system()), "
            "(SELECT oid FROM pg_database WHERE datname = %s)", (dbname,)).fetchone()
    if row is None or row[1] is None:
        return None
    return f"pg:{row[0]}:{row[1]}"


def identities(target: Target) -> tuple[str, set[str]]:
    """The cluster's identity prefix (``pg:<system identifier>:``) and the identity of
    every database it has now (see :func:`identity`)."""
    with connect(target, "postgres") as conn:
        row = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
        oids = conn.execute("SELECT oid FROM pg_database").fetchall()
    prefix = f"pg:{row[0] if row else '?'}:"
    return prefix, {f"{prefix}{r[0]}" for r in oids}


def create(target: Target, dbname: str, schemas: Iterable[str], template: str | None = None,
           ) -> None:
    """Create ``dbname`` (optionally from ``template``) and its ``schemas``."""
    from devenv.pgwire import ident

    with connect(target, "postgres") as conn:
        if template:
            conn.execute(f"CREATE DATABASE {ident(dbname)} TEMPLATE {ident(template)}")
        else:
            conn.execute(f"CREATE DATABASE {ident(dbname)}")
    ensure_schemas(target, dbname, schemas)


def ensure_schemas(target: Target, dbname: str, schemas: Iterable[str]) -> list[str]:
    """Create the missing ``schemas``; returns those it created."""
    from devenv.pgwire import ident

    created = []
    with connect(target, dbname) as conn:
        have = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace").fetchall()}
        for s in schemas:
            if s not in have:
                conn.execute(f"CREATE SCHEMA {ident(s)}")
                created.append(s)
    return created


def ensure(target: Target, dbname: str, schemas: Iterable[str]) -> bool:
    """Create the database and its schemas where missing; True if the database was new."""
    from devenv import pgwire

    if exists(target, dbname):
        ensure_schemas(target, dbname, schemas)
        return False
    try:
        create(target, dbname, schemas)
    except pgwire.QueryError as exc:
        if exc.sqlstate != DUPLICATE_DATABASE:
            raise
        ensure_schemas(target, dbname, schemas)
        return False
    return True


def drop(target: Target, dbname: str) -> None:
    """Drop ``dbname`` if it exists, ending its sessions first."""
    from devenv.pgwire import ident

    with connect(target, "postgres") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {ident(dbname)} WITH (FORCE)")
