"""Preparing processes: which ones a profile runs and in which order, and each one's
command, folder, environment and ready check expanded as it will start (:class:`Prepared`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from devenv import building, graph, proc
from devenv.envvars import expand, expand_command, layered, mask, shell_command
from devenv.envvars import names as referenced
from devenv.errors import ConfigError, ServiceError
from devenv.events import Reporter
from devenv.postgres import database
from devenv.processes.ready import ReadyCheck, parse_ready
from devenv.schema import Command, Location, ProcessSpec, Project
from devenv.services import addresses
from devenv.services import docker as dockerlib


@dataclass(frozen=True)
class Prepared:
    """A process ready to start: command, folder, environment and ready check, expanded."""

    name: str
    command: Command
    cwd: Path
    env: Mapping[str, str]
    ready: ReadyCheck | None
    ready_timeout: float
    needs: tuple[str, ...]  # the other processes it waits for
    loc: Location
    declared: frozenset[str] = frozenset()  # env names devenv and steps.yaml set

    @property
    def env_digests(self) -> dict[str, str]:
        """A short hash of each variable devenv or steps.yaml sets for it (not the whole
        inherited environment, which differs from one shell to the next): a detached
        process whose values changed (a new database port, an edited ``env:``) is
        restarted, and the message names them. Hashes, not values: no password is
        written down."""
        return {k: hashlib.sha256(self.env.get(k, "").encode()).hexdigest()[:16]
                for k in sorted(self.declared)}

    @property
    def shown(self) -> str:
        """The command as the user sees it (passwords and secret values masked)."""
        return mask(proc.format_command(self.command), self.env)


def selected(project: Project, profile: str) -> list[str]:
    """The processes of ``profile``, in start order (a process after those it needs)."""
    names = [n for n, p in project.processes.items() if p.in_profile(profile)]
    return start_order(project, names)


def start_order(project: Project, names: Sequence[str]) -> list[str]:
    """``names`` with each process after the processes it needs; ties in declaration order."""
    wanted = set(names)
    try:
        return graph.walk([n for n in project.processes if n in wanted],
                          lambda n: project.processes[n].needs)
    except graph.Cycle as exc:
        first = project.processes[exc.names[0]]
        raise ConfigError(f"dependency cycle between processes: {exc}", first.loc.file,
                          first.loc.line, f"processes.{first.name}.needs") from None


def prepare(project: Project, names: Sequence[str], target: database.Target | None,
            dbname: str | None = None, *, stand_in: bool = False) -> list[Prepared]:
    """Expand each process's command, folder and ready check in the environment steps get
    (plus the project's and the process's ``env:``); an undefined ``${X}`` is a ConfigError.
    """
    # stand_in: a check before the services start (their addresses are not known yet)
    base = building.step_environment(project, target, dbname, stand_in=stand_in)
    # Python buffers output into a pipe or file: without this, a Flask app's prints
    # would show up minutes late, or not before it crashes.
    base.setdefault("PYTHONUNBUFFERED", "1")
    def project_line(key: str) -> Location:
        return Location(project.file.name, project.env_lines.get(key, 1))

    wanted = set(names)
    service_names = set(addresses.service_variables(project, target))
    out = []
    for name in names:
        spec = project.processes[name]
        where = f"processes.{name}"
        # Like a step's: an app whose tables live in its own schema finds them.
        env = layered(building.with_search_path(base, spec.search_path),
                      (project.env, project_line, "env"),
                      (spec.env, _at(spec.loc), f"{where}.env"))
        env["DEVENV_PROCESS"] = name
        cwd = project.root
        if spec.cwd:
            raw = expand(spec.cwd, env, spec.loc, f"{where}.cwd")
            cwd = Path(raw) if Path(raw).is_absolute() else project.root / raw
        check = None
        if spec.ready:
            text = _expand_ready(spec.ready, env, spec.loc, f"{where}.ready")
            try:
                check = parse_ready(text, spec.ready_status)
            except ValueError as exc:
                raise ConfigError(str(exc), spec.loc.file, spec.loc.line,
                                  f"{where}.ready") from None
        # The command names its variables instead of holding their values: a changed
        # value of one (a branch from the shell) restarts the process as a changed
        # command did.
        declared = set(project.env) | set(spec.env) | {"DEVENV_PROCESS"}
        if spec.search_path:
            declared.add("PGOPTIONS")
        declared |= {n for n in referenced(spec.run) | referenced(spec.ready or "")
                     if n in env}
        if target is not None:
            declared |= set(target.env(dbname))
        # a service that moved to another port restarts the processes that talk to it
        declared |= service_names
        command = expand_command(spec.run, env, spec.loc, f"{where}.run")
        image = image_of(project, spec)
        if image:
            command = in_container(project, name, image, command, cwd, declared | {
                "DEVENV_PROJECT", "DEVENV_ROOT", "PYTHONUNBUFFERED"})
        out.append(Prepared(
            name=name,
            command=command,
            cwd=cwd,
            env=env,
            ready=check,
            ready_timeout=spec.ready_timeout,
            needs=tuple(n for n in spec.needs if n in wanted),
            loc=spec.loc,
            declared=frozenset(declared),
        ))
    return out


def image_of(project: Project, spec: ProcessSpec) -> str | None:
    """The image the process runs in: its ``image:``, or for ``build:`` the tag of the
    current content of its context (so an edit there is a changed command: the process is
    restarted on the new image)."""
    if spec.build is None:
        return spec.image
    return dockerlib.image_tag(project, spec.name, spec.build, f"process {spec.name}",
                               spec.loc)


def build_images(project: Project, names: Sequence[str], reporter: Reporter) -> None:
    """Build the image of each of ``names`` that has ``build:`` (the services' build code:
    a tag per content of the context, so an unchanged folder builds nothing), and remove
    that process's earlier builds that no container uses."""
    specs = [project.processes[n] for n in names if project.processes[n].build is not None]
    if not specs:
        return
    # Each build's tag names its context's content: all present means every build is
    # current (its earlier builds were pruned when it was made), and the daily `up` does
    # not import the docker SDK (~70 ms) to learn it.
    if dockerlib.images_present([image_of(project, s) or "" for s in specs]):
        return
    try:
        client = dockerlib.connect()
        client.ping()
    except Exception as exc:
        shown = ", ".join(f"{s.name} ({s.loc})" for s in specs)
        raise ServiceError(f"the Docker engine does not answer ({dockerlib.short(exc)}); "
                           f"these processes run in an image built from the repository "
                           f"(build:): {shown}. Start a Docker engine, or leave them out "
                           "with a profile that does not run them") from None
    try:
        for spec in specs:
            assert spec.build is not None
            tag = image_of(project, spec)
            assert tag is not None
            labels = {dockerlib.LABEL_PROJECT: project.name, LABEL_PROCESS: spec.name}
            dockerlib.build_image(client, project, spec.name, spec.build, tag,
                                  owner=f"process {spec.name}", labels=labels,
                                  reporter=reporter)
            dockerlib.prune_images(client, labels, tag)
    finally:
        client.close()


