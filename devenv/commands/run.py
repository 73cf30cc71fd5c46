"""``devenv run STEP...``: run steps (with what they need) against the project database."""

from __future__ import annotations

from collections.abc import Sequence

from devenv import building, graph, planner
from devenv.commands import exit_code
from devenv.lock import project_lock
from devenv.session import Session


def run(session: Session, targets: Sequence[str] = (), *, only: bool = False,
        force: bool = False, jobs: int | None = None, keep_going: bool = False) -> int:
    project, reporter, profile = session.project, session.reporter, session.profile
    planner.check_profile(project, profile)
    targets = planner.check_targets(project, targets)
    steps = sorted(graph.closure(project, targets) if targets else project.steps)
    with project_lock(project.state_dir, "run", reporter), \
            session.service_lock("run"):
        endpoints = session.start(session.needed_services(steps))
        target = session.target(endpoints)
        built = building.build(session, target, targets=targets, only=only, force=force,
                               jobs=jobs, keep_going=keep_going)
    return exit_code(built.result)
