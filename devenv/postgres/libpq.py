"""devenv's own PostgreSQL connections (create, clone, rename, drop and describe databases,
readiness, the database lock), through libpq itself: every connection parameter a user
gives (URL query, ``PG*`` variables, ``.pgpass``, ``PGSERVICE``, Unix sockets,
``sslrootcert``/``sslcert``/``sslkey``/``sslcrl``, ``target_session_attrs``, GSSAPI...)
is libpq's to apply, so none is dropped (issue 17).

Why a thin ctypes binding rather than psycopg: importing psycopg costs about 130 ms cold
(its Python layers, asyncio, importlib.metadata), more than a whole warm ``refresh-db``.
Loading libpq through ctypes costs a few milliseconds. The library is psycopg_binary's
bundled copy when that wheel is installed (found without importing psycopg), else the
system's ``libpq``; when neither loads, the same :class:`Connection` runs on psycopg
(a dependency), slower to import but the same libpq underneath. Steps, the typed kinds and
the tests use psycopg directly.

Statements: without parameters, the simple protocol (several statements allowed, the last
one's rows returned); with parameters (``%s`` placeholders, psycopg's style), bound
server-side as text, never pasted into SQL. Names and literals that cannot be parameters
(``ALTER DATABASE x RENAME TO y``) go through :func:`ident` and :func:`literal`. Values
read back as integers, floats and booleans for those types, text otherwise. Notices are
ignored. Ctrl-C during a statement cancels it on the server and closes the connection
(on the ctypes path; the psycopg fallback's statements block in C until they end).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import select
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol, Self

from devenv.errors import DevenvError

# Type OIDs read back as Python values; everything else stays text.
_INTS = {20, 21, 23, 26, 28}  # int8, int2, int4, oid, xid
_FLOATS = {700, 701}
_BOOL = 16

# libpq's enums (libpq-fe.h), stable since protocol 3.
_CONNECTION_BAD = 1
_POLLING_FAILED, _POLLING_READING, _POLLING_WRITING, _POLLING_OK = 0, 1, 2, 3
_EMPTY_QUERY, _COMMAND_OK, _TUPLES_OK = 0, 1, 2
_NONFATAL_ERROR = 6
_VERBOSE = 2  # PQERRORS_VERBOSE: connection errors then carry the server's SQLSTATE
_TX_STATUS = {0: "I", 1: "A", 2: "T", 3: "E"}
_IDLE = 0  # PQTRANS_IDLE
_DIAG_SQLSTATE, _DIAG_PRIMARY, _DIAG_DETAIL = ord("C"), ord("M"), ord("D")


class Error(DevenvError):
    """A PostgreSQL error: ``sqlstate`` is the server's code ("" for client-side errors)."""

    def __init__(self, message: str, sqlstate: str = "", detail: str = "") -> None:
        self.sqlstate = sqlstate
        self.detail = detail
        super().__init__(message)


class OperationalError(Error):
    """The connection could not be made, or broke."""


class QueryError(Error):
    """The server refused a statement."""


def ident(name: str) -> str:
    """``name`` quoted as an SQL identifier."""
    if "\x00" in name:
        raise ValueError("an identifier cannot contain NUL")
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """``value`` quoted as an SQL string literal (E'' form when it has backslashes, which
    reads the same whatever ``standard_conforming_strings`` is)."""
    if "\x00" in value:
        raise ValueError("a string literal cannot contain NUL")
    quoted = value.replace("'", "''")
    if "\\" in value:
        return "E'" + quoted.replace("\\", "\\\\") + "'"
    return "'" + quoted + "'"


