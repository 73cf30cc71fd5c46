"""Database: reachable with the configured credentials, exists, has its schemas, has room
for snapshots."""

from __future__ import annotations

import os

from devenv import graph
from devenv.doctor.base import (
    FAIL,
    OK,
    Check,
    CheckDef,
    NotChecked,
    Problems,
    Remedy,
    fail,
    ok,
    warn,
)
from devenv.doctor.context import Context, ServerInfo
from devenv.events import fmt_size
from devenv.postgres import dumpfiles
from devenv.postgres.siblings import prev_name


def _server(ctx: Context) -> ServerInfo:
    """The server's answer; a database nobody can reach yet is not this check's failure."""
    project = ctx.project()
    if project.database is None:
        raise _NoDatabase
    info = ctx.target()
    if info.target is None:
        raise NotChecked(info.note, "services.running")
    return ctx.server()


class _NoDatabase(Exception):
    pass


def _no_db(id: str) -> Check:
    return ok(id, "no database: section in steps.yaml: nothing to check")


def check_connect(ctx: Context) -> Check:
    """The server answers with the configured user and password; its version."""
    try:
        server = _server(ctx)
    except _NoDatabase:
        return _no_db("db.connect")
    info = ctx.target()
    assert info.target is not None
    if server.error:
        err = server.error
        project = ctx.project()
        db = project.database
        assert db is not None
        if "password authentication failed" in err or ("role" in err and "does not exist" in err):
            fix = (f"check the user and password (database: in steps.yaml, or "
                   f"{'DATABASE_URL' if info.external else 'the service POSTGRES_PASSWORD'}); "
                   "a data volume keeps the password it was created with")
            return fail("db.connect", err, fix)
        if info.external:
            return fail("db.connect", err, f"start the server DATABASE_URL points at, or fix "
                                           f"{info.note.split(' ')[0]}")
        return fail("db.connect", err, "devenv up (starts the database service)",
                    remedies=[Remedy("start-services", (db.service,))])
    return ok("db.connect", f"{info.target.redacted('postgres')} answers: PostgreSQL "
                            f"{server.version} ({info.note})")


def check_exists(ctx: Context) -> Check:
    """The project's database exists (and accepts connections)."""
    try:
        server = _server(ctx)
    except _NoDatabase:
        return _no_db("db.exists")
    if server.error:
        raise NotChecked("the server does not answer", "db.connect")
    target = ctx.target().target
    assert target is not None
    db = target.dbname
    if not server.exists:
        related = {d.datname for d in ctx.related()}
        if prev_name(db) in related:
            return fail("db.exists", f"database {db} is missing but its backup "
                                     f"{prev_name(db)} exists (an interrupted refresh-db?)",
                        f"devenv doctor --fix (renames {prev_name(db)} back to {db})",
                        remedies=[Remedy("recover")])
        return fail("db.exists", f"database {db} does not exist on "
                                 f"{target.host}:{target.port}",
                    "devenv up (creates it and runs the steps)", remedies=[Remedy("up")])
    if not server.allows_connections:
        return fail("db.exists", f"database {db} refuses connections (a refresh-db swap or a "
                                 "snapshot save was interrupted)",
                    "devenv doctor --fix (allows connections again)",
                    remedies=[Remedy("recover")])
    return ok("db.exists", f"database {db} exists ({fmt_size(server.size)})")


def schema_users(ctx: Context, schema: str) -> list[str]:
    """Steps of the profile whose search_path names ``schema`` (what would refill it)."""
    project = ctx.project()

    return [n for n in graph.topo_order(project)
            if schema in project.steps[n].search_path
            and project.steps[n].in_profile(ctx.profile)]


