"""A small PostgreSQL client (frontend/backend protocol 3.0, standard library only) for
devenv's own catalog work: create, clone, rename, drop and describe databases.

Why not psycopg here: importing psycopg costs about 60 ms (libpq bindings, asyncio,
importlib.metadata), three times what a warm ``refresh-db`` spends on the database. The
statements devenv runs itself are a handful of short catalog commands, which need neither
COPY, nor binary types, nor pipelining. Steps, the typed kinds and the tests still use
psycopg.

Covered: TCP and Unix sockets; SSL like libpq's ``sslmode`` (default ``prefer``) with
``sslrootcert`` (``~/.postgresql/root.crt`` by default, ``system`` for the system's roots),
``sslcert``/``sslkey`` and libpq's rule that ``require`` checks the CA when a root
certificate is there; ``connect_timeout``, ``application_name``, ``options``; trust,
password, md5 and SCRAM-SHA-256 authentication; ``~/.pgpass`` (``passfile``) when no
password is given. The parameters come from :func:`connect`'s ``params`` (libpq keywords,
see :data:`HONOURED`; devenv.postgres.database sends any other parameter through libpq instead),
or, without them, from the ``PG*`` variables; the simple query protocol, and the extended
one when parameters are passed (``%s`` placeholders, bound server-side, never pasted into
SQL); cancelling the running statement when the caller is interrupted (Ctrl-C).
Names and literals that cannot be parameters (``ALTER DATABASE x RENAME TO y``) go
through :func:`ident` and :func:`literal`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import struct
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, NoReturn

from devenv.errors import DevenvError

PROTOCOL = 196608  # 3.0
_SSL_REQUEST = 80877103
_CANCEL_REQUEST = 80877102

# Type OIDs read back as Python values; everything else stays text.
_INTS = {20, 21, 23, 26, 28}
_FLOATS = {700, 701}
_BOOL = 16


class Error(DevenvError):
    """A PostgreSQL error: ``sqlstate`` is the server's code ("" for client-side errors)."""

    def __init__(self, message: str, sqlstate: str = "", detail: str = "") -> None:
        self.sqlstate = sqlstate
        self.detail = detail
        super().__init__(message)


class OperationalError(Error):
    """The connection could not be made, or broke."""


class QueryError(Error):
    """The server refused a statement (an ErrorResponse)."""


class Unsupported(OperationalError):
    """The server asks for something this client does not speak (an authentication method):
    libpq can still make the connection."""


# The libpq keywords :func:`connect` applies itself.
HONOURED = frozenset({"host", "port", "user", "password", "dbname", "sslmode", "sslrootcert",
                      "sslcert", "sslkey", "passfile", "connect_timeout", "application_name",
                      "options"})
_ENV = {"sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT",
        "sslkey": "PGSSLKEY", "passfile": "PGPASSFILE", "options": "PGOPTIONS"}


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
        return str(value).encode()
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


def _pgpass(host: str, port: int, dbname: str, user: str, passfile: str = "") -> str:
    """The password ``~/.pgpass`` (or ``passfile``) holds for this connection, or ""."""
    path = Path(passfile or Path.home() / ".pgpass")
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return ""
    # libpq matches a Unix socket connection as host "localhost"
    want = ("localhost" if host.startswith("/") else host, str(port), dbname, user)
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        fields: list[str] = []
        cur = ""
        escaped = False
        for ch in line:
            if escaped:
                cur += ch
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == ":" and len(fields) < 4:
                fields.append(cur)
                cur = ""
            else:
                cur += ch
        fields.append(cur)
        if len(fields) == 5 and all(f in ("*", w) for f, w in zip(fields[:4], want, strict=True)):
            return fields[4]
    return ""


