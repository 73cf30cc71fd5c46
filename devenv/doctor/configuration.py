"""Configuration: steps.yaml and services/ load, the graph has no cycle, every path the
steps name exists, every command they run can be found."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from devenv import fingerprint, graph, runner
from devenv.doctor.apps import words
from devenv.doctor.base import FAIL, WARN, Check, CheckDef, Problems, fail, ok
from devenv.doctor.context import Context
from devenv.envvars import expand, expand_for_reading
from devenv.errors import ConfigError
from devenv.kinds.alembic_upgrade import config_path
from devenv.schema import Command, Project, StepSpec

# Words a shell line may start with that are not programs to look for.
SHELL_WORDS = frozenset({
    "cd", "export", "set", "unset", "exec", "if", "then", "else", "elif", "fi", "for", "do",
    "done", "while", "until", "case", "esac", "echo", "printf", "true", "false", "test", "[",
    "[[", "source", ".", ":", "eval", "trap", "exit", "return", "read", "wait", "shift",
    "ulimit", "umask", "time", "!", "{", "}", "function", "local", "pwd", "command", "type",
})


def _config_fix(exc: ConfigError) -> str:
    if exc.file and exc.line:
        return f"edit {exc.file}:{exc.line}" + (f" ({exc.path})" if exc.path else "") \
            + " as the message says"
    if "no steps.yaml found" in exc.message or "no such file" in exc.message:
        return "run devenv doctor inside a project, or point at its steps.yaml with --file"
    return f"fix {exc.file or 'steps.yaml'} as the message says"


def check_load(ctx: Context) -> Check:
    """steps.yaml and services/*.yaml load and validate."""
    exc = ctx.config_error()
    if exc is not None:
        return fail("config.load", str(exc), _config_fix(exc))
    project = ctx.project()
    files = [project.rel(project.file)]
    files += sorted({s.loc.file for s in project.services.values()
                     if s.loc.file != files[0]})
    return ok("config.load", f"{', '.join(files)} load: {len(project.steps)} steps, "
                             f"{len(project.services)} services, "
                             f"{len(project.processes)} processes")


def _longest_chain(project: Project) -> list[str]:
    best: dict[str, list[str]] = {}
    for name in graph.topo_order(project):
        ups = [best[n] for n in graph.step_needs(project, name)]
        best[name] = [*max(ups, key=len, default=[]), name]
    return max(best.values(), key=len, default=[])


def check_graph(ctx: Context) -> Check:
    """The steps' dependencies have no cycle."""
    exc = ctx.config_error()
    if exc is not None:
        if exc.message.startswith("dependency cycle"):
            return fail("config.graph", str(exc),
                        f"remove one of the needs in the cycle ({exc.file}:{exc.line})")
        return Check("config.graph", WARN, "not checked: the configuration does not load",
                     "fix config.load first")
    project = ctx.project()
    chain = _longest_chain(project)
    shown = " → ".join(chain) if len(chain) <= 5 else \
        f"{chain[0]} → ... → {chain[-1]} ({len(chain)} steps)"
    return ok("config.graph", f"{len(project.steps)} steps, no dependency cycle; longest "
                              f"chain: {shown or 'none'}")


def _where(step: StepSpec, key: str) -> str:
    return f"{step.loc.file}:{step.key_lines.get(key, step.loc.line)}"


def _resolve(base: Path, raw: str) -> Path:
    p = Path(os.path.expanduser(raw))
    return p if p.is_absolute() else base / p


def _expand(text: str, env: dict[str, str]) -> str | None:
    try:
        return expand(text, env)
    except ConfigError:
        return None  # an undefined ${X}: the environment check names it


def check_paths(ctx: Context) -> Check:
    """Every ``cwd``, ``python:``, ``manage:``, ``config:``, SQL file and input glob exists."""
    project = ctx.project()
    problems = Problems("config.paths")
    for step in project.steps.values():
        env = ctx.step_env(step)
        where = f"steps.{step.name}"
        cwd = project.root
        if step.cwd:
            raw = _expand(step.cwd, env)
            if raw is not None:
                cwd = _resolve(project.root, raw)
                if not cwd.is_dir():
                    problems.add(FAIL, f"{where}.cwd: {raw} does not exist "
                                       f"({_where(step, 'cwd')})",
                                 f"fix cwd: at {_where(step, 'cwd')}, or create {raw}")
                    continue
        if step.python:
            # the loader checked a plain value; one with ${...} is known only now
            try:
                runner.resolve_python(project, step, env)
            except ConfigError as exc:
                if exc.path == f"{where}.python":
                    problems.add(FAIL, f"{where}.python: {exc.message} "
                                       f"({_where(step, 'python')})",
                                 f"create the virtualenv, or fix python: at "
                                 f"{_where(step, 'python')}")
        opts = step.options
        if step.kind in ("django-migrate", "django-loaddata"):
            manage = str(opts.get("manage", "manage.py"))
            if ("manage" in opts or not opts.get("settings")) and "${" not in manage \
                    and not _resolve(cwd, manage).is_file():
                problems.add(FAIL, f"{where}.manage: {manage} not found in "
                                   f"{project.rel(cwd)} ({_where(step, 'manage')})",
                             f"fix manage: (or cwd:) at {_where(step, 'manage')}")
        if step.kind == "alembic":
            config = config_path(opts)
            if "${" not in config and not _resolve(cwd, config).is_file():
                problems.add(FAIL, f"{where}.config: {config} not found in "
                                   f"{project.rel(cwd)} ({_where(step, 'config')})",
                             f"fix config: (or cwd:) at {_where(step, 'config')}")
        if step.kind == "sql":
            files = [str(opts["file"])] if "file" in opts else [str(f) for f in
                                                                opts.get("files", ())]
            key = "file" if "file" in opts else "files"
            for f in files:
                if "${" not in f and not _resolve(cwd, f).is_file():
                    problems.add(FAIL, f"{where}.{key}: {f} not found in {project.rel(cwd)} "
                                       f"({_where(step, key)})",
                                 f"fix {key}: at {_where(step, key)}")
        if "inputs" in step.key_lines:
            # Only inputs the user wrote: a kind's default globs may match nothing.
            for i, pattern in enumerate(step.inputs):
                if "${" in pattern:
                    continue
                if not fingerprint.expand_inputs(project.root, [pattern]):
                    problems.add(WARN, f"{where}.inputs[{i}]: '{pattern}' matches no file "
                                       f"({_where(step, 'inputs')})",
                                 f"fix the glob at {_where(step, 'inputs')} (paths are "
                                 "relative to the project root)")
    for name, spec in project.processes.items():
        if not spec.cwd:
            continue
        raw = _expand(spec.cwd, ctx.process_env(name))
        if raw is not None and not _resolve(project.root, raw).is_dir():
            problems.add(FAIL, f"processes.{name}.cwd: {raw} does not exist ({spec.loc})",
                         f"fix cwd: of process {name} at {spec.loc}")
    return problems.result(
        f"every cwd, python:, manage:, config: and input glob exists "
        f"({len(project.steps)} steps, {len(project.processes)} processes)")


def executables(cmd: Command) -> list[str]:
    """The programs a command starts (the first word of each simple command)."""
    out = []
    for argv in words(cmd):
        i = 0
        while i < len(argv) and argv[i] in ("exec", "command", "time", "nice", "!"):
            i += 1
        if i >= len(argv):
            continue
        word = argv[i]
        if word in SHELL_WORDS or "$" in word or "`" in word:
            continue
        out.append(word)
    return out


def find_program(word: str, cwd: Path, env: dict[str, str]) -> bool:
    if "/" in word:
        p = _resolve(cwd, word)
        return p.is_file() and os.access(p, os.X_OK)
    return shutil.which(word, path=env.get("PATH")) is not None


def check_commands(ctx: Context) -> Check:
    """Every program the shell steps and processes run is found where they run."""
    project = ctx.project()
    problems = Problems("config.commands")
    count = 0
    places: list[tuple[str, Command | None, str | None, dict[str, str], str]] = []
    for step in project.steps.values():
        if step.run is not None:
            places.append((f"steps.{step.name}.run", step.run, step.cwd, ctx.step_env(step),
                           _where(step, "run")))
    for name, spec in project.processes.items():
        places.append((f"processes.{name}.run", spec.run, spec.cwd, ctx.process_env(name),
                       str(spec.loc)))
    for path, run, raw_cwd, env, where in places:
        if run is None:
            continue
        try:
            cmd = expand_for_reading(run, env)  # read for its programs, never run
        except ConfigError:
            cmd = run  # an undefined ${X}: the environment check names it
        cwd = project.root
        if raw_cwd:
            got = _expand(raw_cwd, env)
            cwd = _resolve(project.root, got) if got else project.root
        for word in executables(cmd):
            count += 1
            if not find_program(word, cwd, env):
                where_found = "in " + project.rel(cwd) if "/" in word else "on the PATH"
                problems.add(FAIL, f"{path}: '{word}' is not found {where_found} ({where})",
                             f"install {word} where the step runs (PATH, or the app's "
                             f"virtualenv), or fix the command at {where}")
    return problems.result(f"all {count} programs the steps and processes run are found")


CHECKS = [
    CheckDef("config.load", "Configuration", check_load, needs_project=False),
    CheckDef("config.graph", "Configuration", check_graph, needs_project=False),
    CheckDef("config.paths", "Configuration", check_paths),
    CheckDef("config.commands", "Configuration", check_commands),
]
