"""Turn the apps :mod:`devenv.init.detect` found into steps.yaml and services/ text.

The YAML is written by hand, not dumped, so that every choice can carry the comment that
explains it. Values are quoted through PyYAML, so what is written loads back as meant.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from devenv.init.detect import App, CliCommand

SCHEMA_LINE = "# yaml-language-server: $schema={path}"
STEPS_SCHEMA = ".devenv/schema/steps.json"
SERVICE_SCHEMA = ".devenv/schema/service.json"
SERVICE_NAME = "postgres"
POSTGRES_SERVICE = f"""{SCHEMA_LINE.format(path="../" + SERVICE_SCHEMA)}
# The PostgreSQL server the database lives on (drafted by `devenv init`). devenv runs it
# in Docker, or with the PostgreSQL server binaries installed here when Docker is not
# available (backend: auto); the port on 127.0.0.1 is chosen free each time.
image: postgres:15
env: {{POSTGRES_PASSWORD: devenv}}
ports: ["5432"]
healthcheck: [pg_isready, -U, postgres]
volumes: {{data: /var/lib/postgresql/data}}
"""
# Commands worth running for a dev database without asking: they load fixtures, as
# Django's loaddata does. Anything else (fake data, users, imports) is listed to pick.
_FIXTURE_COMMAND = re.compile(r"fixture", re.IGNORECASE)


@dataclass
class Draft:
    """What ``devenv init`` would write: file name -> text, plus a summary per app."""

    files: dict[str, str] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    processes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the user should check


def q(value: object) -> str:
    """One YAML scalar or flow list, quoted only when it must be."""
    text: str = yaml.safe_dump(value, default_flow_style=True, width=10_000,
                               allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def ident(text: str) -> str:
    """A PostgreSQL identifier devenv accepts (letters, digits, _; not a digit first)."""
    name = re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "app"
    return ("_" + name if name[0].isdigit() else name)[:40]


def project_name(root: Path) -> str:
    return (re.sub(r"[^a-z0-9_-]+", "-", root.resolve().name.lower()).strip("-_")
            or "devenv")[:40]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _python_key(app: App) -> str | None:
    """The ``python:`` value: the virtualenv folder, relative to the step's ``cwd``.

    ``./`` makes it a path in any case (a bare word would be looked up on PATH)."""
    if app.venv is None:
        return None
    return app.venv if app.venv.startswith(("./", "../", "/")) else f"./{app.venv}"


def _interpreter(app: App) -> str:
    """How a process (a shell command run in the app's folder) starts Python."""
    if app.venv is None:
        # devenv puts its own interpreter's folder first on PATH for steps and processes.
        return "python"
    return f"{_python_key(app)}/bin/python"


def _join(folder: str, path: str) -> str:
    return path if folder == "." else f"{folder}/{path}"


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, text: str = "", indent: int = 0) -> None:
        self.lines.append((" " * indent + text).rstrip())

    def comment(self, text: str, indent: int = 0, width: int = 88) -> None:
        """A wrapped ``#`` comment."""
        prefix = " " * indent + "# "
        words = text.split()
        line = ""
        for w in words:
            if line and len(prefix) + len(line) + 1 + len(w) > width:
                self.lines.append(prefix + line)
                line = w
            else:
                line = f"{line} {w}" if line else w
        if line:
            self.lines.append(prefix + line)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


@dataclass
class _Plan:
    """The steps one app gets, decided before any text is written."""

    app: App
    cwd: str
    search_path: tuple[str, ...]
    schema_reason: str
    migrate: str | None = None
    data: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    env_why: list[str] = field(default_factory=list)
    port: int | None = None


