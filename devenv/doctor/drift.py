"""Drift between the two frameworks over the tables both map: for each table that the
SQLAlchemy metadata and Django's models both map, every column's type and nullability in
each model and in the live database, each difference named::

    members.phone: SQLAlchemy String(20), Django max_length=32, database varchar(20)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from devenv.doctor.apps import App, rel_file
from devenv.doctor.base import FAIL, WARN, Check, CheckDef, Problems, ok
from devenv.doctor.context import Context

_INT = {"integer": "integer", "int": "integer", "int4": "integer", "serial": "integer",
        "serial4": "integer", "bigint": "bigint", "int8": "bigint", "bigserial": "bigint",
        "serial8": "bigint", "smallint": "smallint", "int2": "smallint",
        "smallserial": "smallint", "bool": "boolean", "boolean": "boolean",
        "float": "double precision", "float8": "double precision",
        "double precision": "double precision", "real": "real", "float4": "real",
        "timestamptz": "timestamptz", "timestamp with time zone": "timestamptz",
        "timestamp": "timestamp", "timestamp without time zone": "timestamp",
        "datetime": "timestamp", "time": "time", "time without time zone": "time",
        "timetz": "timetz", "time with time zone": "timetz", "decimal": "numeric",
        "character varying": "varchar", "character": "char(1)", "char": "char(1)",
        "bpchar": "char"}


def canon(typ: str | None) -> str | None:
    """A column type in one spelling whoever wrote it: ``VARCHAR(20)``, ``varchar(20)`` and
    ``character varying(20)`` are all ``varchar(20)``."""
    if typ is None:
        return None
    t = re.sub(r"\s+", " ", typ.strip().lower())
    t = re.sub(r"\s*,\s*", ",", t)
    t = re.sub(r"\s*\(\s*", "(", t).replace(" )", ")")
    m = re.fullmatch(r"(character varying|varchar)\((\d+)\)", t)
    if m:
        return f"varchar({m.group(2)})"
    m = re.fullmatch(r"(character|char|bpchar)\((\d+)\)", t)
    if m:
        return f"char({m.group(2)})"
    m = re.fullmatch(r"(numeric|decimal)\((\d+)(?:,(\d+))?\)", t)
    if m:
        return f"numeric({m.group(2)},{m.group(3) or 0})"
    m = re.fullmatch(r"(timestamp|time)\(\d\)( with(?:out)? time zone)?", t)
    if m:
        t = m.group(1) + (m.group(2) or "")
    return _INT.get(t, t)


@dataclass(frozen=True)
class Side:
    """One framework's view of a table."""

    framework: str  # SQLAlchemy or Django
    model: str
    file: str
    columns: Mapping[str, Mapping[str, Any]]


def _norm_schema(schema: str | None) -> str | None:
    return schema or None


def sqlalchemy_tables(data: Mapping[str, Any], ctx: Context) -> dict[tuple[str | None, str],
                                                                    Side]:
    project = ctx.project()
    out: dict[tuple[str | None, str], Side] = {}
    for t in data.get("tables") or []:
        key = (_norm_schema(t.get("schema")), str(t["name"]))
        cols = {str(c["name"]): c for c in t.get("columns", [])}
        out.setdefault(key, Side("SQLAlchemy", str(t.get("model") or t["name"]),
                                 rel_file(project, t.get("file")), cols))
    return out


def django_tables(data: Mapping[str, Any], ctx: Context) -> dict[tuple[str | None, str], Side]:
    project = ctx.project()
    out: dict[tuple[str | None, str], Side] = {}
    for m in data.get("models") or []:
        key = (_norm_schema(m.get("schema")), str(m["name"]))
        cols = {str(f["column"]): f for f in m.get("fields", [])}
        out.setdefault(key, Side("Django", str(m["label"]), rel_file(project, m.get("file")),
                                 cols))
    return out


