"""devenv doctor's look inside a Django project: its models and its migration state, as JSON.

Standalone: run by path with the app's own interpreter (``python _introspect_django.py
JSON`` in the step's folder), which may not have devenv installed, so it imports nothing
from devenv. It only reads: no migration is applied, no table is created. The JSON it
prints on stdout:

    {"ok": true, "settings": "...", "django": "5.2", "database": null | "error text",
     "models": [{"label", "file", "table", "schema", "name", "managed", "fields": [...]}],
     "secrets": {"NAME": "sha256:..." | "empty"},
     "migrations": {"error", "applied", "unapplied", "conflicts", "fake", "table"}}

``ok: false`` with ``error`` when Django cannot even start.
"""

# mypy: disable-error-code="import-untyped"
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

_SETTINGS_IN_MANAGE = re.compile(
    r"""DJANGO_SETTINGS_MODULE['"]\s*,\s*['"]([A-Za-z_][\w.]*)['"]""")
# Settings whose values two apps may have to share; only a hash of the value leaves.
_SECRET_NAME = re.compile(r"(SECRET|TOKEN|JWT|SIGNING|_KEY$|SALT)")


class Fail(Exception):
    pass


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def digest(value: Any) -> str:
    if value is None or value == "":
        return "empty"
    return "sha256:" + hashlib.sha256(str(value).encode()).hexdigest()


