"""kind: flask-command, with a throw-away Flask + Flask-SQLAlchemy app on a real
PostgreSQL, and its warm-start protocol."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devenv import loader
from devenv.errors import ConfigError
from devenv.events import Status
from devenv.postgres import database
from tests.kinds.conftest import Outcome, last_lines, project_config, sql
from tests.kinds.warmproto import Warm, run_script

pytestmark = pytest.mark.postgres

# Flask-SQLAlchemy makes its engine when the app is created and connects on first use,
# so loading the app does not touch the database.
APP = '''import os

import click
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import text

db = SQLAlchemy()
app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"].replace(
    "postgresql://", "postgresql+psycopg://", 1)
db.init_app(app)


@app.cli.command("add-tags")
@click.argument("names", nargs=-1, required=True)
@click.option("--refuse", is_flag=True)
@click.option("--crash", is_flag=True)
@click.option("--exit", "code", type=int)
def add_tags(names, refuse, crash, code):
    """Add tags."""
    if refuse:
        raise click.ClickException(f"refusing to add {', '.join(names)}")
    if code is not None:
        click.echo("giving up", err=True)
        click.get_current_context().exit(code)
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS tags (name text PRIMARY KEY)"))
        if crash:
            conn.execute(text("SELECT 1 / 0"))
        for name in names:
            conn.execute(text("INSERT INTO tags VALUES (:name)"), {"name": name})
    click.echo(f"added {len(names)} tags")
    return 5  # ignored, as by the flask command (exit code 0)


if __name__ == "__main__":
    app.run()
'''


def step(args: list[str] | None = None, command: str = "add-tags",
         **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "flask-command", "cwd": "flask_api", "flask_app": "app.py",
                           "command": command, "inputs": ["flask_api/app.py"], **extra}
    if args is not None:
        out["args"] = args
    return out


def project(make_project: Callable[..., Path], db: database.Target,
            steps: dict[str, Any], files: dict[str, str] | None = None) -> Path:
    return make_project(project_config(db, steps),
                        files={"flask_api/app.py": APP, **(files or {})})


def tags(db: database.Target) -> list[str] | None:
    """The tags, or None while the table does not exist."""
    if not sql(db, "SELECT 1 FROM pg_tables WHERE tablename = 'tags'"):
        return None
    return [r[0] for r in sql(db, "SELECT name FROM tags ORDER BY name")]


def test_the_command_runs_with_its_args(make_project: Callable[..., Path],
                                        db: database.Target,
                                        run_steps: Callable[..., Outcome]) -> None:
    root = project(make_project, db, {"tags": step(["work", "home"])})
    out = run_steps(root=root)
    assert out.statuses == {"tags": Status.OK}, out.output
    assert last_lines(out.log("tags"), 2) == (
        "flask-command: flask --app app.py add-tags work home\n"
        "added 2 tags")
    assert tags(db) == ["home", "work"]
    assert run_steps(root=root).statuses == {"tags": Status.SKIPPED}
    # No default inputs: a command's code may be anywhere the app imports from.
    bare = {k: v for k, v in step().items() if k != "inputs"}
    root = project(make_project, db, {"tags": bare})
    assert loader.load(root / "steps.yaml").steps["tags"].inputs == ()


def test_dotenv_and_flask_app_env_as_flasks_cli(make_project: Callable[..., Path],
                                                db: database.Target,
                                                run_steps: Callable[..., Outcome]) -> None:
    """.flaskenv is read before the app is imported; FLASK_APP naming another app does not
    replace the one flask_app: loaded."""
    pytest.importorskip("dotenv", reason="flask reads .flaskenv only with python-dotenv")
    app = APP.replace('@app.cli.command("add-tags")',
                      '@app.cli.command("add-tags")\n'
                      '@click.option("--prefix", default=os.environ.get("TAG_PREFIX", ""))')
    app = app.replace("def add_tags(names, refuse, crash, code):",
                      "def add_tags(prefix, names, refuse, crash, code):\n"
                      "    names = [prefix + n for n in names]")
    root = project(make_project, db, {"tags": step(["a"], env={"FLASK_APP": "other.py"})},
                   {"flask_api/app.py": app, "flask_api/.flaskenv": "TAG_PREFIX=env-\n"})
    out = run_steps(root=root)
    assert out.statuses == {"tags": Status.OK}, out.log("tags")
    assert tags(db) == ["env-a"]


def test_an_unknown_command(make_project: Callable[..., Path], db: database.Target,
                            run_steps: Callable[..., Outcome]) -> None:
    root = project(make_project, db, {"tags": step(["x"], command="add-tag")})
    out = run_steps(root=root)
    assert out.statuses == {"tags": Status.FAILED}
    line = last_lines(out.log("tags"), 1)
    # The list holds flask's own commands and any installed plugin's (flask db...).
    assert line.startswith("flask-command: unknown command 'add-tag' (flask_app app.py; "
                           "commands: add-tags, "), line
    assert line.endswith(", routes, run, shell); did you mean 'add-tags'?"), line
    assert "Traceback" not in out.log("tags")
    assert tags(db) is None
    rc, _, err = run_script(root, db, "tags")
    assert (rc, err.splitlines()[-1]) == (1, line)


def test_a_failing_command(make_project: Callable[..., Path], db: database.Target,
                           run_steps: Callable[..., Outcome]) -> None:
    """Click's errors as flask prints them (usage errors exit 2), ctx.exit(N) exits N, any
    other exception: the traceback, then a line naming it."""
    root = project(make_project, db, {
        "refuse": step(["a", "b", "--refuse"]),
        "usage": step(["--bogus"]),
        "exit": step(["a", "--exit", "3"]),
        "crash": step(["a", "--crash"]),
    })
    out = run_steps(root=root, keep_going=True)
    assert out.statuses == {"refuse": Status.FAILED, "usage": Status.FAILED,
                            "exit": Status.FAILED, "crash": Status.FAILED}
    assert last_lines(out.log("refuse"), 1) == "Error: refusing to add a, b"
    usage = last_lines(out.log("usage"), 4).splitlines()
    assert usage[:3] == ["Usage: flask add-tags [OPTIONS] NAMES...",
                         "Try 'flask add-tags --help' for help.", ""]
    # click's own wording ("No such option: --bogus", "No such option '--bogus'.").
    assert usage[3].startswith("Error: No such option") and "--bogus" in usage[3]
    assert last_lines(out.log("exit"), 2) == (
        "giving up\nflask-command: add-tags exited with code 3")
    log = out.log("crash")
    assert "Traceback (most recent call last):" in log
    assert last_lines(log, 1) == ("flask-command: add-tags failed: DataError: "
                                  "(psycopg.errors.DivisionByZero) division by zero")
    assert tags(db) is None
    codes = {name: run_script(root, db, name)[0] for name in out.statuses}
    assert codes == {"refuse": 1, "usage": 2, "exit": 3, "crash": 1}


def test_an_app_that_does_not_load(make_project: Callable[..., Path], db: database.Target,
                                   run_steps: Callable[..., Outcome]) -> None:
    root = project(make_project, db, {"tags": step(["a"], flask_app="nope.py"),
                                      "broken": step(["a"], flask_app="broken.py")},
                   {"flask_api/broken.py": "import no_such_module_here\n"})
    out = run_steps(root=root, keep_going=True)
    assert out.statuses == {"tags": Status.FAILED, "broken": Status.FAILED}
    assert last_lines(out.log("tags"), 1) == (
        f"flask-command: cannot load the Flask app (flask_app: nope.py, in "
        f"{root / 'flask_api'}): Could not import 'nope'.")
    # flask's CLI turns an ImportError inside the app into the same error, with the
    # traceback in its message.
    log = out.log("broken")
    assert "flask-command: cannot load the Flask app (flask_app: broken.py, in " in log
    assert "No module named 'no_such_module_here'" in log


def test_options_are_checked_when_loading(make_project: Callable[..., Path]) -> None:
    root = make_project("version: 1\nsteps:\n  s:\n    kind: flask-command\n"
                        "    flask_app: app.py\n    command: fake-data --members 10\n")
    with pytest.raises(ConfigError) as err:
        loader.load(root / "steps.yaml")
    assert str(err.value) == ("steps.yaml:6: steps.s.command: expected one Flask command "
                              "name (e.g. load-fixtures), got 'fake-data --members 10'; put "
                              "its arguments in args: (a list)")
    root = make_project("version: 1\nsteps:\n  s:\n    kind: flask-command\n"
                        "    command: fake-data\n")
    with pytest.raises(ConfigError) as err:
        loader.load(root / "steps.yaml")
    assert "missing 'flask_app' (required by kind flask-command)" in str(err.value)


# ----------------------------------------------------------------------- warm start


def test_warm_start_sets_up_before_the_database_exists(
        make_project: Callable[..., Path], db: database.Target) -> None:
    """Parked with the app loaded and the command found before its database even exists,
    so set-up cannot have connected; the database is created, then 'go' runs it."""
    root = project(make_project, db, {"tags": step(["work", "home"])})
    warm = Warm(root, db, "tags")
    assert warm.ready() == b"r", warm.finish(b"")
    assert not database.exists(db, db.dbname)
    database.ensure(db, db.dbname, ["public"])
    rc, out, err = warm.finish(b"go\n")
    assert rc == 0, out + err
    assert out.splitlines()[-1] == "added 2 tags"
    assert tags(db) == ["home", "work"]


def test_warm_start_not_needed_exits_quietly(make_project: Callable[..., Path],
                                             db: database.Target) -> None:
    root = project(make_project, db, {"tags": step(["work"])})
    database.ensure(db, db.dbname, ["public"])
    for stdin in (b"", b"stop\n"):
        warm = Warm(root, db, "tags")
        assert warm.ready() == b"r"
        assert warm.finish(stdin) == (0, "", "")
        assert tags(db) is None


@pytest.mark.parametrize("problem", ["app", "command"])
def test_warm_start_setup_failure_closes_the_fd_without_ready(
        problem: str, make_project: Callable[..., Path], db: database.Target) -> None:
    bad = step(["a"], flask_app="nope.py") if problem == "app" else step(command="add-tag")
    root = project(make_project, db, {"tags": bad})
    warm = Warm(root, db, "tags")
    assert warm.ready() == b""
    rc, _, err = warm.finish(b"")
    assert rc == 1
    assert err.splitlines()[-1].startswith(
        "flask-command: cannot load the Flask app (flask_app: nope.py" if problem == "app"
        else "flask-command: unknown command 'add-tag'")