def _placeholders(query: str) -> str:
    """``%s`` -> ``$1, $2...`` and ``%%`` -> ``%`` (psycopg's placeholder style)."""
    out: list[str] = []
    n = 0
    i = 0
    while i < len(query):
        ch = query[i]
        if ch == "%":
            nxt = query[i + 1:i + 2]
            if nxt == "s":
                n += 1
                out.append(f"${n}")
            elif nxt == "%":
                out.append("%")
            else:
                raise ValueError(f"only %s placeholders are supported: {query!r}")
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _text(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return b"t" if value else b"f"
    if isinstance(value, (int, float, str)):
        text = str(value)
        if "\x00" in text:  # libpq takes C strings: the value would be cut at the NUL
            raise ValueError("a query parameter cannot contain a NUL character")
        return text.encode()
    raise TypeError(f"cannot send a {type(value).__name__} as a query parameter")


def _convert(oid: int, raw: bytes | None) -> Any:
    if raw is None:
        return None
    text = raw.decode()
    if oid in _INTS:
        return int(text)
    if oid == _BOOL:
        return text == "t"
    if oid in _FLOATS:
        return float(text)
    return text


class Result:
    """The rows of one statement, already read."""

    def __init__(self, rows: list[tuple[Any, ...]], command: str) -> None:
        self._rows = rows
        self._pos = 0
        self.command = command  # "SELECT 3", "ALTER DATABASE"...

    @property
    def rowcount(self) -> int:
        last = self.command.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else -1

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._pos >= len(self._rows):
            return None
        self._pos += 1
        return self._rows[self._pos - 1]

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows = self._rows[self._pos:]
        self._pos = len(self._rows)
        return rows


class Connection(Protocol):
    """One autocommit session; thread-safe (one statement at a time)."""

    @property
    def closed(self) -> bool: ...

    @property
    def status(self) -> str:
        """The transaction status: I (idle), T (in a transaction), E (failed one)."""

    def execute(self, query: str, params: Sequence[Any] | None = None) -> Result: ...

    def transaction(self) -> AbstractContextManager[None]:
        """BEGIN ... COMMIT, or ROLLBACK when the block raises."""

    def close(self) -> None: ...

    def alive(self) -> bool:
        """Whether the session still answers (a restarted server leaves a dead one)."""

    def __enter__(self) -> Connection: ...

    def __exit__(self, *exc: object) -> None: ...


class _Session:
    """What both backends share: transactions and ``with``."""

    _lock: threading.RLock

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def execute(self, query: str, params: Sequence[Any] | None = None) -> Result:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def alive(self) -> bool:
        try:
            self.execute("SELECT 1")
            return True
        except Error:
            return False

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN ... COMMIT, or ROLLBACK when the block raises."""
        with self._lock:
            self.execute("BEGIN")
            try:
                yield
            except BaseException:
                if not self.closed:
                    with suppress(Error):
                        self.execute("ROLLBACK")
                raise
            self.execute("COMMIT")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- messages


_ATTEMPT = re.compile(r'^connection to server (?:at "(?P<host>[^"]*)"(?: \([^)]*\))?, '
                      r'port (?P<port>\d+)|on socket "(?P<sock>[^"]*)") failed: (?P<why>.*)$')
_SERVER = re.compile(r"^(?:FATAL|ERROR|PANIC):  (?:(?P<code>[0-9A-Z]{5}): )?(?P<msg>.*)$")


def _setting(conninfo: Mapping[str, str], key: str, var: str, default: str) -> str:
    return conninfo.get(key) or os.environ.get(var) or default


def connect_error(raw: str, conninfo: Mapping[str, str]) -> OperationalError:
    """libpq's (multi-line, one paragraph per address tried) connection error as one line:
    the server's own words when it refused us (with its SQLSTATE), else
    ``connection to server at HOST:PORT failed: WHY``, certificate problems named."""
    attempts: list[tuple[str, list[str]]] = []
    for line in raw.strip().splitlines():
        if _ATTEMPT.match(line) or not attempts:
            attempts.append((line, []))
        elif not line.lstrip().startswith("LOCATION:"):
            attempts[-1][1].append(line.strip())
    if not attempts:
        return OperationalError("connection failed (libpq gave no reason)")

    def refused(attempt: tuple[str, list[str]]) -> bool:
        return "Connection refused" in attempt[0]

    # localhost is ::1 and 127.0.0.1: the address that answered says more than the other
    head, more = next((a for a in reversed(attempts) if not refused(a)), attempts[-1])
    m = _ATTEMPT.match(head)
    why = m["why"] if m else head
    server = _SERVER.match(why)
    if server:  # the server refused us: its words, as psql shows them, and its SQLSTATE
        return OperationalError(" ".join([server["msg"], *more]), server["code"] or "")
    mode = _setting(conninfo, "sslmode", "PGSSLMODE", "prefer")
    if "certificate verify failed" in why:
        root = _setting(conninfo, "sslrootcert", "PGSSLROOTCERT",
                        str(Path.home() / ".postgresql" / "root.crt"))
        crl = _setting(conninfo, "sslcrl", "PGSSLCRL", "") or _setting(
            conninfo, "sslcrldir", "PGSSLCRLDIR", "")
        revoked = f", or is revoked by {crl}" if crl else ""  # libpq does not say which
        why = (f"the server's certificate is not signed by a CA in {root}{revoked} "
               f"({why.removeprefix('SSL error: ')}; sslmode={mode})")
    elif host := re.search(r'does not match host name "([^"]*)"', why):
        why = f'the server\'s certificate is not for host "{host[1]}" ({why}; sslmode={mode})'
    elif why.startswith("fe_sendauth: no password supplied"):
        why = ("the server asks for a password and none was given (in the URL, PGPASSWORD "
               "or ~/.pgpass)")
    text = why
    for extra in more:
        text += ("" if text.endswith((".", ":", "?")) else ".") + " " + extra
    if m and m["sock"]:
        return OperationalError(f'connection to server on socket "{m["sock"]}" failed: {text}')
    if m:
        return OperationalError(f"connection to server at {m['host']}:{m['port']} failed: "
                                f"{text}")
    return OperationalError(text)


# --------------------------------------------------------------------------- ctypes


def _candidates() -> list[str]:
    """Where libpq may be, best first: psycopg_binary's bundled copy (the one psycopg
    itself uses; located without importing psycopg), then the system's."""
    out: list[str] = []
    spec = importlib.util.find_spec("psycopg_binary")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        # auditwheel/delvewheel put it beside the package, delocate (macOS) inside it
        for pattern in (f"{folder}.libs/libpq*", f"{folder}/.dylibs/libpq*"):
            out += sorted(glob.glob(pattern))
    return [*out, "libpq.so.5", "libpq.5.dylib", "libpq.dll"]


