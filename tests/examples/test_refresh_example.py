"""devenv refresh-db on the real example: equal to the Makefile's database, and every
cached rebuild (nothing changed, a changed Django fixture, a new Alembic migration) equal
to a build from nothing.

The example is copied to a temporary project so the tests can edit fixtures and add
migrations without touching the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devenv.postgres import database, siblings
from tests.dbcompare import dump_database
from tests.examples.test_healthplan import FAKE_MEMBERS, make_refresh_db

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]

MIGRATION = '''"""members.preferred_language

Revision ID: 0008_member_language
Revises: 0007_claim_summaries
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_member_language"
down_revision = "0007_claim_summaries"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("members", sa.Column("preferred_language", sa.String(8), nullable=True))


def downgrade():
    op.drop_column("members", "preferred_language")
'''


@pytest.fixture
def example(tmp_path: Path, pg_server: Any) -> Iterator[tuple[Path, dict[str, str], str]]:
    root = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".devenv")
    shutil.copytree(REPO / "examples", root / "examples", ignore=ignore)
    shutil.copytree(REPO / "services", root / "services", ignore=ignore)
    shutil.copy(REPO / "steps.yaml", root / "steps.yaml")
    db = pg_server.unique_db("hp_dev")
    env = {**os.environ, "DATABASE_URL": pg_server.url(db), "FAKE_MEMBERS": str(FAKE_MEMBERS)}
    env.pop("PGOPTIONS", None)
    yield root, env, db
    target = database.parse_url(pg_server.url(db))
    for info in siblings.related(target, db):
        database.drop(target, info.datname)


def refresh(root: Path, env: dict[str, str], *args: str) -> list[str]:
    """Run `devenv refresh-db`; the steps that ran."""
    # no-docker: the database without the stand-in's load (tests/services has Docker's)
    r = subprocess.run([sys.executable, "-m", "devenv", "--plain", "refresh-db",
                        "--profile", "no-docker", *args],
                       cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    return sorted(line.split("[", 1)[1].split("]", 1)[0] for line in r.stdout.splitlines()
                  if "] ok in " in line)


def test_cached_rebuilds_equal_builds_from_nothing(example: tuple[Path, dict[str, str], str],
                                                   pg_server: Any) -> None:
    root, env, db = example
    url = pg_server.url(db)
    assert len(refresh(root, env)) == 8
    cold = dump_database(url)

    # the Makefile's database is the same database
    make_db = pg_server.unique_db("hp_make")
    try:
        make_refresh_db(pg_server, make_db)
        assert dump_database(pg_server.url(make_db)) == cold
    finally:
        database.drop(database.parse_url(pg_server.url()), make_db)

    # nothing changed: no step runs, same database
    assert refresh(root, env) == []
    assert dump_database(url) == cold

    # a changed Django fixture: only the fixture step and its dependants run
    fixture = root / "examples/healthplan/django_api/crm/fixtures/interactions.json"
    fixture.write_text(fixture.read_text().replace("Asked about claim status",
                                                   "Asked about the status of a claim"))
    assert refresh(root, env) == ["django-fixtures", "django-seed-extra", "local-user"]
    changed_fixture = dump_database(url)
    assert changed_fixture != cold
    assert "Asked about the status of a claim" in changed_fixture
    assert len(refresh(root, env, "--no-cache")) == 8
    assert dump_database(url) == changed_fixture

    # a new Alembic migration: flask-migrate and everything downstream of it run (here
    # that is every step: no snapshot holds billing without flask-migrate)
    versions = root / "examples/healthplan/flask_api/migrations/versions"
    (versions / "0008_member_language.py").write_text(MIGRATION)
    ran = refresh(root, env)
    assert {"flask-migrate", "flask-fixtures", "django-migrate"} <= set(ran)
    changed_migration = dump_database(url)
    assert "preferred_language character varying(8)" in changed_migration
    assert len(refresh(root, env, "--no-cache")) == 8
    assert dump_database(url) == changed_migration
