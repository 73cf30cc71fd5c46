"""``devenv snapshot``: named copies of the working database, kept beside it on the server.

A user snapshot is the database ``DB__u_NAME`` (see :mod:`devenv.postgres.siblings`), a
``CREATE DATABASE ... TEMPLATE`` clone whose comment records the steps it holds and their
fingerprints; the state records (:class:`devenv.state.StateStore`) travel with every copy,
so after a restore ``devenv up`` knows which steps the restored database already has.

New databases are first made as ``DB__build`` and renamed into place once complete: a
crash leaves only a ``__build``, which the next command's :func:`rebuild.recover` drops.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

from devenv import faults, fingerprint, graph, planner, processes
from devenv.console import Output, PlainReporter
from devenv.errors import EXIT_OK, DevenvError, ServiceError, UsageError
from devenv.events import Message, fmt_size, phase
from devenv.lock import project_lock
from devenv.postgres import database, dumpfiles, siblings
from devenv.postgres.database import Target
from devenv.schema import Project
from devenv.session import Session
from devenv.state import StateStore
from devenv.workingdb import branches, rebuild, rerun

USER_KIND = "user"
CACHE_KIND = "snapshot"


# --------------------------------------------------------------------------- helpers


def _db(project: Project) -> str:
    if project.database is None:
        raise UsageError("devenv snapshot needs a database: add a 'database:' section to "
                          "steps.yaml")
    return project.database.name


def _identity(target: Target, datname: str) -> str:
    key = database.identity(target, datname)
    if key is None:
        raise DevenvError(f"database {datname} disappeared while devenv worked on it")
    return key


def _require(target: Target, db: str, name: str) -> siblings.DbInfo:
    datname = siblings.user_name(db, name)
    info = siblings.find(target, db, datname, sizes=True)
    if info is None:
        have = [d.meta.get("name", "") for d in siblings.related(target, db)
                if d.kind == USER_KIND]
        known = ", ".join(sorted(str(h) for h in have if h)) or "none yet"
        raise UsageError(f"there is no snapshot '{name}' (database {datname}); "
                         f"snapshots: {known}")
    return info


def _drop_quietly(target: Target, datname: str) -> None:
    with contextlib.suppress(Exception):
        siblings.drop(target, datname)


def fmt_age(seconds: float) -> str:
    """``40s``, ``12m``, ``5h``, ``3d``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def _profile_steps(project: Project, profile: str) -> list[str]:
    return [n for n in graph.topo_order(project) if project.steps[n].in_profile(profile)]


def compare(info: siblings.DbInfo, fps: dict[str, fingerprint.Fingerprint],
            ) -> tuple[bool, list[str]]:
    """Whether snapshot ``info`` holds its steps as they are defined now; the steps that
    differ (changed, or no longer defined) when it does not."""
    steps = info.steps
    gone = [s for s in steps if s not in fps]
    if gone:
        return False, gone
    if info.key == fingerprint.combined(fps, steps):
        return True, []
    recorded = info.meta.get("fingerprints")
    if isinstance(recorded, dict) and recorded:
        return False, [s for s in steps if recorded.get(s) != fps[s].value]
    return False, []


def _changed_text(changed: list[str], fps: dict[str, fingerprint.Fingerprint]) -> str:
    gone = [s for s in changed if s not in fps]
    moved = [s for s in changed if s in fps]
    parts = []
    if moved:
        parts.append("changed: " + ", ".join(moved))
    if gone:
        parts.append("no longer defined: " + ", ".join(gone))
    return "; ".join(parts) or "steps changed"


# --------------------------------------------------------------------------- save


