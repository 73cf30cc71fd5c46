"""devenv doctor's look inside a Flask app or an Alembic project and its history, as JSON.

Standalone: run by path with the app's own interpreter (``python _introspect_sqlalchemy.py
JSON`` in the step's folder), which may not have devenv installed, so it imports nothing
from devenv. It only reads: no migration runs. Options (the JSON argument):

    app        the Flask app as FLASK_APP spells it (``app.py``, ``pkg:create_app()``);
               null: a plain Alembic project
    directory  Flask-Migrate's folder (default: what the app's Migrate was given)
    config     a plain Alembic project's .ini file

A Flask app that does not use Flask-SQLAlchemy (plain SQLAlchemy, or another wrapper) is
not an error: its models are not read there ("tables": null, "models" says why). A plain
Alembic project is read as ``alembic current`` reads it: its env.py runs with a migration
function that applies nothing, so the app's own connection settings (search_path,
version_table_schema) apply, and env.py's ``target_metadata`` gives the models.

It prints one JSON line on stdout:

    {"ok": true, "app": "...", "database": null | "error",
     "tables": null | [{"schema", "name", "model", "file", "columns": [...]}],
     "models": null | "why no tables were read",
     "secrets": {"NAME": "sha256:..." | "empty"},
     "alembic": {"error", "directory", "heads", "current", "pending", "unknown"}}
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from typing import Any

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


def load_app(import_path: str) -> Any:
    try:
        from flask.cli import ScriptInfo
    except ImportError:
        raise Fail(f"Flask is not installed for {sys.executable}") from None
    try:
        return ScriptInfo(app_import_path=import_path).load_app()
    except Exception as exc:
        # Flask's NoAppException carries the import's traceback: its last line says why.
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        why = lines[-1].strip() if len(lines) > 1 else first_line(exc)
        raise Fail(f"cannot load the Flask app {import_path}: {why}") from None


def type_label(t: Any) -> str:
    """``String(20)``, ``Numeric(10, 2)``, ``DateTime(timezone=True)``: as a model says it."""
    name = type(t).__name__
    length = getattr(t, "length", None)
    if length is not None:
        return f"{name}({length})"
    precision = getattr(t, "precision", None)
    if precision is not None and hasattr(t, "scale"):
        scale = getattr(t, "scale", None)
        return f"{name}({precision}, {scale})" if scale is not None else f"{name}({precision})"
    if getattr(t, "timezone", False):
        return f"{name}(timezone=True)"
    return name


def compiled(t: Any) -> str | None:
    from sqlalchemy.dialects import postgresql

    try:
        return str(t.compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]
    except Exception:
        return None


def source_file(obj: Any) -> str | None:
    import inspect

    try:
        return inspect.getsourcefile(obj)
    except (TypeError, OSError):
        return None


def resolve(conn: Any, schema: str | None, name: str) -> tuple[str | None, bool]:
    """The schema a table lives in on the app's connection, and whether it exists."""
    from sqlalchemy import text

    quoted = f'"{schema}"."{name}"' if schema else f'"{name}"'
    row = conn.execute(text(
        "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.oid = to_regclass(:t)"), {"t": quoted}).fetchone()
    if row is not None:
        return str(row[0]), True
    if schema:
        return schema, False
    first = conn.execute(text("SELECT (current_schemas(false))[1]")).scalar()
    return (str(first) if first else None), False


def dump_tables(ext: Any, conn: Any | None) -> list[dict[str, Any]]:
    metadatas = getattr(ext, "metadatas", None) or {None: ext.metadata}
    classes: dict[Any, Any] = {}
    try:
        for mapper in ext.Model.registry.mappers:
            classes.setdefault(mapper.local_table, mapper.class_)
    except Exception:
        pass
    return dump_metadata(list(metadatas.values()), classes, conn)


