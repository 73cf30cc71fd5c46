"""devenv.postgres.libpq (devenv's own connections, libpq through ctypes) against a real PostgreSQL:
authentication methods, SSL, ``.pgpass``, Unix sockets, parameters and quoting, errors on
one line with their SQLSTATE, transactions, and cancelling on Ctrl-C. The tests that do
not depend on the C binding also run on the psycopg fallback (``backend`` fixture).

One extra cluster (module scope) has a pg_hba.conf with one method per role and a
self-signed certificate; the session's ``pg_server`` covers the plain cases.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from devenv.postgres import libpq, pgcluster
from tests.conftest import PgServer

PASSWORD = "s3cret 'with' \\ odd: chars"


def _info(server: PgServer | pgcluster.Cluster, user: str | None = None,
          password: str | None = None, dbname: str = "postgres",
          host: str = "127.0.0.1") -> dict[str, str]:
    return {"host": host, "port": str(server.port), "user": user or server.user,
            "password": server.password if password is None else password, "dbname": dbname}


def _connect(server: PgServer | pgcluster.Cluster, user: str | None = None,
             password: str | None = None, dbname: str = "postgres") -> libpq.Connection:
    return libpq.connect(_info(server, user, password, dbname), timeout=5)


@pytest.fixture(params=["ctypes", "system", "psycopg"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every way devenv reaches libpq: its ctypes binding on psycopg_binary's copy, on the
    system's libpq.so.5 (another version), and psycopg when no libpq loads."""
    if request.param == "psycopg":
        monkeypatch.setattr(libpq, "_load", lambda: None)
    elif request.param == "system":
        try:
            lib = libpq._Lib("libpq.so.5")
        except OSError:
            pytest.skip("no system libpq.so.5 here")
        monkeypatch.setattr(libpq, "_load", lambda: lib)
    else:
        lib = libpq._load()
        assert lib is not None and "psycopg_binary" in lib.path
    return str(request.param)


@pytest.fixture(autouse=True)
def _no_user_pg_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # libpq reads every PG* variable: the test's own settings only
    for var in [v for v in os.environ if v.startswith("PG")]:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def auth_cluster() -> Iterator[pgcluster.Cluster]:
    """A cluster with one role per method (trust, password, md5, scram) and SSL on."""
    base = Path(tempfile.mkdtemp(prefix="devenv-test-libpq-"))
    os.chmod(base, 0o755)
    cluster = pgcluster.Cluster(datadir=base / "data", port=pgcluster.free_port())
    cluster.init()
    data = cluster.datadir
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", str(data / "server.key"),
                    "-out", str(data / "server.crt")], check=True, capture_output=True)
    os.chmod(data / "server.key", 0o600)
    hba = data / "pg_hba.conf"
    hba.write_text("local all all trust\n"
                   "host all trust_user 127.0.0.1/32 trust\n"
                   "host all pw_user 127.0.0.1/32 password\n"
                   "host all md5_user 127.0.0.1/32 md5\n"
                   "host all all 127.0.0.1/32 scram-sha-256\n")
    if os.geteuid() == 0:
        info = pwd.getpwnam("postgres")
        for f in (data / "server.key", data / "server.crt", hba):
            os.chown(f, info.pw_uid, info.pw_gid)
    cluster.start("-c ssl=on")
    with _connect(cluster) as conn:
        conn.execute("CREATE ROLE trust_user LOGIN")
        conn.execute(f"CREATE ROLE pw_user LOGIN PASSWORD {libpq.literal(PASSWORD)}")
        conn.execute("SET password_encryption = 'md5'")
        conn.execute(f"CREATE ROLE md5_user LOGIN PASSWORD {libpq.literal(PASSWORD)}")
        conn.execute("SET password_encryption = 'scram-sha-256'")
        conn.execute(f"CREATE ROLE scram_user LOGIN PASSWORD {libpq.literal(PASSWORD)}")
    try:
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def _whoami(conn: libpq.Connection) -> tuple[str, bool]:
    row = conn.execute("SELECT current_user, coalesce((SELECT ssl FROM pg_stat_ssl "
                       "WHERE pid = pg_backend_pid()), false)").fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.mark.parametrize("user", ["trust_user", "pw_user", "md5_user", "scram_user"])
def test_each_authentication_method(auth_cluster: pgcluster.Cluster, user: str,
                                    backend: str) -> None:
    with _connect(auth_cluster, user, PASSWORD) as conn:
        assert _whoami(conn) == (user, True)  # sslmode prefer: encrypted when offered


