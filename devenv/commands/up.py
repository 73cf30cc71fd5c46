"""``devenv up``: services, database, changed steps, then the app processes."""

from __future__ import annotations

import contextlib

from devenv import building, planner, processes
from devenv.commands import exit_code
from devenv.console import ProcessLines
from devenv.errors import EXIT_OK
from devenv.events import Message
from devenv.lock import database_lock, project_lock
from devenv.postgres import database
from devenv.session import Session
from devenv.workingdb import branches, oci, working


def run(session: Session, *, detach: bool = False, jobs: int | None = None,
        no_processes: bool = False, plain: bool = False, rebuild: str | None = None) -> int:
    """Bring the environment up; returns the exit code.

    Without ``detach`` this blocks while the processes run and returns 130 after Ctrl-C
    (or SIGTERM), 1 when a process exits on its own; services keep running either way.
    """
    project, reporter, profile = session.project, session.reporter, session.profile
    planner.check_profile(project, profile)
    names = [] if no_processes else processes.selected(project, profile)
    if names:
        # Fail before anything starts: processes in the way, or an undefined ${X} in a
        # process (checked against stand-in database settings; the real ones come later).
        processes.refuse_running(project, detached=detach)
        processes.prepare(project, names, database.Target("localhost", 5432, "user", "pw",
                                                          "db"), stand_in=True)
    wanted = set(session.needed_services())
    wanted.update(n for p in names for n in project.processes[p].needs
                  if n in project.services)
    with contextlib.ExitStack() as held:
        # The lock keeps refresh-db (or another up) off the database while steps run and
        # processes start; a foreground up lets go once its processes are ready.
        held.enter_context(project_lock(project.state_dir, "up", reporter))
        held.enter_context(session.service_lock("up"))
        endpoints = session.start([s for s in project.services if s in wanted])
        target = session.target(endpoints)

        carried: dict[str, str] = {}
        fps = None
        if target is not None and project.database is not None:
            # Another checkout of the project (a git worktree) shares this server's
            # databases: a pull into a new database, a branch switch or a rebuild swaps
            # them (re-entrant: the steps below take it again).
            held.enter_context(database_lock(target, project.root, "up", reporter))
            oci.restore_fresh(session, target)
            done = working.reconcile(session, target, jobs=jobs, mode=rebuild)
            carried, fps = done.carried, done.fingerprints
            if (done.rebuilt is not None and done.rebuilt.result is not None
                    and not done.rebuilt.result.ok):
                return exit_code(done.rebuilt.result)
            if done.swapped:
                processes.follow_swap(session, target)
        built = building.build(session, target, jobs=jobs, carried=carried, fingerprints=fps)
        if target is not None and project.database is not None and built.result.ok:
            branches.note(project.name, project.root, target)
        code = exit_code(built.result)
        if code != EXIT_OK:
            if names and not built.result.interrupted:
                reporter.emit(Message("a step failed: not starting the processes", "error"))
            return code
        if not names:
            if project.processes and not no_processes:
                reporter.emit(Message(f"no process runs in profile {profile}"))
            return EXIT_OK
        # before the live view stops: a build shows its progress like a service's
        processes.build_images(project, names, reporter)
        prepared = processes.prepare(project, names, target)
        # From here on the processes' lines are printed as they come: stop the live view.
        reporter.close()
        out = ProcessLines(names, plain=plain)
        if detach:
            return processes.run_detached(project, prepared, out)
        return processes.run_foreground(project, prepared, out, on_ready=held.close)