def model_classes() -> dict[Any, Any]:
    """Mapped classes by table, from the modules loaded out of the app's folder (a plain
    declarative base keeps no list of them that every SQLAlchemy version shares)."""
    root = os.getcwd() + os.sep
    out: dict[Any, Any] = {}
    for mod in list(sys.modules.values()):
        if not str(getattr(mod, "__file__", "") or "").startswith(root):
            continue
        for value in list(vars(mod).values()):
            table = getattr(value, "__table__", None) if isinstance(value, type) else None
            if table is not None:
                out.setdefault(table, value)
    return out


def dump_metadata(metadatas: list[Any], classes: dict[Any, Any], conn: Any | None,
                  ) -> list[dict[str, Any]]:
    out = []
    for metadata in metadatas:
        for table in metadata.sorted_tables:
            schema = table.schema
            exists = None
            if conn is not None:
                schema, exists = resolve(conn, table.schema, table.name)
            cls = classes.get(table)
            out.append({
                "schema": schema,
                "name": table.name,
                "exists": exists,
                "model": f"{cls.__module__}.{cls.__qualname__}" if cls is not None else None,
                "file": source_file(cls) if cls is not None else None,
                "columns": [{
                    "name": c.name,
                    "attr": c.key,
                    "type": type_label(c.type),
                    "db_type": compiled(c.type),
                    "nullable": bool(c.nullable),
                    "primary_key": bool(c.primary_key),
                } for c in table.columns],
            })
    return out


def ancestors(revmap: dict[str, Any], revs: list[str]) -> set[str]:
    seen: set[str] = set()
    stack = list(revs)
    while stack:
        rev = stack.pop()
        if rev in seen or rev not in revmap:
            continue
        seen.add(rev)
        script = revmap[rev]
        for attr in ("down_revision", "dependencies"):
            down = getattr(script, attr, None)
            if down is None:
                continue
            stack.extend([down] if isinstance(down, str) else list(down))
    return seen


def alembic_state(cfg: Any, directory: str, conn: Any | None, version_opts: dict[str, Any],
                  ) -> dict[str, Any]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(cfg)
    if conn is None:
        return history_state(script, directory, None, "no database connection")
    from alembic.runtime.migration import MigrationContext

    ctx = MigrationContext.configure(conn, opts=version_opts)
    return history_state(script, directory, list(ctx.get_current_heads()))


def history_state(script: Any, directory: str, current_heads: list[str] | None,
                  error: str | None = None) -> dict[str, Any]:
    """Heads, and where the database stands against them (``current_heads``: None when
    the database was not read, with ``error`` saying why)."""
    revmap = {s.revision: s for s in script.walk_revisions()}
    heads = sorted(script.get_heads())
    out: dict[str, Any] = {"error": error, "directory": directory, "heads": heads,
                           "versions": os.path.relpath(script.versions),
                           "current": None, "pending": [], "unknown": []}
    if current_heads is None:
        return out
    current = sorted(current_heads)
    out["current"] = current
    out["unknown"] = [r for r in current if r not in revmap]
    pending = ancestors(revmap, heads) - ancestors(revmap, current)
    order = [s.revision for s in reversed(list(script.walk_revisions()))]
    out["pending"] = [{"revision": r, "file": os.path.relpath(revmap[r].path),
                       "doc": (revmap[r].doc or "").strip()}
                      for r in order if r in pending]
    return out


def flask_secrets(app: Any) -> dict[str, str]:
    defaults = set(type(app).default_config)
    return {k: digest(v) for k, v in app.config.items()
            if k.isupper() and _SECRET_NAME.search(k) and k not in defaults}


