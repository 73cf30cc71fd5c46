"""Branch-aware databases and phantom migrations: which branch the working database was
built for, the databases parked for other branches, and migrations the database applied
that the checked-out code does not have (see :mod:`devenv.workingdb.branches`, :mod:`devenv.postgres.phantoms`)."""

from __future__ import annotations

import time

from devenv.doctor.base import Check, CheckDef, NotChecked, Remedy, fail, ok, warn
from devenv.doctor.context import Context
from devenv.events import fmt_size
from devenv.postgres import phantoms
from devenv.workingdb import branches


def _require_server(ctx: Context) -> None:
    if ctx.target().target is None:
        raise NotChecked(ctx.target().note, "services.running")
    if ctx.server().error:
        raise NotChecked("the server does not answer", "db.connect")


def check_branches(ctx: Context) -> Check:
    """Which branch the working database is for, and the parked ones."""
    project = ctx.project()
    target = ctx.target().target if project.database is not None else None
    if project.database is None:
        return ok("branches.parked", "no database: nothing to park")
    _require_server(ctx)
    assert target is not None
    checked_out = branches.current(project.root)
    if checked_out is None:
        return ok("branches.parked", "not on a git branch (no checkout, or a detached HEAD): "
                                     "the database does not follow branches")
    built_for = branches.recorded(target)
    parked = branches.parked(target, project.name, sizes=True)
    details = [f"{p.branch}: {p.datname}, {fmt_size(p.size)}, parked "
               f"{(time.time() - p.parked_at) / 3600:.1f} h ago" for p in parked]
    summary = (f"{len(parked)} parked branch database{'s' if len(parked) != 1 else ''} "
               f"({fmt_size(sum(p.size for p in parked))})" if parked else "none parked")
    if built_for is not None and built_for != checked_out:
        return warn("branches.parked",
                    f"{target.dbname} was built for branch {built_for!r}, but {checked_out!r} "
                    f"is checked out; {summary}",
                    "devenv up (parks it and swaps in the branch's own database, or builds "
                    "it)", details, remedies=[Remedy("up")])
    return ok("branches.parked", f"{target.dbname} is the database of branch {checked_out!r}; {summary}",
              details)


def check_phantoms(ctx: Context) -> Check:
    """No migration applied in the database that the checked-out code lacks."""
    project = ctx.project()
    if project.database is None:
        return ok("migrations.phantoms", "no database")
    _require_server(ctx)
    target = ctx.target().target
    assert target is not None
    found = phantoms.find(project, target)
    if not found:
        return ok("migrations.phantoms", "every migration the database applied is in the "
                                         "checked-out code")
    lines = [f"{step}: {', '.join(names)}" for step, names in found.items()]
    return fail("migrations.phantoms",
                f"{target.dbname} applied migrations the checked-out code does not have "
                f"(after a branch switch or a revert): {'; '.join(lines)}",
                "devenv up (builds the database for this code beside it and swaps it in; the "
                "old one is kept as __prev)", lines, remedies=[Remedy("up")])


CHECKS = [
    CheckDef("branches.parked", "Database", check_branches),
    CheckDef("migrations.phantoms", "Database", check_phantoms),
]
