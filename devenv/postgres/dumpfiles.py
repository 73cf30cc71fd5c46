"""Snapshot files (``devenv snapshot export/import``) and running pg_dump / pg_restore.

A snapshot file is ours, not a bare ``pg_dump`` archive, so that an import can say what it
holds before restoring anything:

    DEVENV-SNAPSHOT 1\\n
    {"project": ..., "key": ..., "steps": [...], "sha256": ..., "size": ...}   (one line)
    <the raw bytes of ``pg_dump -Fc``>

The header line is written first as a fixed-width placeholder and overwritten, padded with
spaces (still one JSON line), once the dump is complete and its sha256 and size are known:
the dump streams through once, straight from pg_dump's stdout to the file, never held in
memory. The file appears under its name only when complete (written beside it, then
renamed).

pg_dump refuses a server newer than itself, so the tool runs where a new enough one is:
the local binary, or inside the service's Docker container (``docker exec``). Passwords go
through ``PGPASSWORD`` in the environment (``docker exec -e PGPASSWORD`` takes the value
from the docker client's environment), never on a command line.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from devenv import proc
from devenv.errors import DevenvError, RefusedFileError
from devenv.postgres import database, libpq
from devenv.postgres.database import KEYWORD_ENV, Target, connect

MAGIC = b"DEVENV-SNAPSHOT 1\n"
MAX_HEADER = 16 << 20  # a header line longer than this means the file is not ours
CHUNK = 1 << 20
LOCAL_DIRS = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin",
              "/opt/homebrew/opt/postgresql@*/bin", "/usr/local/opt/postgresql@*/bin",
              "/Applications/Postgres.app/Contents/Versions/*/bin")


class DumpError(DevenvError):
    """A snapshot file that cannot be read or restored, or a dump that failed."""


class SnapshotFileError(RefusedFileError, DumpError):
    """A snapshot file refused before anything is loaded: missing, not one, truncated,
    damaged, too new (exit code 5, not "a step failed")."""


@dataclass(frozen=True)
class Header:
    """What a snapshot file says about the dump it carries."""

    project: str
    database: str
    name: str
    key: str
    steps: list[str]
    fingerprints: dict[str, str]
    server_version_num: int
    pg_dump_major: int
    created: float
    sha256: str = ""
    size: int = 0
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    exported: float = 0.0

    @property
    def server_major(self) -> int:
        return major_of(self.server_version_num)

    def line(self, width: int = 0) -> bytes:
        """The JSON header line, padded with spaces to ``width`` bytes (plus the newline)."""
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()
        return text.ljust(width) + b"\n"


def major_of(version_num: int) -> int:
    """The major version of a ``server_version_num`` (150004 -> 15, 90624 -> 9)."""
    return version_num // 10000


# --------------------------------------------------------------------------- the file


def write(path: Path, header: Header,
          produce: Callable[[Callable[[bytes], None]], None]) -> Header:
    """Write a snapshot file: ``produce(sink)`` feeds the dump's bytes to ``sink``.

    Returns the header as written (with the dump's sha256 and size). A failure leaves no
    file behind.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    # Room for the final header: the same header with the widest sha256 and size.
    width = len(Header(**{**asdict(header), "sha256": "0" * 64, "size": 10 ** 18,
                          "exported": time.time()}).line()) + 16
    digest = hashlib.sha256()
    size = 0
    try:
        with open(tmp, "wb") as fh:
            fh.write(MAGIC)
            fh.write(b" " * width + b"\n")

            def sink(data: bytes) -> None:
                nonlocal size
                digest.update(data)
                size += len(data)
                fh.write(data)

            produce(sink)
            final = Header(**{**asdict(header), "sha256": digest.hexdigest(), "size": size,
                              "exported": time.time()})
            line = final.line(width)
            assert len(line) == width + 1, "the header outgrew its reserved space"
            fh.seek(len(MAGIC))
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return final


def read_header(path: Path) -> tuple[Header, int]:
    """The header of snapshot file ``path`` and the offset where its dump starts."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(len(MAGIC))
            line = fh.readline(MAX_HEADER) if magic == MAGIC else b""
            offset = fh.tell()
    except FileNotFoundError:
        raise SnapshotFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SnapshotFileError(f"{path} is a folder, not a snapshot file") from None
    except OSError as exc:
        raise SnapshotFileError(f"{path}: cannot read it: {exc.strerror}") from None
    return _parse_head(path, magic, line), offset


def _parse_head(path: Path | str, magic: bytes, line: bytes) -> Header:
    """The header from a snapshot file's first bytes (``magic``) and header ``line``."""
    if magic != MAGIC:
        if magic.startswith(b"PGDMP"):
            raise SnapshotFileError(f"{path} is a bare pg_dump archive, not a devenv snapshot file: "
                            "restore it with pg_restore, or make one with "
                            "`devenv snapshot export`")
        if magic.startswith(b"DEVENV-SNAPSHOT "):
            raise SnapshotFileError(f"{path} is a devenv snapshot file of a format this devenv does "
                            "not know; upgrade devenv")
        raise SnapshotFileError(f"{path} is not a devenv snapshot file (it does not start with "
                        "'DEVENV-SNAPSHOT 1')")
    if not line.endswith(b"\n"):
        raise SnapshotFileError(f"{path} is truncated: its header line is incomplete")
    try:
        raw = json.loads(line)
    except ValueError:
        raise SnapshotFileError(f"{path} has a damaged header (not JSON)") from None
    return _header(path, raw)


def _header(path: Path | str, raw: Any) -> Header:
    types: dict[str, type | tuple[type, ...]] = {
        "project": str, "database": str, "name": str, "key": str, "steps": list,
        "fingerprints": dict, "server_version_num": int, "pg_dump_major": int,
        "created": (int, float), "sha256": str, "size": int}
    if not isinstance(raw, dict):
        raise SnapshotFileError(f"{path} has a damaged header (not a JSON object)")
    for key, kind in types.items():
        if not isinstance(raw.get(key), kind):
            raise SnapshotFileError(f"{path} has a damaged header: '{key}' is missing or of the "
                            "wrong type")
    # What is inside matters too: list, status and restore index by these.
    inner = {
        "steps": all(isinstance(s, str) for s in raw["steps"]),
        "fingerprints": all(isinstance(k, str) and isinstance(v, str)
                            for k, v in raw["fingerprints"].items()),
        "records": isinstance(raw.get("records", {}), dict)
        and all(isinstance(r, dict) for r in raw.get("records", {}).values()),
    }
    for key, ok in inner.items():
        if not ok:
            raise SnapshotFileError(f"{path} has a damaged header: '{key}' holds values of the "
                            "wrong type")
    known = set(Header.__dataclass_fields__)
    values = {k: v for k, v in raw.items() if k in known}
    values.setdefault("records", {})
    values.setdefault("exported", 0.0)
    return Header(**values)


def verify(path: Path, header: Header, offset: int) -> None:
    """Refuse a file whose dump is shorter, longer or other than its header says."""
    _check_size(path, header, Path(path).stat().st_size - offset)  # before reading it all
    digest = hashlib.sha256()
    for data in payload(path, offset):
        digest.update(data)
    _check_sha256(path, header, digest.hexdigest())


def _check_size(path: Path | str, header: Header, actual: int) -> None:
    if actual < header.size:
        raise SnapshotFileError(f"{path} is truncated: its header promises a dump of "
                        f"{header.size} bytes, the file holds {actual}; copy or export it "
                        "again")
    if actual > header.size:
        raise SnapshotFileError(f"{path} is damaged: it holds {actual - header.size} bytes more than "
                        "its header says; copy or export it again")


def _check_sha256(path: Path | str, header: Header, sha256: str) -> None:
    if sha256 != header.sha256:
        raise SnapshotFileError(f"{path} is damaged: the dump's sha256 does not match its header; "
                        "copy or export it again")


def unpack(chunks: Iterable[bytes], dest: Path, label: str) -> Header:
    """Write the dump inside a snapshot file that arrives as ``chunks`` (a download) to
    ``dest``, as a bare ``pg_dump`` archive, and return the file's header.

    What :func:`read_header` and :func:`verify` check on a file is checked here in the same
    pass (the dump's size and sha256 against its header), so a download is read once, and
    ``pg_restore -j`` can read the archive from ``dest`` (it needs the archive at the start
    of a seekable file). ``label`` names the source in errors. The header is parsed as soon
    as its line is complete, so a file that is not a snapshot stops the download there; a
    failure leaves ``dest`` for the caller to delete.
    """
    head = b""
    header: Header | None = None
    digest = hashlib.sha256()
    size = 0
    with open(dest, "wb") as fh:
        for data in chunks:
            if header is None:
                head += data
                end = head.find(b"\n", len(MAGIC)) if head.startswith(MAGIC) else -1
                if end < 0:
                    if len(head) >= len(MAGIC) and not head.startswith(MAGIC):
                        _parse_head(label, head[:len(MAGIC)], b"")
                    if len(head) > len(MAGIC) + MAX_HEADER:
                        raise SnapshotFileError(f"{label} is not a devenv snapshot file (its "
                                                "header line never ends)")
                    continue
                header = _parse_head(label, MAGIC, head[len(MAGIC):end + 1])
                data = head[end + 1:]
                head = b""
            digest.update(data)
            size += len(data)
            fh.write(data)
    if header is None:
        # Fewer bytes than a header: the same errors as a short file.
        _parse_head(label, head[:len(MAGIC)], head[len(MAGIC):])
        raise AssertionError("unreachable: _parse_head refuses a header without its newline")
    _check_size(label, header, size)
    _check_sha256(label, header, digest.hexdigest())
    return header


def payload(path: Path, offset: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """The dump's bytes, a chunk at a time."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        yield from iter(lambda: fh.read(chunk), b"")


# --------------------------------------------------------------------------- the tools


def server_version_num(target: Target) -> int:
    with connect(target, "postgres") as conn:
        row = conn.execute("SHOW server_version_num").fetchone()
    assert row is not None
    return int(row[0])


_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


def parse_tool_version(text: str) -> int | None:
    """The major version in ``pg_dump --version`` output (``pg_dump (PostgreSQL) 15.4``)."""
    m = _VERSION_RE.search(text)
    if not m:
        return None
    return int(m.group(1))


_VERSIONED_DIR = re.compile(r"/(?:postgresql/|pgsql-|postgresql@|Versions/)(\d+)(?:\.\d+)?/")


def local_tools(name: str) -> list[tuple[str, int]]:
    """Local ``name`` binaries (pg_dump, pg_restore) with their major versions, newest
    first: the usual install folders (Debian keeps one per version), then PATH."""
    paths: list[str] = []
    for pattern in LOCAL_DIRS:
        paths.extend(str(Path(d) / name) for d in glob.glob(pattern))
    # After the versioned folders: Debian's PATH entry is a wrapper that picks a version
    # by its own rules.
    found = shutil.which(name)
    if found:
        paths.append(found)
    out: dict[str, int] = {}
    seen: set[str] = set()
    for p in paths:
        real = os.path.realpath(p)
        if real in seen or not os.access(p, os.X_OK):
            continue
        seen.add(real)
        # Debian's PATH entry is pg_wrapper, which runs one of the versioned binaries listed
        # above: asking it for its version (a Perl start, ~20 ms) would add nothing.
        if out and real.endswith("/postgresql-common/pg_wrapper"):
            continue
        # Debian, PGDG and Homebrew name the major version in the folder
        # (/usr/lib/postgresql/15/bin): no need to run the tool to ask it.
        m = _VERSIONED_DIR.search(real)
        if m:
            out[p] = int(m.group(1))
            continue
        try:
            cp = proc.run([p, "--version"], timeout=10, check=False)
        except proc.ProcessError:
            continue
        major = parse_tool_version(cp.stdout)
        if major is not None and cp.returncode == 0:
            out[p] = major
    return sorted(out.items(), key=lambda kv: -kv[1])


@dataclass(frozen=True)
class ServiceExec:
    """Runs a command with the database service's own tools: its backend's ``exec`` (inside
    the container, or with the native server's binaries). ``run(argv, stdin=PATH|None,
    stdout=PATH|None, env=...)`` returns an object with ``returncode`` and ``output``."""

    where: str  # "in container demo-db"
    run: Callable[..., Any]
    port: int | None = None  # PGPORT where the command runs, when the backend does not set it


@dataclass(frozen=True)
class Tool:
    """pg_dump or pg_restore, new enough for the server, and how to run it."""

    name: str
    major: int
    where: str  # "local /usr/lib/postgresql/15/bin/pg_dump" or "in container NAME"
    argv: tuple[str, ...]  # the local command before its own options
    env: Mapping[str, str]
    service: ServiceExec | None = None

    def run(self, args: Sequence[str], *, sink: Callable[[bytes], None] | None = None,
            source: Iterable[bytes] | None = None, tmpdir: Path | None = None) -> None:
        """Run the tool with ``args``; its stdout to ``sink``, its stdin from ``source``."""
        if self.service is None:
            proc.stream([*self.argv, *args], env=self.env, sink=sink, source=source)
            return
        # The backend's exec streams host files in and out (never the whole dump in
        # memory); the dump passes through a temporary file beside its destination.
        argv = [self.name, "--no-password", *args]
        with tempfile.TemporaryDirectory(prefix=".devenv-pg-", dir=tmpdir) as d:
            inp = out = None
            if source is not None:
                inp = Path(d) / "stdin"
                with open(inp, "wb") as fh:
                    for data in source:
                        fh.write(data)
            if sink is not None:
                out = Path(d) / "stdout"
            res = self.service.run(argv, stdin=inp, stdout=out, env=dict(self.env))
            code = int(getattr(res, "returncode", 1))
            if code != 0:
                raise proc.ProcessError(argv, code, str(getattr(res, "output", "")))
            if out is not None and sink is not None:
                for data in payload(out, 0):
                    sink(data)


def _clean_env() -> dict[str, str]:
    # The docker client's own environment: the PG* values it passes come from ``env``.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def tool_env(target: Target, dbname: str) -> dict[str, str]:
    """The environment of a local pg_dump/pg_restore: the user's, with every connection
    parameter of ``target`` (TLS settings, ``options``...) as its ``PG*`` variable. A
    ``PGSERVICE`` is dropped: :func:`database.parse_url` resolved it into the target, and
    left in place its file would override the ``PG*`` variables (libpq's order)."""
    env = {k: v for k, v in os.environ.items() if k != "PGSERVICE"}
    for key, value in target.conninfo(dbname).items():
        var = KEYWORD_ENV.get(key)
        if var:
            env[var] = value
    return env


def choose_tool(name: str, target: Target, dbname: str, need_major: int,
                service: ServiceExec | Callable[[], ServiceExec | None] | None) -> Tool:
    """``name`` (pg_dump or pg_restore) of at least ``need_major``: the local binary when it
    is new enough, else the database service's own (its container's), else a clear error.
    ``service`` may be a function that finds the service's: it then runs only when no local
    tool will do (asking the Docker engine costs time a local tool does not need).

    ``DEVENV_PG_TOOLS=service`` (or ``local``) forces one or the other.
    """
    force = os.environ.get("DEVENV_PG_TOOLS", "")
    local = local_tools(name) if force != "service" else []
    for path, major in local:
        if major >= need_major:
            env = tool_env(target, dbname)
            return Tool(name, major, f"local {path}", (path, "--no-password"), env)
    have = (f"the local {name} is version {local[0][1]}" if local
            else f"there is no local {name}")
    if callable(service):
        service = service() if force != "local" else None
    if service is None or force == "local":
        raise DumpError(
            f"{have}, and PostgreSQL {need_major} needs {name} {need_major} or newer; the "
            f"database does not run in a devenv service to borrow one from: install the "
            f"PostgreSQL {need_major} client (e.g. apt-get install "
            f"postgresql-client-{need_major})")
    env = {"PGUSER": target.user, "PGPASSWORD": target.password, "PGDATABASE": dbname}
    if service.port is not None:
        env["PGPORT"] = str(service.port)
    with tempfile.TemporaryDirectory(prefix=".devenv-pg-") as d:
        out = Path(d) / "version"
        try:
            res = service.run([name, "--version"], stdout=out, env=env)
        except proc.ProcessError as exc:
            raise DumpError(f"{have}, and running {name} {service.where} failed:\n{exc}"
                            ) from None
        text = out.read_text(errors="replace") if out.exists() else ""
        code = int(getattr(res, "returncode", 1))
    found = parse_tool_version(text) if code == 0 else None
    if found is None or found < need_major:
        raise DumpError(f"{have}, and {service.where} {name} is "
                        f"{'version ' + str(found) if found else 'missing'}; {name} "
                        f"{need_major} or newer is needed")
    return Tool(name, found, service.where, (name,), env, service)


def dump(tool: Tool, sink: Callable[[bytes], None], tmpdir: Path | None = None) -> None:
    """``pg_dump -Fc`` of the tool's database, streamed to ``sink``."""
    try:
        tool.run(["--format=custom"], sink=sink, tmpdir=tmpdir)
    except proc.ProcessError as exc:
        raise DumpError(f"pg_dump ({tool.where}) failed:\n{exc}") from None


def restore_jobs() -> int:
    """How many connections ``pg_restore -j`` uses for a dump in a file:
    ``DEVENV_RESTORE_JOBS``, else this machine's CPUs, at most 4 (the server is usually on
    this machine, and beyond a few jobs the biggest table's data and index set the time)."""
    with contextlib.suppress(ValueError):
        return max(1, int(os.environ.get("DEVENV_RESTORE_JOBS", "")))
    return max(1, min(4, os.cpu_count() or 1))


def restore(tool: Tool, source: Iterable[bytes] | Path, jobs: int = 1) -> None:
    """``pg_restore`` the custom-format dump from ``source`` (a stream, or a file holding
    the bare archive) into the tool's database, which the caller made for it and drops on
    failure.

    A file and ``jobs`` > 1, with a local tool: ``pg_restore -j jobs FILE``, data and
    indexes on several connections, each committing on its own (``-j`` cannot run in one
    transaction); all-or-nothing then comes from the caller dropping the new database when
    this raises. Otherwise one transaction: on any error nothing of it stays.
    """
    dbname = tool.env["PGDATABASE"]
    # -d takes a connection string; a name with '=' in it would be read as one.
    conninfo = "dbname='" + dbname.replace("\\", "\\\\").replace("'", "\\'") + "'"
    args = ["--no-owner", "--exit-on-error", "-d", conninfo]
    stream: Iterable[bytes] | None = source if not isinstance(source, Path) else None
    if isinstance(source, Path) and jobs > 1 and tool.service is None:
        # A file on this machine: the service's tools (in a container) cannot open it.
        args = [*args, "-j", str(jobs), "--", str(source)]
    else:
        args = ["--single-transaction", *args]
        if stream is None:
            assert isinstance(source, Path)
            stream = payload(source, 0)
    try:
        tool.run(args, source=stream)
    except proc.ProcessError as exc:
        raise DumpError(f"pg_restore ({tool.where}) failed:\n{exc}") from None


# --------------------------------------------------------------------------- untrusted dumps

IMPORT_ROLE = "devenv_import"
# Membership in these lets a role run programs or touch files on the server's host.
_SERVER_ROLES = ("pg_execute_server_program", "pg_read_server_files", "pg_write_server_files")
_REFUSED = ("permission denied", "must be superuser", "must be owner", "only superuser",
            "must have privileges of", "must be a member of")


def _scram_verifier(password: str) -> str:
    """A SCRAM-SHA-256 verifier for ``password`` (what ``ALTER ROLE ... PASSWORD`` stores),
    made here so the password itself never reaches the server's statement log."""
    import base64
    import hmac

    salt = os.urandom(16)
    iterations = 4096
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = base64.b64encode
    return (f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}$"
            f"{b64(stored).decode()}:{b64(server).decode()}")


def _privileged(target: Target) -> bool:
    """Whether the target's user could run programs or read files on the server's host
    (superuser, a member of the pg_*_server_* roles, or able to grant itself them)."""
    # MEMBER, not USAGE: a NOINHERIT member can still SET ROLE to it; and a role that is a
    # member of a superuser or CREATEROLE role can become one.
    with connect(target, "postgres") as conn:
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_roles r WHERE pg_has_role(current_user, r.oid, "
            "'MEMBER') AND (r.rolsuper OR r.rolcreaterole OR r.rolname IN ("
            + ", ".join(["%s"] * len(_SERVER_ROLES)) + ")))", _SERVER_ROLES).fetchone()
    return bool(row and row[0])


def _prepare_import_role(target: Target) -> tuple[str, str]:
    """Create (if missing) the import role, check it has no rights beyond a plain role's,
    and make a fresh password for one restore. Returns the password and its SCRAM
    verifier, which :func:`_open_import_role` gives the role just before the restore: the
    role stays unable to log in until then (a remote-cache hit prepares while its dump
    downloads, which may take minutes)."""
    import secrets

    role = libpq.ident(IMPORT_ROLE)
    with connect(target, "postgres") as conn:
        try:
            # INHERIT: the owner of a database has its public schema through its implicit
            # membership in pg_database_owner (and the role is member of nothing else).
            conn.execute(f"CREATE ROLE {role} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                         "INHERIT NOREPLICATION NOBYPASSRLS")
        except libpq.QueryError as exc:
            if exc.sqlstate != "42710":  # duplicate_object: made by an earlier import
                raise DumpError(f"cannot create the role {IMPORT_ROLE} that restores "
                                f"untrusted dumps: {exc}") from None
        row = conn.execute(
            "SELECT r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolreplication, "
            "r.rolbypassrls, (SELECT string_agg(g.rolname, ', ') FROM pg_auth_members m "
            "JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid), r.rolcanlogin "
            "FROM pg_roles r WHERE r.rolname = %s", (IMPORT_ROLE,)).fetchone()
        assert row is not None
        rights = [name for name, has in zip(
            ("SUPERUSER", "CREATEDB", "CREATEROLE", "REPLICATION", "BYPASSRLS"), row[:5],
            strict=True) if has]
        if row[5]:
            rights.append(f"member of {row[5]}")
        if rights:
            raise DumpError(f"role {IMPORT_ROLE} has rights an import must not have "
                            f"({', '.join(rights)}): remove them, or DROP ROLE {IMPORT_ROLE} "
                            "and devenv creates it again without them")
        is_super = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = "
                                "current_user").fetchone()
        if not (is_super and is_super[0]):
            # A CREATEROLE user that is not superuser (RDS's, Cloud SQL's) may only give a
            # database to a role it is a member of (CREATE DATABASE ... OWNER, and back).
            conn.execute(f"GRANT {role} TO CURRENT_USER")
        if row[6]:
            # An import killed before it closed the role left it able to log in with that
            # import's password: not while this one waits for its dump.
            _close_stale(conn)
    password = secrets.token_urlsafe(24)
    return password, _scram_verifier(password)


# The import role is the server's, not one process's. A restore holds this advisory lock
# (session-level, on the process's maintenance connection) from letting the role log in
# until it has closed it again, so that another devenv on the same server (a worktree,
# another project, a parallel CI job) neither gives the role a new password while this
# restore's pg_restore -j connections log in, nor closes it under them.
_IMPORT_LOCK = 0x646576696D706F72  # "devimpor"
# How long a restore waits for another devenv's restore to close the role.
IMPORT_LOCK_WAIT_S = 300


def _try_import_lock(conn: libpq.Connection) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (_IMPORT_LOCK,)).fetchone()
    return bool(row and row[0])


def _unlock_import(conn: libpq.Connection) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s)", (_IMPORT_LOCK,))


