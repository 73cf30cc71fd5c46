"""``devenv plan``: what would run, what would be skipped, and why."""

from __future__ import annotations

from collections.abc import Sequence

from devenv import fingerprint, planner
from devenv.console import Output
from devenv.errors import EXIT_OK
from devenv.events import Action, Decision
from devenv.postgres import database
from devenv.schema import Project
from devenv.session import Session
from devenv.state import NO_DATABASE, StateStore
from devenv.workingdb import rebuild, rerun, working


def run(session: Session, out: Output, targets: Sequence[str] = (), *, only: bool = False,
        force: bool = False, as_json: bool = False, refresh: bool = False) -> int:
    project, profile = session.project, session.profile
    planner.check_profile(project, profile)
    planner.check_targets(project, targets)
    target, note = session.current_target()
    if refresh:
        return _refresh(project, out, target, note, profile, as_json)
    key: str | None = NO_DATABASE if project.database is None else None
    if target is not None:
        try:
            key = database.identity(target, target.dbname)
            if key is None:
                note = f"database {target.dbname} does not exist yet"
        except database.DatabaseError as exc:
            note = str(exc)
    recorded = StateStore(project.state_dir).steps(key) if key else {}
    fps = fingerprint.compute(project)
    decisions = planner.decide(project, recorded, targets=targets, only=only, force=force,
                               profile=profile, fingerprints=fps)
    n_run = sum(1 for d in decisions if d.action is Action.RUN)
    # What up does about them on a database that has records (users ask "why did this
    # run?" and "why did up rebuild?"): a data step is never run on top of its data.
    verdict = rerun.Verdict()
    if target is not None and key not in (None, NO_DATABASE) and recorded:
        verdict = working.check(project, target, profile, fps)
    up_does = {**{n: "rebuild" for n in verdict.rebuild}, **{n: "carry" for n in verdict.carried}}
    decisions = [Decision(d.step, d.action, d.reason + _UP_NOTE[up_does[d.step]], d.fingerprint)
                 if d.action is Action.RUN and d.step in up_does else d for d in decisions]
    if as_json:
        out.json({
            "project": project.name,
            "profile": profile,
            "database": target.redacted() if target else None,
            "database_note": note if key is None else None,
            "steps": [{"name": d.step, "action": d.action.value, "reason": d.reason,
                       "fingerprint": d.fingerprint,
                       "up": up_does.get(d.step, "run" if d.action is Action.RUN else "skip")}
                      for d in decisions],
            "would_run": n_run,
        })
        return EXIT_OK
    if key is None and project.database is not None:
        out.text(f"note: {note}: every step would run")
    rows = [[d.step, d.action.value, d.reason] for d in decisions]
    styles = ["bold" if d.action is Action.RUN else "dim" for d in decisions]
    out.table(["step", "action", "reason"], rows, styles)
    rebuilt = sum(1 for d in decisions if up_does.get(d.step) == "rebuild")
    out.text(f"{n_run} of {len(decisions)} steps would run (profile {profile})"
             + (f"; up would build {rebuilt} of them (up: beside) in a new database beside "
                f"{target.dbname} and swap it in, never on top of their data (the current "
                "database kept as its __prev)" if rebuilt and target is not None else ""))
    return EXIT_OK


# short: the summary line says what "beside" means
_UP_NOTE = {"rebuild": " (up: beside)",
            "carry": " (up: carried, its data stays: only incremental steps upstream changed)"}


def _refresh(project: Project, out: Output, target: database.Target | None, note: str,
             profile: str, as_json: bool) -> int:
    """What refresh-db would do: which snapshot it starts from and which steps run."""
    if target is None:
        source, decisions = rebuild.Source("empty"), planner.decide(
            project, {}, profile=profile)
        note = f"{note}: no snapshot can be checked, every step would run"
    else:
        try:
            source, decisions = rebuild.plan_refresh(project, target, profile)
        except database.DatabaseError as exc:
            source, decisions = rebuild.Source("empty"), planner.decide(
                project, {}, profile=profile)
            note = f"{exc}: every step would run"
        else:
            note = ""
    unused: list[tuple[str, str]] = []
    point: list[str] = []
    if target is not None and not note:
        fps = fingerprint.compute(project)
        steps = [d.step for d in decisions if project.steps[d.step].in_profile(profile)]
        unused = rebuild.unused_snapshots(project, target, fps, steps, source.datname)
        if source.kind != "ready":
            point = rebuild.dynamic_point(project, target, StateStore(project.state_dir),
                                            fps, steps, source.held)
    start = {"ready": f"the ready copy {source.datname} (a rename)",
             "snapshot": f"snapshot {source.datname}",
             "empty": "an empty database"}[source.kind]
    n_run = sum(1 for d in decisions if d.action is Action.RUN)
    if as_json:
        out.json({"project": project.name, "profile": profile, "refresh": True,
                  "start_from": {"kind": source.kind, "database": source.datname or None,
                                 "steps": list(source.held)},
                  "steps": [{"name": d.step, "action": d.action.value, "reason": d.reason,
                             "fingerprint": d.fingerprint} for d in decisions],
                  "would_run": n_run, "note": note or None,
                  "other_snapshots": [{"database": n, "not_used_because": w}
                                      for n, w in unused],
                  "new_snapshot_of": point})
        return EXIT_OK
    if note:
        out.text(f"note: {note}")
    out.text(f"refresh-db would start from {start}")
    for name, why in unused:
        out.text(f"  not {name}: {why}")
    if point:
        out.text(f"it would run the {len(point)} steps the change does not touch first and "
                 "keep a snapshot of them, so the next refresh starts there")
    out.table(["step", "action", "reason"], [[d.step, d.action.value, d.reason] for d in decisions],
              ["bold" if d.action is Action.RUN else "dim" for d in decisions])
    out.text(f"{n_run} of {len(decisions)} steps would run (profile {profile})")
    return EXIT_OK
