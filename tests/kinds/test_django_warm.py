"""The warm-start protocol of the Django scripts (django-migrate, django-loaddata,
django-command), driven by hand as the runner drives it: set up and say ``r`` before the
database is touched, run on ``go``, exit quietly on end-of-file, fail set-up without ``r``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devenv.events import Status
from devenv.postgres import database
from tests.kinds import djangoproj
from tests.kinds.conftest import Outcome, project_config, sql
from tests.kinds.test_django_command import ADD_TAGS, command_step
from tests.kinds.warmproto import Warm

pytestmark = pytest.mark.postgres

KINDS = ["django-migrate", "django-command", "django-loaddata"]


WARM_STEPS: dict[str, dict[str, Any]] = {
    "django-command": command_step(args=["work", "home"]),
    "django-loaddata": {"kind": "django-loaddata", "cwd": "django_app", "needs": ["migrate"],
                        "fixtures": ["fixtures/tags.json"]},
    "django-migrate": {"kind": "django-migrate", "cwd": "django_app"},
}
TAGS = [{"model": "notes.tag", "pk": 1, "fields": {"name": "work"}},
        {"model": "notes.tag", "pk": 2, "fields": {"name": "home"}}]


def warm_project(make_project: Callable[..., Path], db: database.Target, kind: str,
                 **extra: Any) -> Path:
    """The notes project, a migrate step, and ``step`` of the given kind."""
    steps = {"migrate": {"kind": "django-migrate", "cwd": "django_app"},
             "step": {**WARM_STEPS[kind], **extra}}
    root = make_project(project_config(db, steps))
    base = djangoproj.write(root)
    files = {"fixtures/tags.json": json.dumps(TAGS),
             "notes/management/__init__.py": "",
             "notes/management/commands/__init__.py": "",
             "notes/management/commands/add_tags.py": ADD_TAGS}
    for name, text in files.items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_text(text)
    return root


def tags(db: database.Target) -> list[str]:
    return [r[0] for r in sql(db, "SELECT name FROM notes_tag ORDER BY id")]


def migrations(db: database.Target) -> int:
    if not sql(db, "SELECT 1 FROM pg_tables WHERE tablename = 'django_migrations'"):
        return 0
    return int(sql(db, "SELECT count(*) FROM django_migrations")[0][0])


@pytest.mark.parametrize("kind", KINDS)
def test_warm_start_sets_up_before_the_database_exists(
        kind: str, make_project: Callable[..., Path], db: database.Target,
        run_steps: Callable[..., Outcome]) -> None:
    """Parked before its database even exists, so set-up cannot have connected; then the
    database is built and 'go' runs the step."""
    root = warm_project(make_project, db, kind)
    warm = Warm(root, db, "step")
    assert warm.ready() == b"r", warm.finish(b"")
    assert not database.exists(db, db.dbname)
    if kind == "django-migrate":
        database.ensure(db, db.dbname, ["public"])
    else:
        assert run_steps(root=root, targets=["migrate"]).statuses["migrate"] \
            is Status.OK
        assert tags(db) == []  # parked: nothing written yet
    rc, out, err = warm.finish(b"go\n")
    assert rc == 0, out + err
    if kind == "django-migrate":
        assert migrations(db) == 2
    else:
        assert tags(db) == ["work", "home"]


@pytest.mark.parametrize("kind", KINDS)
def test_warm_start_not_needed_exits_quietly(
        kind: str, make_project: Callable[..., Path], db: database.Target,
        run_steps: Callable[..., Outcome]) -> None:
    """End-of-file instead of 'go' (a dependency failed): exit 0, nothing said, the
    database untouched."""
    root = warm_project(make_project, db, kind)
    if kind == "django-migrate":
        database.ensure(db, db.dbname, ["public"])
    else:
        assert run_steps(root=root, targets=["migrate"]).statuses["migrate"] \
            is Status.OK
    before = migrations(db)
    warm = Warm(root, db, "step")
    assert warm.ready() == b"r"
    assert warm.finish(b"") == (0, "", "")
    assert migrations(db) == before
    if kind != "django-migrate":
        assert tags(db) == []
    warm = Warm(root, db, "step")
    assert warm.ready() == b"r"
    assert warm.finish(b"stop\n") == (0, "", "")


@pytest.mark.parametrize("kind", KINDS)
def test_warm_start_setup_failure_closes_the_fd_without_ready(
        kind: str, make_project: Callable[..., Path], db: database.Target) -> None:
    root = warm_project(make_project, db, kind, settings="nosite.settings")
    warm = Warm(root, db, "step")
    assert warm.ready() == b""
    rc, _, err = warm.finish(b"")
    assert rc == 1
    assert err.splitlines()[-1] == (
        f"{kind}: cannot import the settings module 'nosite.settings' (from "
        f"{root / 'django_app'}): No module named 'nosite'")


def test_warm_start_unknown_command_fails_in_setup(make_project: Callable[..., Path],
                                                   db: database.Target) -> None:
    root = warm_project(make_project, db, "django-command", command="add_tag")
    warm = Warm(root, db, "step")
    assert warm.ready() == b""
    rc, _, err = warm.finish(b"")
    assert rc == 1
    assert err.splitlines()[-1] == (
        "django-command: unknown management command 'add_tag' (settings notesite.settings); "
        "did you mean 'add_tags'?")
