"""``devenv down [--volumes] [--yes]``: stop the processes and the services.

Without ``--volumes`` nothing is deleted: containers are stopped (``up`` starts them again
in a second or so) and native servers shut down. ``--volumes`` also deletes the services'
data (containers, volumes, native data folders) once confirmed: on a terminal it asks,
elsewhere it needs ``--yes``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from devenv import processes
from devenv.console import Output
from devenv.errors import EXIT_OK, UsageError
from devenv.events import Event, Message
from devenv.lock import project_lock, service_lock
from devenv.schema import Project
from devenv.services import Backend
from devenv.services.docker import DockerBackend
from devenv.services.support import candidates


class _Notices:
    """Shows the lock's "waiting for ..." message (project_lock speaks to a Reporter)."""

    def __init__(self, out: Output) -> None:
        self.out = out

    def emit(self, event: Event) -> None:
        if isinstance(event, Message):
            self.out.warn(event.text)

    def close(self) -> None:
        return None


def _confirm(out: Output, doomed: list[str]) -> bool:
    out.text("devenv down --volumes deletes:")
    for item in doomed:
        out.text(f"  {item}")
    sys.stdout.write("Delete these for good? [y/N] ")
    sys.stdout.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def run(project: Project, out: Output, *, volumes: bool = False, yes: bool = False,
        interactive: bool | None = None,
        confirm: Callable[[Output, list[str]], bool] = _confirm) -> int:
    """Stop everything of the project; with ``volumes`` delete the services' data too."""
    if interactive is None:
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
    # Another checkout (a git worktree with the same name:) may be building in the same
    # container: wait for it before stopping it.
    with project_lock(project.state_dir, "down", _Notices(out)), \
            service_lock(project, None, "down", _Notices(out), external=False):
        pairs: list[tuple[str, Backend]] = []
        for service in project.services.values():
            pairs += [(service.name, b) for b, _why in candidates(service)]
        docker = next((b for _, b in pairs if isinstance(b, DockerBackend)), None)
        if docker is None:
            docker_alone = DockerBackend()
            if docker_alone.available()[0]:
                docker = docker_alone  # for containers of services no longer configured
        if volumes and not yes:
            doomed = [item for name, b in pairs
                      for item in b.data(project, project.services[name])]
            if docker is not None:
                doomed += docker.data_leftovers(project)
            if doomed:
                if not interactive:
                    raise UsageError(
                        "--volumes deletes the services' data (" + ", ".join(doomed)
                        + "); there is no terminal to ask for confirmation: pass --yes")
                if not confirm(out, doomed):
                    out.text("nothing deleted")
                    return EXIT_OK
        done: list[str] = [f"stopped process {name}" for name in processes.stop_all(project)]
        for name, backend in pairs:
            done += backend.down(project, project.services[name], volumes=volumes)
        if docker is not None:
            done += docker.leftovers(project, volumes=volumes)
    for line in done:
        out.text(line)
    if not done:
        out.text("nothing was running" + (" and there was no data to delete" if volumes
                                          else ""))
    return EXIT_OK
