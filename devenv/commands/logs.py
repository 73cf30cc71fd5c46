"""``devenv logs [NAME] [--follow] [--tail N]``: a service's log (its container's, or the
native server's), a step's last run (``.devenv/logs/STEP.log``) or a process's log
(``.devenv/logs/NAME.log``). Without NAME: the database service's log."""

from __future__ import annotations

from collections.abc import Iterable

from devenv.console import Output
from devenv.errors import EXIT_OK, ServiceError, UsageError, did_you_mean
from devenv.schema import Project
from devenv.services.support import follow_file, locate


def _names(project: Project) -> list[str]:
    logs = project.state_dir / "logs"
    found = sorted(p.stem for p in logs.glob("*.log")) if logs.is_dir() else []
    return [*project.services, *project.steps, *project.processes,
            *(n for n in found if n not in project.steps and n not in project.processes)]


def _default(project: Project) -> str:
    if project.database is not None:
        return project.database.service
    if len(project.services) == 1:
        return next(iter(project.services))
    raise UsageError("which log? name a service, step or process: "
                     + ", ".join(_names(project)))


def lines_for(project: Project, name: str | None, *, follow: bool = False,
              tail: int | None = None) -> Iterable[str]:
    """The lines ``devenv logs`` prints (a generator when following)."""
    name = name or _default(project)
    if tail is not None and tail < 0:
        raise UsageError("--tail takes a number of lines (0 or more)")
    if name in project.services:
        service = project.services[name]
        backend = locate(project, service)
        if backend is None:
            raise ServiceError(f"service {name} has not been started here (no container or "
                               "data): start it with `devenv up`")
        return backend.logs(project, service, follow=follow, tail=tail)
    path = project.state_dir / "logs" / f"{name}.log"
    if path.exists():
        return follow_file(path, tail, follow)
    what = "step" if name in project.steps else "process" if name in project.processes \
        else None
    if what is not None:
        raise UsageError(f"{what} {name} has no log yet ({project.rel(path)}): it has not "
                         "run here")
    known = _names(project)
    raise UsageError(f"no service, step or process named '{name}'"
                     f"{did_you_mean(name, known)}; known: {', '.join(known)}")


def run(project: Project, out: Output, name: str | None = None, *, follow: bool = False,
        tail: int | None = None) -> int:
    lines = lines_for(project, name, follow=follow, tail=tail)
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

