"""``devenv run STEP...``: run steps (with what they need) against the project database."""

from __future__ import annotations

from collections.abc import Sequence

from devenv import building, graph, planner
from devenv.commands import exit_code
from devenv.events import Reporter
from devenv.lock import project_lock
from devenv.schema import Project
from devenv.services import launch


def run(project: Project, reporter: Reporter, targets: Sequence[str] = (), *,
        only: bool = False, force: bool = False, profile: str = "local",
        jobs: int | None = None, keep_going: bool = False,
        database_url: str | None = None) -> int:
    planner.check_profile(project, profile)
    targets = planner.check_targets(project, targets)
    steps = sorted(graph.closure(project, targets) if targets else project.steps)
    with project_lock(project.state_dir, "run", reporter), \
            launch.service_lock(project, database_url, "run", reporter):
        endpoints = launch.start_services(
            project, launch.needed_services(project, steps), reporter, database_url)
        target = launch.database_target(project, endpoints, database_url)
        built = building.build(project, reporter, target, targets=targets, only=only,
                                  force=force, profile=profile, jobs=jobs,
                                  keep_going=keep_going)
    return exit_code(built.result)
