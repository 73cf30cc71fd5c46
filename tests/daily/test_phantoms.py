"""Phantom migrations read from the database (devenv.postgres.phantoms), on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devenv import loader
from devenv.postgres import database, phantoms

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("search_path", [["$user", "public"], ["public"]])
def test_django_rows_the_code_lacks_are_phantoms(make_project: Callable[..., Path],
                                                 pg_server: Any,
                                                 search_path: list[str]) -> None:
    """`$user` in a step's search_path (devenv init writes it when an app sets it) is the
    special name, quoted like any other."""
    db = pg_server.unique_db("ph")
    root = make_project({
        "version": 1, "name": "ph", "services": {"db": {"image": "postgres:15"}},
        "database": {"service": "db", "name": db},
        "steps": {"migrate": {"kind": "django-migrate", "settings": "site.settings",
                              "cwd": "app", "search_path": search_path, "needs": ["db"]}},
    }, files={"app/notes/migrations/__init__.py": "",
              "app/notes/migrations/0001_initial.py": "",
              "app/notes/migrations/0002_tags.py": ""})
    target = database.parse_url(pg_server.url(db))
    database.create(target, db, [])
    try:
        with psycopg.connect(target.url(db), autocommit=True) as conn:
            conn.execute("CREATE TABLE django_migrations(app text, name text)")
            conn.execute("INSERT INTO django_migrations VALUES ('notes', '0001_initial'), "
                         "('notes', '0002_tags'), ('notes', '0003_gone'), "
                         "('auth', '0001_initial')")  # an app without files here: not judged
        project = loader.load(root / "steps.yaml")
        assert phantoms.find(project, target) == {"migrate": ["notes.0003_gone"]}
    finally:
        database.drop(target, db)


def test_names_a_squashed_migration_replaces_are_not_phantoms(
        make_project: Callable[..., Path], pg_server: Any) -> None:
    """Django records a squashed migration under the names it replaces; their files may be
    gone. A migration name without the usual number counts too."""
    db = pg_server.unique_db("ph")
    squashed = ("class Migration:\n    replaces = [\n        ('notes', '0001_initial'),\n"
                "        (\"notes\", '0002_tags'),\n    ]\n")
    root = make_project({
        "version": 1, "name": "ph", "services": {"db": {"image": "postgres:15"}},
        "database": {"service": "db", "name": db},
        "steps": {"migrate": {"kind": "django-migrate", "settings": "site.settings",
                              "cwd": "app", "needs": ["db"]}},
    }, files={"app/notes/migrations/__init__.py": "",
              "app/notes/migrations/0001_squashed_0002_tags.py": squashed,
              "app/notes/migrations/initial_data.py": ""})
    target = database.parse_url(pg_server.url(db))
    database.create(target, db, [])
    try:
        with psycopg.connect(target.url(db), autocommit=True) as conn:
            conn.execute("CREATE TABLE django_migrations(app text, name text)")
            conn.execute("INSERT INTO django_migrations VALUES ('notes', '0001_initial'), "
                         "('notes', '0002_tags'), ('notes', 'initial_data'), "
                         "('notes', 'removed_data')")
        project = loader.load(root / "steps.yaml")
        assert phantoms.find(project, target) == {"migrate": ["notes.removed_data"]}
    finally:
        database.drop(target, db)
