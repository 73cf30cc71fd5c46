"""Databases beside the working one: the build, the backup, snapshots, the ready clone.

Each carries a JSON comment (``COMMENT ON DATABASE``) saying what it is, which project it
belongs to and, for snapshots, the cumulative fingerprint of the steps it holds. Names are
derived from the working database's name:

    demo_dev__b_<run>    being built by refresh-db run <run> (never the developer's data)
    demo_dev__build      being copied by a snapshot command (save, restore, import)
    demo_dev__prev       what refresh-db replaced (the backup; --undo swaps it back)
    demo_dev__ready      a clone of the newest full snapshot, to swap in by a rename
    demo_dev__s_<key>    a cache snapshot (template) named by its fingerprint
    demo_dev__u_<name>   a snapshot the user saved by name
    demo_dev__br_<branch>  the database of another git branch, parked by up (see branches)

PostgreSQL cuts a name at 63 bytes, which would make the names of a long database name
collide; so for a name too long to take the longest suffix, ``demo_dev`` above is its
first bytes plus a hash of the whole name (:func:`stem`), and every derived name fits.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from devenv import faults
from devenv.errors import UsageError
from devenv.postgres import database
from devenv.postgres.database import Target, connect
from devenv.postgres.libpq import ident, literal

# What users type for a snapshot: letters, digits, - _ . (first a letter or digit, so a
# name is never read as an option or a path). The length limit depends on the working
# database's name: see user_name_limit.
USER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
USER_PREFIX = "__u_"
KEY_LEN = 16
MAX_NAME = 63  # bytes: PostgreSQL's NAMEDATALEN - 1; longer names are cut, not refused
# The longest suffix devenv appends: "__u_" + a user snapshot name (19). The others:
# "__s_" + key (20), "__ready_tmp" + 5 digits (16), "__b_" + run id (16), "__prev__xN".
LONGEST_SUFFIX = 4 + 19
HASH_LEN = 8


def stem(db: str) -> str:
    """What derived names start with: ``db`` itself when ``db`` + the longest suffix fits
    in 63 bytes (any name steps.yaml accepts), else ``db``'s first bytes, ``_`` and a hash
    of the whole name (40 bytes): unique per name, and every derived name fits."""
    raw = db.encode()
    if len(raw) + LONGEST_SUFFIX <= MAX_NAME:
        return db
    head = raw[:MAX_NAME - LONGEST_SUFFIX - HASH_LEN - 1].decode(errors="ignore")
    return f"{head}_{hashlib.sha256(raw).hexdigest()[:HASH_LEN]}"


def build_name(db: str, run: str | None = None) -> str:
    """The database refresh-db run ``run`` builds in (a name no other run uses, so a step
    left running by a killed run cannot reach a later build); without ``run``, the one a
    snapshot command copies into before renaming it into place."""
    return f"{stem(db)}__build" if run is None else f"{stem(db)}__b_{run}"


def is_build(db: str, name: str) -> bool:
    """Whether ``name`` is a build of ``db`` (of any run)."""
    return name == build_name(db) or name.startswith(f"{stem(db)}__b_")


def prev_name(db: str) -> str:
    return f"{stem(db)}__prev"


def ready_name(db: str) -> str:
    return f"{stem(db)}__ready"


def cache_name(db: str, key: str) -> str:
    return f"{stem(db)}__s_{key[:KEY_LEN]}"


def branch_name(db: str, branch: str, copy: int = 0) -> str:
    """``db__br_<branch>``: where ``up`` parks the database of ``branch`` (the branch's
    letters and digits, then a short hash of its exact name: unique, and it fits, as
    :func:`stem` leaves at least 23 bytes). ``copy`` > 0: the name of a second (third...)
    database parked for the same branch, when the first name is taken."""
    slug = re.sub(r"[^a-z0-9]+", "_", branch.lower()).strip("_") or "branch"
    exact = branch if copy == 0 else f"{branch}\0{copy}"
    digest = hashlib.sha256(exact.encode()).hexdigest()[:8]
    base = f"{stem(db)}__br_"
    room = MAX_NAME - len(base.encode()) - len(digest) - 1
    return f"{base}{slug[:room]}_{digest}"


def is_branch(db: str, name: str) -> bool:
    """Whether ``name`` is a database parked for a branch of working database ``db``."""
    return name.startswith(f"{stem(db)}__br_")


def user_name_limit(db: str) -> int:
    """How long a user snapshot's name may be beside working database ``db``: what is left
    of PostgreSQL's 63 bytes after ``DB__u_``. PostgreSQL would silently cut a longer
    name, and two snapshots could then land on one database."""
    return MAX_NAME - len(f"{stem(db)}{USER_PREFIX}".encode())


def user_name(db: str, name: str) -> str:
    """The database holding user snapshot ``name``; refuses names that are not plain or
    do not fit (the message says the limit)."""
    limit = user_name_limit(db)
    rule = (f"use letters, digits, -, _ and . (at most {limit} characters: PostgreSQL names "
            f"are at most {MAX_NAME} bytes and '{stem(db)}{USER_PREFIX}' comes first), "
            "starting with a letter or digit")
    if not USER_NAME_RE.fullmatch(name):  # not match: "$" accepts a trailing newline
        raise UsageError(f"invalid snapshot name {name!r}: {rule}")
    if len(name) > limit:
        raise UsageError(f"snapshot name {name!r} is too long ({len(name)} characters): "
                         f"{rule}")
    return f"{stem(db)}{USER_PREFIX}{name}"


@dataclass(frozen=True)
class DbInfo:
    """A database beside the working one, with what its comment says."""

    datname: str
    size: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return str(self.meta.get("kind", "unknown"))

    @property
    def key(self) -> str:
        return str(self.meta.get("key", ""))

    @property
    def created(self) -> float:
        return float(self.meta.get("created", 0))

    @property
    def steps(self) -> list[str]:
        return list(self.meta.get("steps", []))


def meta(kind: str, project: str, **extra: Any) -> dict[str, Any]:
    return {"devenv": 1, "kind": kind, "project": project, "created": time.time(), **extra}


def set_meta(target: Target, datname: str, value: dict[str, Any]) -> None:
    comment = literal(json.dumps(value, sort_keys=True))
    with connect(target, "postgres") as conn:
        conn.execute(f"COMMENT ON DATABASE {ident(datname)} IS {comment}")


def mark_used(target: Target, db: str, datname: str) -> None:
    """Note in a snapshot's comment that a refresh started from it now (for :func:`gc`)."""
    info = find(target, db, datname)
    if info is not None:
        set_meta(target, datname, {**info.meta, "used": time.time()})


