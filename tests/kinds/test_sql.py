"""kind: sql: files in one transaction; errors as FILE:LINE: the server's message."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from devenv import loader
from devenv.errors import ConfigError
from devenv.events import Status
from devenv.kinds._sql_run import split
from devenv.postgres import database
from tests.kinds.conftest import Outcome, last_lines, sql

SCHEMA = """-- plans; a comment with a ; in it
CREATE TABLE plans (id int PRIMARY KEY, code text NOT NULL, note text);
/* a block comment; /* nested; */ still comment */
INSERT INTO plans VALUES (1, 'a;b', E'it\\'s; here');
CREATE FUNCTION one() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;
COPY plans (id, code) FROM stdin;
2\tx
3\ty
\\.
BEGIN;
INSERT INTO plans VALUES (4, 'd', $tag$ ; $tag$);
COMMIT;
"""


def test_split_understands_quotes_comments_and_copy() -> None:
    stmts = split(SCHEMA)
    assert [s.first_word for s in stmts] == ["CREATE", "INSERT", "CREATE", "COPY", "BEGIN",
                                            "INSERT", "COMMIT"]
    assert [s.line for s in stmts] == [2, 4, 5, 6, 10, 11, 12]
    assert stmts[3].copy_data == "2\tx\n3\ty\n"
    assert stmts[3].data_line == 7
    assert split("SELECT 1;\n-- only a comment\n") [-1].text == "SELECT 1;"
    assert [s.text for s in split("SELECT 1; SELECT 2")] == ["SELECT 1;", " SELECT 2"]


@pytest.mark.postgres
def test_files_run_in_order_in_one_transaction(db: database.Target,
                                               run_steps: Callable[..., Outcome]) -> None:
    out = run_steps({"schema": {"kind": "sql", "cwd": "db", "files": ["schema.sql",
                                                                      "more.sql"]}},
                    files={"db/schema.sql": SCHEMA,
                           "db/more.sql": "INSERT INTO plans VALUES (5, 'e', '%s');\n"})
    assert out.statuses == {"schema": Status.OK}, out.log("schema")
    assert last_lines(out.log("schema"), 5) == (
        "sql: schema.sql:10: BEGIN skipped: all the files run in one transaction\n"
        "sql: schema.sql:12: COMMIT skipped: all the files run in one transaction\n"
        "sql: schema.sql: 5 statements\n"
        "sql: more.sql: 1 statement\n"
        "sql: committed 6 statements from 2 files")
    assert sql(db, "SELECT id, code, note FROM plans ORDER BY id") == [
        (1, "a;b", "it's; here"), (2, "x", None), (3, "y", None), (4, "d", " ; "),
        (5, "e", "%s")]
    project = loader.load(out.root / "steps.yaml")
    assert project.steps["schema"].inputs == ("db/schema.sql", "db/more.sql")


@pytest.mark.postgres
@pytest.mark.parametrize(("second", "expected"), [
    ("INSERT INTO plans VALUES (6, 'f');\n\nSELECT *\n  FROM nope;\n",
     'sql: more.sql:4: ERROR: relation "nope" does not exist'),
    ("INSERT INTO plans VALUES\n  (1, 'dup');\n",
     'sql: more.sql:1: ERROR: duplicate key value violates unique constraint "plans_pkey"\n'
     "  DETAIL: Key (id)=(1) already exists."),
    ("COPY plans (id, code) FROM stdin;\n7\tz\n8\n\\.\n",
     'sql: more.sql:3: ERROR: missing data for column "code"'),
    ("ROLLBACK;\n", None),
])
def test_an_error_names_file_line_and_message_and_rolls_back(
        db: database.Target, run_steps: Callable[..., Outcome], second: str,
        expected: str | None) -> None:
    out = run_steps({"schema": {"kind": "sql", "files": ["schema.sql", "more.sql"]}},
                    files={"schema.sql": SCHEMA, "more.sql": second})
    assert out.statuses == {"schema": Status.FAILED}
    log = out.log("schema")
    if expected is None:
        assert last_lines(log, 1) == ("sql: more.sql:1: ROLLBACK is not allowed: all the "
                                      "files run in one transaction")
    else:
        n = expected.count("\n") + 2
        assert last_lines(log, n) == (
            f"{expected}\nsql: rolled back: nothing from schema.sql, more.sql was kept")
    assert sql(db, "SELECT to_regclass('plans')") == [(None,)]


@pytest.mark.postgres
def test_missing_file_and_psql_commands(run_steps: Callable[..., Outcome]) -> None:
    out = run_steps({"a": {"kind": "sql", "file": "nope.sql"},
                     "b": {"kind": "sql", "file": "dump.sql"}},
                    files={"dump.sql": "SELECT 1;\n\\connect other\nSELECT 2;\n"},
                    keep_going=True)
    assert last_lines(out.log("a"), 1) == f"sql: file not found: nope.sql (in {out.root})"
    assert last_lines(out.log("b"), 1) == (
        "sql: dump.sql:2: psql meta-command \\connect is not supported; run the file with "
        "psql in a shell step instead")


@pytest.mark.parametrize(("step", "message"), [
    ("    file: a.sql\n    files: [b.sql]\n",
     "steps.yaml:6: steps.s.files: use either file: or files:, not both"),
    ("    description: nothing\n",
     "steps.yaml:4: steps.s.kind: missing 'file' (one SQL file) or 'files' (a list, run in "
     "order in one transaction)"),
])
def test_options_are_checked_when_loading(make_project: Callable[..., Path], step: str,
                                          message: str) -> None:
    root = make_project(f"version: 1\nsteps:\n  s:\n    kind: sql\n{step}")
    with pytest.raises(ConfigError) as err:
        loader.load(root / "steps.yaml")
    assert str(err.value) == message


def test_every_typed_kind_is_registered() -> None:
    from devenv.kinds import KINDS

    assert list(KINDS) == ["shell", "django-migrate", "django-loaddata", "django-command",
                           "alembic", "flask-command", "sql", "faker", "python"]
