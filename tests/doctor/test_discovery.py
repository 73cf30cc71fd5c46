"""Which apps doctor finds in the steps and processes (no database needed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from devenv.doctor import Context
from devenv.doctor.apps import discover, words

MakeProject = Callable[..., Path]


def test_words_split_a_shell_line() -> None:
    assert words("cd web && FOO=1 python manage.py migrate | tee log; echo done") == [
        ["cd", "web"], ["python", "manage.py", "migrate"], ["tee", "log"], ["echo", "done"]]
    assert words(("flask", "db", "upgrade")) == [["flask", "db", "upgrade"]]


def test_apps_from_kinds_commands_and_processes(make_project: MakeProject) -> None:
    root = make_project({
        "version": 1, "name": "doc-discover",
        "steps": {
            "flask-migrate": {"kind": "alembic", "flask_app": "app.py", "cwd": "api"},
            "flask-seed": {"run": "FOO=1 python -m flask seed", "cwd": "api",
                           "env": {"FLASK_APP": "app.py"}},
            "fake": {"run": "python manage.py migrate people 0001 --fake", "cwd": "web"},
            "migrate": {"kind": "django-migrate", "cwd": "web", "needs": ["fake"]},
            "legacy": {"run": "alembic -c db/alembic.ini upgrade head", "cwd": "legacy"},
            "other": {"run": "echo hello"},
        },
        "processes": {
            "api": {"run": "flask --app app.py run", "cwd": "api"},
            "web": {"run": "python manage.py runserver --settings site.dev", "cwd": "web"},
        },
    }, files={"api/app.py": "", "web/manage.py": "", "legacy/db/alembic.ini": ""})
    apps = {(a.kind, a.rel_cwd): a for a in discover(Context(root / "steps.yaml"))}
    assert set(apps) == {("flask", "api"), ("django", "web"), ("alembic", "legacy")}
    flask = apps["flask", "api"]
    assert flask.options == {"app": "app.py", "directory": "migrations"}
    assert flask.migrate_steps == ["flask-migrate"]
    assert flask.sources == ["steps.flask-migrate", "steps.flask-seed", "processes.api"]
    django = apps["django", "web"]
    assert django.options["manage"] == "manage.py"
    assert django.options["settings"] == "site.dev"
    assert django.migrate_steps == ["fake", "migrate"]
    assert django.fake_steps == {"people": ["fake"]}
    assert django.sources == ["steps.fake", "steps.migrate", "processes.web"]
    assert apps["alembic", "legacy"].options == {"app": None, "config": "db/alembic.ini"}
    # What the apps see: the steps' environment, the processes' env: last.
    assert flask.env["FLASK_APP"] == "app.py"
    assert flask.env["DEVENV_PROCESS"] == "api"


def test_apps_from_the_command_kinds_alone(make_project: MakeProject) -> None:
    """A project whose app steps are all flask-command / django-command still has its
    apps looked at (none of them migrates)."""
    root = make_project({
        "version": 1, "name": "doc-discover-kinds",
        "steps": {
            "fixtures": {"kind": "flask-command", "flask_app": "app.py",
                         "command": "load-fixtures", "cwd": "api", "inputs": ["api/*"]},
            "seed": {"kind": "django-command", "settings": "site.dev", "command": "seed",
                     "cwd": "web"},
        },
    }, files={"api/app.py": "", "web/manage.py": ""})
    apps = {(a.kind, a.rel_cwd): a for a in discover(Context(root / "steps.yaml"))}
    assert set(apps) == {("flask", "api"), ("django", "web")}
    assert apps["flask", "api"].options == {"app": "app.py", "directory": "migrations"}
    assert apps["flask", "api"].sources == ["steps.fixtures"]
    assert apps["flask", "api"].migrate_steps == []
    assert apps["django", "web"].options == {"manage": "manage.py", "settings": "site.dev"}
    assert apps["django", "web"].migrate_steps == []
