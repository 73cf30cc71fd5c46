"""A snapshot file or a CI cache file is not a way in (issue 18 item 3).

The malicious dump is made for real: a database whose table has a CHECK constraint calling
a function that runs ``COPY ... TO PROGRAM``, dumped by pg_dump and put behind a valid
header by devenv's own writer (``dumpfiles.write``, what ``snapshot export`` and the CI cache
use). Restored as superuser it would run the program on the server's host; devenv must
refuse it, create no file, and say why in one line. A dump whose code only fires later (a
trigger) is imported, and a superuser's insert afterwards still cannot run a program.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devenv import fingerprint, loader
from devenv.commands import snapshot as cmd
from devenv.events import RecordingReporter
from devenv.postgres import database, dumpfiles, siblings
from devenv.session import Session
from devenv.workingdb import cidump

pytestmark = pytest.mark.postgres

REFUSED = ("must be superuser or have privileges of the pg_execute_server_program role to "
           "COPY to or from an external program")


@pytest.fixture
def drop_dir() -> Iterator[Path]:
    """A folder the server's OS user may write to: where the program would leave its mark."""
    d = Path(tempfile.mkdtemp(prefix="devenv-test-pwn-"))
    os.chmod(d, 0o777)
    yield d
    for f in d.iterdir():
        f.unlink()
    d.rmdir()


def _program(mark: Path) -> str:
    return f"id > {mark}"


def _malicious_db(target: database.Target, db: str, mark: Path, *, fire_on_restore: bool,
                  ) -> None:
    """``db`` with a function that runs a program on the host, wired to fire while a dump
    of it is restored (a CHECK on rows the dump holds) or later (a trigger on insert)."""
    database.create(target, db, [])
    with psycopg.connect(target.url(db), autocommit=True) as conn:
        # Harmless while the rows go in here; the dump carries the final body.
        conn.execute("CREATE FUNCTION public.ok(v int) RETURNS boolean LANGUAGE plpgsql "
                     "AS $$ BEGIN RETURN true; END $$")
        conn.execute("CREATE TABLE public.items(id int CHECK (public.ok(id)))")
        conn.execute("INSERT INTO public.items VALUES (1), (2)")
        body = ("BEGIN EXECUTE format('COPY (SELECT 1) TO PROGRAM %L', "
                f"'{_program(mark)}'); RETURN true; END")
        conn.execute("CREATE OR REPLACE FUNCTION public.ok(v int) RETURNS boolean "
                     f"LANGUAGE plpgsql AS $${body}$$")
        if not fire_on_restore:
            conn.execute("DELETE FROM public.items")
            conn.execute("ALTER TABLE public.items DROP CONSTRAINT items_id_check")
            conn.execute("CREATE FUNCTION public.later() RETURNS trigger LANGUAGE plpgsql AS "
                         "$$ BEGIN PERFORM public.ok(NEW.id); RETURN NEW; END $$")
            conn.execute("CREATE TRIGGER fire BEFORE INSERT ON public.items FOR EACH ROW "
                         "EXECUTE FUNCTION public.later()")
            conn.execute("CREATE TABLE public.who(name text)")
            conn.execute("CREATE FUNCTION public.whoami() RETURNS trigger LANGUAGE plpgsql "
                         "AS $$ BEGIN INSERT INTO public.who VALUES (current_user); "
                         "RETURN NEW; END $$")
            conn.execute("CREATE TABLE public.log(v int)")
            conn.execute("CREATE TRIGGER audit BEFORE INSERT ON public.log FOR EACH ROW "
                         "EXECUTE FUNCTION public.whoami()")


def _write_snapshot_file(target: database.Target, db: str, file: Path, project: str,
                         key: str = "k", name: str = "evil") -> None:
    server = dumpfiles.server_version_num(target)
    tool = dumpfiles.choose_tool("pg_dump", target, db, dumpfiles.major_of(server), None)
    header = dumpfiles.Header(project=project, database=db, name=name, key=key, steps=[],
                          fingerprints={}, server_version_num=server,
                          pg_dump_major=tool.major, created=0.0)
    dumpfiles.write(file, header, lambda sink: dumpfiles.dump(tool, sink))


def _config(db: str, name: str = "evilproj") -> dict[str, Any]:
    return {"version": 1, "name": name,
            "services": {"db": {"image": "postgres:15"}},
            "database": {"service": "db", "name": db},
            "steps": {"schema": {"run": "psql -X -q -v ON_ERROR_STOP=1 -c 'select 1'",
                                 "needs": ["db"]}}}


