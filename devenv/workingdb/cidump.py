"""ci-setup's cache: a dump of the built database, keyed by ``devenv fingerprint``.

A CI cache action restores ``--cache-dir`` (keyed by the fingerprint); ci-setup then
restores the dump whose key matches instead of running the steps, and after a cold build
saves one, keeping the newest N. Files use the snapshot file format (``devenv.postgres.dumpfiles``): a
header naming project, key and fingerprints, then ``pg_dump -Fc``. A file that is corrupt,
truncated, of another project or key, or from a newer server is ignored with a warning,
never loaded.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from devenv import fingerprint, graph
from devenv.errors import EXIT_CONFIG, DevenvError
from devenv.events import Message, PhaseFinished, PhaseStarted
from devenv.postgres import database, dumpfiles
from devenv.postgres.database import Target
from devenv.schema import Project
from devenv.session import Session
from devenv.state import StateStore
from devenv.workingdb import rerun

SUFFIX = ".devenv-dump"


def cache_file(cache_dir: Path, project: Project, key: str) -> Path:
    return Path(cache_dir) / f"{project.name}-{key[:24]}{SUFFIX}"


def restore(session: Session, target: Target, cache_dir: Path, key: str) -> bool:
    """Load the dump for ``key`` into the project database; False on a miss (or a file
    that cannot be trusted), after saying why."""
    project, reporter = session.project, session.reporter
    path = cache_file(cache_dir, project, key)
    if not path.exists():
        reporter.emit(Message(f"cache miss: no dump for key {key[:12]} in {cache_dir}"))
        return False
    try:
        header, offset = dumpfiles.read_header(path)
        if header.project != project.name:
            raise dumpfiles.DumpError(f"it belongs to project '{header.project}'")
        if header.key != key:
            raise dumpfiles.DumpError(f"its key {header.key[:12]} is not {key[:12]}")
        dumpfiles.verify(path, header, offset)
        server = dumpfiles.server_version_num(target)
        if header.server_major > dumpfiles.major_of(server):
            raise dumpfiles.DumpError(f"it was dumped from PostgreSQL {header.server_major}, newer "
                                  f"than this server ({dumpfiles.major_of(server)})")
    except (dumpfiles.DumpError, OSError, ValueError) as exc:
        reporter.emit(Message(f"ignoring cache file {path}: {exc}; building from the steps",
                              "warn"))
        return False
    container = session.tools()
    tool = dumpfiles.choose_tool("pg_restore", target, target.dbname, header.pg_dump_major,
                             container)
    if not _check_empty(project, target, key):
        reporter.emit(Message(f"cache hit for key {key[:12]}, but database {target.dbname} "
                              "already holds what devenv built here: not restoring over it; "
                              "the steps run as needed"))
        return False
    reporter.emit(PhaseStarted("cache", f"restoring {path.name} (cache hit)"))
    assert project.database is not None
    try:
        if database.exists(target, target.dbname):
            # Empty (checked above): CI's service container made it (POSTGRES_DB).
            database.drop(target, target.dbname)
        # A cache directory comes from another machine: restored without superuser rights.
        dumpfiles.restore_untrusted(target, target.dbname, tool, dumpfiles.payload(path, offset),
                                label=str(path))
        key_id = database.identity(target, target.dbname)
        if key_id:
            # The skip reasons then say where the steps' work came from.
            StateStore(project.state_dir).put(key_id, target.redacted(), rerun.database_held(
                project, {s: {**r, "restored_from": f"the CI cache ({path.name})"}
                          for s, r in header.records.items() if isinstance(r, dict)}))
    except Exception as exc:
        reporter.emit(PhaseFinished("cache", f"restoring {path.name} failed", ok=False))
        reporter.emit(Message(f"the cached dump did not restore ({exc}); building from the "
                              "steps", "warn"))
        with contextlib.suppress(Exception):
            database.drop(target, target.dbname)
        return False
    reporter.emit(PhaseFinished("cache", f"restored {path.name} (key {key[:12]})"))
    return True


class NotEmpty(DevenvError):
    """A cache hit found the database it would replace holding data."""

    exit_code = EXIT_CONFIG


def _check_empty(project: Project, target: Target, key: str) -> bool:
    """Whether the dump may replace the project database: it is missing or empty (CI's
    service container usually creates it empty, POSTGRES_DB). False for a database devenv
    built here (a second ci-setup in one job: its state says which steps it holds). A
    database with anything else in it (tables, sequences, views, schemas other than
    public) is refused: ci-setup never throws data away."""
    if not database.exists(target, target.dbname):
        return True
    with database.connect(target) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = "
            "c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%'), "
            "(SELECT count(*) FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', "
            "'information_schema', 'public') AND nspname NOT LIKE 'pg_%%')").fetchone()
    if row is not None and row[0] == 0 and row[1] == 0:
        return True
    key_id = database.identity(target, target.dbname)
    if key_id and StateStore(project.state_dir).steps(key_id):
        return False
    relations, schemas = (row[0], row[1]) if row else (0, 0)
    raise NotEmpty(f"the CI cache has a dump for key {key[:12]}, but database "
                   f"{target.dbname} already holds data ({relations} relation(s), {schemas} "
                   "schema(s) besides public) and ci-setup does not overwrite a database: "
                   "point DATABASE_URL at an empty or missing database, drop this one, or "
                   "run without --cache-dir")


def save(session: Session, target: Target, cache_dir: Path, key: str, keep: int,
         ) -> Path | None:
    """Dump the project database into ``cache_dir`` under ``key``; keep the newest ``keep``."""
    project, reporter, profile = session.project, session.reporter, session.profile
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_file(cache_dir, project, key)
    container = session.tools()
    server = dumpfiles.server_version_num(target)
    tool = dumpfiles.choose_tool("pg_dump", target, target.dbname, dumpfiles.major_of(server),
                             container)
    fps = fingerprint.compute(project)
    steps = [n for n in graph.topo_order(project) if project.steps[n].in_profile(profile)]
    key_id = database.identity(target, target.dbname)
    records = StateStore(project.state_dir).steps(key_id) if key_id else {}
    header = dumpfiles.Header(project=project.name, database=target.dbname, name=f"ci-{profile}",
                          key=key, steps=steps, fingerprints={s: fps[s].value for s in steps},
                          server_version_num=server, pg_dump_major=tool.major,
                          created=0.0, records=records)
    reporter.emit(PhaseStarted("cache", f"saving {path.name}"))
    try:
        written = dumpfiles.write(path, header, lambda sink: dumpfiles.dump(tool, sink,
                                                                    tmpdir=cache_dir))
    except Exception as exc:
        reporter.emit(PhaseFinished("cache", "saving the cache failed", ok=False))
        reporter.emit(Message(f"could not save the cache ({exc}); the database is ready "
                              "anyway", "warn"))
        return None
    reporter.emit(PhaseFinished("cache", f"saved {path.name} ({written.size // 1024} KiB)"))
    old = sorted(cache_dir.glob(f"{project.name}-*{SUFFIX}"), key=lambda p: p.stat().st_mtime,
                 reverse=True)[keep:]
    for p in old:
        p.unlink(missing_ok=True)
        reporter.emit(Message(f"dropped old cache file {p.name} (keeping {keep})"))
    return path
