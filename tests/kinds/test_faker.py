"""kind: faker: declarative fake data on a real PostgreSQL, through the real runner."""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import pytest

from devenv import loader
from devenv.errors import ConfigError
from devenv.events import Status
from devenv.kinds._faker_run import speed_up
from devenv.postgres import database
from tests.kinds.conftest import Outcome, last_lines, sql

SCHEMA = """
CREATE TABLE plans (id serial PRIMARY KEY, code varchar(10) UNIQUE NOT NULL,
                    tier text NOT NULL);
CREATE TABLE members (id serial PRIMARY KEY, first_name text NOT NULL,
                      last_name text NOT NULL, email text UNIQUE, birth_date date,
                      plan_id int NOT NULL REFERENCES plans (id), phone text,
                      active boolean, score int, status text);
CREATE TABLE notes (id serial PRIMARY KEY, member_id int REFERENCES members (id),
                    body text);
"""

HEAD = """version: 1
name: kinds
services: {{db: {{image: "postgres:15"}}}}
database: {{service: db, name: {db}}}
steps:
  schema:
    kind: sql
    file: schema.sql
  seed:
    kind: faker
    needs: [schema]
"""

# Children first on purpose: the order comes from the foreign keys (notes -> members
# has no ref:, only a constraint).
SEED = """    seed: 42
    locale: en_US
    truncate: true
    tables:
      notes:
        rows: 20
        columns: {member_id: {value: 1}, body: {sentence: {nb_words: 4}}}
      public.members:
        rows: 500
        columns:
          first_name: first_name
          last_name: last_name
          email: {unique: email}
          birth_date: {date_of_birth: {minimum_age: 65, maximum_age: 100}}
          plan_id: {ref: public.plans.id}
          phone: {phone_number: null, null_ratio: 0.5}
          active: true
          score: 7
          status: {value: enrolled}
      plans:
        rows: 5
        columns:
          code: {unique: {bothify: {text: "PL-###"}}}
          tier: {random_element: {elements: [gold, silver, bronze]}}
"""


def write(make_project: Callable[..., Path], db: database.Target, seed: str) -> Path:
    return make_project(HEAD.format(db=db.dbname) + seed, files={"schema.sql": SCHEMA})


def members(db: database.Target) -> list[tuple[object, ...]]:
    return sql(db, "SELECT id, first_name, last_name, email, birth_date, plan_id, phone, "
                   "active, score, status FROM members ORDER BY id")


@pytest.mark.postgres
def test_tables_are_filled_in_dependency_order(make_project: Callable[..., Path],
                                               db: database.Target,
                                               run_steps: Callable[..., Outcome]) -> None:
    root = write(make_project, db, SEED)
    out = run_steps(root=root)
    assert out.statuses == {"schema": Status.OK, "seed": Status.OK}, out.log("seed")
    log = out.log("seed")
    assert ("faker: seed 42, locale en_US: public.plans (5), public.members (500), "
            "public.notes (20)\n") in log
    assert log.endswith("faker: committed 525 rows in 3 tables\n")
    rows = members(db)
    assert len(rows) == 500
    assert {r[5] for r in rows} == {1, 2, 3, 4, 5}  # refs pick existing plan ids
    assert all(r[7] is True and r[8] == 7 and r[9] == "enrolled" for r in rows)
    assert 150 < sum(r[6] is None for r in rows) < 350  # null_ratio 0.5
    ages = {r[4].year for r in rows}
    assert min(ages) >= 1920 and max(ages) <= 1962
    tiers = sql(db, "SELECT DISTINCT tier FROM plans")
    assert {t[0] for t in tiers} <= {"gold", "silver", "bronze"}
    assert sql(db, "SELECT count(*) FROM notes WHERE member_id = 1") == [(20,)]

    # Deterministic: a forced re-run (truncate: true) writes exactly the same rows.
    first = members(db)
    again = run_steps(root=root, force=True, targets=["seed"], only=True)
    assert again.statuses["seed"] is Status.OK, again.log("seed")
    assert "faker: truncated public.plans, public.members, public.notes\n" in again.log("seed")
    assert members(db) == first


@pytest.mark.postgres
def test_adding_a_column_leaves_the_other_columns_alone(
        make_project: Callable[..., Path], db: database.Target,
        run_steps: Callable[..., Outcome]) -> None:
    run_steps(root=write(make_project, db, SEED))
    before = [r[1:5] for r in members(db)]
    seed = SEED.replace("          score: 7\n", "")
    out = run_steps(root=write(make_project, db, seed))
    assert out.statuses["seed"] is Status.OK, out.log("seed")
    assert [r[1:5] for r in members(db)] == before


@pytest.mark.postgres
def test_unqualified_tables_follow_the_steps_search_path(
        db: database.Target, run_steps: Callable[..., Outcome]) -> None:
    sql(db, "CREATE SCHEMA app", "CREATE TABLE app.items (id serial PRIMARY KEY, name text)",
        "CREATE TABLE public.items (id serial PRIMARY KEY, other text)")
    out = run_steps({"seed": {"kind": "faker", "search_path": ["app"], "tables": {
        "items": {"rows": 3, "columns": {"name": "word"}}}}})
    assert out.statuses == {"seed": Status.OK}, out.log("seed")
    assert "faker: app.items: 3 rows in " in out.log("seed")
    assert sql(db, "SELECT count(*) FROM app.items") == [(3,)]


