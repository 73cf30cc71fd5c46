"""Talking to the project's PostgreSQL: targets, identity, creation. devenv's own catalog
work goes through :mod:`devenv.postgres.libpq` (libpq itself, without psycopg's import cost), with
every connection parameter the user gave. Names are always quoted as identifiers
(``libpq.ident``), values bound as parameters; nothing is pasted into SQL."""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from devenv.errors import EXIT_SERVICE, DevenvError
from devenv.postgres import libpq
from devenv.postgres.libpq import ident

DUPLICATE_DATABASE = "42P04"  # SQLSTATE


class DatabaseError(DevenvError):
    """The database could not be reached or changed."""


# libpq's connection keywords and the environment variable each one reads
# (https://www.postgresql.org/docs/current/libpq-connect.html, libpq-envars.html).
KEYWORD_ENV: dict[str, str] = {
    "host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT", "dbname": "PGDATABASE",
    "user": "PGUSER", "password": "PGPASSWORD", "passfile": "PGPASSFILE",
    "channel_binding": "PGCHANNELBINDING", "connect_timeout": "PGCONNECT_TIMEOUT",
    "client_encoding": "PGCLIENTENCODING", "options": "PGOPTIONS",
    "application_name": "PGAPPNAME", "fallback_application_name": "",
    "keepalives": "", "keepalives_idle": "", "keepalives_interval": "",
    "keepalives_count": "", "tcp_user_timeout": "", "replication": "",
    "gssencmode": "PGGSSENCMODE", "sslmode": "PGSSLMODE", "requiressl": "PGREQUIRESSL",
    "sslcompression": "PGSSLCOMPRESSION", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
    "sslcertmode": "PGSSLCERTMODE", "sslpassword": "", "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL", "sslcrldir": "PGSSLCRLDIR", "sslsni": "PGSSLSNI",
    "requirepeer": "PGREQUIREPEER", "require_auth": "PGREQUIREAUTH",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION", "krbsrvname": "PGKRBSRVNAME",
    "gsslib": "PGGSSLIB", "gssdelegation": "PGGSSDELEGATION", "service": "PGSERVICE",
    "target_session_attrs": "PGTARGETSESSIONATTRS", "load_balance_hosts": "PGLOADBALANCEHOSTS",
}
# What a Target holds in its own fields; every other keyword travels in Target.params.
CORE = ("host", "port", "user", "password", "dbname")


class Unreachable(DatabaseError):
    """No connection to the server: exit code 3 like a service that is not up, not 1."""

    exit_code = EXIT_SERVICE


