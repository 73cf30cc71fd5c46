"""refresh-db: a fresh database built beside the working one, swapped in only on success.

Order of operations (each state in between is recoverable by :func:`recover`):
  1. recover leftovers of a crashed run (a build is dropped, its sessions ended and the
     steps of its run stopped; a working database left refusing connections is opened
     again; a missing working database gets its backup back);
  2. build ``db__b_<run>`` (a name no other run uses: a step a killed run left behind
     cannot connect to a later build): from the ready clone or the deepest matching
     snapshot, else empty; run the remaining steps against it, snapshotting at barriers;
  3. only when every step passed: swap (one transaction renames ``db`` to ``db__prev`` and
     the build to ``db``); a failure or interrupt drops the build instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from devenv import building, faults, fingerprint, graph, planner, proc, runner, waiting, watchdog
from devenv.building import (
    diagnose,
    disk_full_advice,
    is_disk_full,
    prepare_steps,
    step_environment,
)
from devenv.errors import DevenvError, UsageError, first_line
from devenv.events import (
    Action,
    Decision,
    Message,
    Reporter,
    RunResult,
    phase,
)
from devenv.postgres import database, libpq, siblings
from devenv.postgres.database import Target
from devenv.postgres.siblings import DbInfo
from devenv.schema import Project
from devenv.session import Session
from devenv.state import StateStore
from devenv.workingdb import branches, oci, rerun

# Seconds a snapshot point waits for sessions of the steps that just ended to leave the
# build; one that stays longer is a warm-started step's, and no snapshot is kept there.
SESSIONS_SETTLE = 1.0


@dataclass
class RefreshResult:
    result: RunResult | None
    source: str  # "ready clone", "snapshot <name>", "empty database"
    swapped: bool = False
    backup: str | None = None
    steps_run: list[str] = field(default_factory=list)


def recover(target: Target, db: str, reporter: Reporter) -> list[str]:
    """Repair what an interrupted run may have left; returns what it did."""
    done: list[str] = []
    infos = {d.datname: d for d in siblings.related(target, db)}
    prev = siblings.prev_name(db)
    for name in siblings.allow_connections(target, [db, prev]):
        done.append(f"{name} was left refusing connections by an interrupted swap or "
                    "snapshot save; opened it again")
    if db not in infos and prev in infos:
        # The swap is one transaction, so this only happens if someone dropped the working
        # database by hand; the backup is the best there is.
        siblings.rename(target, prev, db)
        done.append(f"restored {db} from {prev}")
    for name, info in infos.items():
        if siblings.is_retired(db, name):
            continue  # a replaced backup, dropped by the background pass after a swap
        if siblings.is_build(db, name) or name == siblings.exchange_name(db) or (
                name.startswith(siblings.ready_name(db) + "_tmp")):
            run = info.meta.get("run")
            if isinstance(run, str) and run and watchdog.kill_tagged(run):
                # Its watchdog should have done this; it may have been killed too.
                done.append(f"stopped the steps the run that built {name} left running")
            siblings.drop(target, name)  # WITH (FORCE): its sessions end first
            done.append(f"dropped leftover {name}")
        elif info.kind == "snapshot" and not info.meta.get("complete", False):
            siblings.drop(target, name)
            done.append(f"dropped incomplete snapshot {name}")
    for line in done:
        reporter.emit(Message(line, "warn"))
    return done


def _in_profile(project: Project, profile: str) -> list[str]:
    return [n for n in graph.topo_order(project) if project.steps[n].in_profile(profile)]


def affected_steps(project: Project, target: Target, store: StateStore,
                   fps: dict[str, fingerprint.Fingerprint], steps: Sequence[str]) -> set[str]:
    """The steps whose fingerprint differs from what built the working database: a change
    and everything downstream of it (a fingerprint holds its upstream's). Every step when
    the working database has no records (or does not exist)."""
    key = database.identity(target, target.dbname)
    recorded = store.steps(key) if key else {}
    return {n for n in steps if recorded.get(n, {}).get("fingerprint") != fps[n].value}


def dynamic_point(project: Project, target: Target, store: StateStore,
                  fps: dict[str, fingerprint.Fingerprint], steps: Sequence[str],
                  restored: Sequence[str]) -> list[str]:
    """The steps a refresh runs first and snapshots before the affected ones, or [].

    The unaffected steps are closed upstream (a changed step changes every fingerprint
    below it), so together with what a snapshot restores they are a state the graph can
    reach on its own: worth a snapshot when it holds more than the restored one and less
    than the whole graph."""
    affected = affected_steps(project, target, store, fps, steps)
    candidates = (set(steps) - affected) | set(restored)
    # Keep only steps whose upstream is held too: the working database's records can be
    # of mixed history (another branch's database, a step carried through a migration),
    # and a held step below an affected one would wait for it while it waits for all held.
    held: set[str] = set()
    for n in steps:  # dependency order
        if n in candidates and graph.upstream(project, n) & set(steps) <= held:
            held.add(n)
    if not affected or len(held) <= len(restored) or len(held) == len(steps):
        return []
    return [n for n in steps if n in held]


def _checkpoint_waits(project: Project, steps: Sequence[str]) -> dict[str, set[str]]:
    """A checkpoint step waits for every step it does not lead to (see snapshot_points)."""
    wanted = set(steps)
    return {c: wanted - graph.downstream(project, [c]) - {c}
            for c in steps if project.steps[c].checkpoint}


def refresh(session: Session, target: Target, *, jobs: int | None = None, keep_failed: bool = False, backup: bool = True,
            use_cache: bool = True, background_reclone: bool = True,
            park_as: str | None = None) -> RefreshResult:
    """Build a fresh database beside the working one and swap it in if every step passes
    (see :func:`_refresh`); a failure is diagnosed as ``run`` does (a full disk, a server
    gone), for refresh-db and for up's rebuilds and branch builds alike."""
    project, reporter = session.project, session.reporter
    try:
        res = _refresh(session, target, jobs=jobs,
                       keep_failed=keep_failed, backup=backup, use_cache=use_cache,
                       background_reclone=background_reclone, park_as=park_as)
    except DevenvError as exc:
        # devenv's own statements (creating the build, the swap) can meet a full disk
        if is_disk_full(str(exc)):
            reporter.emit(Message(disk_full_advice(project), "error"))
        raise
    if res.result is not None and not res.result.ok and not res.result.interrupted:
        # the steps ran against the build; the causes are the same as for `run`
        for line in diagnose(session, target, target.dbname, res.result):
            reporter.emit(Message(line, "error"))
    return res


def _refresh(session: Session, target: Target, *, jobs: int | None, keep_failed: bool, backup: bool, use_cache: bool,
             background_reclone: bool, park_as: str | None) -> RefreshResult:
    """Build a fresh database beside the working one and swap it in if every step passes.

    ``park_as``: the working database is renamed to that name (a branch switch) instead of
    becoming ``__prev``."""
    project, reporter, profile = session.project, session.reporter, session.profile
    db = target.dbname
    spec = project.database
    assert spec is not None
    run_id = watchdog.new_run_id()
    build = siblings.build_name(db, run_id)
    build_meta = siblings.meta("build", project.name, run=run_id, pid=os.getpid(),
                                root=str(project.root))
    store = StateStore(project.state_dir)
    recover(target, db, reporter)
    # Run on another branch's database (a switch, then refresh-db instead of up): park it
    # for that branch, as up does, rather than make it __prev, which the next refresh drops.
    left = branches.leaving(target, project.root) if park_as is None else None
    if left is not None:
        park_as = branches.park_name(db, left, (d.datname for d in siblings.related(target, db)))

    def swap_in(src: str) -> str | None:
        backup_name = siblings.swap(target, db, src, backup=backup,
                                     defer_drop=background_reclone, park_as=park_as)
        if left is None or park_as is None:
            return backup_name
        branches.mark_parked(target, park_as, project.name, left)
        reporter.emit(Message(f"{db} was built for branch {left!r}, not the checked-out one: "
                              f"parked it, with its rows, as {park_as} (`devenv up` on "
                              f"{left!r} swaps it back)", "ok"))
        return None

    fps = fingerprint.compute(project)
    steps = _in_profile(project, profile)
    points = graph.snapshot_points(project, steps)
    full_key = fingerprint.combined(fps, steps)
    source = "empty database"
    start_from: list[str] = []

    choice = choose_source(project, target, fps, steps, use_cache)
    waits = _checkpoint_waits(project, steps)
    if choice.kind != "ready" and use_cache:
        held = dynamic_point(project, target, store, fps, steps, choice.held)
        if held:
            # Run what the change does not touch first, keep a snapshot of exactly that,
            # then the rest: the next refresh after another edit of the same step restores
            # it and runs only the changed steps (no hand-placed checkpoint needed).
            if held not in points:
                points.append(held)
            for n in steps:
                if n not in held:
                    waits[n] = waits.get(n, set()) | set(held)
                elif n in waits:
                    # A checkpoint among the held steps would wait for the affected ones,
                    # which now wait for it: the held steps wait only among themselves.
                    waits[n] = waits[n] & set(held)
    if choice.kind == "ready":
        with phase(reporter, "swap", "swapping in the ready copy", "ready copy swapped in"):
            backup_name = swap_in(choice.datname)
        _after_swap(project, target, db, full_key, reporter, background_reclone)
        elsewhere = rerun.outside(project, steps)
        if elsewhere:
            # The copy holds the database only: their work is loaded again, and nothing else
            # runs (never a data step on top of the copy, whatever its records say).
            again = building.build(session, target, targets=elsewhere, only=True,
                                   others="in the ready copy")
            if not again.result.ok:
                return RefreshResult(again.result, "ready clone", True, backup_name)
        reporter.emit(Message(f"{db} is fresh (ready copy of snapshot {full_key[:12]}; "
                              + (f"ran {', '.join(elsewhere)}, whose work is outside the "
                                 "database)" if elsewhere else "no step needed to run)"),
                              "ok"))
        return RefreshResult(None, "ready clone", True, backup_name)
    remote = None
    if use_cache and choice.kind != "ready":
        # Nothing local as deep as the whole build: a teammate's or CI's snapshot may be.

        remote = oci.restore_for_refresh(session, target, build, store, fps, steps,
                                         len(choice.held))
        if remote is not None:
            source, start_from = f"remote snapshot {remote[0][:12]}", list(remote[1])
            _snapshot(project, target, db, build, start_from, remote[0], store)
    if choice.kind == "snapshot" and remote is None:
        with phase(reporter, "restore", f"restoring snapshot {choice.datname}",
                    f"restored snapshot of {len(choice.held)} steps ({choice.datname})"):
            siblings.clone(target, choice.datname, build, build_meta)
            siblings.mark_used(target, db, choice.datname)
            _copy_state(store, target, choice.datname, build)
        source = f"snapshot {choice.datname}"
        start_from = list(choice.held)
    if not start_from:
        with phase(reporter, "create", f"creating {build}", f"created {build}"):
            database.create(target, build, spec.schemas)
            siblings.set_meta(target, build, build_meta)

    try:
        result = _build(project, reporter, target, build, store, fps, steps, points, profile,
                        jobs, set(start_from), waits, run_id)
        if not result.ok:
            raise _BuildFailed(result)
        # cache: {keep: 0} keeps no snapshot: writing one only to drop it costs a copy of
        # the database (and the disk space for it).
        if project.cache_keep > 0 and (not start_from or start_from != steps):
            _snapshot_or_skip(project, target, db, build, steps, full_key, store, reporter,
                              "the final snapshot")
    except BaseException as exc:
        result_obj = exc.result if isinstance(exc, _BuildFailed) else None
        if keep_failed and not isinstance(exc, KeyboardInterrupt):
            reporter.emit(Message(f"kept the failed build as {build} (--keep-failed); the "
                                  f"working database {db} is unchanged", "warn"))
        else:
            try:
                siblings.drop(target, build)
            except Exception as drop_exc:  # the first error is the one to raise
                why = "server gone" if _server_gone(drop_exc) else str(drop_exc)
                reporter.emit(Message(f"the working database {db} is unchanged; the partial "
                                      f"build could not be dropped ({why}); the next command "
                                      "drops it", "warn"))
            else:
                reporter.emit(Message(f"the working database {db} is unchanged; the partial "
                                      "build was dropped", "warn"))
        if isinstance(exc, _BuildFailed):
            return RefreshResult(result_obj, source)
        raise

    with phase(reporter, "swap", f"swapping {build} in as {db}", f"{db} swapped in"):
        backup_name = swap_in(build)
    _after_swap(project, target, db, full_key, reporter, background_reclone)
    ran = [r.name for r in result.results if r.status.value == "ok"]
    return RefreshResult(result, source, True, backup_name, ran)


@dataclass(frozen=True)
class Source:
    """Where a refresh starts: the ready copy, a snapshot (holding ``held``), or nothing."""

    kind: str  # ready, snapshot, empty
    datname: str = ""
    held: tuple[str, ...] = ()


def choose_source(project: Project, target: Target, fps: dict[str, fingerprint.Fingerprint],
                  steps: list[str], use_cache: bool = True) -> Source:
    """The deepest cached state whose steps are all unchanged: the ready copy, else the
    snapshot holding the most steps whose recorded step set still has its fingerprint."""
    if not use_cache:
        return Source("empty")
    db = target.dbname
    infos = siblings.related(target, db)
    full_key = fingerprint.combined(fps, steps)
    wanted = set(steps)
    for info in infos:
        if (info.datname == siblings.ready_name(db) and info.key == full_key
                and info.meta.get("project") == project.name):
            return Source("ready", info.datname, tuple(steps))
    best: tuple[int, float, DbInfo] | None = None
    for info in infos:
        held = info.steps
        if (info.kind != "snapshot" or not info.meta.get("complete")
                or info.meta.get("project") != project.name or not held
                or not set(held) <= wanted or any(n not in fps for n in held)
                or info.key != fingerprint.combined(fps, held)
                or info.datname != siblings.cache_name(db, info.key)):
            continue
        rank = (len(held), info.created, info)
        if best is None or rank[:2] > best[:2]:
            best = rank
    if best is None:
        return Source("empty")
    info = best[2]
    return Source("snapshot", info.datname, tuple(n for n in steps if n in set(info.steps)))


def unused_snapshots(project: Project, target: Target,
                     fps: dict[str, fingerprint.Fingerprint], steps: list[str],
                     chosen: str) -> list[tuple[str, str]]:
    """Every other cached state of this database, with why refresh-db does not start from
    it: users ask "why did this run?" when a refresh runs more than they expected."""
    out: list[tuple[str, str]] = []
    wanted = set(steps)
    store = StateStore(project.state_dir)
    for info in siblings.related(target, target.dbname):
        if info.kind not in ("snapshot", "ready") or info.datname == chosen:
            continue
        held = info.steps
        if info.meta.get("project") != project.name:
            why = f"made by project {info.meta.get('project')!r}"
        elif info.kind == "snapshot" and not info.meta.get("complete"):
            why = "incomplete (left by an interrupted run; the next refresh drops it)"
        elif not held or not set(held) <= wanted:
            extra = sorted(set(held) - wanted)
            why = (f"holds steps outside this profile: {', '.join(extra)}" if extra
                   else "holds no steps")
        elif info.key != fingerprint.combined(fps, held):
            key = database.identity(target, info.datname)
            recs = store.steps(key) if key else {}
            # a step whose work is outside the database has no record in a snapshot
            changed = [n for n in held if recs.get(n, {}).get("fingerprint") != fps[n].value
                       and not project.steps[n].outside_database]
            why = ("made for other code: changed since: " + ", ".join(changed) if changed
                   else "made for other code")
        else:
            why = f"holds {len(held)} step{'s' if len(held) != 1 else ''}, fewer than the one chosen"
        out.append((info.datname, why))
    return out


def plan_refresh(project: Project, target: Target, profile: str = "local",
                 use_cache: bool = True) -> tuple[Source, list[Decision]]:
    """What ``refresh-db`` would do now: where it starts and a decision per step."""
    fps = fingerprint.compute(project)
    steps = _in_profile(project, profile)
    source = choose_source(project, target, fps, steps, use_cache)
    out = []
    for d in planner.decide(project, {}, profile=profile, fingerprints=fps):
        if d.action is Action.RUN and project.steps[d.step].outside_database:
            d = Decision(d.step, Action.RUN, "its work is outside the database (no snapshot "
                                             "holds it)", d.fingerprint)
        elif d.step in source.held:
            d = Decision(d.step, Action.SKIP, f"in {source.kind} {source.datname}", d.fingerprint)
        elif d.action is Action.RUN:
            d = Decision(d.step, Action.RUN, "not in any matching snapshot", d.fingerprint)
        out.append(d)
    return source, out


class _BuildFailed(Exception):
    def __init__(self, result: RunResult) -> None:
        self.result = result


def _copy_state(store: StateStore, target: Target, src: str, dst: str) -> None:
    src_key = database.identity(target, src)
    dst_key = database.identity(target, dst)
    if src_key and dst_key:
        store.copy(src_key, dst_key, target.redacted(dst))


def _build(project: Project, reporter: Reporter, target: Target, build: str,
           store: StateStore, fps: dict[str, fingerprint.Fingerprint], steps: list[str],
           points: list[list[str]], profile: str, jobs: int | None,
           restored: set[str], waits: dict[str, set[str]], run_id: str) -> RunResult:
    key = database.identity(target, build)
    assert key is not None
    label = target.redacted(build)
    decisions: list[Decision] = []
    for d in planner.decide(project, store.steps(key), profile=profile, fingerprints=fps):
        if d.step in restored and not project.steps[d.step].outside_database:
            d = Decision(d.step, Action.SKIP, "restored from snapshot", d.fingerprint)
        decisions.append(d)
    to_run = [d.step for d in decisions if d.action is Action.RUN]
    base = step_environment(project, target, build)
    prepared = prepare_steps(project, to_run, base)
    db = target.dbname
    existing = {d.datname for d in siblings.related(target, db)}

    wanted = set(steps)
    done = {d.step for d in decisions if d.action is Action.SKIP and d.step in wanted}
    by_set = {frozenset(held): held for held in points}

    def after(name: str) -> None:
        # Called before any other step starts: when the finished steps are exactly a
        # snapshot point, nothing else is running and the build holds just those steps.
        done.add(name)
        held = by_set.get(frozenset(done))
        if held is None or project.cache_keep <= 0:  # keep: 0 keeps no snapshot
            return
        snap_key = fingerprint.combined(fps, held)
        if siblings.cache_name(db, snap_key) in existing:
            return
        # No step runs now, but a warm-started one (parked until its turn) may have
        # connected while importing its app: cloning would have to end its session and
        # fail that step. Keep no snapshot here this time, and say why.
        # A step that just ended may still be listed for a moment (its backend exits
        # after the client does): give such sessions a second to go before deciding.
        sessions = 0

        def closed(_left: float) -> bool:
            nonlocal sessions
            sessions = siblings.sessions(target, build)
            return sessions == 0

        if not waiting.until(closed, SESSIONS_SETTLE, pause=0.02, factor=2, longest=0.2).done:
            reporter.emit(Message(
                f"kept no snapshot after {name}: {sessions} session(s) open on {build} (a "
                "warm-started step whose app connects while it is imported? "
                "DEVENV_WARM_START=0 avoids it)", "warn"))
            return
        store.flush()
        if _snapshot_or_skip(project, target, db, build, held, snap_key, store, reporter,
                             f"the snapshot after {name}"):
            existing.add(siblings.cache_name(db, snap_key))

    options = runner.RunOptions(jobs=jobs or os.cpu_count() or 2,
                                log_dir=project.state_dir / "logs", run_id=run_id)
    with store.batched():
        return runner.run(
            project, decisions, prepared, reporter, options,
            on_success=lambda n, dur: store.record_success(key, label, n, fps[n], dur),
            on_failure=lambda n: store.record_failure(key, label, n),
            database=label, after_step=after,
            extra_waits=waits)


def _snapshot(project: Project, target: Target, db: str, build: str, held: list[str], key: str,
              store: StateStore) -> None:
    name = siblings.cache_name(db, key)
    if siblings.find(target, db, name) is not None:
        return
    store.flush()
    value = siblings.meta("snapshot", project.name, key=key, steps=held, complete=False)
    siblings.clone(target, build, name, value)

    faults.point("snapshot-incomplete")
    # Only records of the steps the snapshot holds travel with it.
    src_key = database.identity(target, build)
    dst_key = database.identity(target, name)
    if src_key and dst_key:
        records = rerun.database_held(
            project, {s: r for s, r in store.steps(src_key).items() if s in held})
        store.put(dst_key, target.redacted(name), records)
    value["complete"] = True
    siblings.set_meta(target, name, value)


def _server_gone(exc: BaseException) -> bool:
    return isinstance(exc, (libpq.OperationalError, database.DatabaseError))


def _snapshot_or_skip(project: Project, target: Target, db: str, build: str,
                      held: list[str], key: str, store: StateStore, reporter: Reporter,
                      what: str) -> bool:
    """:func:`_snapshot`, but a snapshot is only an optimisation: when it cannot be written
    (the disk is full) the build goes on and is swapped in without it. Says why."""
    try:
        _snapshot(project, target, db, build, held, key, store)
    except DevenvError as exc:
        with contextlib.suppress(Exception):
            siblings.drop(target, siblings.cache_name(db, key))  # a clone half-labelled
        reason = first_line(exc)
        reporter.emit(Message(f"cache skipped: could not write {what} ({reason}); the build "
                              "goes on without it, and a later refresh-db runs these steps "
                              "again", "warn"))
        if building.is_disk_full(str(exc)):
            reporter.emit(Message(building.disk_full_advice(
                project, "so that the next refresh-db can keep its snapshots"), "warn"))
        return False
    return True


def _after_swap(project: Project, target: Target, db: str, full_key: str, reporter: Reporter,
                background: bool) -> None:
    # the database swapped in was built for the code checked out now: its branch's
    branches.note(project.name, project.root, target)
    keep = project.cache_keep
    snap = siblings.cache_name(db, full_key)
    dropped = siblings.gc(target, db, keep, protect=[snap])
    for name in dropped:
        reporter.emit(Message(f"dropped old snapshot {name} (cache keeps {keep})"))
    if siblings.find(target, db, snap) is None:
        siblings.drop_retired(target, db)
        return
    if background:
        spawn_reclone(project, target, snap)  # drops the retired backup too
    else:
        siblings.drop_retired(target, db)
        reclone(project, target, snap)
        forget_dropped(project, target)


def forget_dropped(project: Project, target: Target) -> list[str]:
    """Drop the state records of databases that no longer exist on this cluster."""
    prefix, live = database.identities(target)
    return StateStore(project.state_dir).prune(prefix, live)


def spawn_reclone(project: Project, target: Target, snap: str) -> None:
    """Prepare the next ready copy in a detached process, so this command returns now."""
    env = dict(os.environ)
    env["DEVENV_RECLONE_URL"] = target.url("postgres")  # not in argv: ps shows argv

    proc.detach([sys.executable, "-m", "devenv.background", "reclone", str(project.file),
                 target.dbname, snap], env=env, log=project.state_dir / "logs" / "reclone.log")


def reclone(project: Project, target: Target, snap: str) -> None:
    """Make ``db__ready`` a fresh clone of snapshot ``snap`` (replacing an older one)."""
    db = target.dbname
    info = siblings.find(target, db, snap)
    if info is None:
        return
    tmp = f"{siblings.ready_name(db)}_tmp{os.getpid() % 100000}"
    value = siblings.meta("ready", project.name, key=info.key, steps=info.steps,
                           snapshot=snap)
    siblings.clone(target, snap, tmp, value)

    faults.point("reclone-cloned")
    _copy_state(StateStore(project.state_dir), target, snap, tmp)
    ready = siblings.ready_name(db)
    database.drop(target, ready)
    try:
        siblings.rename(target, tmp, ready)
    except Exception:
        database.drop(target, tmp)


def undo(session: Session, target: Target) -> None:
    """Swap the previous database (``db__prev``) back in; the current one becomes prev."""
    reporter = session.reporter
    db = target.dbname
    prev = siblings.prev_name(db)
    have = {d.datname for d in siblings.related(target, db)}
    if prev not in have:
        raise UsageError(f"nothing to undo: there is no {prev} (refresh-db keeps one unless "
                          "--no-backup)")
    if db not in have:
        recover(target, db, reporter)
        return
    siblings.exchange(target, db, prev)
    reporter.emit(Message(f"{prev} is {db} again; what was {db} is now {prev}", "ok"))
