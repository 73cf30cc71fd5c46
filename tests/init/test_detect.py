"""``devenv.init.detect``: what is found in a repository, by reading files only."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from devenv.init.detect import App, detect
from tests.init import repos

ROOT = Path(__file__).resolve().parents[2]


def fake_venv(folder: Path) -> None:
    """What detection looks for (pyvenv.cfg); a real one is not needed to find it."""
    (folder / ".venv" / "bin").mkdir(parents=True)
    (folder / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    # the loader checks that python: names an interpreter
    (folder / ".venv" / "bin" / "python").symlink_to(sys.executable)


def by_name(apps: list[App]) -> dict[str, App]:
    return {a.name: a for a in apps}


def test_flask_with_plain_alembic_and_a_click_group(tmp_path: Path) -> None:
    repos.build(tmp_path, venvs=False)
    fake_venv(tmp_path / "api")
    api = by_name(detect(tmp_path))["api"]
    assert (api.framework, api.folder, api.flask_app) == ("flask", "api", "app.py")
    # env.py builds its own engine: plain Alembic, not Flask-Migrate.
    assert not api.flask_migrate
    assert (api.alembic_config, api.alembic_scripts) == ("alembic.ini", "migrations")
    assert api.venv == ".venv"
    assert api.requirements == ("api/requirements.txt",)
    assert [(c.name, c.required) for c in api.commands] == [("fake users", ("n",))]
    assert api.db.url_vars == ("DATABASE_URL",)
    assert api.health is None


def test_django_project_apps_fixtures_commands_and_db_variables(tmp_path: Path) -> None:
    repos.build(tmp_path, venvs=False)
    web = by_name(detect(tmp_path))["web"]
    assert (web.framework, web.settings, web.venv) == ("django", "webcfg.settings", None)
    assert web.migration_apps == (("blog", "blog"), ("shop", "shop"))  # INSTALLED_APPS order
    assert web.fixtures == ("blog/fixtures/posts.json", "shop/fixtures/products.json")
    assert [(c.name, c.required) for c in web.commands] == [("fake", ("count",))]
    assert dict(web.db.part_vars) == {"DB_HOST": "PGHOST", "DB_PORT": "PGPORT",
                                      "DB_NAME": "PGDATABASE", "DB_USER": "PGUSER",
                                      "DB_PASSWORD": "PGPASSWORD"}
    assert web.db.required_vars == ("DJANGO_SECRET_KEY",)
    assert web.health == "/health/"


def test_the_healthplan_example(tmp_path: Path) -> None:
    apps = by_name(detect(ROOT / "examples" / "healthplan"))
    assert set(apps) == {"flask-api", "django-api"}
    flask, django = apps["flask-api"], apps["django-api"]
    assert flask.flask_migrate and flask.alembic_config == "migrations/alembic.ini"
    assert [c.name for c in flask.commands] == ["load-fixtures", "fake-data"]
    # Both apps pin their own search_path on their connections.
    assert flask.db.search_path == ("public",)
    assert django.db.search_path == ("internal_apps", "public")
    assert [Path(f).stem for f in django.fixtures] == [
        "users", "member_notes", "interactions", "member_attributes"]
    assert sorted(c.name for c in django.commands) == ["ensure_local_user", "seed_extra"]
    # path("health", ...) in urls.py; @bp.get("/health") in the Flask blueprint
    assert (django.health, flask.health) == ("/health", "/health")


def test_nothing_is_imported(tmp_path: Path) -> None:
    """Settings that cannot be imported (a missing variable, a missing package) are still
    read: detection parses, it never runs the app's code."""
    repos.write(tmp_path, repos.WEB)
    settings = tmp_path / "web" / "webcfg" / "settings.py"
    settings.write_text("import not_installed_anywhere\nraise SystemExit('imported!')\n"
                        + settings.read_text())
    web = detect(tmp_path)[0]
    assert web.db.required_vars == ("DJANGO_SECRET_KEY",)


def test_alembic_alone_and_an_app_factory(tmp_path: Path) -> None:
    repos.write(tmp_path, {
        "jobs/alembic.ini": "[alembic]\nscript_location = %(here)s/db\n",
        "jobs/db/env.py": "import os\nurl = os.environ['JOBS_DATABASE_URL']\n",
        "shop/shopapp/__init__.py": "from flask import Flask\n\ndef create_app():\n"
                                    "    return Flask(__name__)\n",
        "shop/.flaskenv": "",
    })
    apps = by_name(detect(tmp_path))
    assert apps["jobs"].framework == "alembic"
    assert apps["jobs"].alembic_scripts == "db"
    assert apps["jobs"].db.url_vars == ("JOBS_DATABASE_URL",)
    assert apps["shop"].flask_app == "shopapp:create_app()"


def test_only_the_folders_given(tmp_path: Path) -> None:
    repos.build(tmp_path, venvs=False)
    assert [a.name for a in detect(tmp_path, [tmp_path / "web"])] == ["web"]


def test_virtualenvs_and_build_output_are_not_scanned(tmp_path: Path) -> None:
    repos.build(tmp_path, venvs=False)
    fake_venv(tmp_path / "api")
    # A Django project inside a virtualenv (a dependency's test suite) is not an app.
    shutil.copytree(tmp_path / "web", tmp_path / "api" / ".venv" / "lib" / "web")
    assert sorted(a.name for a in detect(tmp_path)) == ["api", "web"]


def test_settings_that_ignore_the_environment_are_flagged(tmp_path: Path) -> None:
    repos.write(tmp_path, {
        **repos.WEB,
        "web/webcfg/settings.py": 'INSTALLED_APPS = ["blog"]\nDATABASES = {"default": '
                                  '{"ENGINE": "django.db.backends.postgresql", "NAME": "x"}}\n',
        "jobs/alembic.ini": "[alembic]\nscript_location = db\nsqlalchemy.url = "
                            "postgresql://localhost/jobs\n",
        "jobs/db/env.py": "from alembic import context\nurl = context.config."
                          "get_main_option('sqlalchemy.url')\n",
        "dj/manage.py": repos.WEB["web/manage.py"].replace("webcfg", "djcfg"),
        "dj/djcfg/__init__.py": "",
        "dj/djcfg/settings.py": "import dj_database_url\n"
                                "DATABASES = {'default': dj_database_url.config()}\n",
    })
    apps = by_name(detect(tmp_path))
    assert "read DATABASE_URL (devenv sets it) in DATABASES" in apps["web"].notes[0]
    assert apps["jobs"].notes[0].startswith("jobs/db/env.py reads no database variable")
    # dj-database-url reads DATABASE_URL without naming it.
    assert apps["dj"].db.url_vars == ("DATABASE_URL",) and not apps["dj"].notes


def test_health_route_is_a_route_not_a_word(tmp_path: Path) -> None:
    repos.write(tmp_path, {
        "a/app.py": "from flask import Flask\napp = Flask(__name__)\n"
                    "@app.get('/items')\ndef items():\n    return {'health': 'ok'}\n",
        "b/app.py": "from flask import Flask\napp = Flask(__name__)\n"
                    "@app.get('/api/healthz')\ndef h():\n    return 'ok'\n",
    })
    apps = by_name(detect(tmp_path))
    assert apps["a"].health is None
    assert apps["b"].health == "/api/healthz"