def _close_stale(conn: libpq.Connection) -> bool:
    """Close the import role when it can log in and no restore holds the lock (one that
    was killed before it closed it: its session, and with it the lock, is gone); False
    when a running restore holds it (left alone)."""
    if not _try_import_lock(conn):
        return False
    try:
        conn.execute(f"ALTER ROLE {libpq.ident(IMPORT_ROLE)} NOLOGIN PASSWORD NULL")
        _reset_role_settings(conn)
    finally:
        _unlock_import(conn)
    return True


@dataclass(frozen=True)
class ImportRole:
    """The import role on a server, as ``doctor`` reports it."""

    exists: bool
    can_log_in: bool
    restoring_pid: int | None  # the backend of a restore that holds the lock now


def import_role(target: Target) -> ImportRole:
    """Whether the import role exists, can log in, and which session's restore holds it."""
    with connect(target, "postgres") as conn:
        row = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s",
                           (IMPORT_ROLE,)).fetchone()
        held = conn.execute(
            # advisory locks belong to a database: devenv's are taken on ``postgres``
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = %s AND objid = %s AND objsubid = 1 AND database = "
            "(SELECT oid FROM pg_database WHERE datname = 'postgres')",
            (str(_IMPORT_LOCK >> 32), str(_IMPORT_LOCK & 0xFFFFFFFF))).fetchone()
    return ImportRole(row is not None, bool(row and row[0]),
                      int(held[0]) if held else None)


