"""``devenv doctor --fix``: the safe repairs, named before they are applied.

Safe means nothing of the user's is lost: services are started (never recreated with new
volumes), missing schemas created, leftovers of a crashed refresh-db dropped (never the
working database or its backup), and steps run, as `up` would run them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from devenv import building, graph
from devenv.doctor.base import REMEDY_ORDER, Check, Remedy
from devenv.doctor.context import Context
from devenv.errors import EXIT_OK, DevenvError, first_line
from devenv.events import Message, Reporter
from devenv.lock import database_lock, project_lock
from devenv.postgres import database, dumpfiles
from devenv.postgres.database import Target
from devenv.schema import Project
from devenv.session import Session
from devenv.workingdb import rebuild


@dataclass(frozen=True)
class Planned:
    remedy: Remedy
    text: str


UpCommand = Callable[[Session], int]
"""``devenv up --no-processes`` for ``project``: the command layer hands it in (a repair
must not import the commands it sits below)."""


@dataclass(frozen=True)
class _Repair:
    describe: Callable[[Project, list[str]], tuple[list[str], str]]
    """(the arguments in the order they run, the line shown before applying)"""
    apply: Callable[[Session, Target | None, Sequence[str], UpCommand], None]
    needs_database: bool = False


def _db_name(project: Project) -> str:
    return project.database.name if project.database else "?"


def _start(session: Session, target: Target | None, args: Sequence[str],
           up: UpCommand) -> None:
    session.start(list(args))


def _recover(session: Session, target: Target | None, args: Sequence[str],
             up: UpCommand) -> None:
    assert target is not None  # needs_database: apply found it and holds its lock
    if not rebuild.recover(target, target.dbname, session.reporter):
        session.reporter.emit(Message("nothing was left to drop"))


def _close_import_role(session: Session, target: Target | None, args: Sequence[str],
                       up: UpCommand) -> None:
    assert target is not None  # needs_database: apply found it and holds its lock
    if not dumpfiles.close_stale_import_role(target):
        raise DevenvError(f"an import is running now and holds role {dumpfiles.IMPORT_ROLE}; "
                          "it closes the role when it ends")


def _create_schemas(session: Session, target: Target | None, args: Sequence[str],
                    up: UpCommand) -> None:
    db = session.project.database
    assert db is not None
    assert target is not None  # needs_database: apply found it and holds its lock
    database.ensure(target, target.dbname, db.schemas)


def _run_steps(session: Session, target: Target | None, args: Sequence[str],
               up: UpCommand) -> None:
    assert target is not None  # needs_database: apply found it and holds its lock
    built = building.build(session, target, targets=list(args), force=True)
    if not built.result.ok:
        raise DevenvError(f"devenv run --force {' '.join(args)} failed (see the step's log)")


def _up(session: Session, target: Target | None, args: Sequence[str],
        up: UpCommand) -> None:
    code = up(session)
    if code != EXIT_OK:
        raise DevenvError(f"devenv up exited with {code}")


REPAIRS: dict[str, _Repair] = {
    "start-services": _Repair(
        lambda p, a: ((n := [s for s in p.services if s in a]),
                      f"start {', '.join(n)} (as devenv up does)"), _start),
    "recover": _Repair(
        lambda p, a: (a, f"drop what an interrupted refresh-db left beside {_db_name(p)}"),
        _recover, needs_database=True),
    "close-import-role": _Repair(
        lambda p, a: (a, f"close role {dumpfiles.IMPORT_ROLE}, which an interrupted import "
                         "left able to log in"),
        _close_import_role, needs_database=True),
    "create-schemas": _Repair(
        lambda p, a: (a, f"create schema {', '.join(a)} in {_db_name(p)}"),
        _create_schemas, needs_database=True),
    "run-steps": _Repair(
        lambda p, a: ((n := graph.topo_order(p, a)), f"devenv run --force {' '.join(n)}"),
        _run_steps, needs_database=True),
    "up": _Repair(lambda p, a: (a, "devenv up --no-processes (runs the steps that changed)"),
                  _up),
}
"""Each remedy a check may ask for: how it is described and applied, in REMEDY_ORDER."""


def plan(ctx: Context, checks: Sequence[Check]) -> list[Planned]:
    """The remedies of the failing checks, merged and in the order they must run."""
    merged: dict[str, list[str]] = {}
    for check in checks:
        if not check.fixable:
            continue
        for r in check.remedies:
            args = merged.setdefault(r.action, [])
            args.extend(a for a in r.args if a not in args)
    project = ctx.project()
    out = []
    for action in REMEDY_ORDER:
        if action in merged:
            args, text = REPAIRS[action].describe(project, merged[action])
            out.append(Planned(Remedy(action, tuple(args)), text))
    return out


def apply(ctx: Context, planned: Sequence[Planned], reporter: Reporter,
          up: UpCommand) -> list[str]:
    """Apply ``planned`` in order; returns the failures (one line each). A failed repair
    does not stop the next ones: the checks run again afterwards and say what is left."""
    project = ctx.project()
    failures = []
    for item in planned:
        r = item.remedy
        repair = REPAIRS[r.action]
        reporter.emit(Message(f"fixing: {item.text}"))
        # a session per repair: the one before may have started the database
        session = Session(project, reporter, ctx.profile, ctx.database_url)
        try:
            if repair.needs_database:
                target, note = session.current_target()
                if target is None or project.database is None:
                    raise DevenvError(f"no database to repair: {note}")
                with project_lock(project.state_dir, "doctor --fix", reporter, wait=False), \
                        database_lock(target, project.root, "doctor --fix", reporter,
                                      wait=False):
                    repair.apply(session, target, r.args, up)
            else:
                repair.apply(session, None, r.args, up)
        except Exception as exc:  # a repair that fails must not stop the next ones
            text = first_line(exc)
            failures.append(f"{item.text}: {text}")
            reporter.emit(Message(f"could not {item.text}: {text}", "error"))
    return failures
