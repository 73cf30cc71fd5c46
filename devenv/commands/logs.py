"""``devenv logs [NAME] [--ci] [--follow] [--tail N]``: a service's log (its container's,
or the native server's), a step's last run (``.devenv/logs/STEP.log``; with ``--ci`` its
last ``ci-setup`` run, ``.devenv/ci-logs/STEP.log``) or a process's log
(``.devenv/logs/NAME.log``). Without NAME: the database service's log."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from devenv.console import Output
from devenv.errors import EXIT_OK, ServiceError, UsageError, did_you_mean
from devenv.schema import Project
from devenv.services import launch
from devenv.services.support import follow_file

# Logs devenv writes for its own work (lifecycle's background re-clone of the ready copy):
# readable by name, never offered among the user's services, steps and processes.
INTERNAL = ("reclone",)


def log_dir(project: Project, ci: bool = False) -> Path:
    """Where step logs go: ``.devenv/logs``, or for ``ci-setup`` ``.devenv/ci-logs`` (a CI
    run on a developer's machine must not replace the logs of their own last run; not a
    folder inside ``logs``, where it could clash with a step's own folder of old logs)."""
    return project.state_dir / ("ci-logs" if ci else "logs")


def _found(project: Project, ci: bool) -> list[str]:
    folder = log_dir(project, ci)
    return sorted(p.stem for p in folder.glob("*.log")) if folder.is_dir() else []


def _names(project: Project, ci: bool = False) -> list[str]:
    """The names ``logs`` offers: services, steps, processes, then logs of steps or
    processes no longer configured; not devenv's own."""
    found = _found(project, ci)
    return [*project.services, *project.steps, *project.processes,
            *(n for n in found if n not in project.steps and n not in project.processes
              and n not in project.services and n not in INTERNAL)]


def _internal_note(project: Project) -> str:
    own = [n for n in _found(project, False) if n in INTERNAL]
    return f"; devenv's own: {', '.join(own)}" if own else ""


def _default(project: Project) -> str:
    if project.database is not None:
        return project.database.service
    if len(project.services) == 1:
        return next(iter(project.services))
    raise UsageError("which log? name a service, step or process: "
                     + ", ".join(_names(project)))


def lines_for(project: Project, name: str | None, *, follow: bool = False,
              tail: int | None = None, ci: bool = False) -> Iterable[str]:
    """The lines ``devenv logs`` prints (a generator when following); ``ci``: the logs of
    the last ``ci-setup`` run."""
    name = name or _default(project)
    if tail is not None and tail < 0:
        raise UsageError("--tail takes a number of lines (0 or more)")
    if name in project.services:
        service = project.services[name]
        backend = launch.locate(project, service)
        if backend is None:
            raise ServiceError(f"service {name} has not been started here (no container or "
                               "data): start it with `devenv up`")
        return backend.logs(project, service, follow=follow, tail=tail)
    path = log_dir(project, ci) / f"{name}.log"
    if path.exists():
        return follow_file(path, tail, follow)
    what = "step" if name in project.steps else "process" if name in project.processes \
        else None
    if what is not None:
        where = "in a ci-setup run" if ci else "here"
        other = log_dir(project, not ci) / f"{name}.log"
        hint = ""
        if other.exists():
            hint = (f"; its last local run: devenv logs {name}" if ci
                    else f"; its last ci-setup run: devenv logs --ci {name}")
        raise UsageError(f"{what} {name} has no log yet ({project.rel(path)}): it has not "
                         f"run {where}{hint}")
    known = _names(project, ci)
    raise UsageError(f"no service, step or process named '{name}'"
                     f"{did_you_mean(name, known)}; known: {', '.join(known)}"
                     f"{_internal_note(project)}")


def run(project: Project, out: Output, name: str | None = None, *, follow: bool = False,
        tail: int | None = None, ci: bool = False) -> int:
    lines = lines_for(project, name, follow=follow, tail=tail, ci=ci)
    stream = out.stream
    try:
        for line in lines:
            stream.write(line + "\n")
            if follow:
                stream.flush()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how one stops --follow: not an error
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_OK
    stream.flush()
    return EXIT_OK


def _quiet_stdout() -> None:
    """``devenv logs | head``: the reader left; do not complain on exit."""
    import os
    import sys

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())