def close_stale_import_role(target: Target) -> bool:
    """``doctor --fix``: close the import role an interrupted import left able to log in
    (see :func:`_close_stale`); False when a running restore holds it."""
    with connect(target, "postgres") as conn:
        return _close_stale(conn)


def _open_import_role(target: Target, verifier: str) -> None:
    """Let the import role log in with the password of ``verifier``, for the restore about
    to run (:func:`_close_import_role` ends that), once no other devenv restores as it
    (waiting at most IMPORT_LOCK_WAIT_S for one that does)."""
    with connect(target, "postgres") as conn:
        if not _try_import_lock(conn):
            try:
                with conn.transaction():
                    # the wait ends in a lock_timeout error; the lock, once granted, is
                    # the session's (it outlives this transaction)
                    conn.execute(f"SET LOCAL lock_timeout = '{int(IMPORT_LOCK_WAIT_S)}s'")
                    conn.execute("SELECT pg_advisory_lock(%s)", (_IMPORT_LOCK,))
            except libpq.QueryError as exc:
                if exc.sqlstate != "55P03":  # lock_not_available
                    raise
                raise DumpError(
                    f"another devenv has been restoring a dump on this server as role "
                    f"{IMPORT_ROLE} for {int(IMPORT_LOCK_WAIT_S)} s; try again once it has "
                    "finished") from None
        try:
            _reset_role_settings(conn)
            conn.execute(f"ALTER ROLE {libpq.ident(IMPORT_ROLE)} LOGIN PASSWORD "
                         f"{libpq.literal(verifier)}")
        except BaseException:
            with contextlib.suppress(Exception):
                _unlock_import(conn)
            raise