def make(root: Path, apps: list[App], *, service_exists: str | None = None,
         port_free: Callable[[int], bool] = port_is_free) -> Draft:
    """The draft for ``apps`` found under ``root``.

    ``service_exists`` names a PostgreSQL service the repository already defines (then no
    services/postgres.yaml is written)."""
    draft = Draft()
    name = project_name(root)
    service = service_exists or SERVICE_NAME
    shared = len(apps) > 1
    plans: list[_Plan] = []
    schemas: list[str] = ["public"]
    taken_ports: set[int] = set()

    # Alembic apps first: django-migrate fakes a migration whose tables another app already
    # made; Alembic has no such check, so it must not find Django's tables in its way.
    ordered = sorted(apps, key=lambda a: (a.framework == "django", a.folder))
    for app in ordered:
        if app.db.search_path:
            sp = app.db.search_path
            why = (f"{app.name} sets its own search_path ({', '.join(sp)}) on its connections "
                   f"({', '.join(app.db.sources) or 'its settings'}); devenv's must match")
        elif shared:
            sp = (ident(app.name), "public")
            why = (f"{len(apps)} apps share this database: each keeps its tables in its own "
                   f"schema ({sp[0]}), so their tables (and Django's django_migrations / "
                   "Alembic's alembic_version) never collide")
        else:
            sp = ()
            why = ""
        for s in sp:
            if s not in schemas and s != "$user":
                schemas.append(s)
        plan = _Plan(app, app.folder, sp, why)
        for var, pg in app.db.part_vars:
            plan.env[var] = f"${{{pg}}}"
        for var in app.db.url_vars:
            if var != "DATABASE_URL":
                plan.env[var] = "${DATABASE_URL}"
        if plan.env:
            plan.env_why.append(
                f"{app.name} reads {', '.join(sorted(plan.env))} "
                f"({', '.join(app.db.sources)}): wired to the database devenv builds")
        elif "DATABASE_URL" in app.db.url_vars:
            plan.env_why.append(f"{app.name} reads DATABASE_URL "
                                f"({', '.join(app.db.sources)}), which devenv sets for every "
                                "step and process: nothing to wire")
        if app.framework in ("django", "flask"):
            base = 8000 if app.framework == "django" else 5001
            port = base
            while port in taken_ports or not port_free(port):
                port += 1
            taken_ports.add(port)
            plan.port = port
        plans.append(plan)

    required = sorted({v for p in plans for v in p.app.db.required_vars})

    w = _Writer()
    w(SCHEMA_LINE.format(path=STEPS_SCHEMA))
    w.comment(f"Drafted by `devenv init` from the files in this repository (no app was "
              f"imported). {len(apps)} app(s) found:")
    for p in plans:
        w(f"#   {_describe(p.app)}")
        draft.summary.append(_describe(p.app))
        for note in p.app.notes:
            w.comment(f"CHECK {p.app.name}: {note}", 4)
            draft.notes.append(f"{p.app.name}: {note}")
    w.comment("Each choice is explained beside it; edit freely. `devenv plan` shows what "
              "`devenv up` would run, `devenv doctor` checks the set-up.")
    w("version: 1")
    w(f"name: {q(name)}")
    w("database:")
    w(f"service: {service}" + ("" if service_exists else "             # services/postgres.yaml"),
      2)
    w(f"name: {q(ident(name)[:36] + '_dev')}", 2)  # devenv takes names up to 40
    if len(schemas) > 1:
        w.comment("created by devenv before the steps run: the schemas in the apps' "
                  "search_path (each app's migrate step says why)", 2)
    w(f"schemas: {q(schemas)}", 2)
    if required:
        w("env:")
        w.comment("read with os.environ[...] (no default) by the apps' settings: they "
                  "cannot start without them. Dev-only placeholders; change them if the "
                  "apps check their format.", 2)
        for var in required:
            w(f"{var}: {q('dev-only-' + var.lower().replace('_', '-'))}", 2)
    w()
    w("steps:")

    data_of: dict[str, list[str]] = {}
    for p in plans:
        if p.app.framework != "django":
            p.migrate = f"{p.app.name}-migrate"
    for p in plans:
        app = p.app
        if draft.steps:
            w()
        if app.framework == "django":
            # Only apps whose tables this one can see (their schema is on its search_path)
            # can be in its way or be pointed at; the others run beside it.
            seen = [o for o in plans if o.app.framework != "django" and _sees(p, o)]
            _django_steps(w, p, [o.migrate for o in seen if o.migrate],
                          [s for o in seen for s in data_of.get(o.app.name, [])],
                          service, draft)
        else:
            _alembic_steps(w, p, service, draft)
        data_of[app.name] = list(p.data)

    procs = [p for p in plans if p.port is not None]
    if procs:
        w()
        w("processes:")
        w.comment("`devenv up` starts these after the steps and waits until each answers its "
                  "ready check; `devenv up --detach` leaves them running (`devenv down` "
                  "stops them). Ports were free when this was drafted.", 2)
        for p in procs:
            _process(w, p, draft)

    draft.files["steps.yaml"] = w.text()
    if not service_exists:
        draft.files[f"services/{SERVICE_NAME}.yaml"] = POSTGRES_SERVICE
    return draft


def _sees(p: _Plan, other: _Plan) -> bool:
    """Whether ``p``'s connections see the tables ``other`` creates (in the first schema
    of its search_path, or public when it sets none)."""
    theirs = other.search_path[0] if other.search_path else "public"
    return theirs in (p.search_path or ("public",))


def _describe(app: App) -> str:
    where = f"{app.folder}/" if app.folder != "." else "./"
    if app.framework == "django":
        return (f"{where}: Django ({app.manage}, settings {app.settings}), "
                f"{len(app.migration_apps)} app(s) with migrations, "
                f"{len(app.fixtures)} fixture file(s), {len(app.commands)} command(s)")
    if app.framework == "flask":
        mig = ("Flask-Migrate migrations/" if app.flask_migrate else
               f"plain Alembic ({app.alembic_config})" if app.alembic_config else
               "no migrations")
        return f"{where}: Flask (--app {app.flask_app}), {mig}, {len(app.commands)} command(s)"
    return f"{where}: Alembic ({app.alembic_config})"


