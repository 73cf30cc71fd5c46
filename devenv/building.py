"""Running the planned steps against a database: their environment, the run, and
what a failure that is not the step's own fault means (:func:`diagnose`).

The commands (`run`, `up`, `refresh-db`, `ci-setup`) are thin layers over
:meth:`devenv.session.Session.start` and :func:`build`."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from devenv import fingerprint, logtail, planner, runner
from devenv.envvars import layered
from devenv.errors import ConfigError
from devenv.events import (
    Action,
    Decision,
    Message,
    PhaseFinished,
    PhaseStarted,
    RunResult,
)
from devenv.lock import database_lock
from devenv.postgres import database, siblings
from devenv.schema import Location, Project, StepSpec
from devenv.services import addresses
from devenv.session import Session
from devenv.state import NO_DATABASE, StateStore

if TYPE_CHECKING:
    from devenv import runner


def step_environment(project: Project, target: database.Target | None, dbname: str | None,
                     extra: Mapping[str, str] | None = None, *,
                     stand_in: bool = False) -> dict[str, str]:
    """The environment every step and process starts from (before its own ``env:``)."""
    env = dict(os.environ)
    # Steps find the tools installed beside devenv (flask, django-admin) without an
    # activated virtualenv.
    bindir = str(Path(sys.executable).parent)
    if bindir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["DEVENV_PROJECT"] = project.name
    env["DEVENV_ROOT"] = str(project.root)
    # before the database's variables: a service named "database" must not shadow them
    env.update(addresses.service_variables(project, target, stand_in))
    if target is not None:
        # The target holds the service's entries already (database.parse_url); the file
        # itself would override the PG* variables below, the database name among them.
        env.pop("PGSERVICE", None)
        env.update(target.env(dbname))
    if extra:
        env.update(extra)
    return env


def with_search_path(env: Mapping[str, str], search_path: Sequence[str]) -> dict[str, str]:
    """``env`` with ``search_path`` added to ``PGOPTIONS`` (libpq reads it): a step's or
    process's ``search_path:``. Applied before their own ``env:``, which may override it."""
    out = dict(env)
    if search_path:
        opts = f"-c search_path={','.join(search_path)}"
        out["PGOPTIONS"] = (out.get("PGOPTIONS", "") + " " + opts).strip()
    return out


def prepare_steps(project: Project, names: Sequence[str], base: Mapping[str, str],
                  ) -> dict[str, runner.Prepared]:
    """Expand every step that will run before any runs: an undefined ``${X}`` stops the
    run before it changes anything."""
    out = {}
    file = project.file.name

    def project_line(key: str) -> Location:
        return Location(file, project.env_lines.get(key, 1))

    for name in names:
        step = project.steps[name]
        step_base = with_search_path(base, step.search_path)

        def step_line(key: str, step: StepSpec = step) -> Location:
            return Location(step.loc.file, step.key_lines.get(f"env.{key}", step.loc.line))

        try:
            env = layered(step_base, (project.env, project_line, "env"),
                          (step.env, step_line, f"steps.{name}.env"))
            env["DEVENV_STEP"] = name
            out[name] = runner.prepare(project, step, env)
        except ConfigError as exc:
            raise addresses.with_service_hint(project, exc, f"steps.{name}") from None
    return out


@dataclass(frozen=True)
class BuildResult:
    result: RunResult
    decisions: Sequence[Decision]
    key: str


def database_key(target: database.Target | None, dbname: str | None) -> str | None:
    if target is None or dbname is None:
        return NO_DATABASE
    return database.identity(target, dbname)


def build(
    session: Session,
    target: database.Target | None,
    *,
    dbname: str | None = None,
    targets: Sequence[str] = (),
    only: bool = False,
    force: bool = False,
    jobs: int | None = None,
    keep_going: bool = False,
    create: bool = True,
    carried: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
    fingerprints: Mapping[str, fingerprint.Fingerprint] | None = None,
    others: str | None = None,
) -> BuildResult:
    """Plan and run the steps against database ``dbname`` (default: the project's); step
    logs go to ``log_dir`` (default ``.devenv/logs``). ``fingerprints``: the steps' own,
    when the caller has just computed them (else they are computed here). ``others``: why
    the steps ``targets`` leave out are skipped (see :func:`devenv.planner.decide`)."""
    project, reporter = session.project, session.reporter
    held = contextlib.ExitStack()
    if target is not None and project.database is not None:

        # Another checkout of the project (a git worktree) shares this server's databases.
        held.enter_context(database_lock(target, project.root, "steps", reporter))
    with held:
        return _build(session, target, dbname=dbname, targets=targets, only=only,
                      force=force, jobs=jobs, keep_going=keep_going, create=create,
                      carried=carried, log_dir=log_dir, fingerprints=fingerprints,
                      others=others)


