"""kind: django-loaddata, on a real PostgreSQL with the throw-away Django project."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devenv import loader
from devenv.events import Status
from devenv.postgres import database
from tests.kinds import djangoproj
from tests.kinds.conftest import Outcome, last_lines, project_config, sql

pytestmark = pytest.mark.postgres

TAGS = [{"model": "notes.tag", "pk": 1, "fields": {"name": "work"}},
        {"model": "notes.tag", "pk": 2, "fields": {"name": "home"}}]


def note(pk: int, tag: Any, title: Any = "t") -> dict[str, Any]:
    return {"model": "notes.note", "pk": pk, "fields": {"title": title, "body": "b",
                                                        "tag": tag}}


def project(make_project: Callable[..., Path], db: database.Target, fixtures: list[str],
            files: dict[str, Any]) -> Path:
    steps = {
        "migrate": {"kind": "django-migrate", "cwd": "django_app"},
        "load": {"kind": "django-loaddata", "cwd": "django_app", "needs": ["migrate"],
                 "fixtures": fixtures},
    }
    root = make_project(project_config(db, steps))
    base = djangoproj.write(root)
    for name, content in files.items():
        p = base / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content if isinstance(content, str) else json.dumps(content))
    return root


def test_fixtures_load_in_order(make_project: Callable[..., Path], db: database.Target,
                                run_steps: Callable[..., Outcome]) -> None:
    root = project(make_project, db, ["fixtures/tags.json", "fixtures/notes.json"],
                   {"fixtures/tags.json": TAGS, "fixtures/notes.json": [note(1, 2)]})
    out = run_steps(root=root)
    assert out.statuses == {"migrate": Status.OK, "load": Status.OK}, out.output
    assert last_lines(out.log("load"), 3) == (
        "django-loaddata: fixtures/tags.json: Installed 2 object(s) from 1 fixture(s)\n"
        "django-loaddata: fixtures/notes.json: Installed 1 object(s) from 1 fixture(s)\n"
        "django-loaddata: done: 3 objects from 2 fixtures")
    assert sql(db, "SELECT n.title, t.name FROM notes_note n JOIN notes_tag t ON "
                   "t.id = n.tag_id") == [("t", "home")]
    assert loader.load(root / "steps.yaml").steps["load"].inputs == (
        "django_app/fixtures/tags.json", "django_app/fixtures/notes.json")


def test_a_broken_reference_names_file_and_object(
        make_project: Callable[..., Path], db: database.Target,
        run_steps: Callable[..., Outcome]) -> None:
    root = project(make_project, db, ["fixtures/tags.json", "fixtures/notes.json"],
                   {"fixtures/tags.json": TAGS,
                    "fixtures/notes.json": [note(1, 1), note(2, 99)]})
    out = run_steps(root=root)
    assert out.statuses["load"] is Status.FAILED
    log = out.log("load")
    first, second = log.rstrip("\n").splitlines()[-2:]
    # The constraint's name is Django's (a hash); the rest is exact.
    assert first.startswith('django-loaddata: fixtures/notes.json: notes.Note(pk=2): insert '
                            'or update on table "notes_note" violates foreign key constraint ')
    assert first.endswith('(Key (tag_id)=(99) is not present in table "notes_tag".)')
    assert second == ("django-loaddata: nothing was loaded (the fixtures load in one "
                      "transaction)")
    # One transaction: the tags loaded before the failure are gone too.
    assert sql(db, "SELECT count(*) FROM notes_tag") == [(0,)]


def test_a_rejected_object_names_file_and_object(
        make_project: Callable[..., Path], db: database.Target,
        run_steps: Callable[..., Outcome]) -> None:
    root = project(make_project, db, ["fixtures/tags.json", "fixtures/notes.json"],
                   {"fixtures/tags.json": TAGS,
                    "fixtures/notes.json": [note(1, 1), note(3, 1, title=None)]})
    out = run_steps(root=root)
    assert out.statuses["load"] is Status.FAILED
    assert last_lines(out.log("load"), 2) == (
        'django-loaddata: fixtures/notes.json: notes.Note(pk=3): null value in column '
        '"title" of relation "notes_note" violates not-null constraint (Failing row contains '
        '(3, null, b, 1, f).)\n'
        "django-loaddata: nothing was loaded (the fixtures load in one transaction)")


def test_a_bad_value_and_a_broken_file(make_project: Callable[..., Path],
                                       db: database.Target,
                                       run_steps: Callable[..., Outcome]) -> None:
    root = project(make_project, db, ["fixtures/tags.json", "fixtures/notes.json"],
                   {"fixtures/tags.json": TAGS, "fixtures/notes.json": [note(4, "x")]})
    out = run_steps(root=root)
    assert last_lines(out.log("load"), 2) == (
        "django-loaddata: fixtures/notes.json: notes.note(pk=4): ['“x” value must be an "
        "integer.'] (value 'x')\n"
        "django-loaddata: nothing was loaded (the fixtures load in one transaction)")
    root = project(make_project, db, ["fixtures/broken.json"],
                   {"fixtures/broken.json": '[{"model": \n'})
    out = run_steps(root=root)
    assert last_lines(out.log("load"), 2) == (
        "django-loaddata: fixtures/broken.json: JSONDecodeError: Expecting value: line 2 "
        "column 1 (char 12)\n"
        "django-loaddata: nothing was loaded (the fixtures load in one transaction)")


def test_missing_fixtures(make_project: Callable[..., Path], db: database.Target,
                          run_steps: Callable[..., Outcome]) -> None:
    root = project(make_project, db, ["fixtures/nope.json"], {})
    out = run_steps(root=root)
    assert last_lines(out.log("load"), 1) == (
        f"django-loaddata: fixture file not found: fixtures/nope.json (in "
        f"{root / 'django_app'})")
    root = project(make_project, db, ["plans"], {})
    out = run_steps(root=root)
    assert last_lines(out.log("load"), 1) == (
        "django-loaddata: plans: No fixture named 'plans' found.")
    assert loader.load(root / "steps.yaml").steps["load"].inputs == (
        "django_app/plans", "django_app/*/fixtures/plans", "django_app/*/fixtures/plans.*")
