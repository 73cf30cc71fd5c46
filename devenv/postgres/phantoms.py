"""Phantom migrations: applied in the database, absent from the checked-out code.

Django's ``migrate`` never unapplies a migration the code no longer has, and Alembic
cannot upgrade from a revision it does not know: after a branch switch or a revert such a
database matches no code, and the next step fails on it (a NOT NULL column no fixture
fills). devenv reads what the database applied (``django_migrations``, ``alembic_version``)
and what the code has (the migration files among the step's inputs), statically: no app
is imported, so this costs one query per migration step.

Django app labels are read from the folders holding ``migrations/`` (the default label);
rows of apps with no migrations folder here (``django.contrib``, installed packages) are
not judged.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from pathlib import Path

from devenv import fingerprint, graph
from devenv.postgres import database, libpq
from devenv.postgres.database import Target
from devenv.postgres.libpq import ident
from devenv.schema import Project, StepSpec

_DJANGO_FILE = re.compile(r"(?:^|/)([A-Za-z_][A-Za-z0-9_]*)/migrations/"
                          r"((?!__init__\.py$)[A-Za-z0-9_]+)\.py$")
# A squashed migration's ``replaces = [("app", "0001_x"), ...]``: Django records it under
# the names it replaces, which may be gone from the code.
_REPLACES = re.compile(r"^\s*replaces\s*=\s*\[(.*?)\]", re.MULTILINE | re.DOTALL)
_PAIR = re.compile(r"\(\s*['\"](\w+)['\"]\s*,\s*['\"](\w+)['\"]\s*\)")
_REVISION = re.compile(r"^revision\s*(?::\s*str\s*)?=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)


def _files(project: Project, step: StepSpec) -> list[str]:
    return fingerprint.expand_inputs(project.root, step.inputs)


def django_on_disk(root: Path, paths: Iterable[str]) -> dict[str, set[str]]:
    """app label -> migration names, from migration file paths (and the names squashed
    migrations among them replace)."""
    out: dict[str, set[str]] = {}
    for p in paths:
        m = _DJANGO_FILE.search(p)
        if not m:
            continue
        out.setdefault(m.group(1), set()).add(m.group(2))
        try:
            text = (root / p).read_text(errors="replace")
        except OSError:
            continue
        for block in _REPLACES.findall(text):
            for app, name in _PAIR.findall(block):
                out.setdefault(app, set()).add(name)
    return out


def alembic_on_disk(root: Path, paths: Iterable[str]) -> set[str]:
    """Revision ids declared by the migration scripts among ``paths``."""
    found: set[str] = set()
    for p in paths:
        if not p.endswith(".py") or "/versions/" not in f"/{p}":
            continue
        try:
            text = (root / p).read_text(errors="replace")
        except OSError:
            continue
        found.update(_REVISION.findall(text))
    return found


def _table_rows(conn: libpq.Connection, search_path: tuple[str, ...], table: str,
                columns: str) -> list[tuple[object, ...]] | None:
    """Rows of ``table`` as the step's search_path resolves it; None if it has no such
    table (the step never ran here)."""
    # ident("$user") is "$user", which PostgreSQL reads as the special name; RESET: a
    # step without a search_path reads the database's default, as it would run
    conn.execute("SET search_path TO " + ", ".join(ident(s) for s in search_path)
                 if search_path else "RESET search_path")
    row = conn.execute("SELECT to_regclass(%s)::text", (table,)).fetchone()
    if row is None or row[0] is None:
        return None
    return [tuple(r) for r in conn.execute(f"SELECT {columns} FROM {row[0]}").fetchall()]


def find(project: Project, target: Target, dbname: str | None = None,
         steps: Iterable[str] | None = None) -> dict[str, list[str]]:
    """step -> the phantom migrations its database holds (``app.name`` or a revision)."""
    db = dbname or target.dbname
    wanted = set(steps) if steps is not None else set(project.steps)
    out: dict[str, list[str]] = {}
    with contextlib.ExitStack() as stack:
        # one session for every migration step's table (a connection costs a password
        # exchange, and this runs on every `up`), opened when the first one needs it
        opened: list[libpq.Connection] = []

        def conn() -> libpq.Connection:
            if not opened:
                opened.append(stack.enter_context(database.connect(target, db)))
            return opened[0]

        for name in graph.topo_order(project):
            step = project.steps[name]
            if name not in wanted or step.kind not in ("django-migrate", "alembic"):
                continue
            paths = _files(project, step)
            if step.kind == "django-migrate":
                disk = django_on_disk(project.root, paths)
                if not disk:
                    continue
                rows = _table_rows(conn(), step.search_path, "django_migrations", "app, name")
                gone = sorted(f"{app}.{mig}" for app, mig in (rows or [])
                              if str(app) in disk and str(mig) not in disk[str(app)])
            else:
                revisions = alembic_on_disk(project.root, paths)
                if not revisions:
                    continue
                rows = _table_rows(conn(), step.search_path, "alembic_version", "version_num")
                gone = sorted(str(r[0]) for r in (rows or []) if str(r[0]) not in revisions)
            if gone:
                out[name] = gone
    return out
