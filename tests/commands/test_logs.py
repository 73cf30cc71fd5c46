"""``devenv logs`` through the real CLI: a ci-setup run keeps its step logs apart from the
developer's, and devenv's own logs are not offered among the user's names."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devenv import loader
from devenv.commands import logs
from devenv.postgres import database, siblings

MakeProject = Callable[..., Path]


def devenv(root: Path, *args: str, url: str | None = None,
           ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "GITHUB_ACTIONS", "GITLAB_CI")}
    if url:
        env["DATABASE_URL"] = url
    return subprocess.run([sys.executable, "-m", "devenv", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.fixture
def proj(make_project: MakeProject, pg_server: Any) -> Iterator[tuple[Path, str]]:
    db = pg_server.unique_db("lg")
    root = make_project({
        "version": 1, "name": "logs",
        "services": {"db": {"image": "postgres:15"}},
        "database": {"service": "db", "name": db},
        "steps": {"migrate": {"run": "echo migrating: $(cat msg.txt)", "needs": ["db"],
                              "inputs": ["msg.txt"]}},
    }, files={"msg.txt": "the developer's run\n"})
    yield root, pg_server.url(db)
    target = database.parse_url(pg_server.url(db))
    for info in siblings.related(target, db):
        database.drop(target, info.datname)


@pytest.mark.postgres
def test_ci_setup_keeps_its_step_logs_apart_from_the_local_ones(
        proj: tuple[Path, str]) -> None:
    root, url = proj
    r = devenv(root, "--plain", "run", url=url)
    assert r.returncode == 0, r.stdout + r.stderr
    (root / "msg.txt").write_text("the CI run\n")
    r = devenv(root, "ci-setup", url=url)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[migrate] ok" in r.stdout

    r = devenv(root, "logs", "migrate")
    assert r.returncode == 0 and "migrating: the developer's run" in r.stdout, r.stdout
    assert "the CI run" not in r.stdout
    r = devenv(root, "logs", "--ci", "migrate")
    assert r.returncode == 0 and "migrating: the CI run" in r.stdout, r.stdout
    assert (root / ".devenv/ci-logs/migrate.log").is_symlink()

    # A step that only ran in one of them says where the other log is.
    project = loader.load(root / "steps.yaml")
    os.remove(root / ".devenv/logs/migrate.log")
    with pytest.raises(Exception) as err:
        list(logs.lines_for(project, "migrate"))
    assert str(err.value) == ("step migrate has no log yet (.devenv/logs/migrate.log): it "
                              "has not run here; its last ci-setup run: devenv logs --ci "
                              "migrate")


def test_devenvs_own_logs_are_not_listed_but_can_be_read(make_project: MakeProject) -> None:
    root = make_project({"version": 1, "steps": {"migrate": {"run": "true"}},
                         "processes": {"web": {"run": "true"}}})
    folder = root / ".devenv" / "logs"
    folder.mkdir(parents=True)
    (folder / "reclone.log").write_text("CREATE DATABASE app__ready TEMPLATE app__s_1\n")
    (folder / "old-step.log").write_text("a step since removed\n")
    r = devenv(root, "logs", "nosuch")
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: no service, step or process named 'nosuch'; known: "
                                "migrate, web, old-step; devenv's own: reclone")
    # Without a database service, which log to show is asked: reclone is not offered.
    r = devenv(root, "logs")
    assert r.returncode == 2 and "reclone" not in r.stderr
    assert "migrate, web, old-step" in r.stderr
    r = devenv(root, "logs", "reclone")
    assert r.returncode == 0 and "CREATE DATABASE app__ready" in r.stdout
