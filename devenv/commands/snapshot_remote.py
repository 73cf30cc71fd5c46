"""``devenv snapshot push NAME`` / ``devenv snapshot pull FP|TAG``: snapshots in the team's
remote cache (:mod:`devenv.workingdb.oci`)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from devenv.commands.snapshot import CACHE_KIND, _db, _drop_quietly, _require
from devenv.errors import EXIT_OK, DevenvError, UsageError
from devenv.events import Message, phase
from devenv.lock import project_lock
from devenv.postgres import database, dumpfiles, siblings
from devenv.schema import Project
from devenv.session import Session
from devenv.state import StateStore
from devenv.workingdb import oci, rebuild


def _remote(project: Project) -> oci.Remote:
    remote = oci.configured(project)
    if remote is None:
        raise UsageError("no remote cache: set cache.remote in steps.yaml (e.g. "
                         "oci://ghcr.io/acme/shop-db), DEVENV_CACHE_REMOTE or --cache-remote")
    return remote


def push(session: Session, name: str, *, background: bool = False, wait: bool = True) -> int:
    """Dump snapshot ``name`` (a user snapshot, or a cache snapshot by its key's first
    characters) and push it to the remote cache, tagged by the fingerprint of its steps."""
    project, reporter = session.project, session.reporter
    db = _db(project)
    remote = _remote(project)
    oci.sign_key(project)  # a broken key fails now, before the dump
    with project_lock(project.state_dir, "snapshot push", reporter, wait=wait):
        target, container = session.open_database()
        rebuild.recover(target, db, reporter)
        cache = [d for d in siblings.related(target, db) if d.kind == CACHE_KIND
                 and d.meta.get("complete") and d.key.startswith(name) and len(name) >= 6]
        info = cache[0] if len(cache) == 1 else _require(target, db, name)
        if not info.key or not info.steps:
            raise DevenvError(f"snapshot '{name}' records no steps: there is no fingerprint "
                              "to tag it by (save it after `devenv up`)")
        folder = Path(tempfile.mkdtemp(prefix="push-", dir=oci._download_dir(project)))
        path = folder / "snapshot.devenv-snapshot"
        with phase(reporter, "export", f"dumping snapshot '{name}'", f"dumped '{name}'"):
            oci.dump_database(project, target, info.datname, info.key, info.steps,
                                       name, path, container)
    if background:
        pid = oci.spawn_push(project, remote, path)
        reporter.emit(Message(f"pushing snapshot {info.key[:12]} to {remote.url} in the "
                              f"background (pid {pid}; .devenv/logs/push.log)", "ok"))
        return EXIT_OK
    try:
        oci.push_file(project, remote, path, reporter)
    finally:
        path.unlink(missing_ok=True)
        folder.rmdir()
    reporter.emit(Message(f"pushed snapshot '{name}' as {remote.ref(info.key)}; a teammate's "
                          "refresh-db with the same steps pulls it", "ok"))
    return EXIT_OK


def pull(session: Session, ref: str, *,
         wait: bool = True) -> int:
    """Pull snapshot ``ref`` (a fingerprint or tag) into a local cache snapshot, so the
    next refresh-db starts from it."""
    project, reporter = session.project, session.reporter
    db = _db(project)
    remote = _remote(project)
    with project_lock(project.state_dir, "snapshot pull", reporter, wait=wait):
        target, _ = session.open_database()
        rebuild.recover(target, db, reporter)
        client = oci.Client(remote)
        found = client.manifest(ref)
        if found is None:
            raise DevenvError(f"there is no snapshot {ref} in {remote.url}")
        # the manifest names the key: a snapshot already here is not downloaded again
        key = oci.key_of(found)
        name = siblings.cache_name(db, key) if key else ""
        if key and siblings.find(target, db, name) is not None:
            reporter.emit(Message(f"snapshot {key[:12]} is already here ({name})", "ok"))
            return EXIT_OK
        build = siblings.build_name(db)
        # the restore is prepared (import role, database) while the blob downloads, as on
        # refresh-db's remote hits; a refused download undoes it
        with oci.pulled(project, client, target, build, ref, found,
                        dumpfiles.server_version_num(target), expect_key=key) as (hit, preparing):
            name = siblings.cache_name(db, hit.key)
            value = siblings.meta(CACHE_KIND, project.name, key=hit.key,
                                   steps=list(hit.held), complete=False)
            with phase(reporter, "restore", f"restoring snapshot {hit.key[:12]}",
                       hit.describe()):
                try:
                    oci.restore_file(session, target, build, hit, value, preparing)
                    ident = database.identity(target, build)
                    if ident:
                        StateStore(project.state_dir).put(ident, target.redacted(name),
                                                          oci._records(project, hit))
                    siblings.rename(target, build, name)
                    siblings.set_meta(target, name, {**value, "complete": True})
                except BaseException:
                    _drop_quietly(target, build)
                    raise
    reporter.emit(Message(f"{hit.describe()} as {name}; refresh-db starts from it", "ok"))
    return EXIT_OK
