"""Static detection of the apps in a repository, for ``devenv init``.

Everything here reads files (text, ``ast``, ini) and never imports the user's code: an
app's imports may need its virtualenv, its settings may need variables that are not set,
and the scan must stay fast on a large repository.

What is found, per app folder:

- **Django**: ``manage.py`` and the settings module it names, the apps with a
  ``migrations/`` package, their ``fixtures/`` files, their management commands.
- **Flask**: the module ``flask --app`` should load (``FLASK_APP`` in ``.flaskenv``/``.env``,
  a module-level ``app = ...``, or an app factory ``create_app``), Flask-Migrate's
  ``migrations/`` or a plain ``alembic.ini``, and the click commands.
- **Alembic** alone: an ``alembic.ini`` with no Flask app beside it.
- For each: a virtualenv beside it, requirements files, the environment variables its
  settings read for the database (and others it cannot start without), a ``search_path``
  pinned in its code, and a health route for the ready check.
"""

from __future__ import annotations

import ast
import configparser
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Folders never worth reading: VCS, caches, dependencies, build output.
SKIP_DIRS = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__", ".devenv",
                       ".tox", ".nox", ".mypy_cache", ".ruff_cache", ".pytest_cache",
                       "site-packages", "build", "dist", ".idea", ".vscode"})
VENV_NAMES = (".venv", "venv", "env", ".env", "virtualenv")
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt", "requirements/base.txt",
                "requirements/dev.txt", "requirements/local.txt", "pyproject.toml",
                "setup.py", "setup.cfg", "Pipfile", "poetry.lock")
FIXTURE_SUFFIXES = (".json", ".yaml", ".yml", ".xml")
MAX_FILE = 512 * 1024  # larger .py files are generated or vendored, not settings

# Names a database URL goes by, and the parts of a split configuration.
_URL_NAME = re.compile(r"^(?:[A-Z0-9]+_)*(?:DATABASE|DB|POSTGRES|POSTGRESQL|PG|SQLALCHEMY_"
                       r"DATABASE)_(?:URL|URI|DSN)$")
_PART_NAME = re.compile(r"^(?:[A-Z0-9]+_)*(?:DATABASE|DB|POSTGRES|POSTGRESQL|PG)_?"
                        r"(HOST|HOSTNAME|SERVER|PORT|USER|USERNAME|PASSWORD|PASS|PWD|NAME|DB|"
                        r"DATABASE)$")
PART_TO_PG = {"HOST": "PGHOST", "HOSTNAME": "PGHOST", "SERVER": "PGHOST", "PORT": "PGPORT",
              "USER": "PGUSER", "USERNAME": "PGUSER", "PASSWORD": "PGPASSWORD",
              "PASS": "PGPASSWORD", "PWD": "PGPASSWORD", "NAME": "PGDATABASE",
              "DB": "PGDATABASE", "DATABASE": "PGDATABASE"}
# What devenv sets for every step and process already.
PROVIDED = frozenset({"DATABASE_URL", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD",
                      "PGDATABASE", "PGOPTIONS", "DEVENV_PROJECT", "DEVENV_ROOT",
                      "DEVENV_STEP"})
# Read as framework switches, not something an app cannot start without.
_IGNORED_VARS = frozenset({"DJANGO_SETTINGS_MODULE", "FLASK_APP", "FLASK_ENV", "FLASK_DEBUG",
                           "HOME", "PATH", "USER", "PWD", "TMPDIR", "PORT"})

# os.environ["X"], os.environ.get("X", ...), os.getenv("X"), environ.get, django-environ's
# env("X") / env.str("X") / env.db("X"), python-decouple's config("X").
_ENV_READ = re.compile(
    r"""(?:environ\s*\[\s*|(?:environ\.get|getenv|\benv(?:\.\w+)?|\bconfig)\s*\(\s*)"""
    r"""["']([A-Z][A-Z0-9_]*)["']\s*(\]|,|\))""")
_SEARCH_PATH_LIT = re.compile(r"search_path\s*=\s*([A-Za-z0-9_$,\s\"]+?)(?:['\"}]|$)",
                              re.MULTILINE)
