"""Doctor on apps shaped like a first trial's: a Flask app on plain SQLAlchemy with plain
Alembic, and a Django project, in two schemas (tests/doctor/realapps.py). A healthy set-up
exits 0; a real problem still fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv.doctor import apps
from tests.doctor import realapps
from tests.doctor.conftest import Built, build, checks, drop_all, final, run_doctor

pytestmark = pytest.mark.postgres


@pytest.fixture
def real(pg_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Built]:
    db = pg_server.unique_db("real")
    url = pg_server.url(db)
    root = tmp_path / "proj"
    root.mkdir()
    (root / "steps.yaml").write_text(yaml.safe_dump(realapps.config("realapps", db),
                                                    sort_keys=False))
    for rel, text in realapps.FILES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    monkeypatch.setenv("DATABASE_URL", url)
    # Three interpreters importing Flask, SQLAlchemy, Alembic and Django at once: on a
    # loaded machine that takes longer than doctor's 25 s limit per look.
    monkeypatch.setattr(apps, "INTROSPECT_TIMEOUT", 120.0)
    try:
        build(root)
        yield Built(root, db, url)
    finally:
        drop_all(url, db)


def test_healthy_plain_alembic_and_django_in_two_schemas_exit_0(real: Built) -> None:
    code, out = run_doctor(real.root)
    shown = final(out)
    assert code == 0, out
    assert shown["alembic.revision"] == ("ok", "Alembic alembic.ini (api): at head 0001_users")
    assert shown["django.migrations"][0] == "ok"
    assert shown["drift.shared_tables"] == (
        "ok", "not applicable: the apps share no tables (SQLAlchemy maps flask.posts, "
              "flask.users; Django maps django.blog_article)")


def test_a_pending_plain_alembic_migration_still_fails(real: Built) -> None:
    (real.root / "api/migrations/versions/0002_age.py").write_text(realapps.REV_0002)
    found = checks(real.root)["alembic.revision"]
    assert found.status == "fail"
    assert found.finding == ("Alembic alembic.ini (api): the database is at 0001_users, the "
                             "head is 0002_age: 1 migration to apply (0002_age)")
    code, _out = run_doctor(real.root)
    assert code == 1


def test_a_table_both_map_differently_still_fails_drift(real: Built) -> None:
    # Django's blog app now maps flask.users too, with a longer name than the database has
    (real.root / "web/blog/models.py").write_text(realapps.BLOG_MODELS + '''

class User(models.Model):
    name = models.CharField(max_length=100)

    class Meta:
        managed = False
        db_table = '"flask"."users"'
''')
    found = checks(real.root)["drift.shared_tables"]
    assert found.status == "fail", found
    assert found.finding.startswith(
        "flask.users.id: SQLAlchemy Integer, Django BigAutoField (bigint), database integer; "
        "flask.users.name: SQLAlchemy String(80), Django max_length=100, database varchar(80)")
