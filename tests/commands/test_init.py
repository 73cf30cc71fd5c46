"""``devenv init`` as users run it: a real ``devenv`` subprocess on test repositories
shaped like two real apps (tests/init/repos.py), then ``devenv plan`` and ``devenv up``
on the draft, unedited, against the docker postgres:15 image the draft names."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from devenv import loader
from tests.init import repos

ROOT = Path(__file__).resolve().parents[2]


def devenv(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    drop = ("PG", "DATABASE_URL", "FLASK_", "DJANGO_", "DEVENV_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "devenv", "--plain", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two apps with real virtualenvs, made once; tests take copies."""
    return repos.build(tmp_path_factory.mktemp("repos") / "src")


def copy(built: Path, tmp_path: Path) -> Path:
    # A unique name: it prefixes the container and volume devenv makes.
    root = tmp_path / f"initrepo{uuid.uuid4().hex[:8]}"
    shutil.copytree(built, root, symlinks=True)
    return root


def test_init_writes_the_draft_then_refuses_to_overwrite_it(built: Path,
                                                            tmp_path: Path) -> None:
    root = copy(built, tmp_path)
    first = devenv(root, "init")
    assert first.returncode == 0, first.stderr
    assert "wrote steps.yaml" in first.stdout and "wrote services/postgres.yaml" in first.stdout
    project = loader.load(root / "steps.yaml")
    assert list(project.steps) == ["api-migrate", "web-migrate", "web-fixtures"]
    # The schema the first line points at is there, and the draft passes it.
    schema = json.loads((root / ".devenv" / "schema" / "steps.json").read_text())
    import jsonschema

    jsonschema.validate(yaml.safe_load((root / "steps.yaml").read_text()), schema)

    (root / "steps.yaml").write_text((root / "steps.yaml").read_text() + "# mine\n")
    again = devenv(root, "init")
    assert again.returncode == 2
    assert "already exists; devenv init never overwrites it without --force" in again.stderr
    assert (root / "steps.yaml").read_text().endswith("# mine\n")
    forced = devenv(root, "init", "--force")
    assert forced.returncode == 0, forced.stderr
    assert not (root / "steps.yaml").read_text().endswith("# mine\n")


def test_check_prints_the_draft_and_writes_nothing(built: Path, tmp_path: Path) -> None:
    root = copy(built, tmp_path)
    check = devenv(root, "init", "--check")
    assert check.returncode == 0, check.stderr
    assert "--- steps.yaml\n# yaml-language-server: $schema=" in check.stdout
    assert "devenv init would write steps.yaml, services/postgres.yaml" in check.stdout
    assert not (root / "steps.yaml").exists() and not (root / "services").exists()
    assert devenv(root, "init").returncode == 0
    blocked = devenv(root, "init", "--check")
    assert blocked.returncode == 1
    assert "--- steps.yaml (exists)" in blocked.stdout
    assert "devenv init would stop: steps.yaml exists" in blocked.stdout


def test_no_app_found(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("nothing here\n")
    proc = devenv(tmp_path, "init")
    assert proc.returncode == 1
    assert "no Django project (manage.py), Flask app or alembic.ini found" in proc.stderr
    assert not (tmp_path / "steps.yaml").exists()


def test_plan_works_on_the_draft(built: Path, tmp_path: Path) -> None:
    root = copy(built, tmp_path)
    assert devenv(root, "init").returncode == 0
    plan = devenv(root, "plan")
    assert plan.returncode == 0, plan.stderr
    assert "3 of 3 steps would run" in plan.stdout


@pytest.mark.docker
@pytest.mark.slow
def test_init_then_up_builds_each_app_in_its_schema(built: Path, tmp_path: Path) -> None:
    """`devenv init && devenv up --detach`, no edit: the tables land in each app's schema,
    the steps run in the apps' virtualenvs, and both servers answer."""
    root = copy(built, tmp_path)
    assert devenv(root, "init").returncode == 0
    try:
        up = devenv(root, "up", "--detach", timeout=600)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert "all processes are ready" in up.stdout
        query = ("select table_schema||'.'||table_name from information_schema.tables "
                 "where table_schema in ('public','api','web') order by 1")
        tables = devenv(root, "psql", "--", "-At", "-c", query).stdout.split()
        assert {"api.alembic_version", "api.users", "api.posts", "web.django_migrations",
                "web.blog_post", "web.shop_product", "web.auth_user"} <= set(tables)
        assert not [t for t in tables if t.startswith("public.")]
        rows = devenv(root, "psql", "--", "-At", "-c", "select count(*) from web.shop_product")
        assert rows.stdout.strip() == "3"  # the fixtures
        log = (root / ".devenv" / "logs" / "api-migrate.log").read_text()
        assert f"api migrations run by {root / 'api' / '.venv'}" in log
        # The Flask server finds its tables through the search_path: the draft gave it.
        doc = yaml.safe_load((root / "steps.yaml").read_text())
        port = doc["processes"]["api"]["run"].rsplit(" ", 1)[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/users/count", timeout=10) as r:
            assert json.loads(r.read()) == {"n": 0}
    finally:
        down = devenv(root, "down", "--volumes", "--yes", timeout=300)
        assert down.returncode == 0, down.stderr


@pytest.mark.docker
@pytest.mark.slow
def test_init_then_up_on_the_healthplan_example(tmp_path: Path) -> None:
    root = tmp_path / f"hp{uuid.uuid4().hex[:8]}"
    shutil.copytree(ROOT / "examples" / "healthplan", root,
                    ignore=shutil.ignore_patterns("__pycache__", ".devenv"))
    assert devenv(root, "init").returncode == 0
    try:
        up = devenv(root, "up", "--detach", timeout=600)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        count = devenv(root, "psql", "--", "-At", "-c",
                       "select count(*) from internal_apps.interactions")
        assert int(count.stdout.strip()) > 0
    finally:
        down = devenv(root, "down", "--volumes", "--yes", timeout=300)
        assert down.returncode == 0, down.stderr


def test_python_is_found_relative_to_the_steps_cwd(built: Path, tmp_path: Path) -> None:
    """The draft writes python: ./.venv beside cwd: api; the runner finds it there (not
    in the repository root, where there is none)."""
    from devenv import runner

    root = copy(built, tmp_path)
    assert devenv(root, "init").returncode == 0
    project = loader.load(root / "steps.yaml")
    step = project.steps["api-migrate"]
    assert step.python == "./.venv"
    python = runner.resolve_python(project, step, {})
    assert Path(python) == root / "api" / ".venv" / "bin" / "python"
    assert Path(python).exists()


def test_app_limits_the_search_to_folders_of_the_repository(built: Path,
                                                            tmp_path: Path) -> None:
    root = copy(built, tmp_path)
    proc = devenv(tmp_path, "init", root.name, "--app", "web")  # web/ inside the repo
    assert proc.returncode == 0, proc.stderr
    assert list(loader.load(root / "steps.yaml").steps) == ["web-migrate", "web-fixtures"]
    missing = devenv(tmp_path, "init", root.name, "--app", "nowhere", "--force")
    assert missing.returncode == 2
    assert "no such folder: nowhere (--app takes an app's folder)" in missing.stderr
