"""``devenv doctor --fix``: the safe repairs, named before they are applied.

Safe means nothing of the user's is lost: services are started (never recreated with new
volumes), missing schemas created, leftovers of a crashed refresh-db dropped (never the
working database or its backup), and steps run, as `up` would run them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from devenv import building, graph
from devenv.doctor.base import REMEDY_ORDER, Check, Remedy
from devenv.doctor.context import Context
from devenv.errors import EXIT_OK, DevenvError
from devenv.events import Message, Reporter
from devenv.postgres import database
from devenv.services import launch


@dataclass(frozen=True)
class Planned:
    remedy: Remedy
    text: str


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
        if action not in merged:
            continue
        args = merged[action]
        if action == "start-services":
            args = [s for s in project.services if s in args]
            text = f"start {', '.join(args)} (as devenv up does)"
        elif action == "recover":
            db = project.database.name if project.database else "?"
            text = f"drop what an interrupted refresh-db left beside {db}"
        elif action == "create-schemas":
            db = project.database.name if project.database else "?"
            text = f"create schema {', '.join(args)} in {db}"
        elif action == "run-steps":
            args = graph.topo_order(project, args)
            text = f"devenv run --force {' '.join(args)}"
        else:
            text = "devenv up --no-processes (runs the steps that changed)"
        out.append(Planned(Remedy(action, tuple(args)), text))
    return out


def apply(ctx: Context, planned: Sequence[Planned], reporter: Reporter) -> list[str]:
    """Apply ``planned`` in order; returns the failures (one line each). A failed repair
    does not stop the next ones: the checks run again afterwards and say what is left."""
    from devenv.lock import database_lock, project_lock

    project = ctx.project()
    failures = []
    for item in planned:
        r = item.remedy
        reporter.emit(Message(f"fixing: {item.text}"))
        try:
            if r.action == "start-services":
                launch.start_services(project, list(r.args), reporter, ctx.database_url)
            elif r.action in ("recover", "create-schemas", "run-steps"):
                target, note = launch.current_target(project, ctx.database_url)
                if target is None or project.database is None:
                    raise DevenvError(f"no database to repair: {note}")
                with project_lock(project.state_dir, "doctor --fix", reporter, wait=False), \
                        database_lock(target, project.root, "doctor --fix", reporter,
                                      wait=False):
                    if r.action == "recover":
                        from devenv.postgres import rebuild

                        done = rebuild.recover(target, target.dbname, reporter)
                        if not done:
                            reporter.emit(Message("nothing was left to drop"))
                    elif r.action == "create-schemas":
                        database.ensure(target, target.dbname, project.database.schemas)
                    else:
                        from devenv.commands import exit_code

                        built = building.build(project, reporter, target,
                                                  targets=list(r.args), force=True,
                                                  profile=ctx.profile)
                        if exit_code(built.result) != EXIT_OK:
                            raise DevenvError(f"{item.text} failed (see the step's log)")
            elif r.action == "up":
                from devenv.commands import up

                code = up.run(project, reporter, profile=ctx.profile,
                              database_url=ctx.database_url, no_processes=True)
                if code != EXIT_OK:
                    raise DevenvError(f"devenv up exited with {code}")
        except Exception as exc:  # a repair that fails must not stop the next ones
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else \
                type(exc).__name__
            failures.append(f"{item.text}: {text}")
            reporter.emit(Message(f"could not {item.text}: {text}", "error"))
    return failures
