"""Deciding which steps run and which are skipped, with a reason for each."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from devenv import fingerprint, graph
from devenv.errors import UsageError, did_you_mean
from devenv.events import Action, Decision
from devenv.schema import Project


def check_targets(project: Project, targets: Iterable[str]) -> list[str]:
    """``targets`` as step names, or a :class:`UsageError` for one that is not a step."""
    out = []
    for t in targets:
        if t not in project.steps:
            hint = did_you_mean(t, project.steps)
            what = " is a service, not a step" if t in project.services else " is not a step"
            raise UsageError(f"'{t}'{what}{hint}; steps: {', '.join(project.steps)}")
        out.append(t)
    return out


def check_profile(project: Project, profile: str) -> str:
    if profile not in project.profiles:
        raise UsageError(f"unknown profile '{profile}'{did_you_mean(profile, project.profiles)}"
                         f"; known profiles: {', '.join(project.profiles)}")
    return profile


def decide(
    project: Project,
    recorded: Mapping[str, Mapping[str, Any]],
    *,
    targets: Sequence[str] = (),
    only: bool = False,
    force: bool = False,
    profile: str = "local",
    fingerprints: Mapping[str, fingerprint.Fingerprint] | None = None,
    others: str | None = None,
) -> list[Decision]:
    """A decision for every step of the project, in dependency order. ``others``: the
    reason given for the steps the targets leave out (default: not needed by them).

    ``recorded`` holds the records of the database the steps act on (see
    :class:`devenv.state.StateStore`). With ``targets``, the targets and what they need are
    selected (``only``: the targets alone); ``force`` re-runs the targets (every selected
    step when there are no targets) whatever their fingerprints say.
    """
    targets = check_targets(project, targets)
    if targets:
        selected = set(targets) if only else graph.closure(project, targets)
    else:
        selected = set(project.steps)
    forced = set(targets) if targets else set(project.steps) if force else set()
    fps = fingerprints if fingerprints is not None else fingerprint.compute(project)
    out: list[Decision] = []
    for name in graph.topo_order(project):
        step = project.steps[name]
        fp = fps[name]
        if not step.in_profile(profile):
            out.append(Decision(name, Action.SKIP,
                                f"not in profile {profile} (runs in: {', '.join(step.profiles)})",
                                fp.value))
            continue
        if name not in selected:
            why = others or ("not selected (--only)" if only and name in graph.closure(
                project, targets) else f"not needed by {', '.join(targets)}")
            out.append(Decision(name, Action.SKIP, why, fp.value))
            continue
        rec = recorded.get(name)
        if force and name in forced:
            out.append(Decision(name, Action.RUN, "forced (--force)", fp.value))
        elif rec is None:
            out.append(Decision(name, Action.RUN, "never run on this database", fp.value))
        elif rec.get("failed"):
            out.append(Decision(name, Action.RUN, "its last run failed", fp.value))
        elif rec.get("fingerprint") == fp.value:
            when = str(rec.get("finished_at", "?")).replace("T", " ")[:16]
            why = f"unchanged since {when}"
            if rec.get("restored_from"):
                why = f"restored from {rec['restored_from']}; {why}"
            out.append(Decision(name, Action.SKIP, why, fp.value))
        else:
            out.append(Decision(name, Action.RUN, fingerprint.explain_change(rec, fp), fp.value))
    return out