def save(session: Session, name: str, *, replace: bool = False, wait: bool = True) -> int:
    """Save the working database as user snapshot ``name``."""
    project, reporter = session.project, session.reporter
    db = _db(project)
    snap = siblings.user_name(db, name)
    with project_lock(project.state_dir, "snapshot save", reporter, wait=wait), \
            contextlib.ExitStack() as locks:
        target, _ = session.open_database(locks, "snapshot save", wait)
        db = target.dbname  # DATABASE_URL may name another database than steps.yaml
        snap = siblings.user_name(db, name)
        rebuild.recover(target, db, reporter)
        infos = {d.datname: d for d in siblings.related(target, db)}
        if db not in infos:
            raise UsageError(f"there is no database {db} to save yet: build it first with "
                              "`devenv up` or `devenv refresh-db`")
        if snap in infos and not replace:
            age = fmt_age(time.time() - infos[snap].created)
            raise UsageError(f"snapshot '{name}' already exists (saved {age} ago): pass "
                             f"--replace, or delete it first (devenv snapshot delete {name})")
        store = StateStore(project.state_dir)
        records = {s: r for s, r in store.steps(_identity(target, db)).items()
                   if isinstance(r, dict) and not r.get("failed") and r.get("fingerprint")}
        order = graph.topo_order(project)
        steps = [s for s in order if s in records] + sorted(s for s in records
                                                           if s not in project.steps)
        fps = {s: str(records[s]["fingerprint"]) for s in steps}
        key = fingerprint.combined({s: fingerprint.Fingerprint(v) for s, v in fps.items()},
                                   steps)
        value = siblings.meta(USER_KIND, project.name, name=name, key=key, steps=steps,
                               fingerprints=fps, source=db, complete=True)
        build = siblings.build_name(db)
        with phase(reporter, "save", f"saving {db} as snapshot '{name}'",
                    f"saved {db} as {snap}"):
            # CREATE DATABASE ... TEMPLATE needs the source without sessions: refuse new
            # ones (apps reconnecting) for the few seconds of the copy.
            ended = siblings.terminate(target, db, block=True)

            # A SIGKILL from here to allow_connections leaves db refusing connections: the
            # next command's recover (or up's build) opens it again; status, doctor say so.
            faults.point("snapshot-save-blocked")
            try:
                siblings.clone(target, db, build, value)
            except BaseException:
                _drop_quietly(target, build)
                raise
            finally:
                siblings.allow_connections(target, [db])
            try:
                store.put(_identity(target, build), target.redacted(snap), records)
                if snap in infos:
                    old_key = database.identity(target, snap)
                    siblings.drop(target, snap)
                    if old_key:
                        store.forget(old_key)
                siblings.rename(target, build, snap)
            except BaseException:
                _drop_quietly(target, build)
                raise
        if ended:
            reporter.emit(Message(f"ended {ended} session(s) on {db} to copy it; apps "
                                  "reconnect on their next query", "warn"))
        size = siblings.find(target, db, snap, sizes=True)
        held = f"{len(steps)} step(s)" if steps else "no recorded steps"
        reporter.emit(Message(f"snapshot '{name}' saved ({held}, "
                              f"{fmt_size(size.size if size else 0)}); "
                              f"devenv snapshot restore {name} brings it back", "ok"))
    return EXIT_OK


# --------------------------------------------------------------------------- restore


def restore(session: Session, name: str, *, backup: bool = True, wait: bool = True) -> int:
    """Make user snapshot ``name`` the working database, atomically (like refresh-db)."""
    project, reporter = session.project, session.reporter
    db = _db(project)
    siblings.user_name(db, name)
    with project_lock(project.state_dir, "snapshot restore", reporter, wait=wait), \
            contextlib.ExitStack() as locks:
        target, _ = session.open_database(locks, "snapshot restore", wait)
        db = target.dbname  # DATABASE_URL may name another database than steps.yaml
        rebuild.recover(target, db, reporter)
        info = _require(target, db, name)
        build = siblings.build_name(db)
        store = StateStore(project.state_dir)
        with phase(reporter, "restore", f"copying snapshot '{name}' to {build}",
                    f"copied snapshot '{name}'"):
            try:
                siblings.clone(target, info.datname, build,
                                siblings.meta("build", project.name, restored=name))
                # the snapshot holds the database only: steps whose work lives in another
                # service run again on the next up
                store.copy(_identity(target, info.datname), _identity(target, build),
                           target.redacted(db), skip=rerun.outside(project, list(project.steps)))
            except BaseException:
                _drop_quietly(target, build)
                raise
        with phase(reporter, "swap", f"swapping {build} in as {db}", f"{db} swapped in"):
            try:
                prev = siblings.swap(target, db, build, backup=backup)
            except BaseException:
                _drop_quietly(target, build)
                raise
        reporter.emit(Message(f"{db} is snapshot '{name}' again (saved "
                              f"{fmt_age(time.time() - info.created)} ago)", "ok"))
        fps = fingerprint.compute(project)
        matches, changed = compare(info, fps)
        if not matches:
            reporter.emit(Message(f"snapshot '{name}' does not match the current steps "
                                  f"({_changed_text(changed, fps)}): devenv up runs what "
                                  "changed", "warn"))
        if prev:
            reporter.emit(Message(f"the previous database is kept as {prev} "
                                  "(devenv refresh-db --undo swaps it back)"))
        branches.note(project.name, project.root, target)
        processes.follow_swap(session, target)
    return EXIT_OK


