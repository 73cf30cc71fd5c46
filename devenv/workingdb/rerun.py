"""How a step may run again on a database it already ran on (``up``'s daily loop).

Migration kinds are *incremental*: run again, they apply only what is new. Data steps are
not: a fake-data command or a fixture loader run again on the working database adds its
rows a second time. So before ``up`` runs anything on a database that has records, each
step it would run is classified:

* incremental and its code still has every migration the database has applied: it runs
  on top, as always;
* incremental, but a migration file it ran here is gone (a branch switch, a revert): the
  database holds a *phantom* migration no command can apply or undo from this code, so the
  database must be built anew;
* not incremental and its own definition or inputs changed: built anew (never on top);
* not incremental and only its upstream changed, through incremental steps alone (a new
  migration): its data is still what it made, and the migration carries it along; it is
  *carried*: not run again, its record updated once the migrations ran.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from devenv import fingerprint, graph
from devenv.events import Action, Decision
from devenv.kinds import KINDS
from devenv.schema import Project, StepSpec

# Removed inputs of an incremental step that are migrations (Django's migrations/ package,
# Alembic's versions/): a database that applied them holds a phantom migration.
_MIGRATION_FILE = re.compile(r"(^|/)(migrations|versions)/(?!__init__\.py$)[^/]+$")


def incremental(step: StepSpec) -> bool:
    """Whether running ``step`` again on its own database applies only what is new."""
    if step.rerun is not None:
        return step.rerun == "incremental"
    return KINDS[step.kind].incremental


def database_held(project: Project, records: Mapping[str, Any]) -> dict[str, Any]:
    """``records`` without the steps whose work is outside the database: a snapshot, a
    dump or a pulled artifact holds the database only, so those steps must run again
    wherever one is restored (an empty stand-in otherwise passes for a loaded one)."""
    return {s: r for s, r in records.items()
            if s not in project.steps or not project.steps[s].outside_database}


def outside(project: Project, steps: Sequence[str]) -> list[str]:
    """Those of ``steps`` whose work is outside the database (``outside_database``)."""
    return [n for n in steps if n in project.steps and project.steps[n].outside_database]


@dataclass
class Verdict:
    """What ``up`` may do on the working database: step -> why, for each class."""

    rebuild: dict[str, str] = field(default_factory=dict)
    carried: dict[str, str] = field(default_factory=dict)


def phantom_inputs(record: Mapping[str, Any], fp: fingerprint.Fingerprint) -> list[str]:
    """Migration files the step ran on this database that the checked-out code lacks."""
    old = record.get("inputs", {})
    if not isinstance(old, Mapping):
        return []
    return sorted(p for p in old if p not in fp.inputs and _MIGRATION_FILE.search(p))


def phantom_reason(gone: Sequence[str]) -> str:
    """Why a database with phantom migrations is not run on (the message ``up`` shows)."""
    more = f" and {len(gone) - 1} more" if len(gone) > 1 else ""
    return (f"this database applied {gone[0]}{more}, which the checked-out code does not "
            "have (a phantom migration)")


# The kinds whose tool records applied migrations by name (a `run:` migration command with
# `rerun: incremental` may re-apply an edited file itself).
_BY_NAME = ("django-migrate", "alembic")


def edited_migrations(step: StepSpec, record: Mapping[str, Any],
                      fp: fingerprint.Fingerprint) -> list[str]:
    """Migration files this database applied that have been edited since."""
    old = record.get("inputs", {})
    if step.kind not in _BY_NAME or not isinstance(old, Mapping):
        return []
    return sorted(p for p, h in old.items()
                  if p in fp.inputs and fp.inputs[p] != h and _MIGRATION_FILE.search(p)
                  and not p.endswith("__init__.py"))


def classify(project: Project, recorded: Mapping[str, Mapping[str, Any]],
             decisions: Sequence[Decision],
             fps: Mapping[str, fingerprint.Fingerprint]) -> Verdict:
    """Classify the steps ``decisions`` would run on a database with ``recorded``."""
    verdict = Verdict()
    to_run = {d.step for d in decisions if d.action is Action.RUN}
    for name in graph.topo_order(project):
        if name not in to_run:
            continue
        rec = recorded.get(name)
        if rec is None:
            continue  # never ran here: nothing of it to duplicate
        step, fp = project.steps[name], fps[name]
        if step.outside_database:
            continue  # the database holds none of its work: rebuilding it would not help
        if rec.get("failed"):
            if not incremental(step):
                # a data step that failed part-way may have committed some of its rows
                verdict.rebuild[name] = ("its last run here failed part-way; running it "
                                         "again here could add its rows a second time")
            continue
        if incremental(step):
            gone = phantom_inputs(rec, fp)
            if gone:
                verdict.rebuild[name] = phantom_reason(gone)
                continue
            edited = edited_migrations(step, rec, fp)
            if edited:
                # Django and Alembic skip an applied migration by name: its new text
                # would never reach this database.
                more = f" and {len(edited) - 1} more" if len(edited) > 1 else ""
                verdict.rebuild[name] = (f"this database applied {edited[0]}{more} before "
                                         "it was edited; migrate would not apply it again")
            continue
        own_changed = (dict(rec.get("definition", {})) != dict(fp.definition)
                       or dict(rec.get("inputs", {})) != dict(fp.inputs))
        if own_changed:
            why = fingerprint.explain_change(rec, fp)
            verdict.rebuild[name] = (f"{why}; it is not incremental, so running it again here "
                                     "would add its data a second time")
            continue
        old_up = rec.get("upstream", {})
        changed_up = [u for u in fp.upstream if old_up.get(u) != fp.upstream[u]]
        carriers = [u for u in changed_up if u in verdict.carried
                    or (u in to_run and u not in verdict.rebuild
                        and incremental(project.steps[u]))]
        if changed_up and len(carriers) == len(changed_up):
            verdict.carried[name] = (f"only its upstream changed ({', '.join(changed_up)}), "
                                     "applied in place; its data stays as it made it")
        else:
            verdict.rebuild[name] = (fingerprint.explain_change(rec, fp) + "; it is not "
                                     "incremental, so running it again here would add its "
                                     "data a second time")
    return verdict
