"""devenv's django-migrate step: compare Django's migration plan with the live database,
fake what another app already created, refuse what only partly exists, then migrate.

Standalone: run by path with the app's interpreter (``python _django_migrate.py JSON``),
which may not have devenv installed, so it imports nothing from devenv. Its output is the
step's log; problems go to stderr and the exit code is 1.
"""

# Django ships no type information; the app may not have django-stubs.
# mypy: disable-error-code="import-untyped"

from __future__ import annotations

import json
import sys
import traceback
from typing import TYPE_CHECKING, Any

PROG = "django-migrate"


if TYPE_CHECKING:
    from devenv.kinds import _django_common as common
else:
    # Run by path in the app's interpreter, which may lack devenv: this folder is
    # sys.path[0] until main() gives it to the app (shared.use_app_folder).
    import _django_common as common
fail = common.fail


def say(text: str) -> None:
    print(f"{PROG}: {text}", flush=True)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# ----------------------------------------------------------------------- the live database


def live_columns(connection: Any) -> dict[str, dict[str, str]]:
    """Tables -> column -> type, under the names a model's ``db_table`` may use: the bare
    name of a table the search_path shows (as Django resolves it), and the
    ``schema"."table`` form that pins a model to a schema."""
    out: dict[str, dict[str, str]] = {}
    with connection.cursor() as cur:
        cur.execute(
            "SELECT n.nspname, c.relname, pg_table_is_visible(c.oid), a.attname, "
            "  format_type(a.atttypid, a.atttypmod) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_attribute a ON a.attrelid = c.oid "
            "  AND a.attnum > 0 AND NOT a.attisdropped "
            "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') "
            "  AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "  AND n.nspname NOT LIKE 'pg\\_toast%' "
            "ORDER BY n.nspname, c.relname, a.attnum")
        for schema, table, visible, column, typ in cur.fetchall():
            names = [f'{schema}"."{table}'] + ([table] if visible else [])
            for name in names:
                cols = out.setdefault(name, {})
                if column is not None:
                    cols[column] = typ
    return out


def shown(table: str) -> str:
    """``public"."members`` (a schema-pinned db_table) as ``public.members``."""
    return table.replace('"."', ".")


class _Rollback(Exception):
    pass


def canonical_types(connection: Any, types: set[str]) -> dict[str, str]:
    """Django's column types as PostgreSQL spells them (``varchar(50)`` -> ``character
    varying(50)``, ``serial`` -> ``integer``): a temporary table declares them, and the
    catalog says what they became. Rolled back; nothing stays behind."""
    from django.db import DatabaseError, transaction

    wanted = sorted(types)
    out: dict[str, str] = {}
    if not wanted:
        return out

    def probe(cur: Any, batch: list[str], name: str) -> None:
        cols = ", ".join(f"c{i} {t}" for i, t in enumerate(batch))
        # The types come from the app's model code (Django pastes them into DDL the same
        # way); no user-supplied names are involved.
        cur.execute(f"CREATE TEMPORARY TABLE {name} ({cols})")
        cur.execute("SELECT attnum, format_type(atttypid, atttypmod) FROM pg_attribute "
                    "WHERE attrelid = %s::regclass AND attnum > 0 ORDER BY attnum", [name])
        for attnum, typ in cur.fetchall():
            out[batch[attnum - 1]] = typ

    try:
        with transaction.atomic(using=connection.alias), connection.cursor() as cur:
            try:
                with transaction.atomic(using=connection.alias):
                    probe(cur, wanted, "devenv_type_probe")
            except DatabaseError:
                # One odd type spoils the batch: ask about each on its own.
                for i, t in enumerate(wanted):
                    try:
                        with transaction.atomic(using=connection.alias):
                            probe(cur, [t], f"devenv_type_probe_{i}")
                    except DatabaseError:
                        out[t] = t
            raise _Rollback
    except _Rollback:
        pass
    return out


# ----------------------------------------------------------------------- what a plan creates


class Expected:
    """The tables and columns one migration creates."""

    def __init__(self, migration: Any) -> None:
        self.migration = migration
        self.tables: dict[str, dict[str, str]] = {}  # table -> column -> Django type
        self.columns: list[tuple[str, str, str]] = []  # (table, column, Django type)

    @property
    def key(self) -> str:
        return f"{self.migration.app_label}.{self.migration.name}"

    def empty(self) -> bool:
        return not self.tables and not self.columns


def _guess_tables(migration: Any, state: Any, max_len: int) -> list[str | None]:
    """Table names the migration's CreateModel/AddField touch, from the model states
    alone (rendering the models is slow; only migrations near live tables need it)."""
    from django.db import migrations
    from django.db.backends.utils import truncate_name

    out: list[str | None] = []
    for op in migration.operations:
        if isinstance(op, migrations.CreateModel):
            name = op.name_lower
        elif isinstance(op, migrations.AddField):
            name = op.model_name_lower
        else:
            continue
        ms = state.models.get((migration.app_label, name))
        if ms is None:
            out.append(None)
            continue
        table = ms.options.get("db_table") or truncate_name(
            f"{migration.app_label}_{name}", max_len)
        out.append(table)
        fields = list(ms.fields.items()) if isinstance(op, migrations.CreateModel) \
            else [(op.name, op.field)]
        for fname, field in fields:
            if getattr(field, "many_to_many", False):
                out.append(getattr(field, "db_table", None)
                           or truncate_name(f"{table}_{fname}", max_len))
    return out