_SEARCH_PATH_REF = re.compile(r"search_path\s*=\s*\{(\w+)\}")
# A route, not any word: "/health" (Flask) or "health/" (a Django path()); a bare
# "status" is as likely a JSON key.
_HEALTH = re.compile(r"""["'](/(?:api/)?(?:health|healthz|healthcheck|ping)/?|"""
                     r"""(?:api/)?(?:health|healthz|healthcheck|ping)/)["']|"""
                     # Django's path("health", ...) / re_path(r"^health/?$", ...)
                     r"""\b(?:re_)?path\(\s*r?["']\^?((?:api/)?(?:health|healthz|"""
                     r"""healthcheck|ping)/?)""")
_SETTINGS_IN_MANAGE = re.compile(
    r"""DJANGO_SETTINGS_MODULE["']\s*,\s*["']([A-Za-z_][\w.]*)["']""")


@dataclass(frozen=True)
class CliCommand:
    """A management or click command an app defines."""

    name: str  # "seed_extra", or "fake users" for a command in a click group
    required: tuple[str, ...]  # required positional arguments, e.g. ("n",)
    source: str  # path relative to the repository root


@dataclass(frozen=True)
class DbSettings:
    """How an app finds its database, read from its settings/config files."""

    url_vars: tuple[str, ...] = ()  # read as a whole URL
    part_vars: tuple[tuple[str, str], ...] = ()  # (APP_VAR, PG var it gets)
    required_vars: tuple[str, ...] = ()  # os.environ["X"] with no default, not the database
    search_path: tuple[str, ...] = ()  # pinned by the app itself (connection options)
    sources: tuple[str, ...] = ()  # files read, relative to the repository root


@dataclass(frozen=True)
class App:
    """One app found in the repository."""

    framework: str  # "django" | "flask" | "alembic"
    folder: str  # relative to the repository root, "." for the root itself
    name: str  # for step and process names
    venv: str | None = None  # relative to ``folder``
    requirements: tuple[str, ...] = ()  # relative to the repository root
    settings: str | None = None  # Django settings module
    manage: str = "manage.py"
    migration_apps: tuple[tuple[str, str], ...] = ()  # Django (label, folder rel. to app)
    fixtures: tuple[str, ...] = ()  # Django fixture files, relative to ``folder``
    flask_app: str | None = None  # as ``flask --app`` takes it
    flask_migrate: bool = False  # migrations/ run through Flask-Migrate
    alembic_config: str | None = None  # relative to ``folder``
    alembic_scripts: str | None = None  # script_location, relative to ``folder``
    commands: tuple[CliCommand, ...] = ()
    db: DbSettings = field(default_factory=DbSettings)
    health: str | None = None  # a health route for the ready check ("/health")
    notes: tuple[str, ...] = ()


# --------------------------------------------------------------------------- walking


def _walk(top: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames
                             if d not in SKIP_DIRS and not (here / d / "pyvenv.cfg").exists())
        yield here, dirnames, sorted(filenames)


def _read(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_FILE:
            return ""
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _parse(path: Path) -> ast.Module | None:
    text = _read(path)
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError):
        return None


def _rel(path: Path, root: Path) -> str:
    rel = os.path.relpath(path, root)
    return "." if rel == "." else rel.replace(os.sep, "/")


def find_venv(folder: Path, root: Path) -> str | None:
    """A virtualenv in the app's folder or a parent up to the root, relative to the folder."""
    here = folder
    while True:
        for name in VENV_NAMES:
            if (here / name / "pyvenv.cfg").is_file():
                return _rel(here / name, folder)
        if here == root or root not in here.parents:
            return None
        here = here.parent


def find_requirements(folder: Path, root: Path) -> tuple[str, ...]:
    return tuple(_rel(folder / r, root) for r in REQUIREMENTS if (folder / r).is_file())


# --------------------------------------------------------------------------- settings


