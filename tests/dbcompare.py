"""A canonical text of a PostgreSQL database, to assert that two databases are equal.

``dump_database(url)`` = the schema (``pg_dump --schema-only --no-owner`` with the lines
that differ between dumps of identical databases removed) + the rows of every user table
in every schema, each table's rows sorted, + every sequence's state. Two databases built
the same way give the same text; ``diff_dumps`` shows where two texts part.

Columns that hold the wall-clock time of the build itself cannot be equal between two
builds; they are listed in ``VOLATILE_COLUMNS`` and their values replaced by a marker (the
rows still count). The default names Django's ``django_migrations.applied``.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping

import psycopg
from psycopg import sql

PG_DUMP_CANDIDATES = ("/usr/lib/postgresql/15/bin/pg_dump",)

# (schema or "*", table, column) whose values are the time the build ran.
VOLATILE_COLUMNS: frozenset[tuple[str, str, str]] = frozenset({
    ("*", "django_migrations", "applied"),
    # the row id is the order migrations were applied in (a hand-run `migrate X --fake`
    # first, or the django-migrate kind's own order); which migrations are applied, by
    # app and name, is still compared
    ("*", "django_migrations", "id"),
})
VOLATILE_MARK = "<volatile>"

# Lines of pg_dump output that change between dumps of identical databases.
_HEADER_RES = (
    re.compile(r"^-- Dumped from database version .*$"),
    re.compile(r"^-- Dumped by pg_dump version .*$"),
    re.compile(r"^-- Started on .*$"),
    re.compile(r"^-- Completed on .*$"),
    # pg_dump >= 15.14/16.10/17.6 fences the script with a random key.
    re.compile(r"^\\(un)?restrict \S+$"),
)

_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


def pg_dump_binary() -> str:
    for candidate in PG_DUMP_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("pg_dump")
    if not found:
        raise RuntimeError("pg_dump not found")
    return found


def _libpq_env(url: str) -> dict[str, str]:
    """The URL as PG* variables, so the password never appears on a command line."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD",
             "dbname": "PGDATABASE", "sslmode": "PGSSLMODE"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    for key, value in params.items():
        if key in names and value is not None:
            env[names[key]] = str(value)
    return env


def dump_schema(url: str) -> str:
    proc = subprocess.run(
        [pg_dump_binary(), "--schema-only", "--no-owner"],
        env=_libpq_env(url), capture_output=True, text=True, timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pg_dump failed ({proc.returncode}): {proc.stderr.strip()}")
    lines = [
        line for line in proc.stdout.splitlines()
        if not any(r.match(line) for r in _HEADER_RES)
    ]
    return "\n".join(lines).strip() + "\n"


def _is_volatile(volatile: Iterable[tuple[str, str, str]], schema: str, table: str,
                 column: str) -> bool:
    return any(s in ("*", schema) and t == table and c == column for s, t, c in volatile)


def dump_data(url: str, volatile: Iterable[tuple[str, str, str]] = VOLATILE_COLUMNS) -> str:
    volatile = tuple(volatile)
    out: list[str] = []
    with psycopg.connect(url, autocommit=False) as conn:
        # One snapshot for every table; text forms that do not depend on the server's
        # or the client's settings.
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute("SET LOCAL TimeZone = 'UTC'")
        conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
        conn.execute("SET LOCAL IntervalStyle = 'postgres'")
        conn.execute("SET LOCAL extra_float_digits = 3")
        conn.execute("SET LOCAL bytea_output = 'hex'")
        tables = conn.execute(
            """
            SELECT n.nspname, c.relname, c.relkind
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'S')
              AND n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg_temp_%%'
              AND n.nspname NOT LIKE 'pg_toast_temp_%%'
            ORDER BY n.nspname, c.relkind, c.relname
            """,
            (list(_SYSTEM_SCHEMAS),),
        ).fetchall()
        for schema, name, kind in tables:
            ident = sql.Identifier(schema, name)
            if kind == "S":
                row = conn.execute(
                    sql.SQL("SELECT last_value, is_called FROM {}").format(ident)
                ).fetchone()
                assert row is not None  # a sequence has one row
                last_value, is_called = row
                out.append(f"-- sequence {schema}.{name}: last_value={last_value} "
                           f"is_called={is_called}")
                continue
            columns = [r[0] for r in conn.execute(
                """
                SELECT attname FROM pg_attribute
                WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped
                ORDER BY attnum
                """,
                (f'"{schema}"."{name}"',),
            ).fetchall()]
            select = sql.SQL(", ").join(
                sql.Literal(VOLATILE_MARK) if _is_volatile(volatile, schema, name, c)
                else sql.Identifier(c)
                for c in columns
            )
            query = sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT").format(select, ident)
            buf = bytearray()
            with conn.cursor().copy(query) as copy:
                for chunk in copy:
                    buf += chunk
            rows = buf.decode().splitlines()
            rows.sort()
            out.append(f"-- table {schema}.{name} ({', '.join(columns)}): {len(rows)} rows")
            out.extend(rows)
    return "\n".join(out) + "\n"


def dump_database(url: str,
                  volatile: Iterable[tuple[str, str, str]] = VOLATILE_COLUMNS) -> str:
    """Schema + data + sequences of the database at ``url``, as one canonical text."""
    return dump_schema(url) + "\n-- DATA\n" + dump_data(url, volatile)


def table_counts(dump: str) -> Mapping[str, int]:
    """``{"schema.table": rows}`` read back from a dump's table headers."""
    counts = {}
    for m in re.finditer(r"^-- table (\S+) \(.*\): (\d+) rows$", dump, re.M):
        counts[m.group(1)] = int(m.group(2))
    return counts


def diff_dumps(a: str, b: str, a_name: str = "a", b_name: str = "b", limit: int = 60) -> str:
    """A short unified diff of two dumps ('' when equal), for assertion messages."""
    if a == b:
        return ""
    lines = list(difflib.unified_diff(a.splitlines(), b.splitlines(), a_name, b_name,
                                      lineterm="", n=1))
    more = f"\n... {len(lines) - limit} more diff lines" if len(lines) > limit else ""
    return "\n".join(lines[:limit]) + more
