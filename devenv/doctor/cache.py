"""Snapshots: what refresh-db's cache holds and weighs, which snapshots no longer match the
steps, and what a crashed refresh-db left behind (a ``__build`` database...)."""

from __future__ import annotations

import contextlib

from devenv import fingerprint, graph
from devenv.doctor.base import Check, CheckDef, NotChecked, Remedy, ok, warn
from devenv.doctor.context import Context, lock_holder
from devenv.events import fmt_size
from devenv.lock import database_lock_holder
from devenv.postgres import siblings
from devenv.postgres.siblings import DbInfo
from devenv.workingdb import oci


def _infos(ctx: Context) -> tuple[str, list[DbInfo]]:
    project = ctx.project()
    if project.database is None:
        raise _NoDatabase
    target = ctx.target().target
    if target is None:
        raise NotChecked(ctx.target().note, "services.running")
    if ctx.server().error:
        raise NotChecked("the server does not answer", "db.connect")
    return target.dbname, ctx.related()


class _NoDatabase(Exception):
    pass


def is_current(ctx: Context, info: DbInfo) -> bool:
    """Whether a snapshot holds its steps as they are defined now (its key is the combined
    fingerprint of the steps it records)."""
    fps = ctx.fingerprints()
    steps = info.steps
    return bool(steps) and all(s in fps for s in steps) and \
        info.key == fingerprint.combined(fps, steps)


def check_cache(ctx: Context) -> Check:
    """The snapshot cache: how many, how big, how many were made from older steps."""
    try:
        db, infos = _infos(ctx)
    except _NoDatabase:
        return ok("snapshots.cache", "no database: no snapshots")
    cache = [d for d in infos if d.kind == "snapshot"]
    users = [d for d in infos if d.datname.startswith(siblings.stem(db) + "__u_")]
    ready = [d for d in infos if d.datname == siblings.ready_name(db)]
    prev = [d for d in infos if d.datname == siblings.prev_name(db)]
    total = sum(d.size for d in cache + users + ready + prev)
    if not cache and not ready and not prev and not users:
        return ok("snapshots.cache", "no snapshots yet (refresh-db makes them)")
    stale = [d for d in cache if not is_current(ctx, d)]
    parts = [f"{len(cache)} snapshot{'s' if len(cache) != 1 else ''}"]
    if users:
        parts.append(f"{len(users)} saved by name")
    if ready:
        fresh = is_current(ctx, ready[0])
        parts.append("a ready copy" + ("" if fresh else " (of older steps)"))
    if prev:
        parts.append(f"the backup {prev[0].datname}")
    text = f"{', '.join(parts)}: {fmt_size(total)}"
    if stale:
        text += (f"; {len(stale)} made from older steps (kept for switching back; the cache "
                 f"keeps the newest {ctx.project().cache_keep})")
    return ok("snapshots.cache", text, [f"{d.datname}: {d.kind}, {fmt_size(d.size)}"
                                        for d in cache + users + ready + prev])


def check_leftovers(ctx: Context) -> Check:
    """Nothing left by a crashed refresh-db: a ``__build``, a half-made snapshot, a database
    left refusing connections."""
    try:
        db, infos = _infos(ctx)
    except _NoDatabase:
        return ok("snapshots.leftovers", "no database: nothing left over")
    project = ctx.project()
    left = []
    for d in infos:
        if siblings.is_build(db, d.datname) or d.datname.endswith("__x") or \
                d.datname.startswith(siblings.ready_name(db) + "_tmp") or (d.kind == "snapshot" and not d.meta.get("complete", False)):
            left.append(d)
    if not left:
        return ok("snapshots.leftovers", f"no leftover of an interrupted refresh-db beside {db}")
    names = ", ".join(d.datname for d in left)
    holder = lock_holder(project.state_dir)
    target = ctx.target().target
    if holder is None and target is not None:
        # another checkout of the project (a git worktree) building on this server
        with contextlib.suppress(Exception):
            holder = database_lock_holder(target)
    if holder is not None:
        return ok("snapshots.leftovers", f"{names}: in use by a running devenv ({holder})")
    weight = fmt_size(sum(d.size for d in left))
    if any(siblings.is_build(db, d.datname) for d in left):
        return warn("snapshots.leftovers",
                    f"{names} left by a refresh-db that crashed or ran with --keep-failed "
                    f"({weight}); the working database {db} is not affected",
                    "devenv doctor --fix (drops it; so would devenv snapshot gc or the next "
                    "refresh-db)",
                    remedies=[Remedy("recover")])
    return warn("snapshots.leftovers", f"{names} left by an interrupted refresh-db ({weight})",
                "devenv doctor --fix (drops them; so would devenv snapshot gc or the next "
                "refresh-db)",
                remedies=[Remedy("recover")])


def check_remote(ctx: Context) -> Check:
    """The team's remote cache (cache.remote): reachable, authenticated, and how many of
    its snapshots match the current steps."""
    project = ctx.project()
    try:
        remote = oci.configured(project)
    except Exception as exc:  # a malformed DEVENV_CACHE_REMOTE
        return warn("snapshots.remote", str(exc), f"fix {oci.ENV_REMOTE}")
    if remote is None:
        return ok("snapshots.remote", "no remote cache (cache.remote in steps.yaml shares "
                  "snapshots with the team and CI)")
    try:
        client = oci.Client(remote)
        client.ping()
        tags = set(client.tags())
    except oci.RemoteError as exc:
        return warn("snapshots.remote", f"{remote.url}: {exc}",
                    "check the registry, or log in (docker login "
                    f"{remote.registry}, or DEVENV_CACHE_USER/DEVENV_CACHE_PASSWORD); "
                    "refresh-db builds from the steps meanwhile")
    who = "as " + client.reg.creds[0] if client.reg.creds else "anonymously"
    fps = ctx.fingerprints()
    steps = [n for n in graph.topo_order(project) if project.steps[n].in_profile("local")]
    wanted = [steps, *graph.snapshot_points(project, steps)] if steps else []
    keys = {fingerprint.combined(fps, held) for held in wanted if all(s in fps for s in held)}
    matching = len(keys & tags)
    full = bool(steps) and fingerprint.combined(fps, steps) in tags
    return ok("snapshots.remote",
              f"{remote.url}: reachable, authenticated {who}; {len(tags)} snapshot(s) there, "
              f"{matching} match the current steps"
              + ("; refresh-db on a new checkout pulls the full one" if full else ""))


CHECKS = [
    CheckDef("snapshots.cache", "Snapshots", check_cache),
    CheckDef("snapshots.leftovers", "Snapshots", check_leftovers),
    CheckDef("snapshots.remote", "Snapshots", check_remote),
]