def read_db_settings(files: list[Path], root: Path) -> DbSettings:
    """The environment variables ``files`` read, sorted into what devenv can wire."""
    url: list[str] = []
    parts: dict[str, str] = {}
    required: list[str] = []
    search: tuple[str, ...] = ()
    sources: list[str] = []
    for f in files:
        text = _read(f)
        if not text:
            continue
        found = False
        for m in _ENV_READ.finditer(text):
            name = m.group(1)
            found = True
            if name in PROVIDED:
                if name == "DATABASE_URL" and name not in url:
                    url.append(name)
                continue
            if _URL_NAME.match(name):
                if name not in url:
                    url.append(name)
            elif (pm := _PART_NAME.match(name)) and name not in parts:
                parts[name] = PART_TO_PG[pm.group(1)]
            elif (m.group(0).lstrip().startswith("environ") and m.group(2) == "]"
                  and name not in _IGNORED_VARS and name not in required):
                # os.environ["X"]: a KeyError at import if X is not set.
                required.append(name)
        if ("dj_database_url" in text or re.search(r"\benv\.db\(\s*\)", text)) \
                and "DATABASE_URL" not in url:
            # dj-database-url's config() and django-environ's env.db() read DATABASE_URL
            # without naming it.
            url.append("DATABASE_URL")
            found = True
        if not search:
            search = _pinned_search_path(text)
        if found or search:
            sources.append(_rel(f, root))
    return DbSettings(url_vars=tuple(url), part_vars=tuple(sorted(parts.items())),
                      required_vars=tuple(required), search_path=search,
                      sources=tuple(sources))


def _pinned_search_path(text: str) -> tuple[str, ...]:
    """A ``-c search_path=...`` the app sets on its own connections (it overrides the
    ``PGOPTIONS`` devenv sets, so devenv's ``search_path:`` must match it)."""
    value = None
    ref = _SEARCH_PATH_REF.search(text)
    if ref:
        assign = re.search(rf"^\s*{ref.group(1)}\s*(?::\s*\w+\s*)?=\s*[\"']([^\"']+)[\"']",
                           text, re.MULTILINE)
        if assign:
            value = assign.group(1)
    if value is None:
        lit = _SEARCH_PATH_LIT.search(text)
        if lit and "{" not in lit.group(1):
            value = lit.group(1)
    if not value:
        return ()
    names = [s.strip().strip('"') for s in value.split(",")]
    if not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*|\$user", n) for n in names):
        return ()
    return tuple(names)


def find_health(files: list[Path]) -> str | None:
    for f in files:
        m = _HEALTH.search(_read(f))
        if m:
            path = m.group(1) or m.group(2)
            return path if path.startswith("/") else f"/{path}"
    return None


def _py_files(folder: Path, depth: int = 2) -> list[Path]:
    out: list[Path] = []
    for here, dirs, files in _walk(folder):
        rel_depth = len(here.relative_to(folder).parts)
        if rel_depth >= depth:
            dirs[:] = []
        if rel_depth and not (here / "__init__.py").is_file() and here.name != "migrations":
            dirs[:] = []
            continue
        out.extend(here / f for f in files if f.endswith(".py"))
    return out


# --------------------------------------------------------------------------- django


def _required_django_args(tree: ast.Module) -> tuple[str, ...]:
    """Positional arguments ``add_arguments`` declares without nargs ? or *."""
    out: list[str] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add_argument" and node.args):
            continue
        first = node.args[0]
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            continue
        if first.value.startswith("-"):
            continue
        optional = any(k.arg == "nargs" and isinstance(k.value, ast.Constant)
                       and k.value.value in ("?", "*") for k in node.keywords)
        optional = optional or any(k.arg == "default" for k in node.keywords)
        if not optional:
            out.append(first.value)
    return tuple(out)