def pairs(sa: Mapping[tuple[str | None, str], Side], dj: Mapping[tuple[str | None, str], Side],
          ) -> list[tuple[tuple[str | None, str], Side, Side]]:
    """The tables both map: same schema and name (an unknown schema matches any)."""
    out = []
    for (schema, name), s in sa.items():
        for (dschema, dname), d in dj.items():
            if name == dname and (schema == dschema or schema is None or dschema is None):
                out.append(((schema or dschema, name), s, d))
                break
    return out


def _dj_label(f: Mapping[str, Any]) -> str:
    typ = str(f.get("type"))
    if typ == "CharField" and f.get("max_length") is not None:
        return f"max_length={f['max_length']}"
    if typ == "DecimalField":
        return f"DecimalField(max_digits={f.get('max_digits')}, " \
               f"decimal_places={f.get('decimal_places')})"
    if typ in ("ForeignKey", "OneToOneField", "AutoField", "BigAutoField", "SmallAutoField"):
        return f"{typ} ({canon(f.get('db_type'))})"
    return typ


def _suggest(framework: str, db_type: str) -> str:
    m = re.fullmatch(r"varchar\((\d+)\)", db_type)
    if m:
        return f"max_length={m.group(1)}" if framework == "Django" else f"String({m.group(1)})"
    return f"a {db_type} type"


def _table_name(key: tuple[str | None, str]) -> str:
    schema, name = key
    return name if schema in (None, "public") else f"{schema}.{name}"


def compare(key: tuple[str | None, str], s: Side, d: Side,
            live: Mapping[str, tuple[str, bool]] | None, problems: Problems) -> int:
    """Add each difference of one shared table to ``problems``; returns the columns compared."""
    table = _table_name(key)
    names = list(s.columns) + [c for c in d.columns if c not in s.columns]
    for col in names:
        sc, dc = s.columns.get(col), d.columns.get(col)
        where = f"{table}.{col}"
        db = live.get(col) if live is not None else None
        if sc is None or dc is None:
            have, other = (s, d) if sc is not None else (d, s)
            if live is not None and db is None:
                problems.add(FAIL, f"{where}: in {have.framework}'s {have.model} but not in "
                                   "the database",
                             f"remove it from {have.model} ({have.file}), or add the "
                             "migration that creates it")
            else:
                problems.add(WARN, f"{where}: mapped by {have.framework} only ({other.framework}'s "
                                   f"{other.model} has no field for it)",
                             f"add {col} to {other.model} ({other.file}) if that app writes "
                             f"{table}")
            continue
        if live is not None and db is None:
            problems.add(FAIL, f"{where}: in both models but not in the database",
                         "apply the migration that adds it (devenv up)")
            continue
        sa_t, dj_t = canon(sc.get("db_type")), canon(dc.get("db_type"))
        db_t = canon(db[0]) if db else None
        types = [t for t in (sa_t, dj_t, db_t) if t is not None]
        if len(set(types)) > 1:
            text = f"{where}: SQLAlchemy {sc.get('type')}, Django {_dj_label(dc)}"
            if db_t:
                text += f", database {db_t}"
            problems.add(FAIL, text, _fix(where, s, d, str(sc.get("attr") or col),
                                          str(dc.get("attr") or col), sa_t, dj_t, db_t,
                                          kind="type"))
        sa_n, dj_n = bool(sc.get("nullable")), bool(dc.get("null"))
        db_n = (not db[1]) if db else None
        nulls = [n for n in (sa_n, dj_n, db_n) if n is not None]
        if len(set(nulls)) > 1:
            text = f"{where}: SQLAlchemy nullable={sa_n}, Django null={dj_n}"
            if db_n is not None:
                text += f", database {'NULL' if db_n else 'NOT NULL'}"
            problems.add(FAIL, text, _fix(where, s, d, str(sc.get("attr") or col),
                                          str(dc.get("attr") or col), sa_n, dj_n, db_n,
                                          kind="null"))
    return len(names)