def check_schemas(ctx: Context) -> Check:
    """Every schema database: declares exists in the database."""
    try:
        server = _server(ctx)
    except _NoDatabase:
        return _no_db("db.schemas")
    if server.error:
        raise NotChecked("the server does not answer", "db.connect")
    if not server.exists:
        raise NotChecked("the database is not there", "db.exists")
    if server.schemas is None:
        raise NotChecked(server.schema_error or "cannot read the schemas", "db.exists")
    project = ctx.project()
    db = project.database
    assert db is not None
    target = ctx.target().target
    assert target is not None
    problems = Problems("db.schemas")
    for schema in db.schemas:
        if schema in server.schemas:
            problems.add(OK, schema, "")
            continue
        users = schema_users(ctx, schema)
        if users:
            steps = " ".join(users)
            problems.add(FAIL, f"schema {schema} is missing from {target.dbname} (declared at "
                               f"{db.loc}; used by {', '.join(users)})",
                         f"devenv run --force {steps} (creates the schema and reruns the "
                         "steps that use it; devenv doctor --fix does the same)",
                         Remedy("create-schemas", (schema,)), Remedy("run-steps", tuple(users)))
        else:
            problems.add(FAIL, f"schema {schema} is missing from {target.dbname} (declared at "
                               f"{db.loc})",
                         f"devenv doctor --fix (creates schema {schema})",
                         Remedy("create-schemas", (schema,)))
    return problems.result(f"schemas present: {', '.join(db.schemas)}")


def _data_dir(ctx: Context, server: ServerInfo) -> str | None:
    """A folder on this machine on the disk the server writes to, if there is one."""
    project = ctx.project()
    db = project.database
    assert db is not None
    info = ctx.target()
    if not info.external:
        choice = ctx.backend(db.service)
        if choice.backend is not None and choice.backend.name == "docker":
            root = ctx.docker().root_dir
            return root if root and os.path.isdir(root) else None
    target = info.target
    local = target is not None and target.host in ("127.0.0.1", "localhost", "::1")
    if local and server.data_directory and os.path.isdir(server.data_directory):
        return server.data_directory
    return None


def check_disk(ctx: Context) -> Check:
    """Room on the server's disk for refresh-db's build and snapshots."""
    try:
        server = _server(ctx)
    except _NoDatabase:
        return _no_db("db.disk")
    if server.error:
        raise NotChecked("the server does not answer", "db.connect")
    project = ctx.project()
    folder = _data_dir(ctx, server)
    target = ctx.target().target
    cached = sum(d.size for d in ctx.related() if target and d.datname != target.dbname)
    if folder is None:
        return ok("db.disk", "free disk unknown (the server's data directory is not on this "
                             f"machine); database {fmt_size(server.size)}, snapshots "
                             f"{fmt_size(cached)}")
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    # refresh-db builds a whole copy beside the working database and snapshots it.
    need = 2 * server.size
    what = f"database {fmt_size(server.size)}" if server.exists else "no database yet"
    text = f"{fmt_size(free)} free on {folder}; {what}, snapshots {fmt_size(cached)}"
    keep = f"cache: keep: {project.cache_keep}"
    if free < server.size + 64 * 1024 * 1024:
        return fail("db.disk", f"{text}: not enough for refresh-db's build",
                    f"free space on {folder}, or keep fewer snapshots ({keep} in steps.yaml)")
    if free < max(need, 1024 ** 3):
        return warn("db.disk", f"{text}: little room for refresh-db's build and snapshots",
                    f"free space on {folder}, or keep fewer snapshots ({keep} in steps.yaml)")
    return ok("db.disk", text)


def check_import_role(ctx: Context) -> Check:
    """The role imports restore as (devenv_import) cannot log in, unless an import is
    running: one killed before it closed the role leaves it able to log in."""
    try:
        server = _server(ctx)
    except _NoDatabase:
        return _no_db("db.import_role")
    if server.error:
        raise NotChecked("the server does not answer", "db.connect")
    target = ctx.target().target
    assert target is not None
    role = dumpfiles.import_role(target)
    name = dumpfiles.IMPORT_ROLE
    if not role.exists:
        return ok("db.import_role", f"role {name} does not exist (no dump from a file or the "
                                    "remote cache was restored on this server)")
    if not role.can_log_in:
        return ok("db.import_role", f"role {name} (restores dumps from files and the remote "
                                    "cache) cannot log in outside an import")
    if role.restoring_pid is not None:
        return ok("db.import_role", f"an import is running (server process "
                                    f"{role.restoring_pid}): {name} may log in until it ends")
    return warn("db.import_role",
                f"role {name} can still log in: an import was interrupted before it closed "
                "the role (with a password nobody kept)",
                "devenv doctor --fix (closes it; so would the next import)",
                remedies=[Remedy("close-import-role")])


CHECKS = [
    CheckDef("db.connect", "Database", check_connect),
    CheckDef("db.exists", "Database", check_exists),
    CheckDef("db.schemas", "Database", check_schemas),
    CheckDef("db.disk", "Database", check_disk),
    CheckDef("db.import_role", "Database", check_import_role),
]