def _installed_apps(settings_files: list[Path]) -> list[str]:
    for f in settings_files:
        tree = _parse(f)
        if tree is None:
            continue
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "INSTALLED_APPS" for t in node.targets
            ) and isinstance(node.value, ast.List | ast.Tuple):
                return [e.value for e in node.value.elts
                        if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return []


def _app_label(app_dir: Path) -> str:
    m = re.search(r"^\s*label\s*=\s*[\"'](\w+)[\"']", _read(app_dir / "apps.py"), re.MULTILINE)
    return m.group(1) if m else app_dir.name


def detect_django(manage: Path, root: Path) -> App:
    folder = manage.parent
    text = _read(manage)
    m = _SETTINGS_IN_MANAGE.search(text)
    settings = m.group(1) if m else None
    notes: list[str] = []
    settings_files: list[Path] = []
    if settings:
        mod = folder.joinpath(*settings.split("."))
        if mod.with_suffix(".py").is_file():
            settings_files.append(mod.with_suffix(".py"))
        elif (mod / "__init__.py").is_file():
            settings_files.extend(sorted(mod.glob("*.py")))
        # A settings package (base.py + dev.py): its siblings are read too.
        parent = mod.parent
        if (parent / "__init__.py").is_file() and parent != folder:
            settings_files.extend(p for p in sorted(parent.glob("*.py"))
                                  if p not in settings_files and "settings" in p.stem)
    else:
        notes.append("manage.py sets no DJANGO_SETTINGS_MODULE: set settings: yourself")

    # Apps: packages below the project with a migrations/ package, in INSTALLED_APPS order.
    found: list[tuple[str, Path]] = []
    for here, dirs, _files in _walk(folder):
        if len(here.relative_to(folder).parts) >= 3:
            dirs[:] = []
        if (here / "migrations" / "__init__.py").is_file() and (here / "__init__.py").is_file():
            found.append((_app_label(here), here))
    order = [a.rsplit(".", 1)[-1] for a in _installed_apps(settings_files)]
    found.sort(key=lambda t: (order.index(t[0]) if t[0] in order else len(order), t[0]))
    apps = tuple((label, _rel(path, folder)) for label, path in found)

    fixtures: list[str] = []
    commands: list[CliCommand] = []
    for _label, path in found:
        fx = path / "fixtures"
        if fx.is_dir():
            fixtures.extend(_rel(p, folder) for p in sorted(fx.iterdir())
                            if p.suffix in FIXTURE_SUFFIXES and p.is_file())
    for here, dirs, _files in _walk(folder):
        if len(here.relative_to(folder).parts) >= 3:
            dirs[:] = []
        cmd_dir = here / "management" / "commands"
        if cmd_dir.is_dir() and (here / "__init__.py").is_file():
            for p in sorted(cmd_dir.glob("*.py")):
                if p.stem.startswith("_"):
                    continue
                tree = _parse(p)
                required = _required_django_args(tree) if tree else ()
                commands.append(CliCommand(p.stem, required, _rel(p, root)))

    py = [p for p in _py_files(folder, 3) if "migrations" not in p.parts]
    db = read_db_settings(settings_files or py, root)
    if not db.url_vars and not db.part_vars:
        notes.append("its settings read no database variable from the environment, so it "
                     "would not use the database devenv builds: read DATABASE_URL (devenv "
                     "sets it) in DATABASES")
    return App(
        framework="django", folder=_rel(folder, root), name=_app_name(folder, root, "django"),
        venv=find_venv(folder, root), requirements=find_requirements(folder, root),
        settings=settings, manage=manage.name, migration_apps=apps,
        fixtures=tuple(fixtures), commands=tuple(commands), db=db,
        health=find_health([p for p in py if p.name == "urls.py"] or py),
        notes=tuple(notes))


# --------------------------------------------------------------------------- flask


def _dotenv_flask_app(folder: Path) -> str | None:
    for name in (".flaskenv", ".env"):
        f = folder / name
        if f.is_file():
            m = re.search(r"^\s*(?:export\s+)?FLASK_APP\s*=\s*[\"']?([^\"'\s#]+)",
                          _read(f), re.MULTILINE)
            if m:
                return m.group(1)
    return None


def _module_defines_app(tree: ast.Module) -> str | None:
    """``app`` / ``application`` assigned at module level (what flask finds by itself)."""
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name) and t.id in ("app", "application"):
                    return t.id
    return None


def _defines_factory(tree: ast.Module) -> str | None:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in ("create_app", "make_app"):
            return node.name
    return None


