"""kind: django-migrate, on a real PostgreSQL with a throw-away Django project, run
through the real runner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devenv import loader
from devenv.errors import ConfigError
from devenv.events import Status
from devenv.postgres import database
from tests.kinds import djangoproj
from tests.kinds.conftest import Outcome, last_lines, project_config, sql

pytestmark = pytest.mark.postgres

STEP = {"kind": "django-migrate", "cwd": "django_app"}


@pytest.fixture
def django_root(make_project: Callable[..., Path], db: database.Target) -> Path:
    root = make_project(project_config(db, {"migrate": STEP}))
    djangoproj.write(root)
    return root


def migrations(db: database.Target) -> list[str]:
    return [r[0] for r in sql(db, "SELECT app || '.' || name FROM django_migrations "
                                  "ORDER BY id")]


def columns(db: database.Target, table: str) -> list[str]:
    return [r[0] for r in sql(db, f"SELECT column_name FROM information_schema.columns "
                                  f"WHERE table_name = '{table}' ORDER BY ordinal_position")]


def test_fresh_database_is_migrated_and_then_skipped(
        django_root: Path, db: database.Target, run_steps: Callable[..., Outcome]) -> None:
    out = run_steps(root=django_root)
    assert out.statuses == {"migrate": Status.OK}, out.output
    log = out.log("migrate")
    assert "django-migrate: settings notesite.settings, all apps: 2 migrations to apply\n" in log
    assert "  Applying notes.0001_initial... OK\n" in log
    assert "  Applying notes.0002_note_pinned... OK\n" in log
    assert log.endswith("django-migrate: done: 2 applied, 0 faked\n")
    assert migrations(db) == ["notes.0001_initial", "notes.0002_note_pinned"]
    assert columns(db, "notes_note") == ["id", "title", "body", "tag_id", "pinned"]
    # The default inputs are the migration files, relative to the project root.
    project = loader.load(django_root / "steps.yaml")
    assert project.steps["migrate"].inputs == ("django_app/*/migrations/*.py",)
    again = run_steps(root=django_root)
    assert again.statuses == {"migrate": Status.SKIPPED}


def test_tables_another_app_created_are_faked_and_reported(
        django_root: Path, db: database.Target, run_steps: Callable[..., Outcome]) -> None:
    sql(db, djangoproj.TAG_SQL, djangoproj.NOTE_SQL, "INSERT INTO notes_tag (name) "
                                                     "VALUES ('kept')")
    out = run_steps(root=django_root)
    assert out.statuses == {"migrate": Status.OK}, out.output
    log = out.log("migrate")
    assert (
        "django-migrate: notes.0001_initial is not recorded in django_migrations, but what "
        "it creates already exists with the same columns (notes_tag, notes_note; another "
        "app created it): applying it with --fake\n") in log
    assert "  Applying notes.0001_initial... FAKED\n" in log
    assert "  Applying notes.0002_note_pinned... OK\n" in log
    assert log.endswith("django-migrate: done: 1 applied, 1 faked (notes.0001_initial)\n")
    assert migrations(db) == ["notes.0001_initial", "notes.0002_note_pinned"]
    assert sql(db, "SELECT name FROM notes_tag") == [("kept",)]
    assert columns(db, "notes_note") == ["id", "title", "body", "tag_id", "pinned"]


def test_columns_a_later_migration_adds_are_faked_too(
        django_root: Path, db: database.Target, run_steps: Callable[..., Outcome]) -> None:
    # The other app created the table in its final shape (0002's column included).
    sql(db, djangoproj.TAG_SQL, djangoproj.NOTE_SQL,
        "ALTER TABLE notes_note ADD COLUMN pinned boolean NOT NULL DEFAULT false")
    out = run_steps(root=django_root)
    assert out.statuses == {"migrate": Status.OK}, out.output
    log = out.log("migrate")
    assert (
        "django-migrate: notes.0002_note_pinned is not recorded in django_migrations, but "
        "what it creates already exists with the same columns (notes_note.pinned; another "
        "app created it): applying it with --fake\n") in log
    assert log.endswith("django-migrate: done: 0 applied, 2 faked (notes.0001_initial, "
                        "notes.0002_note_pinned)\n")
    assert migrations(db) == ["notes.0001_initial", "notes.0002_note_pinned"]


def test_half_created_schema_stops_listing_what_is_missing(
        django_root: Path, db: database.Target, run_steps: Callable[..., Outcome]) -> None:
    sql(db, djangoproj.TAG_SQL)
    out = run_steps(root=django_root)
    assert out.statuses == {"migrate": Status.FAILED}
    assert last_lines(out.log("migrate"), 5) == (
        "django-migrate: cannot apply notes.0001_initial: its tables only partly exist in "
        "the database\n"
        "  missing: notes_note\n"
        "  present: notes_tag\n"
        "  another tool created part of this schema: create what is missing (or drop what "
        "is present) so the database matches the migration, then run the step again\n"
        "django-migrate: nothing was migrated: 1 problem above")
    # Nothing was touched: not even django_migrations exists.
    assert sql(db, "SELECT to_regclass('django_migrations')") == [(None,)]


def test_column_mismatch_is_an_error_naming_the_differences(
        django_root: Path, db: database.Target, run_steps: Callable[..., Outcome]) -> None:
    sql(db, "CREATE TABLE notes_tag (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
            "label text NOT NULL)", djangoproj.NOTE_SQL.replace("title varchar(100)",
                                                                 "title text"))
    out = run_steps(root=django_root)
    assert out.statuses == {"migrate": Status.FAILED}
    assert last_lines(out.log("migrate"), 8) == (
        "django-migrate: cannot fake notes.0001_initial: table notes_tag exists with other "
        "columns than the migration creates\n"
        "  missing column: name character varying(50)\n"
        "  unexpected column: label text\n"
        "  make the table and the model agree, then run the step again\n"
        "django-migrate: cannot fake notes.0001_initial: table notes_note exists with other "
        "columns than the migration creates\n"
        "  type of title: character varying(100) in the migration, text in the database\n"
        "  make the table and the model agree, then run the step again\n"
        "django-migrate: nothing was migrated: 2 problems above")
    assert sql(db, "SELECT to_regclass('django_migrations')") == [(None,)]


def test_a_table_pinned_to_another_schema_is_found(
        make_project: Callable[..., Path], db: database.Target,
        run_steps: Callable[..., Outcome]) -> None:
    # db_table = 'crm"."tags': a schema the search_path does not show.
    root = make_project(project_config(db, {"migrate": STEP}))
    djangoproj.write(root, tag_table='crm"."tags')
    sql(db, "CREATE SCHEMA crm", djangoproj.TAG_SQL.replace("notes_tag", "crm.tags"))
    out = run_steps(root=root)
    assert out.statuses == {"migrate": Status.FAILED}
    assert "  missing: notes_note\n  present: crm.tags\n" in out.log("migrate")
    sql(db, djangoproj.NOTE_SQL.replace("notes_tag", "crm.tags"))
    out = run_steps(root=root)
    assert out.statuses == {"migrate": Status.OK}, out.log("migrate")
    assert "(crm.tags, notes_note; another app created it): applying it with --fake\n" \
        in out.log("migrate")


def test_compare_types_false_fakes_despite_type_differences(
        make_project: Callable[..., Path], db: database.Target,
        run_steps: Callable[..., Outcome]) -> None:
    root = make_project(project_config(db, {"migrate": {**STEP, "compare_types": False}}))
    djangoproj.write(root)
    sql(db, djangoproj.TAG_SQL.replace("varchar(50)", "text"), djangoproj.NOTE_SQL)
    out = run_steps(root=root)
    assert out.statuses == {"migrate": Status.OK}, out.log("migrate")
    assert migrations(db) == ["notes.0001_initial", "notes.0002_note_pinned"]


def test_apps_option_and_unknown_app(make_project: Callable[..., Path], db: database.Target,
                                     run_steps: Callable[..., Outcome]) -> None:
    root = make_project(project_config(db, {"migrate": {**STEP, "apps": ["note"]}}))
    djangoproj.write(root)
    out = run_steps(root=root)
    assert out.statuses == {"migrate": Status.FAILED}
    assert last_lines(out.log("migrate"), 1) == (
        "django-migrate: apps: no installed app 'note' (did you mean 'notes'?); installed: "
        "notes")
    step: dict[str, Any] = {**STEP, "apps": ["notes"]}
    root = make_project(project_config(db, {"migrate": step}))
    out = run_steps(root=root)
    assert out.statuses == {"migrate": Status.OK}, out.log("migrate")
    assert "django-migrate: settings notesite.settings, apps notes: 2 migrations to apply\n" \
        in out.log("migrate")


def test_settings_that_do_not_import(make_project: Callable[..., Path],
                                     db: database.Target,
                                     run_steps: Callable[..., Outcome]) -> None:
    root = make_project(project_config(db, {"migrate": {**STEP, "settings": "nosite.settings"}}))
    djangoproj.write(root)
    out = run_steps(root=root)
    assert out.statuses == {"migrate": Status.FAILED}
    assert last_lines(out.log("migrate"), 1) == (
        f"django-migrate: cannot import the settings module 'nosite.settings' (from "
        f"{root / 'django_app'}): No module named 'nosite'")


def test_options_are_checked_when_loading(make_project: Callable[..., Path],
                                          db: database.Target) -> None:
    root = make_project("version: 1\nsteps:\n  migrate:\n    kind: django-migrate\n"
                        "    settings: my-site/settings\n")
    with pytest.raises(ConfigError) as err:
        loader.load(root / "steps.yaml")
    assert str(err.value) == ("steps.yaml:5: steps.migrate.settings: 'my-site/settings' is "
                              "not a Python module path (e.g. mysite.settings)")
    root = make_project("version: 1\nsteps:\n  migrate:\n    kind: django-migrate\n"
                        "    run: python manage.py migrate\n")
    with pytest.raises(ConfigError) as err:
        loader.load(root / "steps.yaml")
    assert str(err.value) == ("steps.yaml:5: steps.migrate.run: 'run' is not used by kind "
                              "django-migrate; remove it or drop the kind")