@dataclass(frozen=True)
class Target:
    """Where the project's database lives.

    ``params`` are the other libpq parameters the user gave (the URL's query, a service
    file's entries), in order; :meth:`conninfo` adds the ``PG*`` variables of the
    environment. They reach devenv's own connections, pg_dump/pg_restore and the steps
    unchanged: only the database name is devenv's to choose.
    """

    host: str
    port: int
    user: str
    password: str
    dbname: str
    params: tuple[tuple[str, str], ...] = ()

    def with_db(self, dbname: str) -> Target:
        return replace(self, dbname=dbname)

    def _netloc(self, password: str | None) -> str:
        user = urllib.parse.quote(self.user, safe="")
        auth = f"{user}:{password}@" if password else f"{user}@"
        host = self.host
        if ":" in host and not host.startswith("/"):
            host = f"[{host}]"  # IPv6
        elif "/" in host or "@" in host or "%" in host:
            host = urllib.parse.quote(host, safe="")  # a Unix socket folder
        return f"{auth}{host}:{self.port}"

    def _path_query(self, dbname: str | None, redact: bool) -> str:
        # Percent-encode the name: a space or '#' would end the URL's path.
        path = "/" + urllib.parse.quote(dbname or self.dbname, safe="")
        if not self.params:
            return path
        shown = [(k, "***" if redact and "password" in k else v) for k, v in self.params]
        return path + "?" + urllib.parse.urlencode(shown, quote_via=urllib.parse.quote)

    def url(self, dbname: str | None = None) -> str:
        pw = urllib.parse.quote(self.password, safe="")
        return f"postgresql://{self._netloc(pw)}{self._path_query(dbname, False)}"

    def redacted(self, dbname: str | None = None) -> str:
        """The URL with the password masked, for anything a user or a log sees."""
        return f"postgresql://{self._netloc('***' if self.password else None)}" \
            f"{self._path_query(dbname, True)}"

    def conninfo(self, dbname: str | None = None) -> dict[str, str]:
        """Every libpq parameter of a connection to ``dbname``: the environment's ``PG*``
        variables, then :attr:`params`, then the target's own fields (libpq's order:
        what is given explicitly wins). ``PGSERVICE`` is resolved by :func:`parse_url`
        for a URL the user gave. libpq itself still reads ``PGSERVICE`` for a keyword
        missing here (it has no way to say "no service"), so a service that sets, say,
        ``sslmode`` also applies to devenv's own connections to its own server; the
        steps and pg_dump/pg_restore do not get ``PGSERVICE``, only what it resolved to."""
        out: dict[str, str] = {}
        for key, var in KEYWORD_ENV.items():
            if var and key not in CORE and key != "service" and os.environ.get(var):
                out[key] = os.environ[var]
        out.update(self.params)
        out.update(host=self.host, port=str(self.port), user=self.user,
                   password=self.password, dbname=dbname or self.dbname)
        return out

    def env(self, dbname: str | None = None) -> dict[str, str]:
        """``DATABASE_URL`` and the libpq variables for steps and processes."""
        db = dbname or self.dbname
        out = {
            "DATABASE_URL": self.url(db),
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": db,
        }
        for key, value in self.params:
            var = KEYWORD_ENV.get(key)
            if var:
                out[var] = value
        return out


def _split_hostport(hostport: str, url: str) -> tuple[str, str]:
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        return host, rest.removeprefix(":")
    host, sep, port = hostport.rpartition(":")
    return (host, port) if sep else (hostport, "")


