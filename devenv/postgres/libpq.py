"""devenv's own connections through libpq (psycopg), for what :mod:`devenv.postgres.pgwire` does not
speak: a client certificate's password, CRLs, GSSAPI, ``target_session_attrs``... A
connection given such a parameter goes here rather than losing it (issue 17: a parameter
silently dropped is the bug). Same surface as :class:`pgwire.Connection` (``execute``
returning rows already read, ``transaction``, ``close``) and the same errors
(:class:`pgwire.OperationalError`, :class:`pgwire.QueryError` with the SQLSTATE), and
values read back as pgwire reads them: integers, floats and booleans as Python values,
everything else as PostgreSQL's text.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from devenv.postgres import pgwire

# pgwire's typed OIDs (int2/4/8, oid, xid, float4/8, bool) keep psycopg's loaders.
_TYPED = {20, 21, 23, 26, 28, 700, 701, 16}


class Connection:
    """One autocommit session over libpq. Thread-safe: one statement at a time."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._lock = threading.RLock()

    @property
    def closed(self) -> bool:
        return bool(self._conn.closed)

    def execute(self, query: str, params: Sequence[Any] | None = None) -> pgwire.Result:
        import psycopg

        with self._lock:
            try:
                cur = self._conn.execute(query, params, prepare=False)
                rows: list[tuple[Any, ...]] = []
                command = ""
                while True:  # several statements: the last one's rows, as pgwire does
                    rows = [tuple(r) for r in cur.fetchall()] if cur.description else []
                    command = cur.statusmessage or ""
                    if not cur.nextset():
                        break
                return pgwire.Result(rows, command)
            except psycopg.OperationalError as exc:
                if self._conn.closed or exc.sqlstate is None:
                    raise pgwire.OperationalError(_message(exc), exc.sqlstate or "") from None
                raise pgwire.QueryError(_message(exc), exc.sqlstate or "") from None
            except psycopg.Error as exc:
                diag = getattr(exc, "diag", None)
                raise pgwire.QueryError(_message(exc), exc.sqlstate or "",
                                        getattr(diag, "message_detail", None) or "") from None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            self.execute("BEGIN")
            try:
                yield
            except BaseException:
                if not self.closed:
                    with suppress(pgwire.Error):
                        self.execute("ROLLBACK")
                raise
            self.execute("COMMIT")

    def close(self) -> None:
        with suppress(Exception):
            self._conn.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _message(exc: Exception) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    return str(primary or str(exc).strip())


def connect(conninfo: Mapping[str, str], *, timeout: float = 10,
            application_name: str = "devenv") -> Connection:
    """A libpq session with every parameter of ``conninfo`` (libpq keywords)."""
    try:
        import psycopg
        from psycopg.types.string import TextLoader
    except ImportError:  # pragma: no cover - psycopg is a dependency
        raise pgwire.OperationalError(
            "this connection needs libpq (psycopg) for its parameters "
            f"({', '.join(sorted(conninfo))}), and psycopg cannot be imported") from None
    params = {"application_name": application_name, **conninfo}
    params.setdefault("connect_timeout", str(max(1, int(timeout))))
    try:
        conn = psycopg.connect(psycopg.conninfo.make_conninfo("", **params), autocommit=True)
    except psycopg.Error as exc:
        raise pgwire.OperationalError(_message(exc), exc.sqlstate or "") from None
    for info in psycopg.postgres.types:
        for oid in (info.oid, info.array_oid):
            if oid and oid not in _TYPED:
                conn.adapters.register_loader(oid, TextLoader)
    return Connection(conn)
