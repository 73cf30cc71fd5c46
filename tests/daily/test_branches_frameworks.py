"""Branch switches on real Django and real Alembic (issue 13): each branch adds a
migration the other lacks (a NOT NULL column a fixture on main does not fill), switched
back and forth ten times; and a phantom migration applied by hand, outside devenv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devenv.postgres import database, siblings
from tests.commands import test_branches
from tests.commands.test_branches import git
from tests.kinds import djangoproj
from tests.kinds.test_alembic import ENV_PY, LOGGING, revision

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PSQL = "psql -X -q -v ON_ERROR_STOP=1"
NOTES_FIXTURE = [{"model": "notes.tag", "pk": 1, "fields": {"name": "t"}},
                 {"model": "notes.note", "pk": 1,
                  "fields": {"title": "fixture note", "body": "b", "tag": 1}}]
ITEMS = revision("a1", None, 'op.create_table("items", sa.Column("id", sa.Integer, '
                             'primary_key=True), sa.Column("title", sa.String(20)))')
PRIORITY = revision("b2", "a1", 'op.add_column("items", sa.Column("priority", sa.Integer, '
                                'nullable=False, server_default="0"))')


def steps(db: str) -> dict[str, Any]:
    return {
        "version": 1, "name": "fw",
        "services": {"db": {"image": "postgres:15"}},
        "database": {"service": "db", "name": db, "schemas": ["public", "flask"]},
        "steps": {
            "django-migrate": {"kind": "django-migrate", "settings": "notesite.settings",
                               "cwd": "django_app", "needs": ["db"]},
            "django-fixtures": {"kind": "django-loaddata", "settings": "notesite.settings",
                                "fixtures": ["notes.json"], "cwd": "django_app",
                                "needs": ["django-migrate"],
                                "inputs": ["django_app/notes/fixtures/**"]},
            "alembic": {"kind": "alembic", "cwd": "alembic_app", "search_path": ["flask"],
                        "needs": ["db"]},
            "alembic-data": {"run": f"{PSQL} -c \"insert into flask.items(title) values "
                                    "('fixture item')\"",
                             "search_path": ["flask"], "needs": ["alembic"]},
        },
    }


class Repo(test_branches.Repo):
    timeout = 300  # Django and Alembic start-up on every step

    def columns(self, schema: str, table: str) -> set[str]:
        return {c for (c,) in self.sql(
            "select column_name from information_schema.columns where table_schema = "
            f"'{schema}' and table_name = '{table}'")}


@pytest.fixture
def repo(make_project: Callable[..., Path], pg_server: Any) -> Iterator[Repo]:
    db = pg_server.unique_db("fw")
    root = make_project(steps(db), files={
        "alembic_app/alembic.ini": "[alembic]\nscript_location = migrations\n" + LOGGING,
        "alembic_app/migrations/env.py": ENV_PY.replace(
            'create_engine(url)', 'create_engine(url, connect_args={"options": '
            'os.environ.get("PGOPTIONS", "")})'),
        "alembic_app/migrations/versions/a1.py": ITEMS,
        "django_app/notes/fixtures/notes.json": json.dumps(NOTES_FIXTURE),
        ".gitignore": ".devenv/\n__pycache__/\n",
    })
    djangoproj.write(root)
    # main: Django's 0001 only (the model without `pinned`), Alembic a1 only
    (root / "django_app/notes/migrations/0002_note_pinned.py").unlink()
    models = root / "django_app/notes/models.py"
    models.write_text(models.read_text().replace(
        "    pinned = models.BooleanField(default=False)\n", ""))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "main")
    git(root, "switch", "-qc", "feature")
    djangoproj.write(root)  # 0002 adds the NOT NULL `pinned` column
    (root / "alembic_app/migrations/versions/b2.py").write_text(PRIORITY)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "feature: pinned, priority")
    git(root, "switch", "-q", "main")
    r = Repo(root, pg_server.url(db))
    try:
        yield r
    finally:
        target = database.parse_url(pg_server.url(db))
        for info in siblings.related(target, db):
            database.drop(target, info.datname)


def test_divergent_django_and_alembic_branches_switched_ten_times(repo: Repo) -> None:
    r = repo.devenv("up", "--no-processes")
    assert r.returncode == 0, r.stdout + r.stderr
    repo.sql("insert into notes_tag(id, name) values (100, 'main tag')")
    repo.sql("insert into flask.items(title) values ('main item')")
    for i in range(10):
        branch = "feature" if i % 2 == 0 else "main"
        git(repo.root, "switch", "-q", branch)
        r = repo.devenv("up", "--no-processes")
        out = r.stdout + r.stderr
        assert r.returncode == 0, out
        feature = branch == "feature"
        assert ("pinned" in repo.columns("public", "notes_note")) == feature
        assert ("priority" in repo.columns("flask", "items")) == feature
        applied = {n for (n,) in repo.sql("select name from django_migrations "
                                          "where app = 'notes'")}
        assert ("0002_note_pinned" in applied) == feature
        assert repo.sql("select version_num from flask.alembic_version") == [
            ("b2" if feature else "a1",)]
        if i == 0:
            repo.sql("insert into notes_tag(id, name) values (200, 'feature tag')")
            repo.sql("insert into flask.items(title, priority) values ('feature item', 7)")
        mine = ("feature" if feature else "main")
        assert repo.sql("select name from notes_tag where id >= 100") == [(f"{mine} tag",)]
        items = sorted(t for (t,) in repo.sql("select title from flask.items"))
        assert items == sorted(["fixture item", f"{mine} item"])  # never duplicated
        assert repo.sql("select count(*) from notes_note") == [(1,)]


def test_phantom_migration_applied_by_hand_is_detected(repo: Repo) -> None:
    """No git switch, no devenv record: the migration was applied outside devenv."""
    shutil.rmtree(repo.root / ".git")
    assert repo.devenv("up", "--no-processes").returncode == 0
    extra = repo.root / "django_app/notes/migrations/0002_note_pinned.py"
    extra.write_text(djangoproj.MIGRATION_2)
    env = {**os.environ, "DATABASE_URL": repo.url}
    subprocess.run([sys.executable, "manage.py", "migrate", "notes"], cwd=repo.root /
                   "django_app", env=env, check=True, capture_output=True)
    extra.unlink()
    r = repo.devenv("up", "--no-processes")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "notes.0002_note_pinned" in out and "phantom migration" in out, out
    assert "pinned" not in repo.columns("public", "notes_note")