def parse_url(url: str, default_db: str | None = None, *, env_service: bool = True,
              ) -> Target:
    """A ``postgresql://`` URL as a :class:`Target`, keeping every libpq parameter of its
    query (``?sslmode=verify-full&sslrootcert=/ca.pem``, ``?host=/var/run/postgresql``) and
    of the service it names (``service=``, or ``PGSERVICE``). Its database name wins over
    the default. Precedence as in libpq: the URL, then the service file, then ``PG*``
    variables. ``env_service=False`` for a URL devenv wrote itself (:meth:`Target.url`),
    which a user's ``PGSERVICE`` must not change."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql") and not parts.scheme.startswith(
            "postgresql+"):
        raise DatabaseError(f"not a PostgreSQL URL: {redact_url(url)} "
                            "(expected postgresql://USER:PASSWORD@HOST:PORT/DBNAME)")
    userinfo, _, hostport = parts.netloc.rpartition("@")
    if "," in hostport:
        raise DatabaseError(f"several hosts in one URL ({redact_url(url)}) are not supported: "
                            "name one server")
    given: dict[str, str] = {}
    if userinfo:
        user, has_pw, pw = userinfo.partition(":")
        if user:
            given["user"] = urllib.parse.unquote(user)
        if has_pw:
            given["password"] = urllib.parse.unquote(pw)
    host, port = _split_hostport(hostport, url)
    if host:
        given["host"] = urllib.parse.unquote(host)
    if port:
        given["port"] = port
    if parts.path.lstrip("/"):
        given["dbname"] = urllib.parse.unquote(parts.path.lstrip("/"))
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key not in KEYWORD_ENV:
            raise DatabaseError(f"unknown connection parameter '{key}' in database URL "
                                f"{redact_url(url)} (libpq would refuse it too)")
        given[key] = value
    service = given.pop("service", "") or (os.environ.get("PGSERVICE", "") if env_service
                                           else "")
    merged = {**(_service(service) if service else {}), **given}
    if "dbname" not in given and default_db:
        merged["dbname"] = default_db

    def core(key: str, default: str) -> str:
        return merged.get(key) or os.environ.get(KEYWORD_ENV[key], "") or default

    try:
        port_num = int(core("port", "5432"))
    except ValueError:
        raise DatabaseError(f"invalid port in database URL {redact_url(url)}") from None
    return Target(
        host=core("host", "127.0.0.1"),
        port=port_num,
        user=core("user", "postgres"),
        password=core("password", ""),
        dbname=core("dbname", "postgres"),
        params=tuple((k, v) for k, v in merged.items() if k not in CORE),
    )


def _service(name: str) -> dict[str, str]:
    """The entries of service ``name`` in the user's or the system's service file, as libpq
    reads them (``PGSERVICEFILE`` or ``~/.pg_service.conf`` first, then
    ``PGSYSCONFDIR/pg_service.conf``)."""
    files = [os.environ.get("PGSERVICEFILE") or str(Path.home() / ".pg_service.conf")]
    sysconf = os.environ.get("PGSYSCONFDIR")
    files += [f"{d}/pg_service.conf" for d in
              ([sysconf] if sysconf else ["/etc/postgresql-common", "/etc", "/usr/local/etc"])]
    for file in files:
        try:
            lines = Path(file).read_text().splitlines()
        except OSError:
            continue
        section: str | None = None
        found: dict[str, str] | None = None
        for number, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                if found is not None:
                    return found
                section = line.strip("[]")
                found = {} if section == name else None
            elif found is not None:
                key, eq, value = line.partition("=")
                key = key.strip()
                if not eq or key not in KEYWORD_ENV or key == "service":
                    raise DatabaseError(f"{file}:{number}: service '{name}': cannot read "
                                        f"'{line}' (expected a libpq parameter=value)")
                found[key] = value.strip()
        if found is not None:
            return found
    raise DatabaseError(f"definition of service '{name}' not found (looked in "
                        f"{', '.join(files)})")

def redact_url(url: str) -> str:
    """``url`` with any password (``user:PW@``, ``?password=``, ``?sslpassword=``) replaced
    by ``***``."""
    parts = urllib.parse.urlsplit(url)
    if "password" in parts.query:
        query = "&".join(
            f"{k}=***" if "password" in urllib.parse.unquote(k) else f"{k}{eq}{v}"
            for k, eq, v in (item.partition("=") for item in parts.query.split("&")))
        parts = parts._replace(query=query)
    if parts.password is None:
        return urllib.parse.urlunsplit(parts)
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "")
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


_MAINTENANCE: dict[str, libpq.Connection] = {}
_MAINTENANCE_LOCK = threading.Lock()


def _open(target: Target, dbname: str, timeout: float) -> libpq.Connection:
    try:
        return libpq.connect(target.conninfo(dbname), timeout=max(1.0, timeout))
    except libpq.OperationalError as exc:
        raise Unreachable(f"cannot connect to {target.redacted(dbname)}: {exc}") from None


@contextmanager
def connect(target: Target, dbname: str | None = None, *, timeout: float = 5,
            ) -> Iterator[libpq.Connection]:
    """An autocommit connection; errors become :class:`DatabaseError` with a redacted URL.

    Connections to the maintenance database (``postgres``), which every catalog operation
    uses, are kept for the life of the process: a connection costs a password exchange
    (SCRAM) each time, and a refresh makes a dozen such operations.
    """
    db = dbname or target.dbname
    if db != "postgres":
        conn = _open(target, db, timeout)
        try:
            yield conn
        finally:
            conn.close()
        return
    conn = maintenance(target, timeout=timeout)
    try:
        yield conn
    except libpq.OperationalError:
        # the server went away or restarted: the next caller gets a new connection
        with _MAINTENANCE_LOCK:
            key = target.url("postgres")
            if _MAINTENANCE.get(key) is conn:
                del _MAINTENANCE[key]
        conn.close()
        raise


def maintenance(target: Target, *, timeout: float = 5) -> libpq.Connection:
    """This process's connection to the maintenance database (``postgres``) of
    ``target``'s server, opened on first use and kept (see :func:`connect`). Threads share
    it, one statement at a time; the database lock holds its advisory lock on it too."""
    key = target.url("postgres")
    with _MAINTENANCE_LOCK:
        kept = _MAINTENANCE.get(key)
        if kept is not None and not kept.alive():  # a restarted server leaves a dead one
            kept.close()
            kept = None
        conn = kept if kept is not None else _open(target, "postgres", timeout)
        _MAINTENANCE[key] = conn
    return conn


def close_all() -> None:
    """Close the kept maintenance connections (a stopped server must not find them)."""
    with _MAINTENANCE_LOCK:
        conns = list(_MAINTENANCE.values())
        _MAINTENANCE.clear()
    for conn in conns:
        with contextlib.suppress(Exception):
            conn.close()


atexit.register(close_all)


@dataclass(frozen=True)
class Answer:
    """What one readiness attempt saw: the server answered a query, or why not."""

    ready: bool
    detail: str = ""
    fatal: bool = False  # waiting longer will not help (wrong password, unknown role)


# SQLSTATEs that waiting will not cure: wrong password, unknown role.
INVALID_PASSWORD = "28P01"
INVALID_AUTHORIZATION = "28000"


def answers(conninfo: Mapping[str, str], timeout: float = 2) -> Answer:
    """A real connection plus ``SELECT 1``: what readiness means for a PostgreSQL server.

    ``pg_isready`` answers "accepting connections" during the official image's init phase
    (a temporary server on a socket only, later restarted); a query is what the steps will
    do, so it is what readiness means (the services' probe and the test clusters' wait)."""
    try:
        with libpq.connect(conninfo, timeout=max(1.0, timeout),
                           application_name="devenv-ready") as conn:
            conn.execute("SELECT 1")
        return Answer(True)
    except libpq.OperationalError as exc:
        fatal = exc.sqlstate in (INVALID_PASSWORD, INVALID_AUTHORIZATION)
        return Answer(False, _last_line(exc), fatal)
    except libpq.Error as exc:
        return Answer(False, _last_line(exc))


def _last_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


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
    with connect(target, "postgres") as conn:
        if template:
            conn.execute(f"CREATE DATABASE {ident(dbname)} TEMPLATE {ident(template)}")
        else:
            conn.execute(f"CREATE DATABASE {ident(dbname)}")
    ensure_schemas(target, dbname, schemas)


def ensure_schemas(target: Target, dbname: str, schemas: Iterable[str]) -> list[str]:
    """Create the missing ``schemas``; returns those it created."""
    created: list[str] = []
    schemas = list(schemas)
    if not schemas:
        return created  # nothing to ask: no connection (a password exchange) to the database
    with connect(target, dbname) as conn:
        have = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace").fetchall()}
        for s in schemas:
            if s not in have:
                conn.execute(f"CREATE SCHEMA {ident(s)}")
                created.append(s)
    return created


def ensure(target: Target, dbname: str, schemas: Iterable[str]) -> bool:
    """Create the database and its schemas where missing; True if the database was new."""
    if exists(target, dbname):
        ensure_schemas(target, dbname, schemas)
        return False
    try:
        create(target, dbname, schemas)
    except libpq.QueryError as exc:
        if exc.sqlstate != DUPLICATE_DATABASE:
            raise
        ensure_schemas(target, dbname, schemas)
        return False
    return True


def drop(target: Target, dbname: str) -> None:
    """Drop ``dbname`` if it exists, ending its sessions first."""
    with connect(target, "postgres") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {ident(dbname)} WITH (FORCE)")