def _fix(where: str, s: Side, d: Side, sa_attr: str, dj_attr: str, sa: Any, dj: Any, db: Any,
         kind: str) -> str:
    """The edit that removes one difference: change the model that disagrees with the
    database (a database that disagrees with both needs a migration)."""

    def wanted(framework: str) -> str:
        if kind == "null":
            name = "null" if framework == "Django" else "nullable"
            return f"{name}={db}"
        return _suggest(framework, str(db))

    sa_at = f"SQLAlchemy's {s.model}.{sa_attr} ({s.file})"
    dj_at = f"Django's {d.model}.{dj_attr} ({d.file})"
    if db is None:
        return f"make {sa_at} and {dj_at} agree"
    if sa == db and dj != db:
        return f"change {dj_at} to {wanted('Django')}, as in the database"
    if dj == db and sa != db:
        return f"change {sa_at} to {wanted('SQLAlchemy')}, as in the database"
    if sa == dj:
        return f"the database differs from both models: add or apply the migration for " \
               f"{where} (devenv up applies pending ones)"
    return f"make {sa_at}, {dj_at} and the database agree on {where}"


def check_drift(ctx: Context) -> Check:
    """SQLAlchemy's and Django's view of each shared table, and the live database's."""
    apps = ctx.apps()
    # SQLAlchemy models come from a Flask-SQLAlchemy app, or from the target_metadata of a
    # plain Alembic project's env.py (any other wrapper).
    alchemy = [a for a in apps if a.kind in ("flask", "alembic")]
    django = [a for a in apps if a.kind == "django"]
    if not alchemy or not django:
        have = "SQLAlchemy models" if alchemy else "a Django project" if django else "neither"
        return ok("drift.shared_tables", f"not applicable: the steps run {have} (drift "
                                         "needs both SQLAlchemy models and Django)")
    results = ctx.introspection()
    problems = Problems("drift.shared_tables")
    live_all = None
    try:
        live_all = ctx.live_columns() or None
    except Exception:
        live_all = None
    shared: list[str] = []
    columns = 0
    broken: list[App] = [a for a in alchemy + django if not results[a.key].ok]
    for app in broken:
        problems.add(FAIL, f"not compared: {results[app.key].error}",
                     f"fix {app.label} so that it starts")
    # An app whose models could not be read (not Flask-SQLAlchemy, no target_metadata) has
    # nothing to compare: that is not a failure.
    readable = [a for a in alchemy if results[a.key].ok
                and results[a.key].data.get("tables") is not None]
    unread = [f"{a.label}: {results[a.key].data.get('models')}" for a in alchemy
              if results[a.key].ok and results[a.key].data.get("tables") is None]
    if not readable and not problems:
        return ok("drift.shared_tables", "not applicable: no SQLAlchemy models could be read ("
                                         + "; ".join(unread) + ")")
    sa_names: set[str] = set()
    dj_names: set[str] = set()
    for fa in readable:
        for da in django:
            fr, dr = results[fa.key], results[da.key]
            if not dr.ok:
                continue
            sa, dj = sqlalchemy_tables(fr.data, ctx), django_tables(dr.data, ctx)
            sa_names.update(_table_name(k) for k in sa)
            dj_names.update(_table_name(k) for k in dj)
            for key, s, d in pairs(sa, dj):
                shared.append(_table_name(key))
                live = None
                if live_all is not None and key[0] is not None:
                    live = live_all.get((key[0], key[1]))
                columns += compare(key, s, d, live, problems)
    if not shared and not problems:
        return ok("drift.shared_tables", "not applicable: the apps share no tables ("
                  f"SQLAlchemy maps {_few(sa_names)}; Django maps {_few(dj_names)})")
    where = "" if live_all is not None else " (the database was not compared: it does not " \
                                               "answer)"
    return problems.result(f"{len(shared)} shared tables ({', '.join(shared)}), {columns} "
                           f"columns: SQLAlchemy, Django and the database agree{where}")


def _few(names: set[str], limit: int = 4) -> str:
    shown = sorted(names)
    if not shown:
        return "none"
    return ", ".join(shown[:limit]) + (f" and {len(shown) - limit} more"
                                       if len(shown) > limit else "")


CHECKS = [CheckDef("drift.shared_tables", "Drift", check_drift, timeout=30.0)]
