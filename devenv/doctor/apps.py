"""Finding the Django and Flask-SQLAlchemy/Alembic apps a project's steps run, and looking
inside them with their own interpreter.

steps.yaml has no place to name the apps, so doctor reads them off the commands:

* Django: a ``django-migrate``, ``django-loaddata`` or ``django-command`` step (its
  ``manage:``/``settings:``), or a shell step or process running ``... manage.py ...`` (``--settings X`` or
  ``DJANGO_SETTINGS_MODULE`` name the settings, else manage.py does), or ``django-admin``
  with ``--settings``/``DJANGO_SETTINGS_MODULE``. Its migrating steps: the
  ``django-migrate`` steps and those running ``manage.py migrate``.
* Flask: an ``alembic`` step with ``flask_app:``, a ``flask-command`` step, or a shell
  step or process running ``flask ...`` (``--app X``, else ``FLASK_APP``, else wsgi.py or app.py in its folder, as
  Flask itself guesses). Its migrating steps: those running
  ``flask db upgrade`` and the ``alembic`` steps.
* Plain Alembic: an ``alembic`` step without ``flask_app:``, or ``alembic ... upgrade``
  (``-c X``, default alembic.ini). Only its revisions are read (its models live in env.py,
  which cannot be imported without running it).

The same app found several times (a step and a process in the same folder) is looked at
once. Each look runs a script shipped beside this module (``_introspect_django.py``,
``_introspect_sqlalchemy.py``) with the app's interpreter: a step's ``python:``, else the
interpreter of the command it runs (``python``, or the ``#!`` line of ``flask``), else
devenv's own. The script runs in the step's folder, with the environment the steps get
(the steps' ``env:`` then the processes', so secrets are seen as the running apps see them).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devenv import logtail, proc, runner
from devenv.envvars import expand
from devenv.errors import ConfigError
from devenv.kinds.alembic_upgrade import config_path
from devenv.schema import Command, Project, StepSpec

if TYPE_CHECKING:
    from devenv.doctor.context import Context

SCRIPTS = Path(__file__).resolve().parent
INTROSPECT_TIMEOUT = 25.0
_PYTHONS = ("python", "python3")


@dataclass
class App:
    """A Django project, a Flask app or an Alembic folder the steps use."""

    kind: str  # django, flask, alembic
    cwd: Path
    python: str
    options: dict[str, Any]
    sources: list[str] = field(default_factory=list)  # "steps.x", "processes.y"
    migrate_steps: list[str] = field(default_factory=list)
    # Django: app label -> the steps that run ``manage.py migrate LABEL ... --fake``.
    fake_steps: dict[str, list[str]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    rel_cwd: str = "."

    @property
    def key(self) -> str:
        ident = self.options.get("manage") or self.options.get("settings") \
            or self.options.get("app") or self.options.get("config")
        return f"{self.kind}:{self.cwd}:{ident}"

    @property
    def label(self) -> str:
        if self.kind == "django":
            what = self.options.get("settings") or self.options.get("manage")
            return f"Django {what} ({self.rel_cwd})"
        if self.kind == "flask":
            return f"Flask {self.options.get('app')} ({self.rel_cwd})"
        return f"Alembic {self.options.get('config')} ({self.rel_cwd})"

    def in_cwd(self, command: str) -> str:
        """``command`` run in the app's folder, as a line to paste."""
        return command if self.rel_cwd == "." else f"cd {shlex.quote(self.rel_cwd)} && {command}"


@dataclass(frozen=True)
class Introspection:
    """What an app's script reported (``data``), or why it could not run (``error``)."""

    app: App
    data: Mapping[str, Any]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


# --------------------------------------------------------------------------- commands