def _reset_role_settings(conn: libpq.Connection) -> None:
    """Drop the session defaults the import role holds: a dump's code runs as that role
    and may ``ALTER ROLE CURRENT_USER [IN DATABASE ...] SET`` something, which would then
    apply to every later import."""
    role = libpq.ident(IMPORT_ROLE)
    rows = conn.execute(
        "SELECT d.datname FROM pg_db_role_setting s LEFT JOIN pg_database d "
        "ON d.oid = s.setdatabase WHERE s.setrole = (SELECT oid FROM pg_roles "
        "WHERE rolname = %s)", (IMPORT_ROLE,)).fetchall()
    for (datname,) in rows:
        where = f" IN DATABASE {libpq.ident(str(datname))}" if datname is not None else ""
        conn.execute(f"ALTER ROLE {role}{where} RESET ALL")


def _close_import_role(target: Target) -> None:
    """Undo :func:`_open_import_role`: the role can no longer log in, keeps no setting the
    dump gave it, and the next restore (of any devenv) may open it."""
    with contextlib.suppress(Exception), connect(target, "postgres") as conn:
        try:
            conn.execute(f"ALTER ROLE {libpq.ident(IMPORT_ROLE)} NOLOGIN PASSWORD NULL")
            _reset_role_settings(conn)
        finally:
            _unlock_import(conn)


