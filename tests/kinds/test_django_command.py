"""kind: django-command, on a real PostgreSQL with the throw-away Django project (its
warm start: test_django_warm.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devenv import loader
from devenv.errors import ConfigError
from devenv.events import Status
from devenv.postgres import database
from tests.kinds import djangoproj
from tests.kinds.conftest import Outcome, last_lines, project_config, sql
from tests.kinds.warmproto import Warm, run_script

pytestmark = pytest.mark.postgres

ADD_TAGS = '''from django.core.management.base import BaseCommand, CommandError

from notes.models import Tag


class Command(BaseCommand):
    help = "Add tags."

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="+")
        parser.add_argument("--refuse", action="store_true")
        parser.add_argument("--too-long", action="store_true")
        parser.add_argument("--exit", type=int)

    def handle(self, *args, names, refuse, too_long, exit, **options):
        if refuse:
            raise CommandError(f"refusing to add {', '.join(names)}")
        if exit is not None:
            self.stderr.write("giving up")
            raise SystemExit(exit)
        for name in names:
            Tag.objects.create(name=name * 60 if too_long else name)
        self.stdout.write(f"added {len(names)} tags")
'''

MIGRATE: dict[str, Any] = {"kind": "django-migrate", "cwd": "django_app"}


def command_step(command: str = "add_tags", args: list[str] | None = None,
                 **extra: Any) -> dict[str, Any]:
    step: dict[str, Any] = {"kind": "django-command", "cwd": "django_app",
                            "needs": ["migrate"], "command": command, **extra}
    if args is not None:
        step["args"] = args
    return step


def project(make_project: Callable[..., Path], db: database.Target,
            steps: dict[str, Any], files: dict[str, Any] | None = None) -> Path:
    root = make_project(project_config(db, {"migrate": MIGRATE, **steps}))
    base = djangoproj.write(root)
    files = {"notes/management/__init__.py": "",
             "notes/management/commands/__init__.py": "",
             "notes/management/commands/add_tags.py": ADD_TAGS, **(files or {})}
    for name, content in files.items():
        p = base / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content if isinstance(content, str) else json.dumps(content))
    return root


def tags(db: database.Target) -> list[str]:
    return [r[0] for r in sql(db, "SELECT name FROM notes_tag ORDER BY id")]


def test_the_command_runs_with_its_args(make_project: Callable[..., Path],
                                        db: database.Target,
                                        run_steps: Callable[..., Outcome]) -> None:
    root = project(make_project, db, {"tags": command_step(args=["work", "home"])})
    out = run_steps(root=root)
    assert out.statuses == {"migrate": Status.OK, "tags": Status.OK}, out.output
    assert last_lines(out.log("tags"), 2) == (
        "django-command: manage.py add_tags work home (settings notesite.settings)\n"
        "added 2 tags")
    assert tags(db) == ["work", "home"]
    assert loader.load(root / "steps.yaml").steps["tags"].inputs == (
        "django_app/*/management/commands/add_tags.py",)


def test_a_django_command_runs_too(make_project: Callable[..., Path], db: database.Target,
                                   run_steps: Callable[..., Outcome]) -> None:
    """Django's own commands (here loaddata, by fixture path) are found like the app's."""
    fixture = [{"model": "notes.tag", "pk": 7, "fields": {"name": "seven"}}]
    root = project(make_project, db,
                   {"load": command_step("loaddata", ["fixtures/t.json"])},
                   {"fixtures/t.json": fixture})
    out = run_steps(root=root)
    assert out.statuses["load"] is Status.OK, out.log("load")
    assert tags(db) == ["seven"]


def test_an_unknown_command_is_named_with_the_settings(
        make_project: Callable[..., Path], db: database.Target,
        run_steps: Callable[..., Outcome]) -> None:
    root = project(make_project, db, {"tags": command_step("add_tag", ["x"]),
                                      "other": command_step("no_such_thing")})
    out = run_steps(root=root, keep_going=True)
    assert out.statuses == {"migrate": Status.OK, "tags": Status.FAILED,
                            "other": Status.FAILED}
    assert last_lines(out.log("tags"), 1) == (
        "django-command: unknown management command 'add_tag' (settings notesite.settings); "
        "did you mean 'add_tags'?")
    assert last_lines(out.log("other"), 1) == (
        "django-command: unknown management command 'no_such_thing' (settings "
        "notesite.settings)")
    assert "Traceback" not in out.log("tags")
    rc, _, err = run_script(root, db, "tags")
    assert rc == 1
    assert err.splitlines()[-1].startswith("django-command: unknown management command")


def test_a_command_module_that_does_not_import(make_project: Callable[..., Path],
                                               db: database.Target,
                                               run_steps: Callable[..., Outcome]) -> None:
    root = project(make_project, db, {"broken": command_step("broken")},
                   {"notes/management/commands/broken.py": "import no_such_module_here\n"})
    out = run_steps(root=root)
    assert out.statuses["broken"] is Status.FAILED
    log = out.log("broken")
    assert "Traceback (most recent call last):" in log
    assert last_lines(log, 1) == (
        "django-command: cannot load the management command 'broken' "
        "(notes.management.commands.broken): ModuleNotFoundError: No module named "
        "'no_such_module_here'")


def test_a_failing_command(make_project: Callable[..., Path], db: database.Target,
                           run_steps: Callable[..., Outcome]) -> None:
    """CommandError: its message, exit 1, no traceback. SystemExit: its code. Anything
    else: the traceback, then a line naming the exception."""
    root = project(make_project, db, {
        "refuse": command_step(args=["a", "b", "--refuse"]),
        "long": command_step(args=["a", "--too-long"]),
        "exit": command_step(args=["a", "--exit", "3"]),
        "usage": command_step(args=["--bogus"]),
    })
    out = run_steps(root=root, keep_going=True)
    assert out.statuses == {"migrate": Status.OK, "refuse": Status.FAILED,
                            "long": Status.FAILED, "exit": Status.FAILED,
                            "usage": Status.FAILED}
    assert last_lines(out.log("refuse"), 1) == (
        "django-command: add_tags: refusing to add a, b")
    assert "Traceback" not in out.log("refuse")
    log = out.log("long")
    assert "Traceback (most recent call last):" in log
    assert last_lines(log, 1) == ("django-command: add_tags failed: DataError: value too "
                                  "long for type character varying(50)")
    assert last_lines(out.log("exit"), 2) == (
        "giving up\ndjango-command: add_tags exited with code 3")
    assert last_lines(out.log("usage"), 1) == (
        "django-command: add_tags: Error: the following arguments are required: names")
    assert tags(db) == []
    codes = {name: run_script(root, db, name)[0] for name in ("refuse", "long", "exit",
                                                              "usage")}
    assert codes == {"refuse": 1, "long": 1, "exit": 3, "usage": 1}


def test_options_are_checked_when_loading(make_project: Callable[..., Path]) -> None:
    root = make_project("version: 1\nsteps:\n  s:\n    kind: django-command\n"
                        "    command: seed_data --fast\n")
    with pytest.raises(ConfigError) as err:
        loader.load(root / "steps.yaml")
    assert str(err.value) == ("steps.yaml:5: steps.s.command: expected one management "
                              "command name (e.g. seed_data), got 'seed_data --fast'; put "
                              "its arguments in args: (a list)")
    root = make_project("version: 1\nsteps:\n  s:\n    kind: django-command\n"
                        "    command: seed\n    settings: my-site/settings\n")
    with pytest.raises(ConfigError) as err:
        loader.load(root / "steps.yaml")
    assert str(err.value) == ("steps.yaml:6: steps.s.settings: 'my-site/settings' is not a "
                              "Python module path (e.g. mysite.settings)")
    root = make_project("version: 1\nsteps:\n  s:\n    kind: django-command\n"
                        "    settings: mysite.settings\n")
    with pytest.raises(ConfigError) as err:
        loader.load(root / "steps.yaml")
    assert "missing 'command' (required by kind django-command)" in str(err.value)



FAILING_CHECK = ADD_TAGS + '''

from django.core import checks


@checks.register()
def tags_are_misconfigured(app_configs, **kwargs):
    return [checks.Error("the tag table is misconfigured", id="notes.E001")]
'''


def test_system_checks_run_first_as_with_manage_py(make_project: Callable[..., Path],
                                                   db: database.Target,
                                                   run_steps: Callable[..., Outcome]) -> None:
    """manage.py runs the system checks before a command; the kind does too, so a project
    whose checks fail does not get its data changed by the kind either."""
    import subprocess
    import sys

    root = project(make_project, db, {"tags": command_step(args=["work"])},
                   {"notes/management/commands/add_tags.py": FAILING_CHECK})
    out = run_steps(root=root)
    assert out.statuses["tags"] is Status.FAILED
    log = out.log("tags")
    assert ("django-command: add_tags: SystemCheckError: System check identified some "
            "issues:") in log
    assert "(notes.E001) the tag table is misconfigured" in log
    assert tags(db) == []
    # they need no database: a warm start runs them during set-up and fails there
    warm = Warm(root, db, "tags")
    assert warm.ready() == b""
    rc, _, err = warm.finish(b"")
    assert rc == 1 and "(notes.E001) the tag table is misconfigured" in err
    by_hand = subprocess.run([sys.executable, "manage.py", "add_tags", "work"],
                             cwd=root / "django_app", capture_output=True, text=True,
                             env={**os.environ, **db.env()})
    assert by_hand.returncode == 1
    assert "(notes.E001) the tag table is misconfigured" in by_hand.stderr
