"""``devenv branches``: the databases parked per git branch, and the optional git hook."""

from __future__ import annotations

import time

from devenv.commands.snapshot import fmt_age
from devenv.console import Output
from devenv.errors import EXIT_OK, DevenvError
from devenv.events import Message, Reporter, fmt_size
from devenv.lock import database_lock, project_lock
from devenv.postgres.database import Target
from devenv.schema import Project
from devenv.session import Session
from devenv.workingdb import branches


def _target(session: Session) -> Target:
    if session.project.database is None:
        raise DevenvError("branches need a database: add a 'database:' section to steps.yaml")
    target, note = session.current_target()
    if target is None:
        raise DevenvError(f"cannot list the branch databases: {note}; start it with "
                          "`devenv up`")
    return target


def list_branches(session: Session, out: Output, *, as_json: bool = False,
                  wait: bool = True) -> int:
    project = session.project
    with project_lock(project.state_dir, "branches", session.reporter, wait=wait):
        target = _target(session)
        items = branches.parked(target, project.name, sizes=True)
        working_branch = branches.recorded(target)
    checked_out = branches.current(project.root)
    now = time.time()
    if as_json:
        out.json({"project": project.name, "database": target.dbname,
                  "checked_out": checked_out, "working_database_branch": working_branch,
                  "parked": [{"branch": p.branch, "database": p.datname, "size": p.size,
                              "parked_at": p.parked_at, "created_at": p.created or None,
                              "age_seconds": round(now - p.parked_at, 1)} for p in items]})
        return EXIT_OK
    out.text(f"{target.dbname} (working): branch {working_branch or '(not recorded yet)'}; "
             f"checked out: {checked_out or '(no branch: not a git checkout, or detached)'}")
    if not items:
        out.text("no parked branch databases (devenv up parks one when you switch branches)")
        return EXIT_OK
    out.table(["branch", "database", "size", "built", "last used"],
              [[p.branch, p.datname, fmt_size(p.size),
                f"{fmt_age(now - p.created)} ago" if p.created else "-",
                f"{fmt_age(now - p.parked_at)} ago"] for p in items], None)
    return EXIT_OK


def drop(session: Session, branch: str, *, wait: bool = True) -> int:
    project, reporter = session.project, session.reporter
    with project_lock(project.state_dir, "branches drop", reporter, wait=wait):
        target = _target(session)
        # another worktree's up may be renaming these databases now
        with database_lock(target, project.root, "branches drop", reporter, wait=wait):
            name = branches.drop(target, project.name, branch)
    reporter.emit(Message(f"dropped {name}, the parked database of branch {branch!r}", "ok"))
    return EXIT_OK


def prune(session: Session, keep: int, *, wait: bool = True) -> int:
    project, reporter = session.project, session.reporter
    with project_lock(project.state_dir, "branches prune", reporter, wait=wait):
        target = _target(session)
        with database_lock(target, project.root, "branches prune", reporter, wait=wait):
            gone = branches.prune(target, project.name, keep)
    for p in gone:
        reporter.emit(Message(f"dropped {p.datname} (branch {p.branch!r}, last used "
                              f"{fmt_age(time.time() - p.parked_at)} ago)", "ok"))
    if not gone:
        reporter.emit(Message(f"nothing to prune: at most {keep} parked databases"))
    return EXIT_OK


def hook(project: Project, reporter: Reporter, action: str) -> int:
    if action == "install":
        path = branches.install_hook(project.root)
        reporter.emit(Message(f"installed {path}: `git switch` now brings the branch's "
                              "database in (devenv up --no-processes)", "ok"))
    elif action == "uninstall":
        gone = branches.uninstall_hook(project.root)
        reporter.emit(Message(f"removed {gone}" if gone else "no devenv hook was installed",
                              "ok"))
    else:
        raise DevenvError(f"unknown hook action {action!r}: install or uninstall")
    return EXIT_OK