class _Lib:
    """libpq's functions, with their C signatures."""

    def __init__(self, path: str) -> None:
        import ctypes  # stdlib, but ~5 ms: only when a connection is made

        c = ctypes
        lib = c.CDLL(path)
        p, s, i, u = c.c_void_p, c.c_char_p, c.c_int, c.c_uint
        sigs: dict[str, tuple[Any, list[Any]]] = {
            "PQconnectStartParams": (p, [c.POINTER(s), c.POINTER(s), i]),
            "PQconnectPoll": (i, [p]),
            "PQstatus": (i, [p]),
            "PQsocket": (i, [p]),
            "PQerrorMessage": (s, [p]),
            "PQsetErrorVerbosity": (i, [p, i]),
            "PQsetNoticeProcessor": (p, [p, p, p]),
            "PQsendQuery": (i, [p, s]),
            "PQsendQueryParams": (i, [p, s, i, p, c.POINTER(s), p, p, i]),
            "PQconsumeInput": (i, [p]),
            "PQisBusy": (i, [p]),
            "PQgetResult": (p, [p]),
            "PQresultStatus": (i, [p]),
            "PQresultErrorField": (s, [p, i]),
            "PQresultErrorMessage": (s, [p]),
            "PQntuples": (i, [p]),
            "PQnfields": (i, [p]),
            "PQftype": (u, [p, i]),
            "PQgetvalue": (s, [p, i, i]),
            "PQgetisnull": (i, [p, i, i]),
            "PQcmdStatus": (s, [p]),
            "PQclear": (None, [p]),
            "PQtransactionStatus": (i, [p]),
            "PQgetCancel": (p, [p]),
            "PQcancel": (i, [p, s, i]),
            "PQfreeCancel": (None, [p]),
            "PQfinish": (None, [p]),
        }
        for name, (restype, argtypes) in sigs.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
        self.c = c
        self.lib = lib
        self.path = path
        # libpq prints notices (a NOTICE of DROP ... IF EXISTS) to stderr by default
        self.quiet = c.CFUNCTYPE(None, c.c_void_p, c.c_char_p)(lambda _arg, _msg: None)