def _expected(migration: Any, state: Any, connection: Any) -> Expected:
    from django.db import migrations, router

    apps = state.apps
    exp = Expected(migration)

    def skipped(model: Any) -> bool:
        # As Django's --fake-initial: these create no table on this database.
        meta = model._meta
        return bool(meta.proxy or not meta.managed or meta.swapped or not router.allow_migrate(
            connection.alias, migration.app_label, model_name=meta.model_name))

    def add_table(model: Any) -> None:
        cols: dict[str, str] = {}
        for f in model._meta.local_concrete_fields:
            typ = f.db_type(connection)
            if f.column and typ:
                cols[f.column] = typ
        exp.tables[model._meta.db_table] = cols

    for op in migration.operations:
        if isinstance(op, migrations.CreateModel):
            model = apps.get_model(migration.app_label, op.name)
            if skipped(model):
                continue
            add_table(model)
            for m2m in model._meta.local_many_to_many:
                through = m2m.remote_field.through
                if through._meta.auto_created:
                    add_table(through)
        elif isinstance(op, migrations.AddField):
            model = apps.get_model(migration.app_label, op.model_name)
            if skipped(model):
                continue
            field = model._meta.get_field(op.name)
            if field.many_to_many:
                through = field.remote_field.through
                if through._meta.auto_created:
                    add_table(through)
                continue
            table = model._meta.db_table
            typ = field.db_type(connection)
            if table in exp.tables or not field.column or not typ:
                continue
            exp.columns.append((table, field.column, typ))
    return exp


def expected_objects(executor: Any, connection: Any, plan: list[Any],
                     live: dict[str, dict[str, str]]) -> list[Expected]:
    """What each migration of the plan creates; left empty for migrations that touch no
    existing table (they are simply applied)."""
    state = executor._create_project_state(with_applied_migrations=True)
    max_len = connection.ops.max_name_length()
    out = []
    for migration in plan:
        state = migration.mutate_state(state, preserve=False)
        guesses = _guess_tables(migration, state, max_len)
        if any(t is None or t in live for t in guesses):
            out.append(_expected(migration, state, connection))
        else:
            out.append(Expected(migration))
    return out


# ----------------------------------------------------------------------- decisions


def decide(found: list[Expected], live: dict[str, dict[str, str]], canon: dict[str, str],
           compare_types: bool) -> tuple[dict[str, list[str]], list[str]]:
    """Migrations to fake (key -> the tables/columns that already exist) and problems."""
    fakes: dict[str, list[str]] = {}
    problems: list[str] = []
    for i, exp in enumerate(found):
        if exp.empty():
            continue
        present: list[str] = []
        missing: list[str] = []
        for table in exp.tables:
            (present if table in live else missing).append(shown(table))
        for table, column, _ in exp.columns:
            name = f"{shown(table)}.{column}"
            (present if column in live.get(table, {}) else missing).append(name)
        if not present:
            continue
        if missing:
            problems.append(
                f"{PROG}: cannot apply {exp.key}: its tables only partly exist in the "
                f"database\n"
                f"  missing: {', '.join(missing)}\n"
                f"  present: {', '.join(present)}\n"
                f"  another tool created part of this schema: create what is missing (or "
                f"drop what is present) so the database matches the migration, then run "
                f"the step again")
            continue
        # Columns that later migrations of this plan add may already be there too.
        later: dict[str, set[str]] = {}
        for other in found[i + 1:]:
            for table, column, _ in other.columns:
                later.setdefault(table, set()).add(column)
        diffs: dict[str, list[str]] = {}
        for table, cols in exp.tables.items():
            have = live[table]
            lines = diffs.setdefault(table, [])
            for col, typ in cols.items():
                if col not in have:
                    lines.append(f"missing column: {col} {canon.get(typ, typ)}")
            for col, typ in have.items():
                if col not in cols and col not in later.get(table, set()):
                    lines.append(f"unexpected column: {col} {typ}")
            if compare_types:
                for col, typ in cols.items():
                    want = canon.get(typ, typ)
                    if col in have and have[col] != want:
                        lines.append(f"type of {col}: {want} in the migration, {have[col]} "
                                     f"in the database")
        if compare_types:
            for table, column, typ in exp.columns:
                want = canon.get(typ, typ)
                got = live[table][column]
                if got != want:
                    diffs.setdefault(table, []).append(
                        f"type of {column}: {want} in the migration, {got} in the database")
        bad = {t: lines for t, lines in diffs.items() if lines}
        if bad:
            for table, lines in bad.items():
                problems.append(
                    f"{PROG}: cannot fake {exp.key}: table {shown(table)} exists with other "
                    f"columns than the migration creates\n"
                    + "".join(f"  {line}\n" for line in lines)
                    + "  make the table and the model agree, then run the step again")
            continue
        fakes[exp.key] = present
    return fakes, problems