def setup(opts: dict[str, Any]) -> str:
    """Put the project on sys.path, pick the settings module, ``django.setup()``."""
    manage = Path(opts.get("manage") or "manage.py")
    settings = opts.get("settings") or os.environ.get("DJANGO_SETTINGS_MODULE")
    if manage.is_file():
        project_dir = manage.resolve().parent
        if not settings:
            m = _SETTINGS_IN_MANAGE.search(manage.read_text(errors="replace"))
            settings = m.group(1) if m else None
    elif settings:
        project_dir = Path.cwd()
    else:
        raise Fail(f"{manage} not found in the step's folder (set manage:, or settings:)")
    if not settings:
        raise Fail(f"cannot tell the settings module: {manage} does not set "
                   "DJANGO_SETTINGS_MODULE")
    # As running manage.py does: the project folder first, not this script's folder.
    sys.path[0] = str(project_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = settings
    try:
        import django
    except ImportError:
        raise Fail(f"Django is not installed for {sys.executable}") from None
    try:
        django.setup()
    except Exception as exc:
        raise Fail(f"Django could not start with settings '{settings}': "
                   f"{first_line(exc)}") from None
    return str(settings)


def split_table(db_table: str) -> tuple[str | None, str]:
    """``public"."members`` (Django's way to name a schema) -> ("public", "members")."""
    if '"."' in db_table:
        schema, _, name = db_table.partition('"."')
        return schema.strip('"'), name.strip('"')
    return None, db_table


class Resolver:
    """Where a table name resolves on the app's own connection (its search_path)."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.first_schema: str | None = None
        self.cache: dict[str, tuple[str, str] | None] = {}
        with connection.cursor() as cur:
            cur.execute("SELECT current_schemas(false)")
            row = cur.fetchone()
            schemas = list(row[0]) if row and row[0] else []
            self.first_schema = schemas[0] if schemas else None

    def resolve(self, db_table: str) -> tuple[str, str] | None:
        """(schema, table) of an existing table, else ``None``."""
        if db_table not in self.cache:
            quoted = self.connection.ops.quote_name(db_table)
            with self.connection.cursor() as cur:
                cur.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
                            "ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
                            [quoted])
                row = cur.fetchone()
            self.cache[db_table] = (row[0], row[1]) if row else None
        return self.cache[db_table]

    def where(self, db_table: str) -> tuple[str | None, str]:
        """Where the table is, or where it would be created."""
        found = self.resolve(db_table)
        if found is not None:
            return found
        schema, name = split_table(db_table)
        return schema or self.first_schema, name


def source_file(obj: Any) -> str | None:
    import inspect

    try:
        return inspect.getsourcefile(obj)
    except (TypeError, OSError):
        return None


def dump_models(connection: Any, resolver: Resolver | None) -> list[dict[str, Any]]:
    from django.apps import apps

    out = []
    for model in apps.get_models(include_auto_created=True):
        meta = model._meta
        if meta.proxy or meta.swapped:
            continue
        if resolver is not None:
            schema, name = resolver.where(meta.db_table)
        else:
            schema, name = split_table(meta.db_table)
        fields = []
        for f in meta.local_concrete_fields:
            if not f.column:
                continue
            try:
                db_type = f.db_type(connection)
            except Exception:
                db_type = None
            fields.append({
                "attr": f.name,
                "column": f.column,
                "type": f.get_internal_type(),
                "db_type": db_type,
                "max_length": getattr(f, "max_length", None),
                "max_digits": getattr(f, "max_digits", None),
                "decimal_places": getattr(f, "decimal_places", None),
                "null": bool(f.null),
                "primary_key": bool(f.primary_key),
            })
        out.append({
            "label": f"{meta.app_label}.{model.__name__}",
            "file": source_file(model),
            "table": meta.db_table,
            "schema": schema,
            "name": name,
            "managed": bool(meta.managed),
            "fields": fields,
        })
    return out


def created_tables(migration: Any, state: Any) -> list[str]:
    """The tables a migration's CreateModel operations create (managed models only)."""
    from django.db import migrations

    out = []
    for op in migration.operations:
        if not isinstance(op, migrations.CreateModel):
            continue
        ms = state.models.get((migration.app_label, op.name_lower))
        if ms is None:
            continue
        opts = ms.options
        if opts.get("proxy") or opts.get("managed") is False:
            continue
        out.append(opts.get("db_table") or f"{migration.app_label}_{op.name_lower}")
    return out


def migration_state(connection: Any, resolver: Resolver | None) -> dict[str, Any]:
    from django.db.migrations.executor import MigrationExecutor
    from django.db.migrations.recorder import MigrationRecorder

    executor = MigrationExecutor(connection)
    loader = executor.loader
    conflicts = {app: sorted(names) for app, names in loader.detect_conflicts().items()}
    plan = [m for m, backwards in executor.migration_plan(loader.graph.leaf_nodes())
            if not backwards] if not conflicts else []
    table = MigrationRecorder(connection).Migration._meta.db_table
    where = resolver.resolve(table) if resolver is not None else None
    fake = []
    if plan and resolver is not None:
        # Only migrations that create tables matter here; the project state is built up
        # through the plan (as migrate does) to know their table names.
        state = executor._create_project_state(with_applied_migrations=True)
        for migration in plan:
            state = migration.mutate_state(state, preserve=False)
            tables = created_tables(migration, state)
            if not tables:
                continue
            present = []
            missing = []
            for t in tables:
                found = resolver.resolve(t)
                if found is not None:
                    present.append(f"{found[0]}.{found[1]}")
                else:
                    missing.append(t)
            if present:
                fake.append({"migration": f"{migration.app_label}.{migration.name}",
                             "app": migration.app_label, "name": migration.name,
                             "present": present, "missing": missing})
    return {
        "error": None,
        "applied": len(loader.applied_migrations),
        "unapplied": [f"{m.app_label}.{m.name}" for m in plan],
        "conflicts": conflicts,
        "fake": fake,
        "table": f"{where[0]}.{where[1]}" if where else table,
    }


def secrets() -> dict[str, str]:
    from django.conf import global_settings, settings

    out = {}
    for name in dir(settings):
        # Django's own settings (SECRET_KEY...) belong to this app alone.
        if name.isupper() and _SECRET_NAME.search(name) and not hasattr(global_settings, name):
            out[name] = digest(getattr(settings, name, None))
    return out


def main(argv: list[str]) -> int:
    t0 = time.monotonic()
    opts = json.loads(argv[1]) if len(argv) > 1 else {}
    result: dict[str, Any] = {"ok": True}
    try:
        result["settings"] = setup(opts)
        import django
        from django.db import DEFAULT_DB_ALIAS, connections

        result["django"] = django.get_version()
        connection = connections[DEFAULT_DB_ALIAS]
        resolver: Resolver | None = None
        try:
            connection.ensure_connection()
            resolver = Resolver(connection)
            result["database"] = None
        except Exception as exc:
            result["database"] = first_line(exc)
        result["models"] = dump_models(connection, resolver)
        result["secrets"] = secrets()
        if resolver is not None and opts.get("migrations", True):
            try:
                result["migrations"] = migration_state(connection, resolver)
            except Exception as exc:
                result["migrations"] = {"error": first_line(exc)}
        else:
            result["migrations"] = {"error": f"no database connection: {result['database']}"}
    except Fail as exc:
        result = {"ok": False, "error": str(exc)}
    except Exception as exc:
        result = {"ok": False, "error": first_line(exc)}
    result["seconds"] = round(time.monotonic() - t0, 3)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    # Only reads were made: skip tearing down the app's modules and connection pools
    # (a noticeable part of doctor's wall time).
    os._exit(code)
