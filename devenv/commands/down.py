"""``devenv down [--volumes] [--yes]``: stop the processes and the services.

Without ``--volumes`` nothing is deleted: containers are stopped (``up`` starts them again
in a second or so) and native servers shut down. ``--volumes`` also deletes the services'
data (containers, volumes, native data folders) once confirmed: on a terminal it asks,
elsewhere it needs ``--yes``.

Both do so for every backend that holds something of a service, not only the one its
``backend:`` names now: a service switched from docker to native leaves its container and
volume behind (:func:`other_backends`; ``devenv status`` lists them).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from devenv import processes
from devenv.console import Output
from devenv.errors import EXIT_OK, UsageError
from devenv.events import Event, Message
from devenv.lock import project_lock
from devenv.postgres import siblings
from devenv.schema import Project, ServiceSpec
from devenv.services import BACKENDS, Backend, launch
from devenv.services.docker import DockerBackend
from devenv.session import Session
from devenv.workingdb import branches


class _Notices:
    """Shows the lock's "waiting for ..." message (project_lock speaks to a Reporter)."""

    def __init__(self, out: Output) -> None:
        self.out = out

    def emit(self, event: Event) -> None:
        if isinstance(event, Message):
            self.out.warn(event.text)

    def close(self) -> None:
        return None


def other_backends(project: Project, service: ServiceSpec, current: set[str],
                   ) -> list[tuple[Backend, list[str]]]:
    """Backends other than ``current`` (names) that hold data of ``service`` here: what an
    earlier ``backend:`` left (a container and volume after a switch to native, a data
    folder after a switch to docker), each with what it holds."""
    out: list[tuple[Backend, list[str]]] = []
    for name, make in BACKENDS.items():
        if name in current:
            continue
        backend = make()
        if not backend.available()[0]:
            continue
        try:
            held = backend.data(project, service)
        except Exception:  # a backend that cannot look now: its leftovers wait for later
            continue
        if held:
            out.append((backend, held))
    return out


def leftover_note(backend: Backend, service: ServiceSpec) -> str:
    """Why a leftover is there, for the lines naming it."""
    now = service.backend if service.backend != "auto" else "another backend"
    return f"left by the {backend.name} backend; {service.name} now uses {now}"


def _confirm(out: Output, doomed: list[str]) -> bool:
    out.text("devenv down --volumes deletes:")
    for item in doomed:
        out.text(f"  {item}")
    sys.stdout.write("Delete these for good? [y/N] ")
    sys.stdout.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def _inside_data(session: Session) -> list[str]:
    """What the database service's data holds besides the working database that a user
    may not think of: the databases parked per git branch (rows made by hand on each),
    the snapshots saved by name, and the backup refresh-db keeps. Nothing for someone
    else's server: down never deletes its data."""
    project = session.project
    if project.database is None or session.external is not None:
        return []
    try:
        target, _note = session.current_target()
        if target is None:
            return []
        parked = branches.parked(target, project.name)
        beside = siblings.related(target, target.dbname)
    except Exception:  # a server that is down holds them all the same; nothing to name
        return []
    out = []
    if parked:
        out.append(f"the parked databases of branch{'es' if len(parked) > 1 else ''} "
                   + ", ".join(p.branch for p in parked) + " (inside that data)")
    saved = sorted(str(d.meta.get("name") or d.datname) for d in beside if d.kind == "user")
    if saved:
        out.append(f"the snapshot{'s' if len(saved) > 1 else ''} saved by name "
                   + ", ".join(saved) + " (inside that data; devenv snapshot export "
                   "keeps one as a file)")
    prev = siblings.prev_name(target.dbname)
    if any(d.datname == prev for d in beside):
        out.append(f"the backup {prev} (inside that data)")
    return out


def run(session: Session, out: Output, *, volumes: bool = False, yes: bool = False,
        interactive: bool | None = None,
        confirm: Callable[[Output, list[str]], bool] = _confirm) -> int:
    """Stop everything of the project; with ``volumes`` delete the services' data too."""
    project = session.project
    if interactive is None:
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
    # Another checkout (a git worktree with the same name:) may be building in the same
    # container: wait for it before stopping it.
    with project_lock(project.state_dir, "down", _Notices(out)), \
            session.with_reporter(_Notices(out)).service_lock("down", external=False):
        pairs: list[tuple[str, Backend]] = []
        # (service, backend, what it holds): data of a backend the service no longer uses
        others: list[tuple[str, Backend, list[str]]] = []
        for service in project.services.values():
            mine = [(service.name, b) for b, _why in launch.candidates(service)]
            pairs += mine
            if service.backend in ("docker", "native"):
                others += [(service.name, b, held) for b, held in other_backends(
                    project, service, {b.name for _, b in mine} | {service.backend})]
        docker = next((b for _, b in pairs if isinstance(b, DockerBackend)), None)
        if docker is None:
            docker_alone = DockerBackend()
            if docker_alone.available()[0]:
                docker = docker_alone  # for containers of services no longer configured
        inside = _inside_data(session) if volumes else []
        if volumes and not yes:
            doomed = [item for name, b in pairs
                      for item in b.data(project, project.services[name])]
            doomed += [f"{item} ({leftover_note(b, project.services[name])})"
                       for name, b, held in others for item in held]
            if docker is not None:
                doomed += docker.data_leftovers(project)
            if doomed:
                doomed += inside
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
        for name, backend, _held in others:
            service = project.services[name]
            done += [f"{line} ({leftover_note(backend, service)})"
                     for line in backend.down(project, service, volumes=volumes)]
        if docker is not None:
            done += docker.leftovers(project, volumes=volumes)
        if done:
            done += [f"deleted with the data: {what}" for what in inside]
    for line in done:
        out.text(line)
    if not done:
        out.text("nothing was running" + (" and there was no data to delete" if volumes
                                          else ""))
    return EXIT_OK
