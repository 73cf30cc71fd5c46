"""kind: alembic, plain alembic and Flask-Migrate, on a real PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devenv import loader
from devenv.events import Status
from devenv.postgres import database
from tests.kinds.conftest import Outcome, last_lines, project_config, sql
from tests.kinds.warmproto import Warm

pytestmark = pytest.mark.postgres

LOGGING = """
[loggers]
keys = root,sqlalchemy,alembic

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARN
handlers = console
qualname =

[logger_sqlalchemy]
level = WARN
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
"""

ENV_PY = '''import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine

fileConfig(context.config.config_file_name)
url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
with create_engine(url).connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
'''

FLASK_APP = '''import os

from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy()
app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"].replace(
    "postgresql://", "postgresql+psycopg://", 1)
db.init_app(app)
Migrate(app, db)
'''


def revision(rev: str, down: str | None, body: str) -> str:
    return (f"import sqlalchemy as sa\nfrom alembic import op\n\nrevision = {rev!r}\n"
            f"down_revision = {down!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
            f"def upgrade():\n    {body}\n\n\ndef downgrade():\n    pass\n")


PLANS = revision("0001", None, 'op.create_table("plans", sa.Column("id", sa.Integer, '
                               'primary_key=True), sa.Column("code", sa.String(20)))')
MEMBERS = revision("0002", "0001", 'op.create_table("members", sa.Column("id", sa.Integer, '
                                   'primary_key=True))')
BRANCH = revision("0003", "0001", 'op.create_table("claims", sa.Column("id", sa.Integer, '
                                  'primary_key=True))')
BROKEN = revision("0002", "0001", 'op.execute("SELECT * FROM no_such_table")')


def plain_files(versions: dict[str, str]) -> dict[str, str]:
    files = {"db/alembic.ini": "[alembic]\nscript_location = migrations\n" + LOGGING,
             "db/migrations/env.py": ENV_PY}
    files |= {f"db/migrations/versions/{name}": text for name, text in versions.items()}
    return files


def flask_files(versions: dict[str, str]) -> dict[str, str]:
    import flask_migrate

    env = Path(flask_migrate.__file__).parent / "templates" / "flask" / "env.py"
    files = {"flask_api/app.py": FLASK_APP,
             "flask_api/migrations/alembic.ini": "[alembic]\n" + LOGGING,
             "flask_api/migrations/env.py": env.read_text()}
    files |= {f"flask_api/migrations/versions/{n}": t for n, t in versions.items()}
    return files


def tables(db: database.Target) -> list[str]:
    return [r[0] for r in sql(db, "SELECT tablename FROM pg_tables WHERE schemaname = "
                                  "'public' ORDER BY 1")]


PLAIN_STEP: dict[str, Any] = {"kind": "alembic", "cwd": "db"}
FLASK_STEP: dict[str, Any] = {"kind": "alembic", "cwd": "flask_api", "flask_app": "app"}


def test_plain_alembic_upgrades_to_head(make_project: Callable[..., Path],
                                        db: database.Target,
                                        run_steps: Callable[..., Outcome]) -> None:
    root = make_project(project_config(db, {"schema": PLAIN_STEP}),
                        files=plain_files({"0001.py": PLANS, "0002.py": MEMBERS}))
    out = run_steps(root=root)
    assert out.statuses == {"schema": Status.OK}, out.log("schema")
    log = out.log("schema")
    assert "alembic: migrations/versions: head 0002; upgrading to head\n" in log
    assert "Running upgrade 0001 -> 0002" in log
    assert log.endswith("alembic: upgraded to head\n")
    assert tables(db) == ["alembic_version", "members", "plans"]
    assert loader.load(root / "steps.yaml").steps["schema"].inputs == (
        "db/alembic.ini", "db/env.py", "db/versions/*.py", "db/*/env.py", "db/*/versions/*.py")
    assert run_steps(root=root).statuses == {"schema": Status.SKIPPED}


def test_multiple_heads_are_refused_with_the_merge_command(
        make_project: Callable[..., Path], db: database.Target,
        run_steps: Callable[..., Outcome]) -> None:
    root = make_project(project_config(db, {"schema": PLAIN_STEP}),
                        files=plain_files({"0001.py": PLANS, "0002.py": MEMBERS,
                                           "0003.py": BRANCH}))
    out = run_steps(root=root)
    assert out.statuses == {"schema": Status.FAILED}
    assert last_lines(out.log("schema"), 2) == (
        "alembic: migrations/versions has 2 heads (0002, 0003), so 'upgrade head' is "
        "ambiguous; merge them first:\n"
        "  alembic -c alembic.ini merge -m 'merge heads' 0002 0003")
    assert tables(db) == []


def test_a_failing_revision_is_named(make_project: Callable[..., Path],
                                     db: database.Target,
                                     run_steps: Callable[..., Outcome]) -> None:
    root = make_project(project_config(db, {"schema": PLAIN_STEP}),
                        files=plain_files({"0001.py": PLANS, "0002.py": BROKEN}))
    out = run_steps(root=root)
    assert out.statuses == {"schema": Status.FAILED}
    log = out.log("schema")
    assert "Traceback (most recent call last)" in log
    assert last_lines(log, 1) == (
        "alembic: upgrade to head failed while running upgrade 0001 -> 0002 (exit code 1): "
        "sqlalchemy.exc.ProgrammingError: (psycopg.errors.UndefinedTable) relation "
        '"no_such_table" does not exist')


def test_config_without_script_location(make_project: Callable[..., Path],
                                        db: database.Target,
                                        run_steps: Callable[..., Outcome]) -> None:
    files = plain_files({"0001.py": PLANS})
    files["db/alembic.ini"] = "[alembic]\n" + LOGGING
    root = make_project(project_config(db, {"schema": PLAIN_STEP}), files=files)
    out = run_steps(root=root)
    assert last_lines(out.log("schema"), 1) == (
        "alembic: alembic.ini has no script_location in its [alembic] section; for a "
        "Flask-Migrate folder, set flask_app: to the Flask app")


def test_flask_migrate_runs_flask_db_upgrade(make_project: Callable[..., Path],
                                             db: database.Target,
                                             run_steps: Callable[..., Outcome]) -> None:
    root = make_project(project_config(db, {"schema": FLASK_STEP}),
                        files=flask_files({"0001.py": PLANS, "0002.py": MEMBERS}))
    out = run_steps(root=root)
    assert out.statuses == {"schema": Status.OK}, out.log("schema")
    log = out.log("schema")
    assert ("alembic: upgrade head in-process (flask_migrate.upgrade, app app, directory "
            "migrations)\n") in log
    assert "Running upgrade 0001 -> 0002" in log
    assert tables(db) == ["alembic_version", "members", "plans"]
    assert loader.load(root / "steps.yaml").steps["schema"].inputs == (
        "flask_api/migrations/alembic.ini", "flask_api/migrations/env.py",
        "flask_api/migrations/versions/*.py", "flask_api/migrations/*/env.py",
        "flask_api/migrations/*/versions/*.py")


def test_flask_migrate_multiple_heads(make_project: Callable[..., Path],
                                      db: database.Target,
                                      run_steps: Callable[..., Outcome]) -> None:
    root = make_project(project_config(db, {"schema": FLASK_STEP}),
                        files=flask_files({"0001.py": PLANS, "0002.py": MEMBERS,
                                           "0003.py": BRANCH}))
    out = run_steps(root=root)
    assert last_lines(out.log("schema"), 2) == (
        "alembic: migrations/versions has 2 heads (0002, 0003), so 'upgrade head' is "
        "ambiguous; merge them first:\n"
        "  flask --app app db merge --directory migrations -m 'merge heads' 0002 0003")


@pytest.mark.parametrize("flask", [False, True], ids=["alembic", "flask-migrate"])
def test_the_upgrade_runs_in_the_scripts_own_process(
        flask: bool, tmp_path: Path, make_project: Callable[..., Path],
        db: database.Target, run_steps: Callable[..., Outcome]) -> None:
    """No second interpreter: the migration runs in the process devenv started (its
    parent is this test's process, its argv the kind's script), not in a child of it."""
    record = tmp_path / "migration-process.json"
    body = (f"import json, os, sys; open({str(record)!r}, 'w').write(json.dumps("
            "[os.getppid(), sys.argv[0]]))")
    versions = {"0001.py": PLANS, "0002.py": revision("0002", "0001", body)}
    files, step = (flask_files(versions), FLASK_STEP) if flask else (
        plain_files(versions), PLAIN_STEP)
    out = run_steps(root=make_project(project_config(db, {"schema": step}), files=files))
    assert out.statuses == {"schema": Status.OK}, out.log("schema")
    parent, argv0 = json.loads(record.read_text())
    assert Path(argv0).name == "_alembic_upgrade.py"
    assert parent == os.getpid()
    assert "Running upgrade 0001 -> 0002" in out.log("schema")


@pytest.mark.parametrize("flask", [False, True], ids=["alembic", "flask-migrate"])
def test_an_unknown_target_fails_with_alembics_error(
        flask: bool, make_project: Callable[..., Path], db: database.Target,
        run_steps: Callable[..., Outcome]) -> None:
    """alembic raises CommandError; Flask-Migrate logs it and calls sys.exit(1)."""
    versions = {"0001.py": PLANS}
    files, step = (flask_files(versions), FLASK_STEP) if flask else (
        plain_files(versions), PLAIN_STEP)
    root = make_project(project_config(db, {"schema": {**step, "target": "0009"}}),
                        files=files)
    out = run_steps(root=root)
    assert out.statuses == {"schema": Status.FAILED}
    assert last_lines(out.log("schema"), 1) == (
        "alembic: upgrade to 0009 failed (exit code 1): FAILED: Can't locate revision "
        "identified by '0009'")
    assert tables(db) == []


def test_bad_options_are_config_errors(make_project: Callable[..., Path]) -> None:
    from devenv.errors import ConfigError

    root = make_project("steps:\n  schema:\n    kind: alembic\n    config: migrations\n")
    with pytest.raises(ConfigError) as err:
        loader.load(root / "steps.yaml")
    assert str(err.value) == ("steps.yaml:4: steps.schema.config: expected the path of an "
                              "alembic .ini file, got 'migrations'")
    shutil.rmtree(root)


def test_warm_start_loads_the_app_then_waits_without_touching_the_database(
        make_project: Callable[..., Path], db: database.Target) -> None:
    """Parked before the database even exists (so it cannot have connected); created,
    then 'go': the upgrade runs."""
    root = make_project(project_config(db, {"schema": FLASK_STEP}),
                        files=flask_files({"0001.py": PLANS, "0002.py": MEMBERS}))
    warm = Warm(root, db, "schema")
    assert warm.ready() == b"r"
    assert not database.exists(db, db.dbname)
    database.ensure(db, db.dbname, ["public"])
    rc, out, err = warm.finish(b"go\n")
    assert rc == 0, out + err
    assert tables(db) == ["alembic_version", "members", "plans"]


def test_warm_start_not_needed_exits_quietly(make_project: Callable[..., Path],
                                             db: database.Target) -> None:
    root = make_project(project_config(db, {"schema": PLAIN_STEP}),
                        files=plain_files({"0001.py": PLANS}))
    database.ensure(db, db.dbname, ["public"])
    warm = Warm(root, db, "schema")
    assert warm.ready() == b"r"
    rc, out, err = warm.finish(b"")
    assert rc == 0, out + err
    assert tables(db) == []