def _common(w: _Writer, p: _Plan, needs: list[str], inputs: list[str],
            first: bool = False) -> None:
    """cwd, python, search_path, env, needs and inputs, in the README's order; the
    first step of an app explains its python:."""
    app = p.app
    if p.cwd != ".":
        w(f"cwd: {q(p.cwd)}", 4)
    py = _python_key(app)
    if py:
        w(f"python: {q(py)}" + (" " * max(1, 22 - len(q(py))) +
                                "# the virtualenv beside the app; relative to cwd:"
                                if first else ""), 4)
    elif first:
        make = ("python -m venv .venv && .venv/bin/pip install -r "
                f"{Path(app.requirements[0]).name}" if app.requirements
                and app.requirements[0].endswith(".txt") else "python -m venv .venv")
        w.comment("no virtualenv found beside the app: devenv's own interpreter runs it. "
                  f"To give it its own: {make} in {p.cwd}, then add python: ./.venv "
                  "(relative to cwd:)", 4)
    if p.search_path:
        w(f"search_path: {q(list(p.search_path))}", 4)
    if p.env:
        w("env:", 4)
        for k, v in p.env.items():
            w(f"{k}: {q(v)}", 6)
    w(f"needs: {q(needs)}", 4)
    if inputs:
        w("inputs:", 4)
        for i in inputs:
            w(f"- {q(i)}", 6)


def _why(w: _Writer, p: _Plan) -> None:
    for line in p.env_why:
        w.comment(line, 4)
    if p.schema_reason:
        w.comment(p.schema_reason, 4)


def _alembic_steps(w: _Writer, p: _Plan, service: str, draft: Draft) -> None:
    app = p.app
    step = p.migrate or f"{app.name}-migrate"
    w(f"{step}:", 2)
    if app.flask_migrate:
        w.comment("Flask-Migrate (migrations/env.py takes the engine from the Flask app): "
                  f"`flask --app {app.flask_app} db upgrade`, run in-process; refuses a "
                  "history with several heads", 4)
    else:
        w.comment(f"plain Alembic ({app.alembic_config}; its env.py builds its own engine"
                  + (", the Flask app is not involved" if app.flask_app else "")
                  + "): `alembic upgrade head`; refuses a history with several heads", 4)
    _why(w, p)
    w("kind: alembic", 4)
    if app.flask_migrate:
        w(f"flask_app: {q(app.flask_app)}", 4)
        if app.alembic_config != "migrations/alembic.ini":
            w(f"config: {q(app.alembic_config)}", 4)
    elif app.alembic_config != "alembic.ini":
        w(f"config: {q(app.alembic_config)}", 4)
    scripts = app.alembic_scripts or "migrations"
    inputs = [_join(app.folder, x) for x in (
        app.alembic_config or "alembic.ini", f"{scripts}/env.py",
        f"{scripts}/versions/*.py")] + list(app.requirements)
    _common(w, p, [service], inputs, first=True)
    draft.steps.append(step)

    picked = [c for c in app.commands if _FIXTURE_COMMAND.search(c.name) and not c.required
              and " " not in c.name]
    before = step
    for c in picked:
        name = f"{app.name}-{_slug(c.name)}"
        w()
        w(f"{name}:", 2)
        w.comment(f"`flask {c.name}` ({c.source}): it loads fixtures, as Django's loaddata "
                  "does, so it is part of the dev database. In-process; an unknown command "
                  "fails before the database is touched", 4)
        w("kind: flask-command", 4)
        w(f"flask_app: {q(app.flask_app)}", 4)
        w(f"command: {q(c.name)}", 4)
        _common(w, p, [before], _fixture_inputs(app, c))
        draft.steps.append(name)
        p.data.append(name)
        before = name
    _listed(w, p, [c for c in app.commands if c not in picked], before)