def _defuse(target: Target, dbname: str) -> None:
    """After the restore: hand the database to the target's user, drop the settings the
    dump gave it (``ALTER DATABASE ... SET``), and make every function the dump defined
    run as the import role (SECURITY DEFINER), so that a CHECK, a trigger, a default or an
    operator of the dump that fires later, in a step connected as superuser, still runs
    without superuser rights."""
    with connect(target, "postgres") as conn:
        conn.execute(f"ALTER DATABASE {libpq.ident(dbname)} OWNER TO CURRENT_USER")
        conn.execute(f"ALTER DATABASE {libpq.ident(dbname)} RESET ALL")
    with connect(target, dbname) as conn, conn.transaction():
        # Every name in the signatures below comes out schema-qualified.
        conn.execute("SET LOCAL search_path = pg_catalog")
        routines = conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_roles r "
            "ON r.oid = p.proowner WHERE r.rolname = %s AND NOT p.prosecdef "
            "AND p.prokind IN ('f', 'p')", (IMPORT_ROLE,)).fetchall()
        for (signature,) in routines:
            conn.execute(f"ALTER ROUTINE {signature} SECURITY DEFINER")
        # A default, CHECK, policy, view, trigger or index of the dump that calls a built-in
        # function the import role may not run (pg_read_file, lo_export...) would run it
        # with the rights of whoever fires it later, a superuser step: refuse the dump.
        # Built-ins are pinned, so pg_depend does not list them: read the expressions.
        user = "NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)"
        trees = conn.execute(
            "SELECT adbin::text FROM pg_attrdef "
            "UNION ALL SELECT conbin::text FROM pg_constraint WHERE conbin IS NOT NULL "
            f"AND connamespace {user} "
            "UNION ALL SELECT tgqual::text FROM pg_trigger WHERE tgqual IS NOT NULL "
            "UNION ALL SELECT polqual::text FROM pg_policy WHERE polqual IS NOT NULL "
            "UNION ALL SELECT polwithcheck::text FROM pg_policy WHERE polwithcheck IS NOT NULL "
            "UNION ALL SELECT indexprs::text FROM pg_index WHERE indexprs IS NOT NULL "
            "UNION ALL SELECT indpred::text FROM pg_index WHERE indpred IS NOT NULL "
            "UNION ALL SELECT r.ev_action::text FROM pg_rewrite r JOIN pg_class c ON "
            f"c.oid = r.ev_class WHERE c.relnamespace {user}").fetchall()
        oids = sorted({int(m) for (tree,) in trees
                       for m in re.findall(r":(?:funcid|opfuncid) (\d+)", tree or "")})
        banned = conn.execute(
            "SELECT oid::regprocedure::text FROM pg_proc WHERE oid::text IN ("
            + ", ".join(["%s"] * len(oids)) + ") AND NOT has_function_privilege(%s, oid, "
            "'EXECUTE') ORDER BY 1", (*[str(o) for o in oids], IMPORT_ROLE)).fetchall() \
            if oids else []
    if banned:
        names = ", ".join(b[0] for b in banned[:5])
        raise DumpError(f"the dump's defaults, checks, views or triggers call functions an "
                        f"import may not run ({names}): they would run with the rights of "
                        "whoever writes to those tables later, so nothing of it was kept")