def words(cmd: Command) -> list[list[str]]:
    """The simple commands in ``cmd`` (a shell line split at ``&&``, ``;``, ``|``...), each
    without its leading ``VAR=value`` assignments."""
    if not isinstance(cmd, str):
        return [list(cmd)]
    try:
        lex = shlex.shlex(cmd, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        lex.commenters = "#"
        tokens = list(lex)
    except ValueError:
        return []
    out: list[list[str]] = []
    cur: list[str] = []
    for tok in tokens:
        if tok and all(ch in "&|;()<>" for ch in tok):
            if cur:
                out.append(cur)
            cur = []
            continue
        cur.append(tok)
    if cur:
        out.append(cur)
    cleaned = []
    for seg in out:
        i = 0
        while i < len(seg) and "=" in seg[i] and seg[i].split("=", 1)[0].isidentifier():
            i += 1
        if i < len(seg):
            cleaned.append(seg[i:])
    return cleaned


def _option(argv: Sequence[str], *names: str) -> str | None:
    for i, a in enumerate(argv):
        for n in names:
            if a == n and i + 1 < len(argv):
                return argv[i + 1]
            if n.startswith("--") and a.startswith(n + "="):
                return a.split("=", 1)[1]
    return None


def _is_python(word: str) -> bool:
    base = os.path.basename(word)
    return base.startswith("python")


def shebang_python(executable: str) -> str | None:
    """The interpreter a console script (``flask``, ``alembic``) runs with."""
    try:
        with open(executable, "rb") as fh:
            first = fh.readline(300).decode(errors="replace").strip()
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    parts = first[2:].split()
    if not parts:
        return None
    if os.path.basename(parts[0]) == "env" and len(parts) > 1:
        return shutil.which(parts[1])
    return parts[0] if _is_python(parts[0]) else None


def interpreter(argv0: str, env: Mapping[str, str], cwd: Path) -> str | None:
    """The Python that ``argv0`` (``python``, ``flask``, ``./venv/bin/python``) stands for."""
    if "/" in argv0:
        path = str(cwd / argv0) if not os.path.isabs(argv0) else argv0
    else:
        found = shutil.which(argv0, path=env.get("PATH"))
        if found is None:
            return None
        path = found
    if _is_python(path):
        return path
    return shebang_python(path)


# --------------------------------------------------------------------------- discovery


def _cwd(project: Project, raw: str | None, env: Mapping[str, str]) -> Path:
    if not raw:
        return project.root
    with contextlib.suppress(Exception):
        raw = expand(raw, env)
    p = Path(raw)
    return p if p.is_absolute() else project.root / p


def _from_command(argv: list[str], env: Mapping[str, str], cwd: Path,
                  ) -> tuple[str, dict[str, Any], bool, str | None] | None:
    """(kind, options, migrates, interpreter) for one simple command, if it runs an app."""
    if not argv:
        return None
    head = argv[0]
    rest = argv[1:]
    python = None
    if _is_python(head):
        python = interpreter(head, env, cwd)
        if len(rest) >= 2 and rest[0] == "-m":
            head, rest = rest[1], rest[2:]
        elif rest and rest[0].endswith("manage.py"):
            head, rest = rest[0], rest[1:]
        else:
            return None
    base = os.path.basename(head)
    if head.endswith("manage.py"):
        settings = _option(rest, "--settings") or env.get("DJANGO_SETTINGS_MODULE")
        return ("django", {"manage": head, "settings": settings},
                bool(rest) and rest[0] == "migrate", python)
    if base in ("django-admin", "django"):
        settings = _option(rest, "--settings") or env.get("DJANGO_SETTINGS_MODULE")
        if not settings:
            return None
        return ("django", {"manage": None, "settings": settings},
                bool(rest) and rest[0] == "migrate", python or interpreter(head, env, cwd))
    if base == "flask":
        app = _option(rest, "--app", "-A") or env.get("FLASK_APP")
        if not app:
            # Flask's own guess without FLASK_APP: wsgi.py, then app.py in the folder.
            app = next((f for f in ("wsgi.py", "app.py") if (cwd / f).is_file()), None)
        if not app:
            return None
        sub = [a for a in rest if not a.startswith("-")]
        migrates = "db" in sub and "upgrade" in sub
        directory = _option(rest, "--directory", "-d") if migrates else None
        return ("flask", {"app": app, "directory": directory}, migrates,
                python or interpreter(head, env, cwd))
    if base == "alembic" and "upgrade" in rest:
        config = _option(rest, "-c", "--config") or "alembic.ini"
        return ("alembic", {"app": None, "config": config}, True,
                python or interpreter(head, env, cwd))
    return None


def discover(ctx: Context) -> list[App]:
    """The apps the project's steps and processes run (see the module's docstring)."""
    project = ctx.project()
    found: dict[str, App] = {}

    def add(kind: str, options: dict[str, Any], cwd: Path, python: str | None, source: str,
            migrates: bool, env: Mapping[str, str], step: StepSpec | None,
            argv: Sequence[str] = ()) -> App:
        app = App(kind, cwd.resolve(), python or sys.executable, options,
                  rel_cwd=project.rel(cwd.resolve()) if cwd.resolve() != project.root else ".")
        have = found.setdefault(app.key, app)
        have.sources.append(source)
        if migrates and step is not None:
            have.migrate_steps.append(step.name)
        # Steps first, processes after: a process's env: wins, as the running app sees it.
        have.env.update(env)
        if options.get("settings") and not have.options.get("settings"):
            have.options["settings"] = options["settings"]
        if kind == "django" and migrates and step is not None and "--fake" in argv:
            args = [a for a in argv[list(argv).index("migrate") + 1:] if not a.startswith("-")]
            if args:
                have.fake_steps.setdefault(args[0], []).append(step.name)
        return have

    for step in project.steps.values():
        env = ctx.step_env(step)
        cwd = _cwd(project, step.cwd, env)
        try:
            python = runner.resolve_python(project, step, env) if step.python else None
        except ConfigError:
            python = None  # config.paths names it
        opts = step.options
        if step.kind in ("django-migrate", "django-loaddata", "django-command"):
            add("django", {"manage": str(opts.get("manage", "manage.py")),
                           "settings": opts.get("settings")},
                cwd, python, f"steps.{step.name}", step.kind == "django-migrate", env, step)
        elif step.kind == "alembic":
            config = config_path(opts)
            if opts.get("flask_app"):
                add("flask", {"app": str(opts["flask_app"]),
                              "directory": os.path.dirname(config) or "."},
                    cwd, python, f"steps.{step.name}", True, env, step)
            else:
                add("alembic", {"app": None, "config": config}, cwd, python,
                    f"steps.{step.name}", True, env, step)
        elif step.kind == "flask-command":
            # Flask-Migrate's default folder; an alembic step of the same app says better
            # (steps are read in order, and the first sighting's options are kept).
            add("flask", {"app": str(opts["flask_app"]), "directory": "migrations"},
                cwd, python, f"steps.{step.name}", False, env, step)
        elif step.run is not None:
            for argv in words(step.run):
                hit = _from_command(argv, env, cwd)
                if hit is not None:
                    kind, options, migrates, interp = hit
                    # A shell step runs whatever its command names (python: only
                    # applies to the typed kinds).
                    add(kind, options, cwd, interp or python, f"steps.{step.name}", migrates,
                        env, step, argv)
    for name, spec in project.processes.items():
        env = ctx.process_env(name)
        cwd = _cwd(project, spec.cwd, env)
        for argv in words(spec.run):
            hit = _from_command(argv, env, cwd)
            if hit is not None:
                kind, options, _migrates, interp = hit
                add(kind, options, cwd, interp, f"processes.{name}", False, env, None)
    # A Flask app and a plain Alembic folder of the same project are one history: keep the
    # Flask one, which reads the models too.
    return list(found.values())


# --------------------------------------------------------------------------- introspection


def introspect(app: App) -> Introspection:
    """Run the app's script; never raises."""
    script = "_introspect_django.py" if app.kind == "django" else "_introspect_sqlalchemy.py"
    options = {k: v for k, v in app.options.items() if v is not None}
    argv = [app.python, str(SCRIPTS / script), json.dumps(options)]
    env = dict(app.env)
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    try:
        done = proc.run(argv, cwd=app.cwd, env=env, check=False, timeout=INTROSPECT_TIMEOUT)
    except proc.ProcessError as exc:
        reason = "did not answer within " \
            f"{INTROSPECT_TIMEOUT:g}s" if exc.returncode is None else str(exc).splitlines()[0]
        return Introspection(app, {}, f"could not look inside {app.label}: {reason}")
    except OSError as exc:
        return Introspection(app, {}, f"could not run {app.python}: {exc}")
    data = None
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            break
    if not isinstance(data, dict):
        tail = " | ".join(logtail.tail_text(done.stderr or done.stdout, 3))
        return Introspection(app, {}, f"could not look inside {app.label} with {app.python}: "
                                      f"exit {done.returncode}: {tail}")
    if not data.get("ok"):
        return Introspection(app, data, str(data.get("error", "unknown error")))
    return Introspection(app, data)


def introspect_all(ctx: Context, apps: Sequence[App]) -> dict[str, Introspection]:
    """Every app looked at in parallel (each script starts its own interpreter)."""
    out: dict[str, Introspection] = {}
    lock = threading.Lock()

    def one(app: App) -> None:
        result = introspect(app)
        with lock:
            out[app.key] = result

    threads = [threading.Thread(target=one, args=(a,), daemon=True) for a in apps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {a.key: out[a.key] for a in apps if a.key in out}


def rel_file(project: Project, path: str | None) -> str:
    if not path:
        return "?"
    return project.rel(Path(path))
