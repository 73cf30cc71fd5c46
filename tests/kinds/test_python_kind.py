"""kind: python: a function called with a psycopg connection and a seeded Faker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devenv import loader
from devenv.errors import ConfigError
from devenv.events import Status
from devenv.postgres import database
from tests.kinds.conftest import Outcome, last_lines, sql

SEEDS = '''def fill(conn, fake, count=3):
    conn.execute("CREATE TABLE people (name text)")
    for _ in range(count):
        conn.execute("INSERT INTO people VALUES (%s)", (fake.name(),))


def boom(conn, fake):
    conn.execute("CREATE TABLE half (x int)")
    raise RuntimeError("no more names")
'''

FILES = {"app/seeds/__init__.py": "", "app/seeds/people.py": SEEDS}


def step(call: str, **extra: Any) -> dict[str, Any]:
    return {"python": {"kind": "python", "cwd": "app", "call": call, **extra}}


@pytest.mark.postgres
def test_function_gets_a_connection_and_a_seeded_faker(
        db: database.Target, run_steps: Callable[..., Outcome]) -> None:
    from faker import Faker

    out = run_steps(step("seeds.people:fill", seed=7, args={"count": 4}), files=FILES)
    assert out.statuses == {"python": Status.OK}, out.log("python")
    assert last_lines(out.log("python"), 1).startswith("python: seeds.people:fill done in ")
    fake = Faker("en_US")
    fake.seed_instance(7)
    assert [r[0] for r in sql(db, "SELECT name FROM people")] == [fake.name()
                                                                  for _ in range(4)]
    assert loader.load(out.root / "steps.yaml").steps["python"].inputs == (
        "app/seeds/people.py", "app/seeds/people/**/*.py")


@pytest.mark.postgres
def test_runs_under_pythonsafepath(db: database.Target, run_steps: Callable[..., Outcome],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # PYTHONSAFEPATH keeps a script's folder off sys.path; devenv's scripts need theirs
    monkeypatch.setenv("PYTHONSAFEPATH", "1")
    out = run_steps(step("seeds.people:fill", seed=7, args={"count": 2}), files=FILES)
    assert out.statuses == {"python": Status.OK}, out.log("python")


@pytest.mark.postgres
@pytest.mark.parametrize(("call", "message"), [
    ("seeds.people:fil", "python: seeds.people has no function 'fil' (did you mean 'fill'?)"),
    ("seeds.persons:fill", "python: cannot import seeds.persons (from {cwd}): no module "
                           "named 'seeds.persons'; check call: and cwd:"),
    ("seeds.people:boom", "python: seeds.people:boom raised RuntimeError: no more names; "
                          "its changes were rolled back"),
])
def test_errors(db: database.Target, run_steps: Callable[..., Outcome], call: str,
                message: str) -> None:
    out = run_steps(step(call), files=FILES)
    assert out.statuses == {"python": Status.FAILED}
    log = out.log("python")
    assert last_lines(log, 1) == message.format(cwd=out.root / "app")
    if call.endswith("boom"):
        assert "Traceback (most recent call last)" in log
        assert sql(db, "SELECT to_regclass('half')") == [(None,)]


def test_call_must_name_module_and_function(make_project: Callable[..., Path]) -> None:
    root = make_project("version: 1\nsteps:\n  p:\n    kind: python\n    call: seeds.fill\n")
    with pytest.raises(ConfigError) as err:
        loader.load(root / "steps.yaml")
    assert str(err.value) == ("steps.yaml:5: steps.p.call: expected package.module:function, "
                              "got 'seeds.fill'")