def _as_import_role_error(exc: DumpError, label: str) -> DumpError:
    """What a restore run as the import role failed for, in one line when it is the role's
    doing (it may not log in here, or the dump asked for rights it does not have); else
    ``exc`` as it was."""
    text = str(exc)
    errors = [line.split("ERROR:", 1)[1].strip() for line in text.splitlines()
              if "ERROR:" in line]
    login = [line for line in text.splitlines() if f'"{IMPORT_ROLE}"' in line
             and ("authentication failed" in line or "pg_hba.conf" in line)]
    if login:
        why = login[0].split("FATAL:")[-1].strip()
        return DumpError(
            f"{label} was not restored: devenv restores a dump from a file or another "
            f"machine as role {IMPORT_ROLE}, without superuser rights, and that role cannot "
            f"log in here ({why}): let it log in with a password (pg_hba.conf), or connect "
            "as a user that is not a superuser")
    if errors and any(r in errors[0] for r in _REFUSED):
        return DumpError(f"{label} asks for rights an import does not have (it is restored "
                         f"as role {IMPORT_ROLE}, without superuser), so nothing of it was "
                         f"kept: {errors[0]}")
    return exc


class PreparedRestore:
    """An untrusted restore whose preparation is done (:func:`prepare_untrusted`): the
    privileged check, the import role checked and its fresh password made, and (unless
    asked otherwise) the empty database ``dbname`` owned by that role. What remains is
    :meth:`restore` of the dump, or :meth:`abandon` when there will be none.

    The split lets a remote-cache hit prepare while its blob downloads (the preparation
    needs nothing of the dump); nothing is restored before :meth:`restore` is called, and
    the caller calls it only once every check of the dump has passed. Single use: after
    :meth:`restore` (whether it succeeded or not) or :meth:`abandon`, the import role
    cannot log in again and :meth:`abandon` does nothing, so a caller may call it in a
    ``finally`` without dropping a restored database.
    """

    def __init__(self, target: Target, dbname: str, privileged: bool, password: str = "",
                 verifier: str = "") -> None:
        self.target = target
        self.dbname = dbname
        self.privileged = privileged
        # not in any repr: the role logs in with it during the restore
        self._password = password
        self._verifier = verifier
        self.created = False
        self.finished = False
        self._opened = False  # the role may log in for this restore (it holds the lock)

    def create(self) -> None:
        """``CREATE DATABASE`` (owned by the import role when the target's user is
        privileged), unless done already. When it fails, nothing is dropped: the name may
        be another database's."""
        if self.created:
            return
        if self.finished:
            raise RuntimeError(f"the restore into {self.dbname} was already ended")
        with connect(self.target, "postgres") as conn:
            owner = f" OWNER {libpq.ident(IMPORT_ROLE)}" if self.privileged else ""
            conn.execute(f"CREATE DATABASE {libpq.ident(self.dbname)}{owner} "
                         "TEMPLATE template0")
        self.created = True

    def restore(self, tool: Tool, source: Iterable[bytes] | Path, *,
                label: str = "the dump", jobs: int | None = None) -> None:
        """Create the database if :func:`prepare_untrusted` did not, restore the dump into
        it as the import role, then :func:`_defuse` it; on any failure the database is
        dropped. The import role is closed in every case (see
        :func:`restore_untrusted`)."""
        if self.finished:
            raise RuntimeError(f"the restore into {self.dbname} was already ended")
        target, dbname, privileged = self.target, self.dbname, self.privileged
        try:
            self.create()
            try:
                env = {**tool.env, "PGDATABASE": dbname}
                if privileged:
                    _open_import_role(target, self._verifier)
                    self._opened = True
                    env |= {"PGUSER": IMPORT_ROLE, "PGPASSWORD": self._password}
                try:
                    # the module's restore(), looked up at call time (bench/restore_phases.py
                    # times it by replacing it)
                    restore(replace(tool, env=env), source,
                            restore_jobs() if jobs is None else jobs)
                except DumpError as exc:
                    raise (_as_import_role_error(exc, label) if privileged else exc) from None
                if privileged:
                    _defuse(target, dbname)
            except BaseException:
                with contextlib.suppress(Exception):
                    database.drop(target, dbname)
                raise
        finally:
            self._close()

    def abandon(self) -> None:
        """No restore after all (the download failed or was refused, Ctrl-C): drop the
        database made for it and close the import role. Nothing after :meth:`restore`."""
        if self.finished:
            return
        try:
            if self.created:
                with contextlib.suppress(Exception):
                    database.drop(self.target, self.dbname)
        finally:
            self._close()

    def _close(self) -> None:
        self.finished = True
        self._password = self._verifier = ""
        if self._opened:
            # only a restore that opened the role closes it: another devenv's may be
            # running as it (a preparation abandoned here never let it log in)
            self._opened = False
            _close_import_role(self.target)