# ----------------------------------------------------------------------- migrating


def prepare(opts: dict[str, Any], settings: str) -> None:
    """What needs no database: the default database is PostgreSQL, each ``apps:`` label
    is an installed app with migrations, and the migration files are imported, so a warm
    start pays for reading them ahead of the step's turn."""
    from django.apps import apps
    from django.core.management.commands import migrate  # noqa: F401
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.migrations.loader import MigrationLoader

    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "postgresql":
        fail(f"the default database of {settings} is {connection.vendor}; this kind "
             "compares the migration plan with PostgreSQL's catalog")
    # Without a connection the loader reads the migration files only (no query of
    # django_migrations); run() builds the real one, from the modules imported here.
    on_disk = MigrationLoader(None)
    known = [c.label for c in apps.get_app_configs()]
    for label in opts.get("apps") or []:
        if label not in known:
            import difflib

            close = difflib.get_close_matches(label, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            fail(f"apps: no installed app '{label}'{hint}; installed: {', '.join(known)}")
        if label not in on_disk.migrated_apps:
            fail(f"apps: app '{label}' has no migrations")


def run(opts: dict[str, Any], settings: str) -> None:
    """Compare the plan with the live database, then migrate (faking what exists)."""
    from django.core.management import call_command
    from django.core.management.base import CommandError
    from django.core.management.commands import migrate as migrate_command
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.migrations.executor import MigrationExecutor

    connection = connections[DEFAULT_DB_ALIAS]
    try:
        connection.ensure_connection()
    except Exception as exc:
        fail(f"cannot connect to the database: {common.first_line(exc)}")

    executor = MigrationExecutor(connection)
    loader = executor.loader
    conflicts = loader.detect_conflicts()
    if conflicts:
        names = "; ".join(f"{', '.join(sorted(n))} in {app}" for app, n in
                          sorted(conflicts.items()))
        fail(f"conflicting migrations ({names}): merge them with python manage.py "
             "makemigrations --merge")
    labels: list[str] = list(opts.get("apps") or [])
    leaves = loader.graph.leaf_nodes()
    targets = [k for k in leaves if k[0] in labels] if labels else leaves
    plan = [m for m, backwards in executor.migration_plan(targets) if not backwards]

    live = live_columns(connection)
    found = expected_objects(executor, connection, plan, live)
    types = {t for e in found for cols in e.tables.values() for t in cols.values()}
    types |= {t for e in found for _, _, t in e.columns}
    canon = canonical_types(connection, types) if opts.get("compare_types", True) else {}
    fakes, problems = decide(found, live, canon, opts.get("compare_types", True))

    scope = f"apps {', '.join(labels)}" if labels else "all apps"
    say(f"settings {settings}, {scope}: {_plural(len(plan), 'migration')} to apply")
    if problems:
        for text in problems:
            print(text, file=sys.stderr, flush=True)
        fail(f"nothing was migrated: {_plural(len(problems), 'problem')} above")
    for exp in found:
        if exp.key in fakes:
            say(f"{exp.key} is not recorded in django_migrations, but what it creates "
                f"already exists with the same columns ({', '.join(fakes[exp.key])}; another "
                "app created it): applying it with --fake")

    current: list[str] = []
    base = migrate_command.MigrationExecutor

    class FakingExecutor(base):  # type: ignore[misc, valid-type]
        """Django's executor, faking the migrations the check above chose."""

        def apply_migration(self, state: Any, migration: Any, fake: bool = False,
                            fake_initial: bool = False) -> Any:
            key = f"{migration.app_label}.{migration.name}"
            current[:] = [key]
            if key not in fakes:
                return super().apply_migration(state, migration, fake=fake,
                                               fake_initial=fake_initial)
            super().apply_migration(state, migration, fake=True)
            # A faked migration still changes the project state the next ones build on
            # (Django's --fake-initial does the same).
            return migration.mutate_state(state)

    migrate_command.MigrationExecutor = FakingExecutor
    try:
        # migrate takes one app label at a time; none means every app.
        for args in [[label] for label in labels] or [[]]:
            call_command("migrate", *args, interactive=False, verbosity=1)
    except CommandError as exc:
        fail(str(exc))
    except Exception as exc:
        traceback.print_exc()
        where = f" at {current[0]}" if current else ""
        fail(f"migrating failed{where}: {type(exc).__name__}: {common.first_line(exc)}")
    faked = [k for k in fakes]
    applied = len(plan) - len(faked)
    extra = f" ({', '.join(faked)})" if faked else ""
    say(f"done: {applied} applied, {len(faked)} faked{extra}")


def main(argv: list[str]) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if len(argv) != 2:
        print(f"usage: {argv[0]} JSON (devenv runs this script for kind django-migrate)",
              file=sys.stderr)
        return 2
    opts = json.loads(argv[1])
    try:
        settings = common.setup(opts)
        prepare(opts, settings)
        if not common.warm_wait():
            return 0  # not needed after all: the database stays untouched
        run(opts, settings)
    except common.Fail as exc:
        print(f"{PROG}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