def _flask_entry(folder: Path) -> str | None:
    """What ``flask --app`` should load for the app in ``folder``: FLASK_APP from
    .flaskenv/.env, a module-level ``app``, else a package's app factory."""
    from_env = _dotenv_flask_app(folder)
    if from_env:
        return from_env
    for name in ("app.py", "wsgi.py", "application.py", "main.py", "run.py", "server.py"):
        f = folder / name
        if f.is_file() and "flask" in (text := _read(f)).lower():
            tree = _parse(f)
            if tree is None:
                continue
            var = _module_defines_app(tree)
            if var:
                return name if var == "app" else f"{f.stem}:{var}"
            factory = _defines_factory(tree)
            if factory and "Flask(" in text:
                return f"{f.stem}:{factory}()"
    for pkg in sorted(folder.iterdir()):
        init = pkg / "__init__.py"
        if pkg.is_dir() and init.is_file() and "Flask(" in (_read(init)):
            tree = _parse(init)
            if tree is not None:
                factory = _defines_factory(tree)
                if factory:
                    return f"{pkg.name}:{factory}()"
                if _module_defines_app(tree) == "app":
                    return pkg.name
    return None


def _decorator_parts(dec: ast.expr) -> tuple[str, str, ast.Call | None] | None:
    """``@X.command("name")`` -> (X as text, "command", the call); None otherwise."""
    call = dec if isinstance(dec, ast.Call) else None
    func = call.func if call else dec
    if not isinstance(func, ast.Attribute) or func.attr not in ("command", "group"):
        return None
    return ast.unparse(func.value), func.attr, call


def _click_name(func: ast.FunctionDef, call: ast.Call | None) -> str:
    if call is not None:
        if call.args and isinstance(call.args[0], ast.Constant) and isinstance(
                call.args[0].value, str):
            return call.args[0].value
        for k in call.keywords:
            if k.arg == "name" and isinstance(k.value, ast.Constant):
                return str(k.value.value)
    # click's default: the function name, "_" as "-", a _command/_cmd suffix dropped.
    name = func.name.lower()
    for suffix in ("_command", "_cmd", "_group", "_grp"):
        name = name.removesuffix(suffix)
    return name.replace("_", "-")


def _click_required(func: ast.FunctionDef) -> tuple[str, ...]:
    out: list[str] = []
    for dec in func.decorator_list:
        if not (isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute)
                and dec.func.attr == "argument" and dec.args):
            continue
        first = dec.args[0]
        if not isinstance(first, ast.Constant):
            continue
        kw = {k.arg: k.value for k in dec.keywords}
        nargs = kw.get("nargs")
        optional = "default" in kw or (
            isinstance(kw.get("required"), ast.Constant)
            and getattr(kw.get("required"), "value", True) is False) or (
            isinstance(nargs, ast.UnaryOp) or (isinstance(nargs, ast.Constant)
                                               and nargs.value == -1))
        if not optional:
            out.append(str(first.value))
    return tuple(out)


def find_click_commands(files: list[Path], root: Path) -> tuple[CliCommand, ...]:
    """Commands declared with ``@app.cli.command``, ``@click.command`` / ``@click.group``
    and ``@GROUP.command``; a group's commands are named ``GROUP SUB``."""
    out: list[CliCommand] = []
    for f in files:
        text = _read(f)
        if "click" not in text and ".cli." not in text:
            continue
        tree = _parse(f)
        if tree is None:
            continue
        groups: dict[str, str] = {}  # function name -> group's command name
        funcs = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
        for fn in funcs:
            for dec in fn.decorator_list:
                parts = _decorator_parts(dec)
                if parts and parts[1] == "group":
                    groups[fn.name] = _click_name(fn, parts[2])
        for fn in funcs:
            for dec in fn.decorator_list:
                parts = _decorator_parts(dec)
                if not parts or parts[1] != "command":
                    continue
                owner = parts[0]
                base = owner.rsplit(".", 1)[-1]
                if owner in groups or base in groups:
                    name = f"{groups.get(owner) or groups[base]} {_click_name(fn, parts[2])}"
                elif owner == "click" or owner.endswith("cli") or owner.endswith(".cli"):
                    name = _click_name(fn, parts[2])
                else:
                    continue
                out.append(CliCommand(name, _click_required(fn), _rel(f, root)))
    return tuple(out)