# --------------------------------------------------------------------------- list


def list_snapshots(session: Session, out: Output, *, as_json: bool = False,
                   wait: bool = True) -> int:
    """Show the user snapshots and the cache snapshots, and whether each is current."""
    project, profile = session.project, session.profile
    db = _db(project)
    planner.check_profile(project, profile)
    with project_lock(project.state_dir, "snapshot list", PlainReporter(sys.stderr),
                      wait=wait):
        target, note = session.current_target()
        if target is None:
            raise ServiceError(f"cannot list snapshots: {note}; start it with `devenv up`")
        db = target.dbname
        infos = siblings.related(target, db, sizes=True)
    fps = fingerprint.compute(project)
    all_steps = _profile_steps(project, profile)
    now = time.time()
    items: list[dict[str, Any]] = []
    users = sorted((d for d in infos if d.kind == USER_KIND),
                   key=lambda d: str(d.meta.get("name", d.datname)))
    caches = sorted((d for d in infos if d.kind == CACHE_KIND),
                    key=lambda d: d.created, reverse=True)
    # the steps whose work a snapshot holds: not those whose work lives in another service
    elsewhere = set(rerun.outside(project, list(project.steps)))
    in_db = [n for n in all_steps if n not in elsewhere]
    for info in [*users, *caches]:
        matches, changed = compare(info, fps)
        user = info.kind == USER_KIND
        held = [n for n in info.steps if n not in elsewhere]
        items.append({
            "name": str(info.meta.get("name", "")) if user else info.datname[len(siblings.stem(db)) + 2:],
            "kind": "user" if user else "cache",
            "database": info.datname,
            "size": info.size,
            "created": info.created,
            "age_seconds": round(now - info.created, 1),
            "steps": held,
            "all_steps": set(in_db) <= set(held),
            "key": info.key,
            "matches": matches,
            "changed": changed,
            "complete": bool(info.meta.get("complete", user)),
        })
    if as_json:
        out.json({"project": project.name, "database": db, "profile": profile,
                  "cache_keep": project.cache_keep, "snapshots": items})
        return EXIT_OK
    if not items:
        out.text(f"no snapshots of {db} yet (devenv snapshot save NAME makes one)")
        return EXIT_OK
    rows = []
    for it in items:
        steps = it["steps"]
        count = ("all " if it["all_steps"] else "") + f"{len(steps)}"
        shown = ", ".join(steps[:4]) + (f", +{len(steps) - 4}" if len(steps) > 4 else "")
        rows.append([it["name"], it["kind"], fmt_size(it["size"]), fmt_age(it["age_seconds"]),
                     f"{count}: {shown}" if steps else "none",
                     "yes" if it["matches"] else f"no ({_changed_text(it['changed'], fps)})"])
    out.table(["name", "kind", "size", "age", "steps", "current"], rows,
              [None if r[-1] == "yes" else "dim" for r in rows])
    n_cache = sum(1 for it in items if it["kind"] == "cache")
    out.text(f"{len(items) - n_cache} user snapshot(s), {n_cache} cache snapshot(s) "
             f"(cache keeps {project.cache_keep})")
    return EXIT_OK