@pytest.fixture
def setup(pg_server: Any, make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
          ) -> Iterator[tuple[database.Target, str, Path]]:
    db = pg_server.unique_db("ev")
    root = make_project(_config(db))
    monkeypatch.setenv("DATABASE_URL", pg_server.url(db))
    monkeypatch.setenv("DEVENV_PG_TOOLS", "local")
    target = database.parse_url(pg_server.url(db))
    yield target, db, root
    for name in [db, f"{db}_src", *(i.datname for i in siblings.related(target, db))]:
        database.drop(target, name)


def test_snapshot_import_refuses_a_dump_that_runs_a_program(
        setup: tuple[database.Target, str, Path], drop_dir: Path, tmp_path: Path) -> None:
    target, db, root = setup
    mark = drop_dir / "pwned.txt"
    _malicious_db(target, f"{db}_src", mark, fire_on_restore=True)
    assert not mark.exists()  # making it ran nothing
    file = tmp_path / "evil.devenv-snapshot"
    _write_snapshot_file(target, f"{db}_src", file, "evilproj")
    project = loader.load(root / "steps.yaml")

    with pytest.raises(dumpfiles.DumpError) as err:
        cmd.import_(Session(project, RecordingReporter()), file, "evil")
    assert not mark.exists(), "the dump ran a program on the host"
    message = str(err.value)
    assert "\n" not in message
    assert message == (
        f"{file} asks for rights an import does not have (it is restored as role "
        "devenv_import, without superuser), so nothing of it was kept: " + REFUSED)
    assert {i.datname for i in siblings.related(target, db)} == set()

    # The CLI says the same, in one line, with exit code 1.
    r = subprocess.run([sys.executable, "-m", "devenv", "snapshot", "import", str(file), "evil"],
                       cwd=root, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"error: {message}" in r.stderr.splitlines() + r.stdout.splitlines()
    assert not mark.exists()


def test_code_of_an_imported_dump_never_runs_as_superuser_later(
        setup: tuple[database.Target, str, Path], drop_dir: Path, tmp_path: Path) -> None:
    target, db, root = setup
    mark = drop_dir / "later.txt"
    _malicious_db(target, f"{db}_src", mark, fire_on_restore=False)
    file = tmp_path / "later.devenv-snapshot"
    _write_snapshot_file(target, f"{db}_src", file, "evilproj")
    project = loader.load(root / "steps.yaml")
    assert cmd.import_(Session(project, RecordingReporter()), file, "later") == 0
    imported = siblings.user_name(db, "later")

    # A step connects as the superuser (as steps do) and inserts: the dump's trigger fires.
    with psycopg.connect(target.url(imported), autocommit=True) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
                            ).fetchone() == (True,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=REFUSED):
            conn.execute("INSERT INTO public.items VALUES (3)")
        # The dump's functions run as the import role; its tables work as before.
        conn.execute("INSERT INTO public.log VALUES (1)")
        assert conn.execute("SELECT name FROM public.who").fetchall() == [("devenv_import",)]
        owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database "
                             "WHERE datname = current_database()").fetchone()
        assert owner == (target.user,)
    assert not mark.exists(), "a dump's trigger ran a program as superuser"
    # The role restores only: it cannot log in between imports.
    with psycopg.connect(target.url("postgres"), autocommit=True) as conn:
        row = conn.execute("SELECT rolcanlogin, rolsuper, rolpassword IS NULL FROM pg_authid "
                           "WHERE rolname = 'devenv_import'").fetchone()
    assert row == (False, False, True)