_LIB: _Lib | None = None
_LOADED = False  # looked for already (found or not)
_LOAD_LOCK = threading.Lock()


def _load() -> _Lib | None:
    """libpq through ctypes, or None when no copy loads (psycopg is used then)."""
    global _LIB, _LOADED
    with _LOAD_LOCK:
        if not _LOADED:
            _LIB = _find()
            _LOADED = True
        return _LIB


def _find() -> _Lib | None:
    for path in _candidates():
        try:
            return _Lib(path)
        except (OSError, AttributeError):
            continue  # missing, or too old to have a function devenv calls
    import ctypes.util  # imports subprocess: only when the usual names did not load

    found = ctypes.util.find_library("pq")
    if found:
        with suppress(OSError, AttributeError):
            return _Lib(found)
    return None


def _wait(fd: int, write: bool, deadline: float | None) -> bool:
    """Wait until ``fd`` is ready; False when ``deadline`` passed first. A Python-level
    wait, so Ctrl-C interrupts it (a blocking libpq call would not return to Python)."""
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    r, w, _ = select.select([] if write else [fd], [fd] if write else [], [], timeout)
    return bool(r or w)


class _CConnection(_Session):
    """One autocommit session over libpq through ctypes."""

    def __init__(self, lib: _Lib, pgconn: int) -> None:
        self._lib = lib
        self._pq = lib.lib
        self._conn: int | None = pgconn
        self._lock = threading.RLock()

    @property
    def closed(self) -> bool:
        return self._conn is None

    @property
    def status(self) -> str:
        with self._lock:  # close() on another thread frees the connection
            if self._conn is None:
                return "I"
            return _TX_STATUS.get(self._pq.PQtransactionStatus(self._conn), "?")

    def execute(self, query: str, params: Sequence[Any] | None = None) -> Result:
        """Run one statement (or several, without params); the last result's rows."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise OperationalError("the connection is closed")
            pq = self._pq
            try:
                if params is None:
                    sent = pq.PQsendQuery(conn, query.encode())
                else:
                    values = [_text(v) for v in params]
                    array = (self._lib.c.c_char_p * max(1, len(values)))(*values)
                    sent = pq.PQsendQueryParams(conn, _placeholders(query).encode(),
                                                len(values), None, array, None, None, 0)
                if not sent:
                    self._broken()
                return self._results(conn)
            except (KeyboardInterrupt, SystemExit):
                # Stop the statement rather than leave it running after devenv is gone.
                self._cancel(conn)
                self.close()
                raise

    def _results(self, conn: int) -> Result:
        pq = self._pq
        result = Result([], "")
        error: Error | None = None
        while True:
            while pq.PQisBusy(conn):
                _wait(pq.PQsocket(conn), False, None)
                if not pq.PQconsumeInput(conn):
                    self._broken()
            res = pq.PQgetResult(conn)
            if not res:
                break
            try:
                status = pq.PQresultStatus(res)
                if status in (_COMMAND_OK, _TUPLES_OK, _EMPTY_QUERY):
                    result = Result(self._rows(res) if status == _TUPLES_OK else [],
                                    (pq.PQcmdStatus(res) or b"").decode())
                elif status != _NONFATAL_ERROR and error is None:
                    error = self._error(res)
            finally:
                pq.PQclear(res)
        if pq.PQstatus(conn) == _CONNECTION_BAD:
            self.close()
            raise OperationalError(str(error) if error else "server closed the connection "
                                   "unexpectedly", error.sqlstate if error else "")
        if error is not None:
            raise error
        return result

    def _rows(self, res: int) -> list[tuple[Any, ...]]:
        pq = self._pq
        cols = range(pq.PQnfields(res))
        oids = [pq.PQftype(res, j) for j in cols]
        return [tuple(None if pq.PQgetisnull(res, r, j) else _convert(oids[j],
                                                                      pq.PQgetvalue(res, r, j))
                      for j in cols) for r in range(pq.PQntuples(res))]

    def _error(self, res: int) -> Error:
        pq = self._pq

        def field(code: int) -> str:
            raw = pq.PQresultErrorField(res, code)
            return raw.decode(errors="replace") if raw else ""

        message = field(_DIAG_PRIMARY) or " ".join(
            (pq.PQresultErrorMessage(res) or b"").decode(errors="replace").split())
        return QueryError(message or "unknown error", field(_DIAG_SQLSTATE),
                          field(_DIAG_DETAIL))

    def alive(self) -> bool:
        # An idle session has nothing to read: a server that restarted or went away has
        # sent its goodbye (or closed the socket), which makes it readable. Only then is a
        # round trip worth its time; devenv asks before each use of a kept connection,
        # dozens of times in one `up`.
        with self._lock:
            conn = self._conn
            if conn is None:
                return False
            if self._pq.PQtransactionStatus(conn) == _IDLE and \
                    not _wait(self._pq.PQsocket(conn), False, time.monotonic()):
                return True
        return super().alive()

    def _broken(self) -> None:
        conn = self._conn
        why = (self._pq.PQerrorMessage(conn) or b"").decode(errors="replace") if conn else ""
        self.close()
        raise OperationalError(" ".join(why.split()) or "server closed the connection "
                               "unexpectedly")

    def _cancel(self, conn: int) -> None:
        pq = self._pq
        cancel = pq.PQgetCancel(conn)
        if cancel:
            buf = self._lib.c.create_string_buffer(256)
            pq.PQcancel(cancel, buf, 256)
            pq.PQfreeCancel(cancel)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            self._pq.PQfinish(conn)



def _connect_c(lib: _Lib, params: Mapping[str, str], deadline: float) -> _CConnection:
    c, pq = lib.c, lib.lib
    keys = [k.encode() for k in params] + [None]
    values = [v.encode() for v in params.values()] + [None]
    # expand_dbname=0: a database name is a name, even one holding "=" (devenv passes the
    # user's URL already split into keywords, see database.Target.conninfo)
    conn = pq.PQconnectStartParams((c.c_char_p * len(keys))(*keys),
                                   (c.c_char_p * len(values))(*values), 0)
    if not conn:
        raise OperationalError("out of memory starting a PostgreSQL connection")
    try:
        pq.PQsetNoticeProcessor(conn, c.cast(lib.quiet, c.c_void_p), None)
        pq.PQsetErrorVerbosity(conn, _VERBOSE)
        state = _POLLING_WRITING
        while pq.PQstatus(conn) != _CONNECTION_BAD and state != _POLLING_FAILED:
            if state == _POLLING_OK:
                pq.PQsetErrorVerbosity(conn, 1)  # statements' errors: read from fields
                return _CConnection(lib, conn)
            fd = pq.PQsocket(conn)
            if fd >= 0 and not _wait(fd, state == _POLLING_WRITING, deadline):
                host = params.get("host", "")
                where = f"{host}:{params.get('port', '5432')}" if host else "the server"
                raise OperationalError(f"connection to server at {where} failed: timeout "
                                       "expired")
            state = pq.PQconnectPoll(conn)
        raise connect_error((pq.PQerrorMessage(conn) or b"").decode(errors="replace"),
                            params)
    except BaseException:
        pq.PQfinish(conn)
        raise


# --------------------------------------------------------------------------- psycopg


class _PsycopgConnection(_Session):
    """The same session on psycopg, for a machine where devenv finds no libpq to load."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._lock = threading.RLock()

    @property
    def closed(self) -> bool:
        return bool(self._conn.closed)

    @property
    def status(self) -> str:
        return _TX_STATUS.get(int(self._conn.info.transaction_status), "?")

    def execute(self, query: str, params: Sequence[Any] | None = None) -> Result:
        import psycopg

        with self._lock:
            if self.closed:
                raise OperationalError("the connection is closed")
            try:
                # raw text in, text out: the same values and placeholders as the C path
                values = None if params is None else [_text(v) for v in params]
                pgconn = self._conn.pgconn
                # PQexec/PQexecParams: the last statement's result, or the first error
                last = pgconn.exec_(query.encode()) if values is None else \
                    pgconn.exec_params(_placeholders(query).encode(), values)
            except psycopg.Error as exc:
                raise OperationalError(" ".join(str(exc).split())) from None
            if last.status in (_COMMAND_OK, _TUPLES_OK, _EMPTY_QUERY):
                rows = [tuple(None if last.get_value(r, j) is None
                              else _convert(last.ftype(j), last.get_value(r, j))
                              for j in range(last.nfields)) for r in range(last.ntuples)]
                return Result(rows if last.status == _TUPLES_OK else [],
                              (last.command_status or b"").decode())
            code = (last.error_field(_DIAG_SQLSTATE) or b"").decode()
            msg = (last.error_field(_DIAG_PRIMARY) or last.error_message or b"").decode()
            detail = (last.error_field(_DIAG_DETAIL) or b"").decode()
            if self._conn.pgconn.status == _CONNECTION_BAD:
                self._conn.close()
                raise OperationalError(" ".join(msg.split()) or "server closed the connection "
                                       "unexpectedly", code)
            raise QueryError(msg, code, detail)

    def close(self) -> None:
        with suppress(Exception):
            self._conn.close()



