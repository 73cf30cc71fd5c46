"""``devenv refresh-db``: a fresh database, built beside the working one, swapped in on success."""

from __future__ import annotations

import time

from devenv import planner, processes
from devenv.commands import exit_code
from devenv.errors import EXIT_OK, UsageError
from devenv.events import Message
from devenv.lock import database_lock, project_lock
from devenv.session import Session
from devenv.workingdb import rebuild


def run(session: Session, *, jobs: int | None = None, keep_failed: bool = False,
        no_backup: bool = False, no_cache: bool = False, undo: bool = False,
        wait: bool = True) -> int:
    project, reporter, profile = session.project, session.reporter, session.profile
    planner.check_profile(project, profile)
    if project.database is None:
        raise UsageError("refresh-db needs a database: add a 'database:' section to steps.yaml")
    with project_lock(project.state_dir, "refresh-db", reporter, wait=wait), \
            session.service_lock("refresh-db", wait=wait):
        endpoints = session.start(session.needed_services())
        target = session.target(endpoints)
        assert target is not None
        # Another checkout of the project (a git worktree) shares this server's databases.
        with database_lock(target, project.root, "refresh-db", reporter, wait=wait):
            if undo:
                rebuild.undo(session, target)
                processes.follow_swap(session, target)
                return EXIT_OK
            t0 = time.monotonic()
            res = rebuild.refresh(session, target, jobs=jobs, keep_failed=keep_failed,
                                  backup=not no_backup, use_cache=not no_cache)
        if res.result is not None and not res.result.ok:
            return exit_code(res.result)
        if res.swapped:
            processes.follow_swap(session, target)
        if res.source != "ready clone":
            n = len(res.steps_run)
            reporter.emit(Message(f"{target.dbname} is fresh: {n} step{'s' if n != 1 else ''} "
                                  f"ran, starting from {res.source}, in "
                                  f"{time.monotonic() - t0:.1f}s", "ok"))
        if res.backup:
            reporter.emit(Message(f"the previous database is kept as {res.backup} "
                                  "(devenv refresh-db --undo swaps it back)"))
        return EXIT_OK