def related(target: Target, db: str, sizes: bool = False) -> list[DbInfo]:
    """Every database named ``db__*`` (``stem(db)__*``; and ``db`` itself), with its
    devenv comment; with ``sizes``, their sizes too (``pg_database_size`` reads every file
    of a database, so it is asked for only where sizes are shown)."""
    prefix = stem(db) + "__"
    size = "pg_database_size(oid)" if sizes else "0"
    with connect(target, "postgres") as conn:
        rows = conn.execute(
            f"SELECT datname, {size}, shobj_description(oid, 'pg_database') "
            "FROM pg_database WHERE datname = %s OR left(datname, %s) = %s ORDER BY datname",
            (db, len(prefix), prefix)).fetchall()
    out = []
    for name, nbytes, comment in rows:
        try:
            value = json.loads(comment) if comment else {}
        except ValueError:
            value = {}
        out.append(DbInfo(name, int(nbytes or 0), value if isinstance(value, dict) else {}))
    return out


def find(target: Target, db: str, datname: str, sizes: bool = False) -> DbInfo | None:
    return next((d for d in related(target, db, sizes) if d.datname == datname), None)


def terminate(target: Target, datname: str, block: bool = False) -> int:
    """End every session on ``datname`` (after refusing new ones with ``block``)."""
    with connect(target, "postgres") as conn:
        if block:
            conn.execute(f"ALTER DATABASE {ident(datname)} ALLOW_CONNECTIONS false")
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()", (datname,)).fetchall()
    return len(rows)


def sessions(target: Target, datname: str) -> int:
    """How many sessions (other than devenv's own) are open on ``datname``."""
    with connect(target, "postgres") as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                           "AND pid <> pg_backend_pid()", (datname,)).fetchone()
    return int(row[0]) if row else 0


def file_copy_supported(target: Target) -> bool:
    with connect(target, "postgres") as conn:
        row = conn.execute("SHOW server_version_num").fetchone()
    return row is not None and int(row[0]) >= 150000


def clone(target: Target, src: str, dst: str, value: dict[str, Any] | None = None) -> None:
    """``CREATE DATABASE dst TEMPLATE src`` (FILE_COPY where the server has it: several
    times faster than WAL_LOG for a database of a few hundred MB)."""
    terminate(target, src)
    strategy = " STRATEGY FILE_COPY" if file_copy_supported(target) else ""
    with connect(target, "postgres") as conn:
        conn.execute(f"CREATE DATABASE {ident(dst)} TEMPLATE {ident(src)}{strategy}")
    if value is not None:
        set_meta(target, dst, value)


def retired_name(db: str, taken: Iterable[str] = ()) -> str:
    """A free name where a swap parks a backup until it is dropped (off the critical
    path): ``db__prev__x1``, ``db__prev__x2``..."""
    used = set(taken)
    n = 1
    while f"{prev_name(db)}__x{n}" in used:
        n += 1
    return f"{prev_name(db)}__x{n}"


def is_retired(db: str, name: str) -> bool:
    rest = name.removeprefix(f"{prev_name(db)}__x")
    return rest != name and rest.isdigit()