def test_speed_up_changes_no_value() -> None:
    from faker import Faker

    calls: list[tuple[str, tuple[object, ...]]] = [
        (name, ()) for name in ("first_name", "last_name", "name", "email", "address",
                                "city", "phone_number", "company", "job", "user_name",
                                "street_name", "ssn", "postcode", "license_plate", "ean13")]
    calls += [("random_element", (OrderedDict(a=0.7, b=0.2, c=0.1),)),
              ("random_elements", (OrderedDict(a=0.7, b=0.3), 3)),
              ("random_element", (("x", "y", "z"),)), ("bothify", ("??-##",))]
    plain, fast = Faker("en_US"), Faker("en_US")
    speed_up(fast)
    for fake in (plain, fast):
        gen = fake._factories[0]
        values = []
        for i, (call, args) in enumerate(calls):
            gen.random = random.Random(f"{call}{i}")
            values.append([getattr(gen, call)(*args) for _ in range(300)])
            values.append([gen.random.random()])  # the streams end in the same place
        fake.values = values  # type: ignore[attr-defined]
    assert fast.values == plain.values  # type: ignore[attr-defined]


RUNTIME_ERRORS = [
    (SEED.replace("      public.members:", "      public.membrs:"),
     "faker: steps.yaml:19: steps.seed.tables.public.membrs: no table public.membrs in the "
     "database (did you mean 'public.members'?)"),
    (SEED.replace("          email: {unique", "          emial: {unique"),
     "faker: steps.yaml:24: steps.seed.tables.public.members.columns.emial: table "
     "public.members has no column 'emial' (did you mean 'email'?)"),
    (SEED.replace("{ref: public.plans.id}", "{ref: plans.idd}"),
     "faker: steps.yaml:26: steps.seed.tables.public.members.columns.plan_id.ref: table "
     "public.plans has no column 'idd' (did you mean 'id'?)"),
    (SEED.replace("      plans:\n        rows: 5", "      plans:\n        rows: 0"),
     "faker: steps.yaml:26: steps.seed.tables.public.members.columns.plan_id.ref: "
     "public.plans has no rows to pick id from: fill it first (in a step this one needs, "
     "or in this step's tables)"),
    (SEED.replace('{bothify: {text: "PL-###"}}', "{random_element: {elements: [a, b]}}"),
     "faker: steps.yaml:34: steps.seed.tables.plans.columns.code: no new unique value for "
     "public.plans.code at row 3 of 5: Faker's random_element has too few distinct values"),
    (SEED.replace("score: 7", "score: {value: lots}"),
     "faker: steps.yaml:29: steps.seed.tables.public.members.columns.score: ERROR: invalid "
     'input syntax for type integer: "lots" (row 1)'),
    (SEED.replace("truncate: true", "truncate: false").replace("rows: 500", "rows: 1"),
     None),
]


@pytest.mark.postgres
@pytest.mark.parametrize(("seed", "message"), RUNTIME_ERRORS)
def test_runtime_errors_name_the_step_table_and_column(
        make_project: Callable[..., Path], db: database.Target,
        run_steps: Callable[..., Outcome], seed: str, message: str | None) -> None:
    root = write(make_project, db, seed)
    out = run_steps(root=root)
    if message is None:
        # Appending the same deterministic rows again collides with the unique email.
        assert out.statuses["seed"] is Status.OK, out.log("seed")
        out = run_steps(root=root, force=True, targets=["seed"], only=True)
        log = last_lines(out.log("seed"), 1)
        assert log.startswith("faker: steps.yaml:31: steps.seed.tables.plans: "
                              'ERROR: duplicate key value violates unique constraint '
                              '"plans_code_key" (Key (code)=(PL-')
        assert log.endswith(") already exists.); if this step ran on this database before, "
                            "set truncate: true to replace the rows (row 1)")
        return
    assert out.statuses["seed"] is Status.FAILED
    assert last_lines(out.log("seed"), 1) == message
    assert sql(db, "SELECT count(*) FROM plans") == [(0,)]  # one transaction


@pytest.mark.parametrize(("seed", "message"), [
    (SEED.replace("first_name: first_name", "first_name: frist_name"),
     "steps.yaml:22: steps.seed.tables.public.members.columns.first_name: unknown Faker "
     "provider 'frist_name' (did you mean 'first_name'?); for a constant text write "
     "{value: frist_name}"),
    (SEED.replace("minimum_age: 65", "min_age: 65"),
     "steps.yaml:25: steps.seed.tables.public.members.columns.birth_date: "
     "date_of_birth(min_age=65, maximum_age=100) fails: TypeError: "
     "Provider.date_of_birth() got an unexpected keyword argument 'min_age'"),
    (SEED.replace("locale: en_US", "locale: en_UK"),
     "steps.yaml:13: steps.seed.locale: unknown Faker locale 'en_UK' (did you mean "
     "'en_US'?)"),
    (SEED.replace("        rows: 500\n", ""),
     "steps.yaml:19: steps.seed.tables.public.members.rows: expected a whole number of "
     "rows, got None"),
    (SEED.replace("active: true", "active: [1, 2]"),
     "steps.yaml:28: steps.seed.tables.public.members.columns.active: expected a Faker "
     "provider name, a constant, or a mapping ({provider: arguments}, {unique: provider}, "
     "{ref: table.column}, {value: constant})"),
    (SEED.replace("phone_number: null, null_ratio: 0.5", "phone_number: null, "
                  "null_ratio: 2"),
     "steps.yaml:27: steps.seed.tables.public.members.columns.phone.null_ratio: expected "
     "a number from 0 to 1, got 2"),
    (SEED.replace("{ref: public.plans.id}", "{ref: plans}"),
     "steps.yaml:26: steps.seed.tables.public.members.columns.plan_id.ref: expected "
     "[schema.]table.column, got 'plans'"),
])
def test_configuration_errors_are_found_when_loading(
        make_project: Callable[..., Path], db: database.Target, seed: str,
        message: str) -> None:
    root = write(make_project, db, seed)
    with pytest.raises(ConfigError) as err:
        loader.load(root / "steps.yaml")
    assert str(err.value) == message