@pytest.mark.parametrize("user", ["pw_user", "md5_user", "scram_user"])
def test_wrong_password_is_refused_with_the_servers_words(auth_cluster: pgcluster.Cluster,
                                                          user: str) -> None:
    with pytest.raises(libpq.OperationalError) as err:
        _connect(auth_cluster, user, "not it")
    assert str(err.value) == f'password authentication failed for user "{user}"'
    assert err.value.sqlstate == "28P01"


def test_no_password_reads_pgpass(auth_cluster: pgcluster.Cluster, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    with pytest.raises(libpq.OperationalError) as err:
        _connect(auth_cluster, "scram_user", "")
    assert str(err.value) == (f"connection to server at 127.0.0.1:{auth_cluster.port} failed: "
                              "the server asks for a password and none was given (in the URL, "
                              "PGPASSWORD or ~/.pgpass)")
    escaped = PASSWORD.replace("\\", "\\\\").replace(":", "\\:")
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"otherhost:*:*:*:nope\n127.0.0.1:{auth_cluster.port}:*:scram_user:"
                        f"{escaped}\n")
    passfile.chmod(0o600)  # libpq ignores a password file others may read
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    with _connect(auth_cluster, "scram_user", "") as conn:
        assert _whoami(conn)[0] == "scram_user"


