"""Doctor on a real Flask-SQLAlchemy + Alembic app and a real Django project sharing one
PostgreSQL database: each test breaks one thing for real (a model, a migration, a
recorded migration, a secret) and checks doctor's finding, its fix, and --fix."""

from __future__ import annotations

import json

import pytest

from tests.doctor import twoapps
from tests.doctor.conftest import Built, build, checks, final, run_doctor, sql

pytestmark = pytest.mark.postgres

APP_CHECKS = ("alembic.revision", "django.migrations", "drift.shared_tables", "env.shared")


def test_healthy_monorepo_is_all_ok(twoapps_project: Built) -> None:
    code, out = run_doctor(twoapps_project.root, as_json=True)
    result = json.loads(out)
    by_id = {c["id"]: c for c in result}
    assert code == 0, [c for c in result if c["status"] != "ok"]
    assert all(set(c) >= {"id", "status", "finding", "fix"} for c in result)
    assert by_id["alembic.revision"]["finding"] == \
        "Flask app.py (flask_app): at head 0001_members"
    assert by_id["django.migrations"]["finding"] == \
        "Django site_cfg.settings (django_app): 2 migrations applied, none pending"
    assert by_id["drift.shared_tables"]["finding"] == (
        "2 shared tables (members, notes), 6 columns: SQLAlchemy, Django and the database "
        "agree")
    assert by_id["env.shared"]["finding"] == "shared values agree: JWT_SECRET"
    assert by_id["steps.fingerprints"]["status"] == "ok"
    # The password of the database never shows.
    assert ":x@" not in out and "postgres:devenv" not in out


def test_column_changed_in_django_only(twoapps_project: Built) -> None:
    root = twoapps_project.root
    twoapps.edit(root, "django_app/people/models.py",
                 "phone = models.CharField(max_length=20, null=True)",
                 "phone = models.CharField(max_length=32, null=True)")
    found = checks(root)["drift.shared_tables"]
    assert found.status == "fail"
    assert found.finding == \
        "members.phone: SQLAlchemy String(20), Django max_length=32, database varchar(20)"
    assert found.fix == ("change Django's people.Member.phone (django_app/people/models.py) "
                         "to max_length=20, as in the database")


def test_nullability_changed_in_sqlalchemy_only(twoapps_project: Built) -> None:
    root = twoapps_project.root
    twoapps.edit(root, "flask_app/app.py", 'name = db.Column(db.String(80), nullable=False)',
                 'name = db.Column(db.String(80), nullable=True)')
    found = checks(root)["drift.shared_tables"]
    assert found.status == "fail"
    assert found.finding == \
        "members.name: SQLAlchemy nullable=True, Django null=False, database NOT NULL"
    assert found.fix == ("change SQLAlchemy's app.Member.name (flask_app/app.py) to "
                         "nullable=False, as in the database")


def test_new_alembic_migration_then_fix(twoapps_project: Built) -> None:
    root = twoapps_project.root
    (root / "flask_app/migrations/versions/0002_age.py").write_text(
        twoapps.alembic_revision("0002_age", "0001_members", "age"))
    found = checks(root)
    alembic = found["alembic.revision"]
    assert alembic.status == "fail"
    assert alembic.finding == ("Flask app.py (flask_app): the database is at 0001_members, "
                               "the head is 0002_age: 1 migration to apply (0002_age)")
    assert alembic.fix == "devenv up (runs flask-migrate)"
    steps = found["steps.fingerprints"]
    assert steps.status == "warn"
    assert steps.finding.startswith(
        f"3 of 3 steps would run on {twoapps_project.db}: flask-migrate (input added: "
        "flask_app/migrations/versions/0002_age.py); and 2 steps after them")
    code, out = run_doctor(root, fix=True)
    assert "doctor --fix will:\n  - devenv up --no-processes (runs the steps that changed)" \
        in out
    after = final(out)
    assert after["alembic.revision"] == ("ok", "Flask app.py (flask_app): at head 0002_age")
    assert after["steps.fingerprints"][0] == "ok", after["steps.fingerprints"]
    assert code == 0, out


def test_two_alembic_heads(twoapps_project: Built) -> None:
    root = twoapps_project.root
    versions = root / "flask_app/migrations/versions"
    (versions / "0002_a.py").write_text(twoapps.alembic_revision("0002_a", "0001_members", "a"))
    (versions / "0002_b.py").write_text(twoapps.alembic_revision("0002_b", "0001_members", "b"))
    found = checks(root)["alembic.revision"]
    assert found.status == "fail"
    assert found.finding == ("migrations/versions has 2 heads (0002_a, 0002_b): 'upgrade "
                             "head' is ambiguous")
    assert found.fix == ("cd flask_app && flask --app app.py db merge -m 'merge heads' "
                         "0002_a 0002_b")
    assert not found.fixable


def test_new_django_migration_then_fix(twoapps_project: Built) -> None:
    root = twoapps_project.root
    (root / "django_app/extras/migrations/0002_tag_colour.py").write_text(twoapps.EXTRAS_0002)
    found = checks(root)["django.migrations"]
    assert found.status == "fail"
    assert found.finding == \
        "Django site_cfg.settings (django_app): 1 unapplied migration: extras.0002_tag_colour"
    assert found.fix == "devenv up (runs django-migrate)"
    code, out = run_doctor(root, fix=True)
    assert final(out)["django.migrations"] == (
        "ok", "Django site_cfg.settings (django_app): 3 migrations applied, none pending")
    assert code == 0, out


