"""`devenv snapshot` on a real PostgreSQL: save/list/restore/delete, export/import files,
refusals with their exact messages, gc."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devenv import loader
from devenv.commands import snapshot as cmd
from devenv.console import Output
from devenv.errors import DevenvError, UsageError
from devenv.events import Message, RecordingReporter
from devenv.postgres import database, dumpfiles, siblings
from devenv.schema import Project
from devenv.session import Session
from devenv.state import StateStore
from devenv.workingdb import rebuild
from tests.dbcompare import dump_database

pytestmark = pytest.mark.postgres

PSQL = "psql -X -q -v ON_ERROR_STOP=1"


def config(db: str, name: str = "snapproj", keep: int = 5) -> dict[str, Any]:
    return {
        "version": 1,
        "name": name,
        "services": {"db": {"image": "postgres:15", "env": {"POSTGRES_PASSWORD": "x"}}},
        "database": {"service": "db", "name": db, "schemas": ["public", "app"]},
        "cache": {"keep": keep},
        "steps": {
            "schema": {"run": f"{PSQL} -f schema.sql", "needs": ["db"], "inputs": ["schema.sql"]},
            "seed": {"run": f"{PSQL} -f seed.sql", "needs": ["schema"], "inputs": ["seed.sql"]},
        },
    }


FILES = {
    "schema.sql": "create table app.items(id serial primary key, v text);\n"
                  "create index on app.items(v);\n",
    "seed.sql": "insert into app.items(v) select 'v' || g from generate_series(1, 300) g;\n",
}


@dataclass
class Env:
    root: Path
    target: database.Target
    make: Callable[..., Path]

    @property
    def db(self) -> str:
        return self.target.dbname

    def project(self) -> Project:
        return loader.load(self.root / "steps.yaml")

    def sql(self, query: str) -> None:
        with psycopg.connect(self.target.url(), autocommit=True) as conn:
            conn.execute(query)

    def refresh(self) -> None:
        rebuild.refresh(Session(self.project(), RecordingReporter()), self.target,
                          background_reclone=False)

    def listing(self) -> dict[str, Any]:
        buf = StringIO()
        assert cmd.list_snapshots(Session(self.project(), RecordingReporter()), Output(plain=True, stream=buf),
                                  as_json=True) == 0
        data: dict[str, Any] = json.loads(buf.getvalue())
        return data

    def names(self) -> set[str]:
        return {d.datname for d in siblings.related(self.target, self.db)}


@pytest.fixture
def env(make_project: Callable[..., Path], pg_server: Any, monkeypatch: pytest.MonkeyPatch,
        ) -> Iterator[Env]:
    db = pg_server.unique_db("sn")
    root = make_project(config(db), files=FILES)
    url = pg_server.url(db)
    monkeypatch.setenv("DATABASE_URL", url)
    target = database.parse_url(url)
    e = Env(root, target, make_project)
    try:
        yield e
    finally:
        for info in siblings.related(target, db):
            database.drop(target, info.datname)


def messages(rep: RecordingReporter, level: str | None = None) -> list[str]:
    return [e.text for e in rep.events
            if isinstance(e, Message) and (level is None or e.level == level)]


def test_save_list_restore_delete_round_trip(env: Env) -> None:
    env.refresh()
    saved = dump_database(env.target.url())
    rep = RecordingReporter()
    assert cmd.save(Session(env.project(), rep), "seeded") == 0
    assert f"{env.db}__u_seeded" in env.names()
    assert any(m.startswith("snapshot 'seeded' saved (2 step(s)") for m in messages(rep, "ok"))

    # the developer changes the working database
    env.sql("delete from app.items where id > 10; insert into app.items(v) values ('mine')")
    changed = dump_database(env.target.url())
    assert changed != saved

    [item] = env.listing()["snapshots"][:1]
    assert item["name"] == "seeded" and item["kind"] == "user"
    assert item["steps"] == ["schema", "seed"] and item["matches"] is True
    assert item["size"] > 0 and item["age_seconds"] >= 0

    rep = RecordingReporter()
    assert cmd.restore(Session(env.project(), rep), "seeded") == 0
    assert dump_database(env.target.url()) == saved
    assert dump_database(env.target.url(f"{env.db}__prev")) == changed
    assert f"the previous database is kept as {env.db}__prev " \
           "(devenv refresh-db --undo swaps it back)" in messages(rep)
    assert f"{env.db}__build" not in env.names()

    # the restored database carries the state records: nothing needs to run
    project = env.project()
    key = database.identity(env.target, env.db)
    assert key is not None
    assert set(StateStore(project.state_dir).steps(key)) == {"schema", "seed"}
    from devenv import planner
    from devenv.events import Action

    assert [d.action for d in planner.decide(project, StateStore(project.state_dir).steps(key))
            ] == [Action.SKIP, Action.SKIP]

    # restoring again (the snapshot is kept, the backup replaced), and --no-backup
    env.sql("insert into app.items(v) values ('again')")
    assert cmd.restore(Session(env.project(), RecordingReporter()), "seeded", backup=False) == 0
    assert dump_database(env.target.url()) == saved
    assert f"{env.db}__prev" not in env.names()

    rep = RecordingReporter()
    assert cmd.delete(Session(env.project(), rep), "seeded") == 0
    assert f"{env.db}__u_seeded" not in env.names()
    with pytest.raises(UsageError) as err:
        cmd.restore(Session(env.project(), RecordingReporter()), "seeded")
    assert str(err.value) == (f"there is no snapshot 'seeded' (database {env.db}__u_seeded); "
                              "snapshots: none yet")


def test_save_refuses_an_existing_name_unless_replace(env: Env) -> None:
    env.refresh()
    cmd.save(Session(env.project(), RecordingReporter()), "one")
    with pytest.raises(UsageError, match=r"^snapshot 'one' already exists \(saved \d+s ago\): "
                       r"pass --replace, or delete it first \(devenv snapshot delete one\)$"):
        cmd.save(Session(env.project(), RecordingReporter()), "one")
    env.sql("insert into app.items(v) values ('later')")
    later = dump_database(env.target.url())
    cmd.save(Session(env.project(), RecordingReporter()), "one", replace=True)
    assert dump_database(env.target.url(f"{env.db}__u_one")) == later
    # sessions on the working database are ended for the copy, and it accepts new ones
    conn = psycopg.connect(env.target.url(), autocommit=True)
    rep = RecordingReporter()
    cmd.save(Session(env.project(), rep), "two")
    assert f"ended 1 session(s) on {env.db} to copy it; apps reconnect on their next query" \
        in messages(rep, "warn")
    conn.close()
    env.sql("select 1")


def test_list_shows_match_and_mismatch_after_an_input_changes(env: Env) -> None:
    env.refresh()
    cmd.save(Session(env.project(), RecordingReporter()), "base")
    data = env.listing()
    user = [s for s in data["snapshots"] if s["kind"] == "user"]
    cache = [s for s in data["snapshots"] if s["kind"] == "cache"]
    assert [u["matches"] for u in user] == [True]
    assert cache and all(c["matches"] for c in cache)

    (env.root / "seed.sql").write_text(FILES["seed.sql"].replace("300", "301"))
    data = env.listing()
    [base] = [s for s in data["snapshots"] if s["kind"] == "user"]
    assert base["matches"] is False and base["changed"] == ["seed"]
    by_steps = {tuple(s["steps"]): s["matches"] for s in data["snapshots"]
                if s["kind"] == "cache"}
    assert by_steps[("schema", "seed")] is False
    assert by_steps.get(("schema",), True) is True

    # the table form says the same
    buf = StringIO()
    cmd.list_snapshots(Session(env.project(), RecordingReporter()), Output(plain=True, stream=buf))
    row = next(line for line in buf.getvalue().splitlines() if line.startswith("base "))
    assert row.split()[1] == "user" and row.endswith("no (changed: seed)")
    assert "all 2: schema, seed" in row

    rep = RecordingReporter()
    cmd.restore(Session(env.project(), rep), "base")
    assert "snapshot 'base' does not match the current steps (changed: seed): devenv up " \
           "runs what changed" in messages(rep, "warn")


def test_names_users_type_work_up_to_the_limit_the_error_states(env: Env) -> None:
    env.refresh()
    saved = dump_database(env.target.url())
    limit = 63 - len(f"{env.db}__u_")
    longest = "v1.2-" + "x" * (limit - 5)
    for name in ("before-break", "v1.2_x", "Before.Break", longest):
        assert cmd.save(Session(env.project(), RecordingReporter()), name) == 0
    names = {s["name"] for s in env.listing()["snapshots"] if s["kind"] == "user"}
    assert names == {"before-break", "v1.2_x", "Before.Break", longest}
    assert {f"{env.db}__u_before-break", f"{env.db}__u_v1.2_x", f"{env.db}__u_{longest}"
            } <= env.names()
    env.sql("delete from app.items")
    for name in ("before-break", "v1.2_x", longest):
        assert cmd.restore(Session(env.project(), RecordingReporter()), name) == 0
        assert dump_database(env.target.url()) == saved
        env.sql("delete from app.items")
    assert cmd.delete(Session(env.project(), RecordingReporter()), "v1.2_x") == 0
    # One character more would be cut by PostgreSQL: refused, and the message says the limit.
    with pytest.raises(UsageError) as err:
        cmd.save(Session(env.project(), RecordingReporter()), longest + "y")
    assert str(err.value) == (
        f"snapshot name '{longest}y' is too long ({limit + 1} characters): use letters, "
        f"digits, -, _ and . (at most {limit} characters: PostgreSQL names are at most 63 "
        f"bytes and '{env.db}__u_' comes first), starting with a letter or digit")


def test_user_name_limit_follows_the_database_name() -> None:
    assert siblings.user_name_limit("healthplan_dev") == 45
    assert siblings.user_name("healthplan_dev", "before-break") == \
        "healthplan_dev__u_before-break"
    db = "d" * 40  # the longest database.name the loader accepts
    assert siblings.user_name(db, "a" * 19) == f"{db}__u_{'a' * 19}"
    with pytest.raises(UsageError, match=r"too long \(20 characters\).*at most 19 characters"):
        siblings.user_name(db, "a" * 20)
    # a longer database name is shortened to its stem (40 bytes, hashed), so names fit
    long_db = "d" * 59
    name = siblings.user_name(long_db, "a" * 19)
    assert len(name.encode()) <= 63 and name.startswith(siblings.stem(long_db))
    with pytest.raises(UsageError, match=r"at most 19 characters"):
        siblings.user_name(long_db, "a" * 20)


def test_hostile_names_are_refused(env: Env) -> None:
    project = env.project()
    limit = 63 - len(f"{env.db}__u_")
    msg = (f"invalid snapshot name {{!r}}: use letters, digits, -, _ and . (at most {limit} "
           f"characters: PostgreSQL names are at most 63 bytes and '{env.db}__u_' comes "
           "first), starting with a letter or digit")
    for bad in ['x"; DROP DATABASE postgres; --', "../etc", "", "-rf", ".hidden", "a/b",
                "a b", "snap\n", "ünï"]:
        for call in (lambda n: cmd.save(Session(project, RecordingReporter()), n),
                     lambda n: cmd.restore(Session(project, RecordingReporter()), n),
                     lambda n: cmd.delete(Session(project, RecordingReporter()), n)):
            with pytest.raises(UsageError) as err:
                call(bad)
            assert str(err.value) == msg.format(bad)
    assert env.names() == set()  # nothing was created, not even the working database
    # and through the CLI: exit 2, the message, no traceback
    r = subprocess.run([sys.executable, "-m", "devenv", "snapshot", "save", "Bad;Name"],
                       cwd=env.root, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: " + msg.format("Bad;Name")


def _export(env: Env, name: str, tmp: Path) -> Path:
    file = tmp / f"{name}.devenv-snapshot"
    rep = RecordingReporter()
    assert cmd.export(Session(env.project(), rep), name, file) == 0
    return file


def test_export_import_round_trip(env: Env, tmp_path: Path) -> None:
    env.refresh()
    env.sql("insert into app.items(v) values (E'quote '' and \\\\ and ünïcode')")
    cmd.save(Session(env.project(), RecordingReporter()), "shared")
    original = dump_database(env.target.url(f"{env.db}__u_shared"))
    file = _export(env, "shared", tmp_path)

    with open(file, "rb") as fh:
        assert fh.readline() == b"DEVENV-SNAPSHOT 1\n"
        header = json.loads(fh.readline())
        assert fh.read(5) == b"PGDMP"
    assert header["project"] == "snapproj" and header["name"] == "shared"
    assert header["steps"] == ["schema", "seed"] and set(header["fingerprints"]) == {
        "schema", "seed"}
    _, offset = dumpfiles.read_header(file)
    assert header["size"] == file.stat().st_size - offset > 0
    assert header["server_version_num"] // 10000 == 15
    head = file.read_bytes()[:offset].decode()
    assert f":{env.target.password}@" not in head  # no URL with its password

    rep = RecordingReporter()
    assert cmd.import_(Session(env.project(), rep), file, "copy") == 0
    assert dump_database(env.target.url(f"{env.db}__u_copy")) == original
    assert f"{env.db}__build" not in env.names()
    [copy] = [s for s in env.listing()["snapshots"] if s["name"] == "copy"]
    assert copy["matches"] is True and copy["steps"] == ["schema", "seed"]

    # its records came along: restored, nothing needs to run
    cmd.restore(Session(env.project(), RecordingReporter()), "copy")
    assert dump_database(env.target.url()) == original
    key = database.identity(env.target, env.db)
    assert key is not None
    assert set(StateStore(env.project().state_dir).steps(key)) == {"schema", "seed"}

    # importing under a name that exists is refused
    with pytest.raises(UsageError, match=r"^snapshot 'copy' already exists: delete it first"):
        cmd.import_(Session(env.project(), RecordingReporter()), file, "copy")


def test_import_of_a_foreign_project_is_refused_unless_forced(env: Env, tmp_path: Path,
                                                             ) -> None:
    env.refresh()
    cmd.save(Session(env.project(), RecordingReporter()), "theirs")
    original = dump_database(env.target.url(f"{env.db}__u_theirs"))
    file = _export(env, "theirs", tmp_path)
    cmd.delete(Session(env.project(), RecordingReporter()), "theirs")
    # the same database, another project name
    (env.root / "steps.yaml").write_text((env.root / "steps.yaml").read_text().replace(
        "name: snapproj", "name: other"))
    with pytest.raises(UsageError) as err:
        cmd.import_(Session(env.project(), RecordingReporter()), file)
    assert str(err.value) == (f"{file} is a snapshot of project 'snapproj', not 'other': "
                              "pass --force to import it anyway")
    assert f"{env.db}__u_theirs" not in env.names()
    r = subprocess.run([sys.executable, "-m", "devenv", "snapshot", "import", str(file)],
                       cwd=env.root, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "DATABASE_URL": env.target.url()})
    assert r.returncode == 2 and r.stderr.strip() == f"error: {err.value}"

    rep = RecordingReporter()
    assert cmd.import_(Session(env.project(), rep), file, force=True) == 0
    assert dump_database(env.target.url(f"{env.db}__u_theirs")) == original
    assert f"imported {file} as snapshot 'theirs' (from project 'snapproj'); devenv " \
           "snapshot restore theirs makes it the working database" in messages(rep, "ok")


def _rewrite(src: Path, dst: Path, **changes: Any) -> Path:
    header, offset = dumpfiles.read_header(src)
    raw = json.loads(header.line())
    raw.update(changes)
    with open(dst, "wb") as out:
        out.write(dumpfiles.MAGIC + json.dumps(raw).encode() + b"\n")
        for chunk in dumpfiles.payload(src, offset):
            out.write(chunk)
    return dst


def test_damaged_and_newer_server_files_are_refused(env: Env, tmp_path: Path) -> None:
    env.refresh()
    cmd.save(Session(env.project(), RecordingReporter()), "s")
    file = _export(env, "s", tmp_path)
    header, offset = dumpfiles.read_header(file)
    data = file.read_bytes()

    truncated = tmp_path / "truncated"
    truncated.write_bytes(data[:-100])
    with pytest.raises(DevenvError) as err:
        cmd.import_(Session(env.project(), RecordingReporter()), truncated, "t")
    assert str(err.value) == (f"{truncated} is truncated: its header promises a dump of "
                              f"{header.size} bytes, the file holds {header.size - 100}; "
                              "copy or export it again")
    assert err.value.exit_code == 5  # a file refused, not "a step failed"

    flipped = tmp_path / "flipped"
    flipped.write_bytes(data[:-10] + bytes(b ^ 0xFF for b in data[-10:]))
    with pytest.raises(DevenvError) as err:
        cmd.import_(Session(env.project(), RecordingReporter()), flipped, "t")
    assert str(err.value) == (f"{flipped} is damaged: the dump's sha256 does not match its "
                              "header; copy or export it again")

    cut_header = tmp_path / "cut_header"
    cut_header.write_bytes(data[:40])
    with pytest.raises(DevenvError, match="is truncated: its header line is incomplete"):
        cmd.import_(Session(env.project(), RecordingReporter()), cut_header, "t")

    bare = tmp_path / "bare.dump"
    bare.write_bytes(data[offset:])
    with pytest.raises(DevenvError, match="is a bare pg_dump archive, not a devenv snapshot"):
        cmd.import_(Session(env.project(), RecordingReporter()), bare, "t")

    newer = _rewrite(file, tmp_path / "newer", server_version_num=170002)
    with pytest.raises(DevenvError) as err:
        cmd.import_(Session(env.project(), RecordingReporter()), newer, "t")
    assert str(err.value) == (f"{newer} was dumped from PostgreSQL 17, newer than this server "
                              "(PostgreSQL 15): import it into PostgreSQL 17 or newer")
    assert not {f"{env.db}__u_t", f"{env.db}__build"} & env.names()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []

    # values of the wrong kind inside the header (list/status/restore index by them)
    for key, value in (("records", [1, 2]), ("steps", [1, {"a": 2}]),
                       ("fingerprints", {"schema": 1})):
        bad = _rewrite(file, tmp_path / f"bad-{key}", **{key: value})
        with pytest.raises(DevenvError) as err:
            cmd.import_(Session(env.project(), RecordingReporter()), bad, "t")
        assert str(err.value) == (f"{bad} has a damaged header: '{key}' holds values of the "
                                  "wrong type")

    # the same header with a valid version still imports: the refusals were the checks
    ok = _rewrite(file, tmp_path / "ok", server_version_num=150000)
    assert cmd.import_(Session(env.project(), RecordingReporter()), ok, "t") == 0


def test_failed_export_leaves_no_file(env: Env, tmp_path: Path) -> None:
    env.refresh()
    out = tmp_path / "out"
    out.mkdir()
    file = out / "s.devenv-snapshot"
    header = dumpfiles.Header("p", "d", "n", "k", [], {}, 150000, 15, 0.0)
    # a real pg_dump that fails: its database is not there
    tool = dumpfiles.choose_tool("pg_dump", env.target, "no_such_db_here", 15, None)
    with pytest.raises(dumpfiles.DumpError, match=r'(?s)^pg_dump \(local .*\) failed:\n.*'
                       r'database "no_such_db_here" does not exist'):
        dumpfiles.write(file, header, lambda sink: dumpfiles.dump(tool, sink))
    assert list(out.iterdir()) == []

    # a disk that fills up while pg_dump streams (the one fault here that cannot be caused
    # for real in a test, so the sink raises it): pg_dump is stopped, no file is left
    tool = dumpfiles.choose_tool("pg_dump", env.target, env.db, 15, None)

    def full(data: bytes) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        dumpfiles.write(file, header, lambda sink: dumpfiles.dump(tool, full))
    assert list(out.iterdir()) == []
    # pg_dump was stopped: no pg_dump session is left on the database
    deadline = time.monotonic() + 5
    while True:
        with psycopg.connect(env.target.url("postgres"), autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND "
                               "application_name = 'pg_dump'", (env.db,)).fetchone()
        if row == (0,) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert row == (0,)


def test_gc_keeps_n_cache_snapshots_and_drops_leftovers(env: Env) -> None:
    (env.root / "steps.yaml").write_text((env.root / "steps.yaml").read_text().replace(
        "keep: 5", "keep: 2"))
    env.refresh()
    cmd.save(Session(env.project(), RecordingReporter()), "mine")
    t = env.target
    # Old cache snapshots from earlier inputs, a leftover build, an incomplete snapshot.
    for i in range(4):
        siblings.clone(t, env.db, f"{env.db}__s_old{i}",
                        siblings.meta("snapshot", "snapproj", key=f"old{i}", steps=["schema"],
                                       complete=True) | {"created": 1000.0 + i})
    siblings.clone(t, env.db, f"{env.db}__build", siblings.meta("build", "snapproj"))
    siblings.clone(t, env.db, f"{env.db}__s_half",
                    siblings.meta("snapshot", "snapproj", key="half", complete=False))
    cache_before = {s["database"] for s in env.listing()["snapshots"] if s["kind"] == "cache"}
    assert len(cache_before) == 2 + 4 + 1  # full + barrier(schema) + 4 old + half

    rep = RecordingReporter()
    assert cmd.gc(Session(env.project(), rep)) == 0
    cache_after = {s["database"] for s in env.listing()["snapshots"] if s["kind"] == "cache"}
    assert len(cache_after) == 2
    assert not any("old" in n or "half" in n for n in cache_after)  # the newest two stay
    assert {f"{env.db}__u_mine", env.db, f"{env.db}__ready"} <= env.names()
    assert f"{env.db}__build" not in env.names()
    assert f"dropped leftover {env.db}__build" in messages(rep, "warn")
    assert any(m.startswith("gc: dropped 6 database(s), freed ") for m in messages(rep, "ok"))

    assert cmd.gc(Session(env.project(), rep), keep=0) == 0
    cache_left = [s for s in env.listing()["snapshots"] if s["kind"] == "cache"]
    # the snapshot of the current steps is what refresh-db starts from: gc never drops it
    assert [s["steps"] for s in cache_left] == [["schema", "seed"]]
    env.refresh()  # still works from it


def test_commands_need_a_database_section(make_project: Callable[..., Path]) -> None:
    root = make_project({"version": 1, "steps": {"a": {"run": "true"}}})
    project = loader.load(root / "steps.yaml")
    with pytest.raises(DevenvError, match="devenv snapshot needs a database"):
        cmd.save(Session(project, RecordingReporter()), "x")


def test_header_round_trip_and_format(tmp_path: Path) -> None:
    header = dumpfiles.Header("p", "d", "n", "k" * 64, ["a"], {"a": "f" * 64}, 150004, 15, 1.5,
                          records={"a": {"fingerprint": "f" * 64}})
    file = tmp_path / "f"
    written = dumpfiles.write(file, header, lambda sink: [sink(b"x" * 3000), sink(b"yz")][0])
    data = file.read_bytes()
    assert data.startswith(b"DEVENV-SNAPSHOT 1\n{")
    lines = data.split(b"\n", 2)
    assert len(lines) == 3 and lines[2] == b"x" * 3000 + b"yz"
    got, offset = dumpfiles.read_header(file)
    assert got == written and got.size == 3002 and offset == len(lines[0]) + len(lines[1]) + 2
    dumpfiles.verify(file, got, offset)
    assert dumpfiles.parse_tool_version("pg_dump (PostgreSQL) 16.2 (Debian 16.2-1)") == 16
    assert dumpfiles.major_of(90624) == 9 and dumpfiles.major_of(170000) == 17


@pytest.mark.docker
def test_dump_and_restore_with_the_containers_own_tools(
        make_project: Callable[..., Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the local pg_dump is too old (forced here with DEVENV_PG_TOOLS=service), the
    service container's pg_dump/pg_restore do the work: through the backend's exec, and
    through `docker exec` for a backend without one."""
    import uuid

    from devenv.services import BACKENDS

    if not BACKENDS["docker"]().available()[0]:
        pytest.skip("no Docker engine")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    name = f"snapdk{uuid.uuid4().hex[:8]}"
    cfg = config("app_dev", name=name)
    root = make_project(cfg, files=FILES)
    project = loader.load(root / "steps.yaml")
    spec = project.services["db"]
    backend = BACKENDS["docker"]()
    try:
        monkeypatch.setenv("DEVENV_PG_TOOLS", "service")
        rep = RecordingReporter()
        endpoints = Session(project, rep).start(["db"])
        target = Session(project, RecordingReporter()).target(endpoints)
        assert target is not None
        rebuild.refresh(Session(project, rep), target, background_reclone=False)
        cmd.save(Session(project, RecordingReporter()), "base")
        original = dump_database(target.url("app_dev__u_base"))
        file = tmp_path / "base.snap"
        rep = RecordingReporter()
        cmd.export(Session(project, rep), "base", file)
        assert any(f"in container {name}-db" in m for m in messages(rep, "ok"))
        cmd.import_(Session(project, RecordingReporter()), file, "again")
        assert dump_database(target.url("app_dev__u_again")) == original
        # a pulled snapshot's bare archive in a file: the container's pg_restore cannot open
        # a host file, so it streams in (one transaction) even when -j is asked for
        bare = tmp_path / "base.dump"
        dumpfiles.unpack(dumpfiles.payload(file, 0), bare, str(file))
        tool = dumpfiles.choose_tool("pg_restore", target, "app_dev__pulled", 15,
                                     Session(project, RecordingReporter()).tools)
        assert tool.service is not None and tool.where == f"in container {name}-db"
        dumpfiles.restore_untrusted(target, "app_dev__pulled", tool, bare, jobs=2)
        assert dump_database(target.url("app_dev__pulled")) == original
        bare.unlink()

        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    finally:
        backend.down(project, spec, volumes=True)