def test_sslmode_from_the_environment(auth_cluster: pgcluster.Cluster,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGSSLMODE", "disable")
    with _connect(auth_cluster, "scram_user", PASSWORD) as conn:
        assert _whoami(conn) == ("scram_user", False)
    monkeypatch.setenv("PGSSLMODE", "require")
    with _connect(auth_cluster, "scram_user", PASSWORD) as conn:
        assert _whoami(conn) == ("scram_user", True)


def test_require_fails_on_a_server_without_ssl(pg_server: PgServer,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGSSLMODE", "require")
    with pytest.raises(libpq.OperationalError) as err:
        _connect(pg_server)
    assert str(err.value) == (f"connection to server at 127.0.0.1:{pg_server.port} failed: "
                              "server does not support SSL, but SSL was required")


def test_unix_socket(auth_cluster: pgcluster.Cluster, backend: str) -> None:
    info = _info(auth_cluster, "trust_user", "", host=str(auth_cluster.sockdir))
    with libpq.connect(info) as conn:
        row = conn.execute("SELECT current_user, inet_server_addr() IS NULL").fetchone()
    assert row == ("trust_user", True)


def test_nothing_listening(pg_server: PgServer, backend: str) -> None:
    port = pgcluster.free_port()
    with pytest.raises(libpq.OperationalError) as err:
        libpq.connect({"host": "127.0.0.1", "port": str(port), "user": "postgres",
                       "password": "x", "dbname": "postgres"}, timeout=2)
    assert str(err.value) == (f"connection to server at 127.0.0.1:{port} failed: Connection "
                              "refused. Is the server running on that host and accepting "
                              "TCP/IP connections?")
    # localhost: ::1 and 127.0.0.1 both refuse, still one line
    with pytest.raises(libpq.OperationalError) as err:
        libpq.connect({"host": "localhost", "port": str(port), "user": "postgres",
                       "dbname": "postgres"}, timeout=2)
    # (psycopg resolves the name itself and names the address)
    assert re.match(rf"connection to server at (localhost|127\.0\.0\.1|::1):{port} failed: "
                    r"Connection refused\. Is the server", str(err.value))
    assert "\n" not in str(err.value)


def test_missing_database_is_the_servers_error(pg_server: PgServer) -> None:
    with pytest.raises(libpq.OperationalError) as err:
        _connect(pg_server, dbname="no_such_db_for_libpq")
    assert str(err.value) == 'database "no_such_db_for_libpq" does not exist'
    assert err.value.sqlstate == "3D000"


def test_a_database_name_with_an_equals_sign_is_a_name(pg_server: PgServer,
                                                        backend: str) -> None:
    # expand_dbname is off: "my=db" is a database, not a connection string
    name = "libpq_my=db"
    with _connect(pg_server) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {libpq.ident(name)}")
        admin.execute(f"CREATE DATABASE {libpq.ident(name)}")
    try:
        with _connect(pg_server, dbname=name) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (name,)
    finally:
        with _connect(pg_server) as admin:
            admin.execute(f"DROP DATABASE {libpq.ident(name)}")


def test_a_nul_in_a_parameter_is_refused_not_cut(pg_server: PgServer) -> None:
    with _connect(pg_server) as conn, pytest.raises(ValueError, match="NUL"):
        conn.execute("SELECT %s::text", ("a\x00b",))


def test_parameters_and_types_round_trip(pg_server: PgServer, backend: str) -> None:
    hostile = "x'); DROP TABLE nope; --\\ \"é\""
    with _connect(pg_server) as conn:
        row = conn.execute("SELECT %s::text, %s::int8, %s::bool, %s::text IS NULL, "
                           "2.5::float8, oid FROM pg_database WHERE datname = %s",
                           (hostile, 2**40, False, None, "postgres")).fetchone()
        assert row is not None
        assert row[:5] == (hostile, 2**40, False, True, 2.5)
        assert isinstance(row[5], int)
        assert conn.execute("SELECT 'a%%b' || %s", ("c",)).fetchone() == ("a%bc",)
        # without parameters, % is not a placeholder (as in psycopg)
        assert conn.execute("SELECT 'a%b'").fetchone() == ("a%b",)
        res = conn.execute("SELECT g FROM generate_series(1, 3) g")
        assert res.rowcount == 3
        assert res.fetchone() == (1,)
        assert res.fetchall() == [(2,), (3,)]


@pytest.mark.parametrize("standard_strings", ["on", "off"])
def test_literal_reads_back_the_same(pg_server: PgServer, standard_strings: str,
                                     backend: str) -> None:
    value = "it's a \\path\\ and \"quotes\" and é"
    with _connect(pg_server) as conn:
        conn.execute(f"SET standard_conforming_strings = {standard_strings}")
        assert conn.execute(f"SELECT {libpq.literal(value)}").fetchone() == (value,)


def test_ident_quotes_hostile_database_names(pg_server: PgServer) -> None:
    name = 'we"ird; DROP DATABASE postgres; --'
    with _connect(pg_server) as conn:
        conn.execute(f"CREATE DATABASE {libpq.ident(name)}")
        try:
            row = conn.execute("SELECT count(*) FROM pg_database WHERE datname IN (%s, %s)",
                               (name, "postgres")).fetchone()
            assert row == (2,)
        finally:
            conn.execute(f"DROP DATABASE {libpq.ident(name)}")
    with pytest.raises(ValueError):
        libpq.ident("a\x00b")


def test_query_error_leaves_the_connection_usable(pg_server: PgServer, backend: str) -> None:
    with _connect(pg_server) as conn:
        with pytest.raises(libpq.QueryError) as err:
            conn.execute("SELECT * FROM no_such_table_here WHERE x = %s", (1,))
        assert str(err.value) == 'relation "no_such_table_here" does not exist'
        assert err.value.sqlstate == "42P01"
        assert conn.execute("SELECT 1").fetchone() == (1,)
        # several statements: the first error stops them, with its detail
        with pytest.raises(libpq.QueryError) as err:
            conn.execute("CREATE TEMP TABLE u (x int PRIMARY KEY); INSERT INTO u VALUES (1), "
                         "(1); SELECT 2")
        assert err.value.sqlstate == "23505"
        assert err.value.detail == "Key (x)=(1) already exists."


def test_transaction_commits_or_rolls_back(pg_server: PgServer, backend: str) -> None:
    with _connect(pg_server) as conn:
        conn.execute("CREATE TEMP TABLE t (x int)")
        with conn.transaction():
            conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(libpq.QueryError), conn.transaction():
            conn.execute("INSERT INTO t VALUES (2)")
            conn.execute("SELECT 1/0")
        assert conn.status == "I"
        assert conn.execute("SELECT array_agg(x) FROM t").fetchone() == ("{1}",)


def test_a_terminated_session_says_so(pg_server: PgServer, backend: str) -> None:
    conn = _connect(pg_server)
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()
    with _connect(pg_server) as other:
        other.execute("SELECT pg_terminate_backend(%s)", pid)
    time.sleep(0.1)
    with pytest.raises(libpq.OperationalError) as err:
        conn.execute("SELECT 1")
    assert "terminating connection" in str(err.value) or "closed the connection" in str(
        err.value)
    assert "\n" not in str(err.value)
    assert conn.closed
    with pytest.raises(libpq.OperationalError, match="the connection is closed"):
        conn.execute("SELECT 1")


def test_alive_sees_a_terminated_session_without_a_round_trip_when_healthy(
        pg_server: PgServer, backend: str) -> None:
    # devenv asks before every use of a kept maintenance connection; a healthy idle one
    # must answer from its socket alone (no statement: pg_stat_statements-style counters
    # would show one), a terminated one must say so
    conn = _connect(pg_server)
    with _connect(pg_server) as other:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert conn.alive()
        if backend != "psycopg":  # the fallback asks the server each time
            seen = other.execute("SELECT state_change FROM pg_stat_activity WHERE pid = %s",
                                 pid).fetchone()
            assert conn.alive()
            assert other.execute("SELECT state_change FROM pg_stat_activity WHERE pid = %s",
                                 pid).fetchone() == seen
        other.execute("SELECT pg_terminate_backend(%s)", pid)
    time.sleep(0.1)
    assert not conn.alive()
    conn.close()
    assert not conn.alive()


def test_a_kept_maintenance_connection_is_replaced_after_the_server_ended_it(
        pg_server: PgServer) -> None:
    from devenv.postgres import database

    target = database.parse_url(pg_server.url("postgres"))
    with database.connect(target, "postgres") as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()
    with _connect(pg_server) as other:
        other.execute("SELECT pg_terminate_backend(%s)", pid)
    time.sleep(0.1)
    with database.connect(target, "postgres") as conn:
        assert conn.execute("SELECT pg_backend_pid()").fetchone() != pid


def test_ctrl_c_cancels_the_running_statement(pg_server: PgServer) -> None:
    """A real SIGINT (from a timer thread) during a long statement: the statement stops on
    the server rather than running on after devenv has gone."""
    conn = libpq.connect(_info(pg_server), application_name="libpq-cancel-test")
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert pid is not None

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, interrupt)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    try:
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            conn.execute("SELECT pg_sleep(30)")
        assert time.monotonic() - t0 < 10
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, old)
    assert conn.closed
    with _connect(pg_server) as other:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            row = other.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s "
                                "AND query LIKE 'SELECT pg_sleep%%' AND state = 'active'",
                                pid).fetchone()
            if row == (0,):
                break
            time.sleep(0.05)
        assert row == (0,)