def _build(session: Session, target: database.Target | None, *,
           dbname: str | None, targets: Sequence[str], only: bool, force: bool,
           jobs: int | None, keep_going: bool, create: bool,
           carried: Mapping[str, str] | None, log_dir: Path | None,
           fingerprints: Mapping[str, fingerprint.Fingerprint] | None,
           others: str | None) -> BuildResult:
    project, reporter, profile = session.project, session.reporter, session.profile
    store = StateStore(project.state_dir)
    dbname = dbname or (target.dbname if target else None)
    if target is not None and dbname is not None and project.database is not None and create:

        # A refresh killed mid-swap can leave the working database refusing connections;
        # the caller holds the project lock, so no swap is running now.
        for name in siblings.allow_connections(target, [dbname]):
            reporter.emit(Message(f"{name} was left refusing connections by an interrupted "
                                  "swap or snapshot save; opened it again", "warn"))
        reporter.emit(PhaseStarted("database", f"database {dbname}"))
        created = database.ensure(target, dbname, project.database.schemas)
        reporter.emit(PhaseFinished("database", f"database {dbname} "
                                    + ("created" if created else "exists")))
    key = database_key(target, dbname) or NO_DATABASE
    label = target.redacted(dbname) if target else None
    fps = dict(fingerprints) if fingerprints is not None else fingerprint.compute(project)
    decisions = planner.decide(project, store.steps(key), targets=targets, only=only,
                               force=force, profile=profile, fingerprints=fps, others=others)
    carried = dict(carried or {})
    decisions = [Decision(d.step, Action.SKIP, f"carried: {carried[d.step]}", d.fingerprint)
                 if d.step in carried and d.action is Action.RUN else d for d in decisions]
    to_run = [d.step for d in decisions if d.action is Action.RUN]
    base = step_environment(project, target, dbname)
    prepared = prepare_steps(project, to_run, base)
    if not to_run:
        reporter.emit(Message("everything is up to date: no step needs to run", "ok"))

    def ok(name: str, duration: float) -> None:
        store.record_success(key, label or "no database", name, fps[name], duration)

    def failed(name: str) -> None:
        store.record_failure(key, label or "no database", name)

    options = runner.RunOptions(jobs=jobs or os.cpu_count() or 2, keep_going=keep_going,
                                log_dir=log_dir or project.state_dir / "logs")
    with store.batched():
        result = runner.run(project, decisions, prepared, reporter, options, ok, failed,
                            database=label)
    if result.ok and carried:
        # The migrations that carried these steps' data along ran: the data is what the
        # steps would make on this code, so their records say so now.
        for name in carried:
            store.record_success(key, label or "no database", name, fps[name], 0.0)
        store.flush()
    if not result.ok and not result.interrupted:
        for line in diagnose(session, target, dbname, result):
            reporter.emit(Message(line, "error"))
    return BuildResult(result, decisions, key)


_DISK_FULL = ("No space left on device", "could not extend file", "disk full")
_GONE = ("server closed the connection unexpectedly", "Connection refused",
         "terminating connection due to administrator command", "connection to server at",
         "the database system is shutting down", "could not connect to server")


def is_disk_full(text: str) -> bool:
    """Whether a server's or a step's message says the database's disk is full."""
    return any(p in text for p in _DISK_FULL)


def disk_full_advice(project: Project, then: str = "then run again") -> str:
    where = f"service {project.database.service}" if project.database else "the server"
    return (f"the database server ran out of disk space ({where}): free space on its "
            f"volume (devenv snapshot gc drops old snapshots), {then}")


def diagnose(session: Session, target: database.Target | None, dbname: str | None,
             result: RunResult) -> list[str]:
    """Causes behind failed steps that are not the step's own fault: the database's disk
    is full, or the database went away during the run. Each line names cause and fix."""
    project = session.project
    tails = [logtail.tail(r.log, 60) for r in result.results
             if r.status.value == "failed" and r.log is not None]
    if any(p in t for t in tails for p in _GONE):
        # The server may have died of the cause (a full disk makes PostgreSQL stop): the
        # client only saw the connection drop, the server's own log says why.
        tails.append(session.service_log_tail())
    out: list[str] = []
    if any(is_disk_full(t) for t in tails):
        out.append(disk_full_advice(project))
    if target is not None and any(p in t for t in tails for p in _GONE):
        try:
            with database.connect(target, "postgres", timeout=3) as conn:
                conn.execute("SELECT 1")
        except database.DatabaseError as exc:
            out.append(f"the database went away during the run ({exc}); `devenv status` "
                       "shows the service, `devenv up` starts it again")
        else:
            out.append("the database connection was cut during the run (the server answers "
                       "again now; it may have restarted): run again")
    return out