#: on the containers (and built images) of processes, beside devenv.project
LABEL_PROCESS = "devenv.process"


def in_container(project: Project, name: str, image: str, command: Command, cwd: Path,
                 names: set[str]) -> tuple[str, ...]:
    """``command`` run in a container of ``image``: the project folder mounted at its own
    path (so cwd and file paths mean the same inside), the host's network (services and
    the database answer on 127.0.0.1 as for a host process), the user's uid (files it
    writes stay theirs). Variables pass by name (``-e NAME``: docker reads the value from
    its own environment), never pasted into the command line. A container left by an
    earlier run of the process is removed first; --init forwards the stop signal."""
    container = f"{project.name}-process-{name}"
    inner: list[str] = ["sh", "-c", command] if isinstance(command, str) else list(command)
    argv = ["docker", "run", "--rm", "--init", "--name", container,
            "--label", f"devenv.project={project.name}", "--label", f"{LABEL_PROCESS}={name}",
            "--network", "host", "--user", f"{os.getuid()}:{os.getgid()}",
            "-v", f"{project.root}:{project.root}", "-w", str(cwd), "-e", "HOME=/tmp"]
    for var in sorted(names):
        argv += ["-e", var]
    return ("sh", "-c", 'docker rm -f "$0" >/dev/null 2>&1; exec "$@"', container, *argv,
            image, *inner)


def _at(loc: Location) -> Callable[[str], Location]:
    return lambda _key: loc


def _expand_ready(text: str, env: Mapping[str, str], loc: Location, path: str) -> str:
    """A ``ready:`` check expanded: ``cmd: COMMAND`` is shell text like ``run:`` (its
    values stay in the environment the check runs in); a URL or port is pasted."""
    head, sep, command = text.strip().partition("cmd:")
    if sep and not head:
        return f"cmd: {shell_command(command.strip(), env, loc, path)}"
    return expand(text, env, loc, path)