def test_notices_are_not_printed(pg_server: PgServer, capfd: pytest.CaptureFixture[str],
                                 backend: str) -> None:
    with _connect(pg_server) as conn:
        conn.execute("DROP TABLE IF EXISTS no_such_table_for_notices")
        conn.execute("DO $$ BEGIN RAISE WARNING 'loud'; END $$")
    out, err = capfd.readouterr()
    assert "NOTICE" not in err and "loud" not in err and out == ""


def test_libpq_loads_without_importing_psycopg() -> None:
    """psycopg_binary's libpq is found by path: psycopg's import cost is what devenv avoids,
    and ``devenv --help`` loads neither libpq nor ctypes."""
    code = ("import sys; from devenv.postgres import database, libpq; "
            "print('ctypes' in sys.modules); lib = libpq._load(); "
            "print('psycopg' in sys.modules, lib is not None and 'psycopg_binary' in lib.path)")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONPATH": str(root)})
    assert out.stdout.split() == ["False", "False", "True"]
    help_run = subprocess.run([sys.executable, "-X", "importtime", "-m", "devenv", "--help"],
                              cwd=root, capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONPATH": str(root)})
    imported = {line.rsplit("|", 1)[-1].strip() for line in help_run.stderr.splitlines()}
    assert not imported & {"ctypes", "devenv.postgres.libpq", "psycopg"}


@pytest.mark.parametrize(("raw", "expected", "sqlstate"), [
    ('connection to server at "localhost" (::1), port 5433 failed: Connection refused\n'
     "\tIs the server running on that host and accepting TCP/IP connections?\n"
     'connection to server at "localhost" (127.0.0.1), port 5433 failed: FATAL:  28000: '
     'role "nobody" does not exist\nLOCATION:  InitializeSessionUserId, miscinit.c:750\n',
     'role "nobody" does not exist', "28000"),
    ('connection to server at "db" (10.0.0.5), port 5432 failed: SSL error: certificate '
     "verify failed\n",
     "connection to server at db:5432 failed: the server's certificate is not signed by a CA "
     "in /ca.pem (certificate verify failed; sslmode=verify-full)", ""),
    ('connection to server at "10.0.0.5", port 5432 failed: server certificate for "db" does '
     'not match host name "10.0.0.5"\n',
     "connection to server at 10.0.0.5:5432 failed: the server's certificate is not for host "
     '"10.0.0.5" (server certificate for "db" does not match host name "10.0.0.5"; '
     "sslmode=verify-full)", ""),
    ('invalid sslmode value: "sometimes"\n', 'invalid sslmode value: "sometimes"', ""),
])
def test_connection_errors_read_as_one_line(raw: str, expected: str, sqlstate: str) -> None:
    err = libpq.connect_error(raw, {"sslmode": "verify-full", "sslrootcert": "/ca.pem"})
    assert (str(err), err.sqlstate) == (expected, sqlstate)


def test_a_missing_bundled_copy_falls_back_to_the_systems_libpq(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(libpq, "_candidates", lambda: [str(tmp_path / "libpq.so.5")])
    monkeypatch.setattr(libpq, "_LIB", None)
    monkeypatch.setattr(libpq, "_LOADED", False)
    import ctypes.util

    found = ctypes.util.find_library("pq")
    lib = libpq._load()
    assert (lib.path if lib else None) == found  # None: psycopg serves (connect's fallback)
    assert libpq._load() is lib  # looked for once