def swap(target: Target, db: str, new: str, backup: bool = True,
         defer_drop: bool = False, park_as: str | None = None) -> str | None:
    """Put ``new`` in place of ``db``; the old one becomes ``db__prev`` (or is dropped).

    All renames happen in one transaction, so at every instant ``db`` exists: either the
    old database or the new one. Sessions on the old database are refused and ended first
    (renaming a database with open sessions fails). The backup being replaced is renamed
    to ``db__prev__x`` in the same transaction and dropped afterwards: dropping a large
    database forces a checkpoint and takes seconds, so with ``defer_drop`` the caller drops
    it later (:func:`drop_retired`), off the user's wait. Returns the backup's name, if any.

    ``park_as``: the old database is renamed to that name instead (a branch switch parks
    the branch's database there), and ``db__prev`` is left as it is.
    """
    prev = park_as or prev_name(db)
    have = {d.datname for d in related(target, db)}
    if park_as is not None:
        have.discard(park_as)  # never retire a parked database (the caller checked it is free)
        backup = True
    retired = retired_name(db, have)
    faults.point("before-swap")
    committed = False
    try:
        if db in have:
            terminate(target, db, block=True)
        faults.point("swap-blocked")
        terminate(target, new)
        if prev in have:
            terminate(target, prev)
        with connect(target, "postgres") as conn:
            with conn.transaction():
                if db in have:
                    if prev in have:
                        conn.execute(f"ALTER DATABASE {ident(prev)} RENAME TO {ident(retired)}")
                    conn.execute(f"ALTER DATABASE {ident(db)} RENAME TO {ident(prev)}")
                faults.point("swap-half-renamed")  # inside the transaction: not committed
                conn.execute(f"ALTER DATABASE {ident(new)} RENAME TO {ident(db)}")
                if db in have and not backup:
                    # no backup wanted: the old database is retired right away
                    gone = retired if prev not in have else retired_name(db, [*have, retired])
                    conn.execute(f"ALTER DATABASE {ident(prev)} RENAME TO {ident(gone)}")
            committed = True
            faults.point("swap-renamed")
            conn.execute(f"ALTER DATABASE {ident(db)} ALLOW_CONNECTIONS true")
            if db in have and backup:
                conn.execute(f"ALTER DATABASE {ident(prev)} ALLOW_CONNECTIONS true")
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM) or failed: whichever database is the working one
        # now must accept connections again. (A SIGKILL skips this; the next devenv
        # command repairs it: see allow_connections.)
        with contextlib.suppress(Exception):
            allow_connections(target, [db, prev] if committed else [db])
        raise
    if not defer_drop:
        drop_retired(target, db)
    return prev if db in have and backup else None


def drop_retired(target: Target, db: str) -> list[str]:
    """Drop the backups that swaps retired (``db__prev__x1``...)."""
    gone = []
    for info in related(target, db):
        if is_retired(db, info.datname):
            drop(target, info.datname)
            gone.append(info.datname)
    return gone


def allow_connections(target: Target, names: Iterable[str]) -> list[str]:
    """Let ``names`` accept connections again where a swap left them blocked."""
    fixed = []
    with connect(target, "postgres") as conn:
        for name in names:
            row = conn.execute("SELECT datallowconn FROM pg_database WHERE datname = %s",
                               (name,)).fetchone()
            if row is not None and not row[0]:
                conn.execute(f"ALTER DATABASE {ident(name)} ALLOW_CONNECTIONS true")
                fixed.append(name)
    return fixed


def exchange_name(a: str) -> str:
    """The name :func:`exchange` parks ``a`` under for a moment (a leftover only if the
    transaction was cut, which rolls it back; recover drops it all the same)."""
    return f"{stem(a)}__x"


def exchange(target: Target, a: str, b: str) -> None:
    """Swap the names of two databases in one transaction (``refresh-db --undo``)."""
    tmp = exchange_name(a)
    for name in (a, b):
        terminate(target, name, block=True)
    with connect(target, "postgres") as conn:
        with conn.transaction():
            for src, dst in ((a, tmp), (b, a), (tmp, b)):
                conn.execute(f"ALTER DATABASE {ident(src)} RENAME TO {ident(dst)}")
        for name in (a, b):
            conn.execute(f"ALTER DATABASE {ident(name)} ALLOW_CONNECTIONS true")


def drop(target: Target, datname: str) -> None:
    database.drop(target, datname)


def rename(target: Target, src: str, dst: str) -> None:
    """``ALTER DATABASE src RENAME TO dst``, ending ``src``'s sessions first."""
    terminate(target, src)
    with connect(target, "postgres") as conn:
        conn.execute(f"ALTER DATABASE {ident(src)} RENAME TO {ident(dst)}")


def gc(target: Target, db: str, keep: int, protect: Iterable[str] = ()) -> list[str]:
    """Drop the oldest cache snapshots beyond ``keep``; returns what it dropped."""
    keep_names = set(protect)
    # Least recently used first out: the snapshot of the steps an edit loop does not touch
    # is older than every full snapshot made since, and the most useful of them.
    cache = sorted((d for d in related(target, db) if d.kind == "snapshot"),
                   key=lambda d: max(d.created, float(d.meta.get("used", 0))), reverse=True)
    dropped = []
    for d in cache[keep:]:
        if d.datname in keep_names:
            continue
        drop(target, d.datname)
        dropped.append(d.datname)
    return dropped
