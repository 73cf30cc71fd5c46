"""``devenv ci-setup``: what CI runs. Non-interactive, plain logs, reports, a dump cache.

Exit codes: 0 ready, 1 a step failed, 2 configuration error, 3 a service never became
healthy (130 interrupted); the last line says which.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devenv import building, fingerprint, planner, processes, reports
from devenv.commands.logs import log_dir
from devenv.console import ProcessLines
from devenv.errors import (
    EXIT_BUSY,
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SERVICE,
    ConfigError,
    DevenvError,
    ServiceError,
    UsageError,
)
from devenv.events import Decision, Message, Reporter, RunResult, Status
from devenv.lock import database_lock, project_lock
from devenv.postgres.database import Target
from devenv.schema import Project
from devenv.session import Session
from devenv.workingdb import cidump, oci

OUTCOMES = {
    EXIT_OK: "ready",
    EXIT_FAILED: "a step failed",
    EXIT_CONFIG: "configuration error",
    EXIT_SERVICE: "a service never became healthy",
    EXIT_BUSY: "busy: another devenv holds the project",
    EXIT_INTERRUPTED: "interrupted",
}


def run(load: Callable[[], Project], reporter: Reporter, *, profile: str = "ci",
        junit: Path | None = None, json_path: Path | None = None,
        cache_dir: Path | None = None, keep: int = 3, with_processes: bool = False,
        jobs: int | None = None, database_url: str | None = None, push: bool = False) -> int:
    """Set up the environment for CI and report on it. Never raises for a user's mistake:
    the exit code and the last line say what happened."""
    started = time.monotonic()
    result: RunResult | None = None
    decisions: list[Decision] = []
    error: str | None = None
    extra: dict[str, Any] = {}
    project: Project | None = None
    try:
        _check_outputs(junit, json_path, cache_dir)
    except UsageError as exc:
        reporter.emit(Message(str(exc), "error"))
        reporter.emit(Message(f"ci-setup: {OUTCOMES[EXIT_CONFIG]} (exit {EXIT_CONFIG})",
                              "error"))
        return EXIT_CONFIG
    try:
        project = load()
        # ci-setup loads the project itself, so a configuration error lands in its reports
        session = Session(project, reporter, profile, database_url)
        planner.check_profile(project, profile)
        key = fingerprint.graph_key(project, profile)
        extra["fingerprint"] = key
        with project_lock(project.state_dir, "ci-setup", reporter):
            endpoints = session.start(session.needed_services())
            target = session.target(endpoints)
            hit = False
            if cache_dir is not None and target is not None:
                hit = cidump.restore(session, target, cache_dir, key)
                extra["cache"] = {"dir": str(cache_dir), "key": key, "hit": hit}
            pulled = False
            if not hit and target is not None and project.database is not None:
                # another checkout using this server may be filling the same database
                with database_lock(target, project.root, "ci-setup", reporter):
                    pulled = oci.restore_fresh(session, target)

            # its own folder: a CI run here must not replace the developer's step logs
            built = building.build(session, target, jobs=jobs,
                                   log_dir=log_dir(project, ci=True))
            result, decisions = built.result, list(built.decisions)
            code = EXIT_OK if result.ok else (EXIT_INTERRUPTED if result.interrupted
                                              else EXIT_FAILED)
            ran = any(r.status is Status.OK for r in result.results)
            if code == EXIT_OK and cache_dir is not None and target is not None and not hit:
                cached = cidump.cache_file(cache_dir, project, key)
                if ran or not cached.exists():
                    saved = cidump.save(session, target, cache_dir, key, keep)
                    extra["cache"]["saved"] = str(saved) if saved else None
                else:  # nothing ran: the dump of this very database is there already
                    reporter.emit(Message(f"no step ran: {cached.name} already holds this "
                                          "database; not saved again"))
                    extra["cache"]["saved"] = None
            # Push what this job built; a restore that left nothing to run is there already.
            if code == EXIT_OK and push and target is not None and (ran or not (hit or pulled)):
                extra["remote_push"] = oci.push_database(session, target)
            if code == EXIT_OK and with_processes and project.processes:
                code = _start_processes(session, target)
    except (ConfigError, UsageError) as exc:
        code, error = EXIT_CONFIG, str(exc)
    except ServiceError as exc:
        code, error = EXIT_SERVICE, str(exc)
    except DevenvError as exc:
        code, error = exc.exit_code, str(exc)
    except KeyboardInterrupt:
        code, error = EXIT_INTERRUPTED, "interrupted"
    duration = time.monotonic() - started
    if error:
        reporter.emit(Message(error, "error"))
    name = project.name if project else "devenv"
    if result is not None:
        _summary(reporter, result)
    try:
        if junit is not None:
            reports.junit(junit, f"devenv ci-setup ({name})",
                          result.results if result else [], duration, error)
        if json_path is not None:
            data = reports.as_json(result, decisions, project=name, profile=profile,
                                   exit_code=code, outcome=OUTCOMES.get(code, "failed"),
                                   extra={**extra, "error": error})
            reports.write_json(json_path, data)
    except OSError as exc:
        reporter.emit(Message(f"could not write a report: {exc.filename}: {exc.strerror}",
                              "error"))
        code = code or EXIT_FAILED
    reporter.emit(Message(f"ci-setup: {OUTCOMES.get(code, 'failed')} (exit {code})",
                          "ok" if code == EXIT_OK else "error"))
    return code


def _check_outputs(junit: Path | None, json_path: Path | None, cache_dir: Path | None,
                   ) -> None:
    """Refuse report and cache paths that cannot work before anything runs."""
    for option, path in (("--junit", junit), ("--json", json_path)):
        if path is None:
            continue
        if path.is_dir():
            raise UsageError(f"{option} {path} is a folder: name the file to write, e.g. "
                             f"{path / 'devenv.xml' if option == '--junit' else path / 'devenv.json'}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{option} {path}: cannot create {path.parent}: "
                             f"{exc.strerror}") from None
    if cache_dir is not None:
        if cache_dir.exists() and not cache_dir.is_dir():
            raise UsageError(f"--cache-dir {cache_dir} is a file, not a folder")
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--cache-dir {cache_dir}: cannot create it: "
                             f"{exc.strerror}") from None


def _summary(reporter: Reporter, result: RunResult) -> None:
    width = max((len(r.name) for r in result.results), default=4)
    lines = [f"{'STEP'.ljust(width)}  {'STATUS':<11}  {'TIME':>7}  REASON"]
    for r in result.results:
        reason = r.reason if r.status is not Status.OK else ""
        lines.append(f"{r.name.ljust(width)}  {r.status.value:<11}  {r.duration:6.1f}s  "
                     f"{reason}".rstrip())
    reporter.emit(Message("summary", detail="\n".join(lines)))


def _start_processes(session: Session, target: Target | None) -> int:
    """Start the processes in the background (CI's next steps talk to them)."""
    project = session.project
    names = processes.selected(project, session.profile)
    if not names:
        return EXIT_OK
    processes.build_images(project, names, session.reporter)
    prepared = processes.prepare(project, names, target)
    return processes.run_detached(project, prepared, ProcessLines(names, plain=True))
