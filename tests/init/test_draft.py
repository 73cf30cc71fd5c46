"""``devenv.init.draft``: the steps.yaml text, loaded back by the real loader."""

from __future__ import annotations

from pathlib import Path

from devenv import loader
from devenv.init import detect, draft
from tests.init import repos
from tests.init.test_detect import fake_venv


def load(root: Path, d: draft.Draft) -> loader.Project:
    services = [(Path(n).stem, n, t) for n, t in d.files.items() if n.startswith("services/")]
    return loader.load_text(d.files["steps.yaml"], root, root / "steps.yaml", services)


def test_two_apps_get_a_schema_each_and_their_virtualenvs(tmp_path: Path) -> None:
    repos.build(tmp_path, venvs=False)
    fake_venv(tmp_path / "api")
    fake_venv(tmp_path / "web")
    d = draft.make(tmp_path, detect.detect(tmp_path), port_free=lambda p: True)
    project = load(tmp_path, d)
    assert project.database is not None
    assert project.database.schemas == ("public", "api", "web")
    steps = project.steps
    assert list(steps) == ["api-migrate", "web-migrate", "web-fixtures"]
    assert steps["api-migrate"].kind == "alembic"
    assert "flask_app" not in steps["api-migrate"].options  # plain Alembic
    assert steps["api-migrate"].search_path == ("api", "public")
    # relative to the step's cwd (api/), where the virtualenv is
    assert (steps["api-migrate"].cwd, steps["api-migrate"].python) == ("api", "./.venv")
    assert steps["web-migrate"].env["DB_HOST"] == "${PGHOST}"
    assert steps["web-migrate"].needs == ("postgres",)  # apart schemas: side by side
    assert steps["web-fixtures"].options["fixtures"] == ("posts", "products")
    assert project.env == {"DJANGO_SECRET_KEY": "dev-only-django-secret-key"}
    api, web = project.processes["api"], project.processes["web"]
    assert api.run == "./.venv/bin/python -m flask run --port 5001"
    assert api.search_path == ("api", "public")  # PGOPTIONS through the search_path: key
    assert (api.ready, web.ready) == ("tcp://127.0.0.1:5001", "http://127.0.0.1:8000/health/")
    text = d.files["steps.yaml"]
    assert text.startswith("# yaml-language-server: $schema=.devenv/schema/steps.json\n")
    # Commands that need a choice are listed, commented out, ready to uncomment.
    assert "  # api-fake-users:\n  #   kind: flask-command" in text
    assert "#   args: [users, <n>]" in text
    assert "  # web-fake:\n" in text


def test_a_busy_port_is_skipped(tmp_path: Path) -> None:
    repos.build(tmp_path, venvs=False)
    d = draft.make(tmp_path, detect.detect(tmp_path), port_free=lambda p: p not in (5001, 8000))
    procs = load(tmp_path, d).processes
    assert "--port 5002" in str(procs["api"].run)
    assert "127.0.0.1:8001" in str(procs["web"].run)


def test_one_app_keeps_public_and_has_no_python_without_a_virtualenv(tmp_path: Path) -> None:
    repos.write(tmp_path, repos.WEB)
    d = draft.make(tmp_path, detect.detect(tmp_path), port_free=lambda p: True)
    project = load(tmp_path, d)
    assert project.database is not None and project.database.schemas == ("public",)
    assert project.steps["web-migrate"].search_path == ()
    assert project.steps["web-migrate"].python is None
    assert project.processes["web"].run == (
        "python manage.py runserver 127.0.0.1:8000 --noreload")
    assert "no virtualenv found beside the app" in d.files["steps.yaml"]


def test_healthplan_draft_orders_the_apps_that_share_public() -> None:
    root = Path(__file__).resolve().parents[2] / "examples" / "healthplan"
    d = draft.make(root, detect.detect(root), port_free=lambda p: True)
    project = load(root, d)
    steps = project.steps
    # The apps pin their own search_path; devenv's matches, and no schema is invented.
    assert project.database is not None
    assert project.database.schemas == ("public", "internal_apps")
    assert steps["django-api-migrate"].search_path == ("internal_apps", "public")
    # Django sees public, where Flask's tables are: Alembic first, Flask's fixtures first.
    assert steps["django-api-migrate"].needs == ("flask-api-migrate",)
    assert steps["django-api-fixtures"].needs == ("django-api-migrate",
                                                  "flask-api-load-fixtures")
    assert steps["flask-api-load-fixtures"].kind == "flask-command"
    assert "flask-api-fake-data" not in steps  # listed to pick, not chosen



def test_listed_commands_load_once_uncommented(tmp_path: Path) -> None:
    """The commented-out command steps are ready to use: uncommented, the file loads and
    each carries what the app's other steps carry (cwd, python, search_path, env)."""
    import re

    repos.build(tmp_path, venvs=False)
    fake_venv(tmp_path / "web")
    d = draft.make(tmp_path, detect.detect(tmp_path), port_free=lambda p: True)
    text = re.sub(r"^  # ([\w-]+:)$", r"  \1", d.files["steps.yaml"], flags=re.M)
    text = re.sub(r"^  #   (.*)$", r"    \1", text, flags=re.M)
    d.files["steps.yaml"] = text
    steps = load(tmp_path, d).steps
    fake = steps["web-fake"]
    assert (fake.kind, fake.options["command"], fake.options["args"]) == (
        "django-command", "fake", ("<count>",))
    assert (fake.cwd, fake.python, fake.needs) == ("web", "./.venv", ("web-fixtures",))
    assert fake.env == steps["web-migrate"].env and fake.env["DB_PORT"] == "${PGPORT}"
    users = steps["api-fake-users"]
    assert (users.options["command"], users.options["args"]) == ("fake", ("users", "<n>"))


def test_a_long_folder_name_still_gives_valid_names(tmp_path: Path) -> None:
    root = tmp_path / ("2024-" + "very-long-repository-name-" * 3)
    repos.write(root, repos.WEB)
    project = load(root, draft.make(root, detect.detect(root), port_free=lambda p: True))
    assert project.database is not None
    assert len(project.name) <= 40 and len(project.database.name) <= 40