def run_flask(opts: dict[str, Any], result: dict[str, Any]) -> None:
    import_path = opts.get("app") or os.environ.get("FLASK_APP") or "app.py"
    app = load_app(import_path)
    result["app"] = import_path
    with app.app_context():
        ext = app.extensions.get("sqlalchemy")
        migrate = app.extensions.get("migrate")
        if ext is None:
            # Plain SQLAlchemy or another wrapper: nothing to read the models or the
            # database through here (a plain alembic step of the app is read on its own).
            result.update({"database": None, "tables": None, "alembic": None,
                           "models": f"the Flask app {import_path} does not use "
                                     "Flask-SQLAlchemy", "secrets": flask_secrets(app)})
            return
        result["models"] = None
        conn = None
        try:
            conn = ext.engine.connect()
            result["database"] = None
        except Exception as exc:
            result["database"] = first_line(exc)
        try:
            result["tables"] = dump_tables(ext, conn)
            result["secrets"] = flask_secrets(app)
            directory = opts.get("directory") or (migrate.directory if migrate else None)
            if directory and os.path.isdir(directory):
                from alembic.config import Config

                ini = os.path.join(directory, "alembic.ini")
                cfg = Config(ini if os.path.isfile(ini) else None)
                # Flask-Migrate's alembic.ini has no script_location: it is the folder.
                cfg.set_main_option("script_location", directory)
                args = dict(getattr(migrate, "configure_args", {}) or {})
                version_opts = {k: args[k] for k in ("version_table", "version_table_schema")
                                if k in args}
                try:
                    result["alembic"] = alembic_state(cfg, directory, conn, version_opts)
                except Exception as exc:
                    result["alembic"] = {"error": first_line(exc), "directory": directory}
            else:
                result["alembic"] = None
        finally:
            if conn is not None:
                conn.close()


def run_alembic(opts: dict[str, Any], result: dict[str, Any]) -> None:
    """What ``alembic current`` does: env.py runs (so the app's own engine, search_path and
    version table apply) with a migration function that records and applies nothing."""
    try:
        from alembic.config import Config
        from alembic.runtime.environment import EnvironmentContext
        from alembic.script import ScriptDirectory
    except ImportError:
        raise Fail(f"alembic is not installed for {sys.executable}") from None
    ini = opts["config"]
    if not os.path.isfile(ini):
        raise Fail(f"{ini} not found in {os.getcwd()}")
    cfg = Config(ini)
    directory = cfg.get_main_option("script_location") or os.path.dirname(ini)
    result.update({"tables": None, "secrets": {}, "database": None,
                   "models": "env.py names no target_metadata"})
    try:
        script = ScriptDirectory.from_config(cfg)
    except Exception as exc:
        result["alembic"] = {"error": first_line(exc), "directory": directory}
        return
    seen: dict[str, Any] = {}

    def look(heads: Any, context: Any) -> list[Any]:
        seen["current"] = list(context.get_current_heads())
        metadata = context.opts.get("target_metadata")
        metadatas = [m for m in (metadata if isinstance(metadata, (list, tuple))
                                 else [metadata]) if m is not None]
        if metadatas:
            seen["tables"] = dump_metadata(metadatas, model_classes(), context.connection)
        return []  # nothing to apply: this only reads

    try:
        with EnvironmentContext(cfg, script, fn=look, dont_mutate=True):
            script.run_env()
    except Exception as exc:
        result["database"] = f"env.py failed: {first_line(exc)}"
    if "current" in seen:
        result["alembic"] = history_state(script, directory, seen["current"])
    else:
        result["alembic"] = history_state(script, directory, None, result["database"]
                                          or "env.py did not run the migrations")
    if "tables" in seen:
        result["tables"] = seen["tables"]
        result["models"] = None


def main(argv: list[str]) -> int:
    t0 = time.monotonic()
    # The app's own folder, not this script's, comes first (as when its tools run there).
    sys.path[0] = os.getcwd()
    opts = json.loads(argv[1]) if len(argv) > 1 else {}
    result: dict[str, Any] = {"ok": True}
    try:
        if opts.get("config") and not opts.get("app"):
            run_alembic(opts, result)
        else:
            run_flask(opts, result)
    except Fail as exc:
        result = {"ok": False, "error": str(exc)}
    except Exception as exc:
        result = {"ok": False, "error": first_line(exc)}
    result["seconds"] = round(time.monotonic() - t0, 3)
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    # Only reads were made: skip tearing down the app's modules and connection pools
    # (a noticeable part of doctor's wall time).
    os._exit(code)