def test_table_exists_without_its_migration_recorded(make_project: object, pgdb: tuple[str, str],
                                                     ) -> None:
    """The --fake case: Flask created notes, Django's 0001_initial (CreateModel Note) is
    not recorded; a plain migrate would fail with 'relation already exists'."""
    db, _url = pgdb
    root = make_project(twoapps.config("fakecase", db), files=twoapps.FILES)  # type: ignore[operator]
    build(root, ["flask-migrate"])
    found = checks(root)["django.migrations"]
    assert found.status == "fail"
    assert found.finding == (
        "people.0001_initial is not recorded in django_migrations but its tables exist "
        "(public.notes; another app created them): a plain migrate fails with 'already "
        "exists'")
    assert found.fix == "devenv run --force django-fake (it runs migrate people --fake)"
    assert found.fixable
    code, out = run_doctor(root, fix=True)
    assert "  - devenv run --force django-fake\n" in out
    assert final(out)["django.migrations"][0] == "ok"
    assert code == 0, out


def test_fake_case_without_a_step_that_fakes(make_project: object, pgdb: tuple[str, str],
                                            ) -> None:
    db, _url = pgdb
    cfg = twoapps.config("fakecase2", db)
    del cfg["steps"]["django-fake"]
    cfg["steps"]["django-migrate"]["needs"] = ["flask-migrate"]
    root = make_project(cfg, files=twoapps.FILES)  # type: ignore[operator]
    build(root, ["flask-migrate"])
    found = checks(root)["django.migrations"]
    assert found.fix == "cd django_app && python manage.py migrate people 0001_initial --fake"
    assert not found.fixable


def test_jwt_secret_differs_between_the_apps(twoapps_project: Built) -> None:
    root = twoapps_project.root
    twoapps.edit(root, "django_app/site_cfg/settings.py",
                 'JWT_SECRET = os.environ.get("JWT_SECRET", "")',
                 'JWT_SECRET = os.environ.get("DJANGO_JWT_SECRET", "another-secret")')
    found = checks(root)["env.shared"]
    assert found.status == "fail"
    assert found.finding == ("JWT_SECRET differs between the Flask config (app.py in "
                             "flask_app) and Django's settings (site_cfg.settings): what one "
                             "app signs, the other rejects")
    assert found.fix == ("give both apps the same JWT_SECRET: define it once under env: in "
                         "steps.yaml and read it from the environment in both")
    # The values themselves are never shown.
    assert "another-secret" not in found.finding + found.fix
    assert "shared-test-secret" not in found.finding + found.fix


def test_jwt_secret_removed_from_steps_yaml(twoapps_project: Built) -> None:
    root = twoapps_project.root
    twoapps.edit(root, "steps.yaml", "JWT_SECRET: shared-test-secret-0123456789abcdef",
                 "OTHER: value")
    found = checks(root)["env.shared"]
    assert found.status == "warn"
    assert found.finding == ("JWT_SECRET is empty in both the Flask config (app.py in "
                             "flask_app) and Django's settings (site_cfg.settings)")


def test_an_app_that_does_not_start(twoapps_project: Built) -> None:
    root = twoapps_project.root
    (root / "flask_app/app.py").write_text("import no_such_module_for_doctor\n")
    found = checks(root)
    assert found["alembic.revision"].status == "fail"
    assert found["alembic.revision"].finding == (
        "Flask app.py (flask_app): cannot load the Flask app app.py: ModuleNotFoundError: No "
        "module named 'no_such_module_for_doctor'")
    fix = found["alembic.revision"].fix
    assert fix.startswith("fix the app so that it starts (doctor ran /"), fix
    assert fix.endswith(" in flask_app)"), fix
    assert found["drift.shared_tables"].finding.startswith("not compared: cannot load")
    # The Django side is still checked.
    assert found["django.migrations"].status == "ok"


def test_schema_qualified_django_table_matches(twoapps_project: Built) -> None:
    """A Django model naming its schema (db_table = 'public"."members') is the same table."""
    root = twoapps_project.root
    twoapps.edit(root, "django_app/people/models.py", 'db_table = "members"',
                 "db_table = 'public\"].\"members'".replace("]", ""))
    twoapps.edit(root, "django_app/people/models.py",
                 "phone = models.CharField(max_length=20, null=True)",
                 "phone = models.CharField(max_length=25, null=True)")
    found = checks(root)["drift.shared_tables"]
    assert found.finding == \
        "members.phone: SQLAlchemy String(20), Django max_length=25, database varchar(20)"


def test_database_at_a_revision_this_branch_does_not_have(twoapps_project: Built) -> None:
    sql(twoapps_project.url, "UPDATE alembic_version SET version_num = '0099_elsewhere'")
    found = checks(twoapps_project.root)["alembic.revision"]
    assert found.status == "fail"
    assert found.finding == ("Flask app.py (flask_app): the database is at revision "
                             "0099_elsewhere, which is not in migrations/versions (applied "
                             "from another branch?)")
    assert found.fix == "devenv refresh-db (rebuilds the database from these migrations)"