def _connect_psycopg(params: Mapping[str, str], timeout: float) -> _PsycopgConnection:
    import psycopg

    info = dict(params)
    info.setdefault("connect_timeout", str(max(2, int(timeout))))
    try:
        conn = psycopg.connect(psycopg.conninfo.make_conninfo("", **info), autocommit=True)
    except psycopg.Error as exc:
        # psycopg says "connection failed: " before each address it tried: the last one
        raise connect_error(str(exc).rsplit("connection failed: ", 1)[-1], params) from None
    return _PsycopgConnection(conn)


# --------------------------------------------------------------------------- connect


def connect(conninfo: Mapping[str, str], *, timeout: float = 10,
            application_name: str = "devenv") -> Connection:
    """A session with every libpq parameter of ``conninfo`` (keywords as libpq names them;
    what it leaves out, libpq takes from the ``PG*`` variables, the service file and
    ``.pgpass``, as for any libpq client). :class:`OperationalError` says why not, on one
    line. ``timeout``: seconds for the whole connection unless ``connect_timeout`` (the
    parameter or ``PGCONNECT_TIMEOUT``) says otherwise."""
    params = {"application_name": application_name, **conninfo}
    # devenv decodes what it reads as UTF-8, whatever the database's encoding
    params["client_encoding"] = "UTF8"
    given = _setting(params, "connect_timeout", "PGCONNECT_TIMEOUT", "").strip()
    if given.isdigit() and int(given) > 0:
        timeout = max(2.0, float(given))  # libpq's minimum is 2 s
    lib = _load()
    if lib is None:
        return _connect_psycopg(params, timeout)
    return _connect_c(lib, params, time.monotonic() + timeout)