def test_ci_cache_hit_refuses_a_dump_that_runs_a_program(
        setup: tuple[database.Target, str, Path], drop_dir: Path, tmp_path: Path) -> None:
    target, db, root = setup
    mark = drop_dir / "ci.txt"
    _malicious_db(target, f"{db}_src", mark, fire_on_restore=True)
    project = loader.load(root / "steps.yaml")
    key = fingerprint.graph_key(project, "ci")
    cache = tmp_path / "cache"
    cache.mkdir()
    _write_snapshot_file(target, f"{db}_src", cidump.cache_file(cache, project, key),
                         "evilproj", key=key)

    r = subprocess.run([sys.executable, "-m", "devenv", "ci-setup", "--cache-dir", str(cache)],
                       cwd=root, capture_output=True, text=True, timeout=180,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert not mark.exists(), "the cached dump ran a program on the host"
    out = r.stdout + r.stderr
    assert r.returncode == 0, out  # the steps built the database instead
    assert ("asks for rights an import does not have (it is restored as role devenv_import, "
            f"without superuser), so nothing of it was kept: {REFUSED}); building from the "
            "steps") in out
    assert "[schema] ok" in out


def test_a_dump_whose_default_calls_a_privileged_builtin_is_refused(
        setup: tuple[database.Target, str, Path], drop_dir: Path, tmp_path: Path) -> None:
    """No function of the dump's own: a column DEFAULT calls pg_read_file, a built-in only
    privileged roles may run. Restored as is, a superuser step's INSERT would read the
    server's files: the import refuses it."""
    target, db, root = setup
    database.create(target, f"{db}_src", [])
    with psycopg.connect(target.url(f"{db}_src"), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.leak(id int, v text DEFAULT "
                     "pg_read_file('/etc/hostname'))")
    file = tmp_path / "default.devenv-snapshot"
    _write_snapshot_file(target, f"{db}_src", file, "evilproj")
    project = loader.load(root / "steps.yaml")
    with pytest.raises(dumpfiles.DumpError, match=r"call functions an import may not run "
                       r"\(pg_read_file\(text\)\)"):
        cmd.import_(Session(project, RecordingReporter()), file, "leak")
    assert {i.datname for i in siblings.related(target, db)} == set()


def test_roles_that_can_become_privileged_restore_as_the_import_role(
        setup: tuple[database.Target, str, Path]) -> None:
    """A NOINHERIT member of pg_execute_server_program can SET ROLE to it; a member of a
    CREATEROLE role can become one: both count as privileged."""
    target, db, _root = setup
    with psycopg.connect(target.url("postgres"), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS devenv_t_noinherit")
        conn.execute("CREATE ROLE devenv_t_noinherit LOGIN NOINHERIT PASSWORD 'pw'")
        conn.execute("GRANT pg_execute_server_program TO devenv_t_noinherit")
    try:
        as_member = database.Target(target.host, target.port, "devenv_t_noinherit", "pw", db)
        assert dumpfiles._privileged(as_member)
    finally:
        with psycopg.connect(target.url("postgres"), autocommit=True) as conn:
            conn.execute("DROP ROLE devenv_t_noinherit")


def test_a_createrole_user_that_is_not_superuser_can_import(
        setup: tuple[database.Target, str, Path], tmp_path: Path) -> None:
    """Managed servers' master users (RDS, Cloud SQL): CREATEROLE and CREATEDB, not
    superuser. The database is created for the import role and handed back."""
    target, db, _root = setup
    with psycopg.connect(target.url("postgres"), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS devenv_t_master")
        conn.execute("CREATE ROLE devenv_t_master LOGIN CREATEROLE CREATEDB PASSWORD 'pw'")
    database.create(target, f"{db}_src", [])
    with psycopg.connect(target.url(f"{db}_src"), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.kept(v text); INSERT INTO public.kept VALUES ('x')")
    file = tmp_path / "plain.devenv-snapshot"
    _write_snapshot_file(target, f"{db}_src", file, "evilproj")
    master = database.Target(target.host, target.port, "devenv_t_master", "pw", db)
    header, offset = dumpfiles.read_header(file)
    tool = dumpfiles.choose_tool("pg_restore", master, f"{db}_copy", header.pg_dump_major, None)
    try:
        dumpfiles.restore_untrusted(master, f"{db}_copy", tool, dumpfiles.payload(file, offset))
        with psycopg.connect(target.url(f"{db}_copy")) as conn:
            assert conn.execute("SELECT v FROM public.kept").fetchall() == [("x",)]
            assert conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE "
                                "datname = current_database()").fetchone() == ("devenv_t_master",)
    finally:
        database.drop(target, f"{db}_copy")
        with psycopg.connect(target.url("postgres"), autocommit=True) as conn:
            conn.execute("REVOKE devenv_import FROM devenv_t_master")
            conn.execute("DROP ROLE devenv_t_master")


def _bare_dump(file: Path, dest: Path) -> Path:
    """The pg_dump archive inside snapshot file ``file``, alone in ``dest`` (what a pull
    from the remote cache restores from, with pg_restore -j)."""
    _header, offset = dumpfiles.read_header(file)
    dumpfiles.unpack(dumpfiles.payload(file, 0, chunk=4096), dest, str(file))
    assert dest.read_bytes() == file.read_bytes()[offset:]
    return dest


def test_a_parallel_restore_from_a_file_refuses_a_dump_that_runs_a_program(
        setup: tuple[database.Target, str, Path], drop_dir: Path, tmp_path: Path) -> None:
    """pg_restore -j 2 on the pulled file: no single transaction, two connections as the
    import role. The refusal on one of them stops it, and the new database is dropped."""
    target, db, _root = setup
    mark = drop_dir / "parallel.txt"
    _malicious_db(target, f"{db}_src", mark, fire_on_restore=True)
    file = tmp_path / "evil.devenv-snapshot"
    _write_snapshot_file(target, f"{db}_src", file, "evilproj")
    bare = _bare_dump(file, tmp_path / "evil.dump")
    tool = dumpfiles.choose_tool("pg_restore", target, f"{db}_copy", 15, None)
    with pytest.raises(dumpfiles.DumpError) as err:
        dumpfiles.restore_untrusted(target, f"{db}_copy", tool, bare, label="the pull",
                                    jobs=2)
    assert not mark.exists(), "the dump ran a program on the host"
    assert str(err.value) == (
        "the pull asks for rights an import does not have (it is restored as role "
        "devenv_import, without superuser), so nothing of it was kept: " + REFUSED)
    assert not database.exists(target, f"{db}_copy")


def test_a_parallel_restore_from_a_file_gives_the_same_database_defused(
        setup: tuple[database.Target, str, Path], drop_dir: Path, tmp_path: Path) -> None:
    """The same dump restored with -j 2 from a file and in one transaction from a stream:
    equal databases, and the -j one defused as well (the dump's trigger runs as the import
    role when a superuser inserts later)."""
    from tests.dbcompare import dump_database

    target, db, _root = setup
    mark = drop_dir / "later-parallel.txt"
    _malicious_db(target, f"{db}_src", mark, fire_on_restore=False)
    with psycopg.connect(target.url(f"{db}_src"), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.big(id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO public.big SELECT g, md5(g::text) FROM "
                     "generate_series(1, 20000) g")
        conn.execute("CREATE INDEX ON public.big(v)")
    file = tmp_path / "later.devenv-snapshot"
    _write_snapshot_file(target, f"{db}_src", file, "evilproj")
    _header, offset = dumpfiles.read_header(file)
    bare = _bare_dump(file, tmp_path / "later.dump")
    tool = dumpfiles.choose_tool("pg_restore", target, f"{db}_copy", 15, None)
    try:
        dumpfiles.restore_untrusted(target, f"{db}_copy", tool, bare, jobs=2)
        dumpfiles.restore_untrusted(target, f"{db}_one", tool,
                                    dumpfiles.payload(file, offset), jobs=1)
        assert dump_database(target.url(f"{db}_copy")) == dump_database(target.url(f"{db}_one"))
        with psycopg.connect(target.url(f"{db}_copy"), autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=REFUSED):
                conn.execute("INSERT INTO public.items VALUES (3)")
            conn.execute("INSERT INTO public.log VALUES (1)")
            assert conn.execute("SELECT name FROM public.who").fetchall() == [
                ("devenv_import",)]
            assert conn.execute("SELECT count(*) FROM public.big").fetchone() == (20000,)
        assert not mark.exists(), "a dump's trigger ran a program as superuser"
    finally:
        database.drop(target, f"{db}_copy")
        database.drop(target, f"{db}_one")


def test_settings_a_dump_gives_the_import_role_do_not_outlive_the_import(
        setup: tuple[database.Target, str, Path], tmp_path: Path) -> None:
    """A dump's code runs as the import role while it is restored, and a role may set its
    own session defaults (ALTER ROLE CURRENT_USER [IN DATABASE ...] SET): none is left
    for the next import."""
    target, db, _root = setup
    src = f"{db}_src"
    database.create(target, src, [])
    with psycopg.connect(target.url(src), autocommit=True) as conn:
        conn.execute("CREATE FUNCTION public.ok(v int) RETURNS boolean LANGUAGE plpgsql "
                     "AS $$ BEGIN RETURN true; END $$")
        conn.execute("CREATE TABLE public.items(id int CHECK (public.ok(id)))")
        conn.execute("INSERT INTO public.items VALUES (1)")
        conn.execute(
            "CREATE OR REPLACE FUNCTION public.ok(v int) RETURNS boolean LANGUAGE plpgsql AS "
            "$$ BEGIN EXECUTE 'ALTER ROLE CURRENT_USER SET work_mem = ''77kB''';"
            " EXECUTE format('ALTER ROLE CURRENT_USER IN DATABASE %I SET statement_timeout"
            " = 1', current_database()); RETURN true; END $$")
    file = tmp_path / "settings.devenv-snapshot"
    _write_snapshot_file(target, src, file, "evilproj")
    _header, offset = dumpfiles.read_header(file)
    tool = dumpfiles.choose_tool("pg_restore", target, f"{db}_copy", 15, None)
    settings = ("SELECT count(*) FROM pg_db_role_setting WHERE setrole = "
                "(SELECT oid FROM pg_roles WHERE rolname = 'devenv_import')")
    try:
        dumpfiles.restore_untrusted(target, f"{db}_copy", tool,
                                    dumpfiles.payload(file, offset), jobs=1)
        with psycopg.connect(target.url(f"{db}_copy"), autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM public.items").fetchone() == (1,)
            assert conn.execute(settings).fetchone() == (0,)
    finally:
        database.drop(target, f"{db}_copy")


_OTHER_DEVENV = """
import sys, time
from devenv.postgres import database, dumpfiles
target = database.parse_url(sys.argv[1])
if sys.argv[2] == "prepare, then give up":
    dumpfiles.prepare_untrusted(target, sys.argv[3], create=False).abandon()
    print("gave up")
else:  # "restore": open the role (waiting at most argv[3] seconds), then close it
    dumpfiles.IMPORT_LOCK_WAIT_S = int(sys.argv[3])
    t0 = time.monotonic()
    try:
        dumpfiles._open_import_role(target, dumpfiles._scram_verifier("theirs"))
    except dumpfiles.DumpError as exc:
        print(f"refused after {time.monotonic() - t0:.1f} s: {exc}")
    else:
        print(f"opened after {time.monotonic() - t0:.1f} s")
        dumpfiles._close_import_role(target)
"""


def _other_devenv(target: database.Target, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen([sys.executable, "-c", _OTHER_DEVENV, target.url("postgres"),
                             *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _logs_in_as_import_role(target: database.Target, password: str) -> bool:
    try:
        with psycopg.connect(host=target.host, port=target.port, dbname="postgres",
                             user=dumpfiles.IMPORT_ROLE, password=password,
                             connect_timeout=5) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.OperationalError:
        return False


def test_another_devenv_neither_closes_nor_reopens_the_role_under_a_restore(
        setup: tuple[database.Target, str, Path]) -> None:
    """The import role is the server's: while one devenv restores as it (a worktree, another
    project, a parallel CI job on the same server), another that prepares a restore and
    gives it up (a remote cache's miss) leaves it open, and another that restores waits
    for the first to close it, then says so in one line if it waited too long."""
    target, db, _root = setup
    password, verifier = dumpfiles._prepare_import_role(target)
    dumpfiles._open_import_role(target, verifier)  # this process's restore is running
    try:
        assert _logs_in_as_import_role(target, password)
        out, err = _other_devenv(target, "prepare, then give up", f"{db}_other").communicate(
            timeout=60)
        assert out.strip() == "gave up", err
        assert _logs_in_as_import_role(target, password)  # not closed under us
        out, err = _other_devenv(target, "restore", "1").communicate(timeout=60)
        assert out.startswith("refused after 1."), (out, err)
        assert out.strip().endswith(
            "another devenv has been restoring a dump on this server as role devenv_import "
            "for 1 s; try again once it has finished"), out
        assert _logs_in_as_import_role(target, password)  # no new password under us
        waiting = _other_devenv(target, "restore", "60")
        try:
            out, _err = waiting.communicate(timeout=1.5)
            raise AssertionError(f"it did not wait for this restore: {out}")
        except subprocess.TimeoutExpired:
            pass
        dumpfiles._close_import_role(target)  # this restore ends: its turn comes
        out, err = waiting.communicate(timeout=60)
        assert out.startswith("opened after "), (out, err)
        assert not _logs_in_as_import_role(target, password)
    finally:
        dumpfiles._close_import_role(target)