def prepare_untrusted(target: Target, dbname: str, *, create: bool = True) -> PreparedRestore:
    """The first half of :func:`restore_untrusted`, which needs nothing of the dump: whether
    the target's user is privileged, the import role (checked, still unable to log in) and
    its password for this restore, and with ``create`` the empty database ``dbname`` (it must not exist). ``create=False`` for
    a caller that must first drop a database of that name, and may do so only once the dump
    has been checked: :meth:`PreparedRestore.restore` then creates it. When this raises,
    nothing is left to undo (the role is closed again if the database could not be made).
    """
    privileged = _privileged(target)
    password, verifier = _prepare_import_role(target) if privileged else ("", "")
    prepared = PreparedRestore(target, dbname, privileged, password, verifier)
    if create:
        try:
            prepared.create()
        except BaseException:
            prepared.abandon()  # closes the role; drops nothing (it was not created)
            raise
    return prepared


def restore_untrusted(target: Target, dbname: str, tool: Tool,
                      source: Iterable[bytes] | Path, *, label: str = "the dump",
                      jobs: int | None = None) -> None:
    """Create database ``dbname`` (it must not exist) and restore into it the custom-format
    dump from ``source``, which came from a file or another machine and is trusted with
    nothing. ``tool`` is pg_restore for ``target`` (:func:`choose_tool`); ``label`` names
    the dump in messages (a file name). ``source`` is a stream of the dump's bytes, or a
    file holding the bare archive, which a local pg_restore reads with ``-j jobs``
    (default :func:`restore_jobs`; see :func:`restore`).

    When the target's user is a superuser (or could become one of the roles that run
    programs on the server), the restore runs connected as the role ``devenv_import``:
    NOSUPERUSER, NOCREATEDB, NOCREATEROLE, member of nothing, allowed to log in only for
    the restore (a fresh password each time). Whatever SQL the dump holds then runs without
    ``COPY ... PROGRAM``, server files, untrusted languages or ``ALTER SYSTEM``; what it
    is refused fails the restore with :class:`DumpError`, and the database is dropped
    (nothing of it stays, in one transaction or on ``-j`` connections alike). Afterwards
    the database belongs to the target's user, its objects stay the import role's, and
    every function the dump defined runs as that role (see :func:`_defuse`). A user
    without such rights restores as itself.

    In two halves for a caller that can prepare before it has the dump (a remote-cache
    hit, while the blob downloads): :func:`prepare_untrusted`, then
    :meth:`PreparedRestore.restore`.
    """
    prepare_untrusted(target, dbname).restore(tool, source, label=label, jobs=jobs)
