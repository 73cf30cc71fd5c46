"""Keeping the working database matched to the checked-out code, without duplicating or
stranding data: what ``up`` does before it runs steps (see :mod:`devenv.workingdb.rerun`).

When the steps ``up`` would run can all run on top (migrations, steps that never ran
here, data steps whose only change is an upstream migration), they do, as always. When one
cannot (a data step that changed, a phantom migration), ``up`` builds the new state beside
the working database from the deepest usable snapshot and swaps it in, keeping the old one
as ``__prev`` and saying where it went; or, with ``up: {rebuild: stop}``, stops and names
the command that does that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from devenv import fingerprint, planner
from devenv.errors import DevenvError, RebuildNeeded
from devenv.events import Message
from devenv.postgres import database, phantoms, siblings
from devenv.postgres.database import Target
from devenv.schema import Project
from devenv.session import Session
from devenv.state import StateStore
from devenv.workingdb import branches, rebuild, rerun
from devenv.workingdb.rebuild import RefreshResult


@dataclass
class Reconciled:
    """What ``up`` found on the working database and did about it."""

    carried: dict[str, str] = field(default_factory=dict)
    rebuilt: RefreshResult | None = None
    switched: bool = False  # a branch switch swapped another database in
    #: the steps' fingerprints, computed for the check: the build that follows reuses
    #: them (reading every input again costs tens of ms on each `up`); None after a
    #: rebuild ran steps, which may have written files that are inputs
    fingerprints: dict[str, fingerprint.Fingerprint] | None = None

    @property
    def swapped(self) -> bool:
        """Whether another database is the working one now (processes must follow)."""
        return self.switched or (self.rebuilt is not None and self.rebuilt.swapped)


def check(project: Project, target: Target, profile: str,
          fps: dict[str, fingerprint.Fingerprint]) -> rerun.Verdict:
    """Classify what ``up`` would run on the working database (no changes made)."""
    key = database.identity(target, target.dbname)
    if key is None:
        return rerun.Verdict()
    recorded = StateStore(project.state_dir).steps(key)
    decisions = planner.decide(project, recorded, profile=profile, fingerprints=fps)
    verdict = rerun.classify(project, recorded, decisions, fps)
    steps = [n for n in project.steps if project.steps[n].in_profile(profile)]
    # What the database itself says it applied (also migrations run by hand, outside
    # devenv's records).
    for name, gone in phantoms.find(project, target, steps=steps).items():
        if name in verdict.rebuild:
            continue
        verdict.rebuild[name] = rerun.phantom_reason(gone)
    return verdict


def reconcile(session: Session, target: Target, *, jobs: int | None,
              mode: str | None = None) -> Reconciled:
    """Make sure ``up`` never runs a step on top of data it would duplicate (see module).

    ``mode``: "rebuild" or "stop" (default: the project's ``up.rebuild``)."""
    project, reporter, profile = session.project, session.reporter, session.profile

    def build_for_branch(park_as: str) -> str:
        res = rebuild.refresh(session, target, jobs=jobs, park_as=park_as)
        if not res.swapped:
            raise DevenvError(f"the checked-out branch's database could not be built (see "
                              f"the step above); {target.dbname} is unchanged")
        return res.source

    switched = branches.follow(project.name, project.root, target, reporter, build_for_branch)
    fps = fingerprint.compute(project)
    verdict = check(project, target, profile, fps)
    out = Reconciled(carried=dict(verdict.carried), switched=switched, fingerprints=fps)
    if not verdict.rebuild:
        return out
    db = target.dbname
    lines = [f"  {name}: {why}" for name, why in verdict.rebuild.items()]
    if (mode or project.up_rebuild) == "stop":
        raise RebuildNeeded(
            f"{len(lines)} step(s) cannot run again on {db} without duplicating or "
            "contradicting what is there:\n" + "\n".join(lines) + "\nrun `devenv refresh-db` "
            "to build the new state beside it and swap it in (the current database is kept "
            f"as {siblings.prev_name(db)}), or `devenv up --rebuild`")
    reporter.emit(Message(f"not running on top of {db}: " + "; ".join(
        f"{n} ({why})" for n, why in verdict.rebuild.items())
        + "; building the new state beside it instead", "warn"))
    res = rebuild.refresh(session, target, jobs=jobs)
    out.rebuilt = res
    out.carried = {}
    out.fingerprints = None
    if res.swapped:
        where = res.backup or "nowhere (--no-backup)"
        reporter.emit(Message(
            f"{db} now matches the code (built from {res.source}); the previous database, "
            f"with any rows you made by hand, is kept as {where} (`devenv refresh-db "
            "--undo` swaps it back)", "ok"))
    return out