# --------------------------------------------------------------------------- delete / gc


def delete(session: Session, name: str, *, wait: bool = True) -> int:
    """Drop user snapshot ``name``."""
    project, reporter = session.project, session.reporter
    db = _db(project)
    siblings.user_name(db, name)
    with project_lock(project.state_dir, "snapshot delete", reporter, wait=wait), \
            contextlib.ExitStack() as locks:
        target, _ = session.open_database(locks, "snapshot delete", wait)
        db = target.dbname  # DATABASE_URL may name another database than steps.yaml
        info = _require(target, db, name)
        key = database.identity(target, info.datname)
        siblings.drop(target, info.datname)
        if key:
            StateStore(project.state_dir).forget(key)
        reporter.emit(Message(f"deleted snapshot '{name}' ({info.datname}, "
                              f"{fmt_size(info.size)})", "ok"))
    return EXIT_OK


def gc(session: Session, *, keep: int | None = None, wait: bool = True) -> int:
    """Drop cache snapshots beyond ``keep`` (default ``cache.keep``) and what an interrupted
    run left (``__build``, incomplete snapshots). User snapshots and the backup stay."""
    project, reporter, profile = session.project, session.reporter, session.profile
    db = _db(project)
    planner.check_profile(project, profile)
    keep = project.cache_keep if keep is None else keep
    if keep < 0:
        raise UsageError(f"--keep must be 0 or more, not {keep}")
    with project_lock(project.state_dir, "snapshot gc", reporter, wait=wait), \
            contextlib.ExitStack() as locks:
        target, _ = session.open_database(locks, "snapshot gc", wait)
        db = target.dbname  # DATABASE_URL may name another database than steps.yaml
        before = {d.datname: d for d in siblings.related(target, db, sizes=True)}
        keys = {n: database.identity(target, n) for n in before}
        fixed = rebuild.recover(target, db, reporter)
        # The snapshot of the current steps is what the next refresh-db starts from.
        current = siblings.cache_name(
            db, fingerprint.combined(fingerprint.compute(project),
                                     _profile_steps(project, profile)))
        dropped = siblings.gc(target, db, keep, protect=[current])
        after = {d.datname for d in siblings.related(target, db)}
        gone = [n for n in before if n not in after]
        store = StateStore(project.state_dir)
        for n in gone:
            key = keys.get(n)
            if key:
                store.forget(key)
        for n in dropped:
            reporter.emit(Message(f"dropped cache snapshot {n} ({fmt_size(before[n].size)})"))
        freed = sum(before[n].size for n in gone)
        kept = sum(1 for n in after if n in before and before[n].kind == CACHE_KIND)
        summary = (f"gc: dropped {len(gone)} database(s), freed {fmt_size(freed)}; "
                   f"{kept} cache snapshot(s) kept (keep {keep})")
        if not gone and not fixed:
            summary = f"gc: nothing to drop; {kept} cache snapshot(s) (keep {keep})"
        reporter.emit(Message(summary, "ok"))
    return EXIT_OK


# --------------------------------------------------------------------------- export / import


