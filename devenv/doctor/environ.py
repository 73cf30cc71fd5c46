"""Environment: ``${NAME}`` that steps and processes use but nobody defines, and values two
apps must share (a JWT secret) that differ between them.

Shared values are compared where doctor can tell honestly: the same secret-like variable
set to different values in steps.yaml (top-level ``env:``, a step's or a process's), and
the same secret-like setting in Django's settings and the Flask config, as the apps load
them (only hashes of the values leave the apps; nothing is printed). Settings that merely
mean the same thing under different names are not guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from devenv.doctor.base import FAIL, OK, WARN, Check, CheckDef, Problems, ok
from devenv.doctor.context import Context, lenient
from devenv.envvars import references
from devenv.schema import Command, Location, Project, StepSpec
from devenv.services import addresses

SECRET_NAME = re.compile(r"(SECRET|TOKEN|JWT|SIGNING|_KEY$|SALT|PASSWORD)")
# Set for every step and process by devenv itself (see building.step_environment).
PROVIDED = frozenset({"DATABASE_URL", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD",
                      "PGDATABASE", "DEVENV_PROJECT", "DEVENV_ROOT"})


def _texts(cmd: Command | None) -> list[str]:
    if cmd is None:
        return []
    return [cmd] if isinstance(cmd, str) else list(cmd)


def _option_texts(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _option_texts(v)
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _option_texts(v)


def check_undefined(ctx: Context) -> Check:
    """Every ``${NAME}`` (without a ``:-default``) is defined by steps.yaml or the shell."""
    project = ctx.project()
    # a service's NAME_HOST/NAME_PORT/NAME_URL exist once it has started
    base = set(ctx.base_env()) | PROVIDED | addresses.service_variable_names(project)
    missing: dict[str, list[str]] = {}

    def use(texts: Iterable[str], defined: set[str], where: str) -> None:
        for text in texts:
            for name in references(text):
                if name not in defined:
                    places = missing.setdefault(name, [])
                    if where not in places:
                        places.append(where)

    file = project.file.name
    defined = set(base)
    for key, value in project.env.items():
        use([value], defined, f"env.{key} ({file}:{project.env_lines.get(key, 1)})")
        defined.add(key)
    top = set(defined)
    for step in project.steps.values():
        here = top | {"DEVENV_STEP", "PGOPTIONS"}

        def at(key: str, step_loc: Location = step.loc,
               lines: Mapping[str, int] = step.key_lines) -> str:
            return f"{step_loc.file}:{lines.get(key, step_loc.line)}"

        prefix = f"steps.{step.name}"
        for key, value in step.env.items():
            use([value], here, f"{prefix}.env.{key} ({at('env.' + key)})")
            here.add(key)
        if step.run is not None:
            use(_texts(step.run), here, f"{prefix}.run ({at('run')})")
        for key in ("cwd", "python"):
            raw = getattr(step, key)
            if raw:
                use([raw], here, f"{prefix}.{key} ({at(key)})")
        for key, value in step.options.items():
            use(_option_texts(value), here, f"{prefix}.{key} ({at(key)})")
    for name, spec in project.processes.items():
        here = top | {"DEVENV_PROCESS", "PYTHONUNBUFFERED"}
        prefix = f"processes.{name}"
        for key, value in spec.env.items():
            use([value], here, f"{prefix}.env.{key} ({spec.loc})")
            here.add(key)
        use(_texts(spec.run), here, f"{prefix}.run ({spec.loc})")
        use([t for t in (spec.cwd, spec.ready) if t], here, f"{prefix} ({spec.loc})")
    problems = Problems("env.undefined")
    for name, places in missing.items():
        shown = ", ".join(places[:2]) + (f" and {len(places) - 2} more" if len(places) > 2
                                         else "")
        problems.add(FAIL, f"${{{name}}} is used by {shown} but defined nowhere (not in env: "
                           "of steps.yaml, not in your shell)",
                     f"add {name}: <value> under env: in {file} (or export {name} in your "
                     "shell)")
    return problems.result("every ${NAME} the steps and processes use is defined")


def _places(project: Project) -> list[tuple[str, Mapping[str, str], Callable[[str], str]]]:
    file = project.file.name
    out: list[tuple[str, Mapping[str, str], Callable[[str], str]]] = [
        ("env", project.env, lambda k: f"{file}:{project.env_lines.get(k, 1)}")]
    for step in project.steps.values():
        out.append((f"steps.{step.name}.env", step.env, _step_line(step)))
    for name, spec in project.processes.items():
        out.append((f"processes.{name}.env", spec.env, _loc_line(spec.loc)))
    return out


def _step_line(step: StepSpec) -> Callable[[str], str]:
    return lambda k: f"{step.loc.file}:{step.key_lines.get('env.' + k, step.loc.line)}"


def _loc_line(loc: Location) -> Callable[[str], str]:
    return lambda _k: str(loc)


def check_shared(ctx: Context) -> Check:
    """Secrets two apps must share have one value."""
    project = ctx.project()
    problems = Problems("env.shared")
    compared: list[str] = []
    # 1. The same secret-like variable set to different values in steps.yaml.
    base = ctx.project_env()
    values: dict[str, list[tuple[str, str]]] = {}
    for where, env, line in _places(project):
        for key, raw in env.items():
            if SECRET_NAME.search(key):
                value = lenient(base if where != "env" else ctx.base_env(), {key: raw})[key]
                values.setdefault(key, []).append((f"{where} ({line(key)})", value))
    for key, seen in values.items():
        if len(seen) < 2:
            continue
        compared.append(key)
        if len({v for _, v in seen}) > 1:
            places = [w for w, _ in seen]
            problems.add(FAIL, f"{key} has different values in {' and '.join(places[:3])}",
                         f"define {key} once under the top-level env: of "
                         f"{project.file.name} and drop the others")
    # 2. The same secret-like setting in a Flask config and Django's settings.
    apps = ctx.apps()
    flask = [a for a in apps if a.kind == "flask"]
    django = [a for a in apps if a.kind == "django"]
    if flask and django:
        results = ctx.introspection()
        for fa in flask:
            for da in django:
                fr, dr = results[fa.key], results[da.key]
                if not fr.ok or not dr.ok:
                    continue
                fs = fr.data.get("secrets") or {}
                ds = dr.data.get("secrets") or {}
                flabel = f"the Flask config ({fa.options.get('app')} in {fa.rel_cwd})"
                dlabel = f"Django's settings ({dr.data.get('settings')})"
                for name in sorted(set(fs) & set(ds)):
                    compared.append(name)
                    a, b = fs[name], ds[name]
                    fix = (f"give both apps the same {name}: define it once under env: in "
                           f"{project.file.name} and read it from the environment in both")
                    if a == b == "empty":
                        problems.add(WARN, f"{name} is empty in both {flabel} and {dlabel}",
                                     fix)
                    elif "empty" in (a, b):
                        empty, other = (flabel, dlabel) if a == "empty" else (dlabel, flabel)
                        problems.add(FAIL, f"{name} is empty in {empty} but set in {other}: "
                                           "what one app signs, the other rejects", fix)
                    elif a != b:
                        problems.add(FAIL, f"{name} differs between {flabel} and {dlabel}: "
                                           "what one app signs, the other rejects", fix)
                    else:
                        problems.add(OK, name, "")
    if not compared:
        return ok("env.shared", "no secret is set in two places or read by both apps")
    return problems.result(f"shared values agree: {', '.join(dict.fromkeys(compared))}")


CHECKS = [
    CheckDef("env.undefined", "Environment", check_undefined),
    CheckDef("env.shared", "Environment", check_shared, timeout=30.0),
]