def _fixture_inputs(app: App, c: CliCommand) -> list[str]:
    return [c.source, _join(app.folder, "fixtures/**")]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def _listed(w: _Writer, p: _Plan, commands: list[CliCommand], after: str) -> None:
    """Commands devenv cannot judge, as commented-out steps to uncomment."""
    app = p.app
    if not commands:
        return
    w()
    w.comment(f"Commands {app.name} defines: devenv can't tell which ones your dev database "
              "needs (fake data, users...). Uncomment the ones it does:", 2)
    for c in commands:
        word, *sub = c.name.split()
        args = sub + [f"<{r}>" for r in c.required]
        name = f"{app.name}-{_slug(c.name)}"
        w("#", 2)
        w(f"# {name}:", 2)
        if app.framework == "django":
            w(f"#   kind: django-command        # {c.source}", 2)
            w(f"#   settings: {app.settings}", 2)
        else:
            w(f"#   kind: flask-command         # {c.source}", 2)
            w(f"#   flask_app: {app.flask_app}", 2)
        w(f"#   command: {q(word)}", 2)
        if args:
            fill = f"   # fill in {', '.join(c.required)}" if c.required else ""
            w(f"#   args: {q(args)}{fill}", 2)
        if p.cwd != ".":
            w(f"#   cwd: {q(p.cwd)}", 2)
        py = _python_key(app)
        if py:
            w(f"#   python: {q(py)}", 2)
        if p.search_path:
            w(f"#   search_path: {q(list(p.search_path))}", 2)
        if p.env:
            w(f"#   env: {q(p.env)}", 2)
        w(f"#   needs: [{after}]", 2)
        w(f"#   inputs: [{q(c.source)}]", 2)


def _django_steps(w: _Writer, p: _Plan, alembic_migrates: list[str], other_data: list[str],
                  service: str, draft: Draft) -> None:
    app = p.app
    step = f"{app.name}-migrate"
    p.migrate = step
    w(f"{step}:", 2)
    labels = ", ".join(label for label, _ in app.migration_apps) or "none found"
    w.comment(f"`manage.py migrate`, checked first against the live database: a migration "
              "whose tables another app already created is applied with --fake (and said "
              f"so). Apps with migrations: {labels}", 4)
    if alembic_migrates:
        w.comment("needs the Alembic migrations: Django's models may point at their tables, "
                  "and django-migrate copes with tables that exist, Alembic does not", 4)
    _why(w, p)
    w("kind: django-migrate", 4)
    if app.settings:
        w(f"settings: {q(app.settings)}", 4)
    if app.manage != "manage.py":
        w(f"manage: {q(app.manage)}", 4)
    inputs = [_join(app.folder, f"{folder}/migrations/*.py")
              for _, folder in app.migration_apps]
    inputs += [s for s in app.db.sources] + list(app.requirements)
    _common(w, p, alembic_migrates or [service], inputs, first=True)
    draft.steps.append(step)
    after = step
    if app.fixtures:
        stems = [Path(f).stem for f in app.fixtures]
        names = stems if len(set(stems)) == len(stems) else list(app.fixtures)
        fx = f"{app.name}-fixtures"
        w()
        w(f"{fx}:", 2)
        w.comment("every fixture file under the apps' fixtures/ folders, in INSTALLED_APPS "
                  "order, in one transaction; a failing one names the file and the object", 4)
        if other_data:
            w.comment(f"after {', '.join(other_data)}: fixtures may point at the rows those "
                      "load", 4)
        w.comment("refresh-db keeps a snapshot before this step (checkpoint): fixtures "
                  "change most, and a changed one re-runs only from here", 4)
        w("kind: django-loaddata", 4)
        if app.settings:
            w(f"settings: {q(app.settings)}", 4)
        w(f"fixtures: {q(names)}", 4)
        w("checkpoint: true", 4)
        _common(w, p, [step, *other_data], [_join(app.folder, f) for f in app.fixtures])
        draft.steps.append(fx)
        p.data.append(fx)
        after = fx
    _listed(w, p, list(app.commands), after)


def _process(w: _Writer, p: _Plan, draft: Draft) -> None:
    app = p.app
    port = p.port
    w(f"{app.name}:", 2)
    if app.framework == "django":
        w.comment("--noreload: devenv supervises the server; the autoreloader would fork a "
                  "second one", 4)
        w(f"run: {_interpreter(app)} {app.manage} runserver 127.0.0.1:{port} --noreload", 4)
    else:
        w(f"run: {_interpreter(app)} -m flask run --port {port}", 4)
    if p.cwd != ".":
        w(f"cwd: {q(p.cwd)}", 4)
    env = dict(p.env)
    if app.framework == "flask":
        env["FLASK_APP"] = app.flask_app or "app.py"
    if p.search_path and not app.db.search_path:
        w(f"search_path: {q(list(p.search_path))}", 4)
    if env:
        w("env:", 4)
        for k, v in env.items():
            w(f"{k}: {q(v)}", 6)
    w(f"needs: {q([n for n in [p.migrate, *p.data] if n])}", 4)
    if app.health:
        w(f"ready: http://127.0.0.1:{port}{app.health}" + " " * 4 +
          f"# a health route found in {app.name}'s code", 4)
    else:
        w(f"ready: tcp://127.0.0.1:{port}" + " " * 8 +
          "# no health route found: the open port counts", 4)
    draft.processes.append(app.name)