def export(session: Session, name: str, file: Path, *, wait: bool = True) -> int:
    """Write user snapshot ``name`` to ``file``: our header + ``pg_dump -Fc``."""
    project, reporter = session.project, session.reporter
    db = _db(project)
    siblings.user_name(db, name)
    file = Path(file)
    if file.is_dir():
        raise UsageError(f"{file} is a folder: name the file to write, e.g. "
                         f"{file / (name + '.devenv-snapshot')}")
    if not file.parent.is_dir():
        raise UsageError(f"cannot write {file}: folder {file.parent} does not exist")
    with project_lock(project.state_dir, "snapshot export", reporter, wait=wait), \
            contextlib.ExitStack() as locks:
        target, container = session.open_database(locks, "snapshot export", wait)
        db = target.dbname  # DATABASE_URL may name another database than steps.yaml
        info = _require(target, db, name)
        server = dumpfiles.server_version_num(target)
        tool = dumpfiles.choose_tool("pg_dump", target, info.datname, dumpfiles.major_of(server),
                                 container)
        records = StateStore(project.state_dir).steps(_identity(target, info.datname))
        fps = info.meta.get("fingerprints")
        header = dumpfiles.Header(
            project=project.name, database=db, name=name, key=info.key, steps=info.steps,
            fingerprints=dict(fps) if isinstance(fps, dict) else {},
            server_version_num=server, pg_dump_major=tool.major, created=info.created,
            records=records)
        with phase(reporter, "export", f"dumping snapshot '{name}' to {file}",
                    f"dumped snapshot '{name}'"):
            written = dumpfiles.write(file, header,
                                  lambda sink: dumpfiles.dump(tool, sink, tmpdir=file.parent))
        reporter.emit(Message(f"exported snapshot '{name}' to {file} "
                              f"({fmt_size(written.size)} dump, pg_dump {tool.major} "
                              f"{tool.where}); devenv snapshot import {file} "
                              "loads it", "ok"))
    return EXIT_OK


def import_(session: Session, file: Path, name: str | None = None, *,
            force: bool = False, wait: bool = True) -> int:
    """Restore snapshot file ``file`` as user snapshot ``name`` (default: its own name)."""
    project, reporter = session.project, session.reporter
    db = _db(project)
    file = Path(file)
    header, offset = dumpfiles.read_header(file)
    name = name or header.name
    snap = siblings.user_name(db, name)
    if header.project != project.name and not force:
        raise UsageError(f"{file} is a snapshot of project '{header.project}', not "
                         f"'{project.name}': pass --force to import it anyway")
    with phase(reporter, "check", f"checking {file}", f"{file} is complete"):
        dumpfiles.verify(file, header, offset)
    with project_lock(project.state_dir, "snapshot import", reporter, wait=wait), \
            contextlib.ExitStack() as locks:
        target, container = session.open_database(locks, "snapshot import", wait)
        db = target.dbname  # DATABASE_URL may name another database than steps.yaml
        snap = siblings.user_name(db, name)
        rebuild.recover(target, db, reporter)
        server = dumpfiles.server_version_num(target)
        if header.server_major > dumpfiles.major_of(server):
            raise dumpfiles.SnapshotFileError(
                f"{file} was dumped from PostgreSQL {header.server_major}, newer than this "
                f"server (PostgreSQL {dumpfiles.major_of(server)}): import it into PostgreSQL "
                f"{header.server_major} or newer")
        if siblings.find(target, db, snap) is not None:
            raise UsageError(f"snapshot '{name}' already exists: delete it first (devenv "
                             f"snapshot delete {name}) or import under another name "
                             f"(devenv snapshot import {file} NEW_NAME)")
        build = siblings.build_name(db)
        tool = dumpfiles.choose_tool("pg_restore", target, build,
                                 max(header.pg_dump_major, 0), container)
        value = siblings.meta(USER_KIND, project.name, name=name, key=header.key,
                               steps=list(header.steps), fingerprints=dict(header.fingerprints),
                               source=f"file {file.name}", imported_from=header.project,
                               saved=header.created, complete=True)
        with phase(reporter, "import", f"restoring {file} into {build}",
                    f"restored {file}"):
            try:
                # The file is trusted with nothing: restored without superuser rights.
                dumpfiles.restore_untrusted(target, build, tool, dumpfiles.payload(file, offset),
                                        label=str(file))
                siblings.set_meta(target, build, value)
                store = StateStore(project.state_dir)
                store.put(_identity(target, build), target.redacted(snap),
                          {s: r for s, r in header.records.items() if isinstance(r, dict)})
                siblings.rename(target, build, snap)
            except BaseException:
                _drop_quietly(target, build)
                raise
        foreign = f" (from project '{header.project}')" if header.project != project.name \
            else ""
        reporter.emit(Message(f"imported {file} as snapshot '{name}'{foreign}; devenv "
                              f"snapshot restore {name} makes it the working database", "ok"))
    return EXIT_OK