def _alembic_location(ini: Path) -> str | None:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(_read(ini))
    except configparser.Error:
        return None
    loc = parser.get("alembic", "script_location", fallback=None)
    if loc is None:
        return None
    return loc.replace("%(here)s", ".").strip()


def detect_flask_or_alembic(folder: Path, root: Path, entry: str | None,
                            ini: Path | None) -> App:
    py = _py_files(folder, 3)
    notes: list[str] = []
    flask_migrate = False
    config: str | None = None
    scripts: str | None = None
    env_files: list[Path] = []
    if ini is not None:
        config = _rel(ini, folder)
        loc = _alembic_location(ini)
        base = ini.parent
        script_dir = (base / loc) if loc and not loc.startswith("/") else ini.parent
        scripts = _rel(script_dir, folder)
        env_py = script_dir / "env.py"
        if env_py.is_file():
            env_files.append(env_py)
            text = _read(env_py)
            # Flask-Migrate's env.py takes the engine from the app (current_app); a plain
            # one builds its own from the ini or the environment.
            flask_migrate = entry is not None and ("current_app" in text
                                                   or "flask_migrate" in text)
    settings_like = [p for p in py if p.stem in ("config", "settings", "__init__", "app",
                                                 "wsgi", "database", "db", "extensions")
                     or p.name == (entry or "").split(":")[0]]
    framework = "flask" if entry else "alembic"
    db = read_db_settings(env_files + settings_like, root)
    if ini is not None and not flask_migrate and env_files and not db.url_vars \
            and not db.part_vars:
        notes.append(f"{_rel(env_files[0], root)} reads no database variable from the "
                     "environment (sqlalchemy.url in the ini?), so alembic would not migrate "
                     "the database devenv builds: read DATABASE_URL (devenv sets it) there")
    return App(
        framework=framework, folder=_rel(folder, root),
        name=_app_name(folder, root, framework), venv=find_venv(folder, root),
        requirements=find_requirements(folder, root), flask_app=entry,
        flask_migrate=flask_migrate, alembic_config=config, alembic_scripts=scripts,
        commands=find_click_commands(py, root) if entry else (),
        db=db, health=find_health(py) if entry else None, notes=tuple(notes))


# --------------------------------------------------------------------------- the scan


def _app_name(folder: Path, root: Path, framework: str) -> str:
    base = folder.name if folder != root else framework
    name = re.sub(r"[^A-Za-z0-9]+", "-", base).strip("-").lower()
    return name[:40] or framework


def detect(root: Path, only: list[Path] | None = None) -> list[App]:
    """The apps under ``root`` (or only under the folders ``only``), in a stable order."""
    root = root.resolve()
    tops = [p.resolve() for p in only] if only else [root]
    apps: list[App] = []
    seen: set[Path] = set()
    for top in tops:
        for here, dirs, files in _walk(top):
            if here in seen:
                dirs[:] = []
                continue
            if "manage.py" in files and "DJANGO_SETTINGS_MODULE" in _read(here / "manage.py"):
                # Everything below a project (its apps, their migrations) belongs to it.
                seen.add(here)
                dirs[:] = []
                apps.append(detect_django(here / "manage.py", root))
                continue
            ini = here / "alembic.ini" if "alembic.ini" in files else None
            if ini is None and (here / "migrations" / "alembic.ini").is_file():
                ini = here / "migrations" / "alembic.ini"
            entry = _flask_entry(here)
            if entry or ini:
                seen.add(here)
                dirs[:] = []
                apps.append(detect_flask_or_alembic(here, root, entry, ini))
    # Names must be unique: two apps in folders with the same name get their parent's too.
    names = [a.name for a in apps]
    out = []
    for a in apps:
        if names.count(a.name) > 1:
            parent = Path(a.folder).parent.name or "root"
            a = App(**{**a.__dict__, "name": f"{parent}-{a.name}"[:40]})
        out.append(a)
    return out