class Connection:
    """One autocommit session. Thread-safe: one statement at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._file = sock.makefile("rb")
        self._lock = threading.RLock()
        self._key: tuple[int, int] | None = None
        self._addr: Any = None
        self.closed = False
        self.status = "I"  # transaction status from ReadyForQuery: I, T or E

    # ------------------------------------------------------------------ wire
    def _send(self, *messages: bytes) -> None:
        try:
            self._sock.sendall(b"".join(messages))
        except OSError as exc:
            self._broken(f"server closed the connection unexpectedly ({exc})")

    def _recv(self) -> tuple[bytes, bytes]:
        try:
            head = self._file.read(5)
            if len(head) < 5:
                self._broken("server closed the connection unexpectedly")
            kind, length = head[:1], struct.unpack("!i", head[1:])[0]
            body = self._file.read(length - 4) if length > 4 else b""
            if len(body) < length - 4:
                self._broken("server closed the connection unexpectedly")
        except OSError as exc:
            self._broken(f"server closed the connection unexpectedly ({exc})")
        return kind, body

    def _broken(self, why: str) -> NoReturn:
        self._close_socket()
        raise OperationalError(why)

    def _close_socket(self) -> None:
        self.closed = True
        try:
            self._file.close()
            self._sock.close()
        except OSError:
            pass

    @staticmethod
    def _msg(kind: bytes, body: bytes) -> bytes:
        return kind + struct.pack("!i", len(body) + 4) + body

    @staticmethod
    def _error(body: bytes, cls: type[Error] = QueryError) -> Error:
        fields: dict[str, str] = {}
        for part in body.split(b"\x00"):
            if part:
                fields[part[:1].decode()] = part[1:].decode(errors="replace")
        return cls(fields.get("M", "unknown error"), fields.get("C", ""), fields.get("D", ""))

    # ------------------------------------------------------------------ startup
    def _startup(self, user: str, password: str, dbname: str, host: str, port: int,
                 application_name: str, options: str = "", passfile: str = "") -> None:
        params = {"user": user, "database": dbname, "application_name": application_name,
                  "client_encoding": "UTF8"}
        if options:
            params["options"] = options
        body = struct.pack("!i", PROTOCOL) + b"".join(
            k.encode() + b"\x00" + v.encode() + b"\x00" for k, v in params.items()) + b"\x00"
        self._send(struct.pack("!i", len(body) + 4) + body)
        scram: _Scram | None = None
        while True:
            kind, body = self._recv()
            if kind == b"E":
                self._close_socket()
                raise self._error(body, OperationalError)
            if kind == b"R":
                code = struct.unpack("!i", body[:4])[0]
                if code == 0:
                    continue
                if code in (3, 5, 10) and not password:
                    password = _pgpass(host, port, dbname, user, passfile)
                    if not password:
                        self._close_socket()
                        raise OperationalError("the server asks for a password and none was "
                                               "given (in the URL, PGPASSWORD or ~/.pgpass)")
                if code == 3:
                    self._send(self._msg(b"p", password.encode() + b"\x00"))
                elif code == 5:
                    inner = hashlib.md5((password + user).encode()).hexdigest()
                    outer = hashlib.md5(inner.encode() + body[4:8]).hexdigest()
                    self._send(self._msg(b"p", b"md5" + outer.encode() + b"\x00"))
                elif code == 10:
                    mechanisms = body[4:].split(b"\x00")
                    if b"SCRAM-SHA-256" not in mechanisms:
                        self._close_socket()
                        raise Unsupported("the server offers no SASL mechanism devenv "
                                               f"speaks: {mechanisms}")
                    scram = _Scram(password)
                    first = scram.first()
                    self._send(self._msg(b"p", b"SCRAM-SHA-256\x00"
                                         + struct.pack("!i", len(first)) + first))
                elif code == 11 and scram is not None:
                    self._send(self._msg(b"p", scram.final(body[4:])))
                elif code == 12 and scram is not None:
                    if not scram.verify(body[4:]):
                        self._close_socket()
                        raise OperationalError("the server's SCRAM signature does not match")
                else:
                    self._close_socket()
                    raise Unsupported(f"authentication method {code} is not supported by "
                                      "devenv's client (it speaks trust, password, md5 and "
                                      "scram-sha-256)")
            elif kind == b"K":
                self._key = struct.unpack("!ii", body[:8])
            elif kind == b"Z":
                self.status = body[:1].decode()
                return
            # S (parameter status), N (notice): nothing to do

    # ------------------------------------------------------------------ queries
    def execute(self, query: str, params: Sequence[Any] | None = None) -> Result:
        """Run one statement (or several, without params); the last result's rows."""
        with self._lock:
            if self.closed:
                raise OperationalError("the connection is closed")
            if params is None:
                messages = [self._msg(b"Q", query.encode() + b"\x00")]
            else:
                values = [_text(p) for p in params]
                bind = b"\x00\x00" + struct.pack("!hh", 0, len(values)) + b"".join(
                    struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v
                    for v in values) + struct.pack("!h", 0)
                messages = [
                    self._msg(b"P", b"\x00" + _placeholders(query).encode() + b"\x00"
                              + struct.pack("!h", 0)),
                    self._msg(b"B", bind),
                    self._msg(b"D", b"P\x00"),
                    self._msg(b"E", b"\x00" + struct.pack("!i", 0)),
                    self._msg(b"S", b""),
                ]
            try:
                self._send(*messages)
                return self._results()
            except (KeyboardInterrupt, SystemExit):
                # Stop the statement rather than leave it running after devenv is gone.
                self._cancel()
                self._close_socket()
                raise

    def _results(self) -> Result:
        oids: list[int] = []
        rows: list[tuple[Any, ...]] = []
        result = Result([], "")
        error: Error | None = None
        while True:
            kind, body = self._recv()
            if kind == b"T":
                count = struct.unpack("!h", body[:2])[0]
                oids, pos, rows = [], 2, []
                for _ in range(count):
                    end = body.index(b"\x00", pos)
                    oids.append(struct.unpack("!i", body[end + 7:end + 11])[0])
                    pos = end + 19
            elif kind == b"D":
                count = struct.unpack("!h", body[:2])[0]
                pos = 2
                row: list[Any] = []
                for i in range(count):
                    size = struct.unpack("!i", body[pos:pos + 4])[0]
                    pos += 4
                    raw = None if size < 0 else body[pos:pos + size]
                    pos += max(size, 0)
                    row.append(_convert(oids[i] if i < len(oids) else 25, raw))
                rows.append(tuple(row))
            elif kind == b"C":
                result = Result(rows, body.rstrip(b"\x00").decode())
                oids, rows = [], []
            elif kind == b"E":
                error = self._error(body)
            elif kind == b"Z":
                self.status = body[:1].decode()
                if error is not None:
                    raise error
                return result
            # 1, 2, n (parse/bind complete, no data), I (empty), N, S, A: nothing to do

    def _cancel(self) -> None:
        if self._key is None or self._addr is None:
            return
        try:
            with socket.socket(self._sock.family, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(self._addr)
                s.sendall(struct.pack("!iiii", 16, _CANCEL_REQUEST, *self._key))
                s.recv(1)  # the server closes the socket when done
        except OSError:
            pass

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

    def close(self) -> None:
        if self.closed:
            return
        with suppress(OSError):
            self._sock.sendall(self._msg(b"X", b""))
        self._close_socket()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Scram:
    """SCRAM-SHA-256 (RFC 5802, RFC 7677) without channel binding."""

    def __init__(self, password: str) -> None:
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = f"n=,r={self.nonce}"
        self.auth_message = b""
        self.salted = b""

    def first(self) -> bytes:
        return ("n,," + self.first_bare).encode()

    def final(self, server_first: bytes) -> bytes:
        text = server_first.decode()
        attrs = dict(part.split("=", 1) for part in text.split(","))
        if not attrs.get("r", "").startswith(self.nonce):
            raise OperationalError("the server's SCRAM nonce does not extend devenv's")
        self.salted = hashlib.pbkdf2_hmac("sha256", self.password, base64.b64decode(attrs["s"]),
                                          int(attrs["i"]))
        client_key = hmac.new(self.salted, b"Client Key", "sha256").digest()
        stored = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={attrs['r']}"
        self.auth_message = f"{self.first_bare},{text},{without_proof}".encode()
        signature = hmac.new(stored, self.auth_message, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> bool:
        text = server_final.decode()
        if not text.startswith("v="):
            return False
        server_key = hmac.new(self.salted, b"Server Key", "sha256").digest()
        expected = hmac.new(server_key, self.auth_message, "sha256").digest()
        return hmac.compare_digest(base64.b64decode(text[2:]), expected)


def _ssl_file(given: str, default: str) -> str:
    """A certificate file libpq would use: the given path, or ``~/.postgresql/DEFAULT``."""
    if given:
        return given
    home = Path.home() / ".postgresql" / default
    return str(home)


def _wrap_ssl(sock: socket.socket, host: str, mode: str, opts: Mapping[str, str],
              where: str) -> socket.socket:
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    root = _ssl_file(opts.get("sslrootcert", ""), "root.crt")
    # libpq: "require" with a root certificate at hand checks the CA, like verify-ca.
    if mode == "require" and (root == "system" or os.path.exists(root)):
        mode = "verify-ca"
    if root == "system" and mode == "verify-ca":
        mode = "verify-full"  # libpq insists on the host name with the system's roots
    if mode in ("verify-ca", "verify-full"):
        if root == "system":
            ctx.load_default_certs()
        elif not os.path.exists(root):
            sock.close()
            raise OperationalError(
                f'connection to server at {where} failed: root certificate file "{root}" '
                f"does not exist; give one with sslrootcert (or use sslrootcert=system), or "
                f"a sslmode that does not check the server's certificate (sslmode={mode})")
        else:
            try:
                ctx.load_verify_locations(root)
            except (OSError, ssl.SSLError) as exc:
                sock.close()
                raise OperationalError(f"connection to server at {where} failed: cannot "
                                       f"read root certificate file {root}: {exc}") from None
        ctx.check_hostname = mode == "verify-full"
    else:  # libpq's require/prefer/allow: encrypted, certificate not checked
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    cert = _ssl_file(opts.get("sslcert", ""), "postgresql.crt")
    if os.path.exists(cert):  # libpq sends a client certificate only when its file exists
        key = _ssl_file(opts.get("sslkey", ""), "postgresql.key")
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise OperationalError(f"connection to server at {where} failed: cannot load "
                                   f"client certificate {cert} (key {key}): {exc}") from None
    try:
        return ctx.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        why = exc.verify_message or str(exc)
        if "mismatch" in why.lower() or "hostname" in why.lower():
            raise OperationalError(
                f"connection to server at {where} failed: the server's certificate is not "
                f"for host \"{host}\" ({why}; sslmode={mode})") from None
        raise OperationalError(
            f"connection to server at {where} failed: the server's certificate is not signed "
            f"by a CA in {root} ({why}; sslmode={mode})") from None
    except ssl.SSLError as exc:
        sock.close()
        raise OperationalError(f"connection to server at {where} failed: SSL error: "
                               f"{exc}") from None


def connect(host: str, port: int, user: str, password: str, dbname: str, *,
            timeout: float = 10, application_name: str = "devenv",
            params: Mapping[str, str] | None = None) -> Connection:
    """Open a session; :class:`OperationalError` says why not, in libpq's words where it
    can ("Connection refused", "password authentication failed for user ...").

    ``params``: libpq keywords (of :data:`HONOURED`; others are the caller's to refuse);
    without it, the ``PG*`` variables of the environment.
    """
    from_env = params is None
    opts = dict(params) if params is not None else {
        k: os.environ[v] for k, v in _ENV.items() if os.environ.get(v)}
    mode = opts.get("sslmode") or "prefer"
    application_name = opts.get("application_name") or application_name
    if opts.get("connect_timeout", "").strip().isdigit() and int(opts["connect_timeout"]) > 0:
        timeout = max(2.0, float(opts["connect_timeout"]))  # libpq's minimum is 2 s
    where = f"{host}:{port}"
    try:
        if host.startswith("/"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            addr: Any = os.path.join(host, f".s.PGSQL.{port}")
            sock.connect(addr)
            mode = "disable"  # libpq never asks for SSL over a Unix socket
        else:
            sock = socket.create_connection((host, port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            addr = sock.getpeername()
    except ConnectionRefusedError:
        raise OperationalError(f"connection to server at {where} failed: Connection refused. "
                               "Is the server running on that host and accepting TCP/IP "
                               "connections?") from None
    except TimeoutError:
        raise OperationalError(f"connection to server at {where} failed: timeout expired") \
            from None
    except OSError as exc:
        raise OperationalError(f"connection to server at {where} failed: "
                               f"{exc.strerror or exc}") from None
    try:
        if mode != "disable":
            sock.sendall(struct.pack("!ii", 8, _SSL_REQUEST))
            answer = sock.recv(1)
            if answer == b"S":
                sock = _wrap_ssl(sock, host, mode, opts, where)
            elif mode in ("require", "verify-ca", "verify-full"):
                sock.close()
                source = "PGSSLMODE" if from_env else "sslmode"
                raise OperationalError(f"server at {where} does not support SSL, but "
                                       f"{source}={mode} asks for it")
            elif answer != b"N":
                sock.close()
                raise OperationalError(f"connection to server at {where} failed: not a "
                                       "PostgreSQL server")
        conn = Connection(sock)
        conn._addr = addr
        conn._startup(user, password, dbname, host, port, application_name,
                      opts.get("options", ""), opts.get("passfile", ""))
        sock.settimeout(None)  # statements (CREATE DATABASE of a big template) take long
        return conn
    except TimeoutError:
        sock.close()
        raise OperationalError(f"connection to server at {where} failed: timeout expired") \
            from None
    except OSError as exc:
        sock.close()
        raise OperationalError(f"connection to server at {where} failed: server closed the "
                               f"connection unexpectedly ({exc})") from None
