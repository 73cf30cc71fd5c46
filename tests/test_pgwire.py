"""devenv.postgres.pgwire against a real PostgreSQL: every authentication method it speaks, SSL,
parameters and quoting, errors, transactions, and cancelling on Ctrl-C.

One extra cluster (module scope) has a pg_hba.conf with one method per role and a
self-signed certificate; the session's ``pg_server`` covers the plain cases.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from devenv.postgres import pgcluster, pgwire
from tests.conftest import PgServer

PASSWORD = "s3cret 'with' \\ odd: chars"


def _connect(server: PgServer | pgcluster.Cluster, user: str | None = None,
             password: str | None = None, dbname: str = "postgres") -> pgwire.Connection:
    port = server.port
    return pgwire.connect("127.0.0.1", port, user or server.user,
                          server.password if password is None else password, dbname, timeout=5)


@pytest.fixture(scope="module")
def auth_cluster() -> Iterator[pgcluster.Cluster]:
    """A cluster with one role per method (trust, password, md5, scram) and SSL on."""
    base = Path(tempfile.mkdtemp(prefix="devenv-test-pgwire-"))
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
        conn.execute(f"CREATE ROLE pw_user LOGIN PASSWORD {pgwire.literal(PASSWORD)}")
        conn.execute("SET password_encryption = 'md5'")
        conn.execute(f"CREATE ROLE md5_user LOGIN PASSWORD {pgwire.literal(PASSWORD)}")
        conn.execute("SET password_encryption = 'scram-sha-256'")
        conn.execute(f"CREATE ROLE scram_user LOGIN PASSWORD {pgwire.literal(PASSWORD)}")
    try:
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def _whoami(conn: pgwire.Connection) -> tuple[str, bool]:
    row = conn.execute("SELECT current_user, coalesce((SELECT ssl FROM pg_stat_ssl "
                       "WHERE pid = pg_backend_pid()), false)").fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.mark.parametrize("user", ["trust_user", "pw_user", "md5_user", "scram_user"])
def test_each_authentication_method(auth_cluster: pgcluster.Cluster, user: str) -> None:
    with _connect(auth_cluster, user, PASSWORD) as conn:
        assert _whoami(conn) == (user, True)  # sslmode prefer: encrypted when offered


@pytest.mark.parametrize("user", ["pw_user", "md5_user", "scram_user"])
def test_wrong_password_is_refused_with_the_servers_words(auth_cluster: pgcluster.Cluster,
                                                          user: str) -> None:
    with pytest.raises(pgwire.OperationalError) as err:
        _connect(auth_cluster, user, "not it")
    assert str(err.value) == f'password authentication failed for user "{user}"'
    assert err.value.sqlstate == "28P01"


def test_no_password_reads_pgpass(auth_cluster: pgcluster.Cluster, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(pgwire.OperationalError, match="asks for a password and none"):
        _connect(auth_cluster, "scram_user", "")
    escaped = PASSWORD.replace("\\", "\\\\").replace(":", "\\:")
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"otherhost:*:*:*:nope\n127.0.0.1:{auth_cluster.port}:*:scram_user:"
                        f"{escaped}\n")
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
    with pytest.raises(pgwire.OperationalError,
                       match="does not support SSL, but PGSSLMODE=require asks for it"):
        _connect(pg_server)


def test_unix_socket(auth_cluster: pgcluster.Cluster) -> None:
    with pgwire.connect(str(auth_cluster.sockdir), auth_cluster.port, "trust_user", "",
                        "postgres") as conn:
        row = conn.execute("SELECT current_user, inet_server_addr() IS NULL").fetchone()
    assert row == ("trust_user", True)


def test_nothing_listening(pg_server: PgServer) -> None:
    port = pgcluster.free_port()
    with pytest.raises(pgwire.OperationalError) as err:
        pgwire.connect("127.0.0.1", port, "postgres", "x", "postgres", timeout=2)
    assert str(err.value) == (f"connection to server at 127.0.0.1:{port} failed: Connection "
                              "refused. Is the server running on that host and accepting "
                              "TCP/IP connections?")


def test_missing_database_is_the_servers_error(pg_server: PgServer) -> None:
    with pytest.raises(pgwire.OperationalError) as err:
        _connect(pg_server, dbname="no_such_db_for_pgwire")
    assert str(err.value) == 'database "no_such_db_for_pgwire" does not exist'
    assert err.value.sqlstate == "3D000"


def test_parameters_and_types_round_trip(pg_server: PgServer) -> None:
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
def test_literal_reads_back_the_same(pg_server: PgServer, standard_strings: str) -> None:
    value = "it's a \\path\\ and \"quotes\" and é"
    with _connect(pg_server) as conn:
        conn.execute(f"SET standard_conforming_strings = {standard_strings}")
        assert conn.execute(f"SELECT {pgwire.literal(value)}").fetchone() == (value,)


def test_ident_quotes_hostile_database_names(pg_server: PgServer) -> None:
    name = 'we"ird; DROP DATABASE postgres; --'
    with _connect(pg_server) as conn:
        conn.execute(f"CREATE DATABASE {pgwire.ident(name)}")
        try:
            row = conn.execute("SELECT count(*) FROM pg_database WHERE datname IN (%s, %s)",
                               (name, "postgres")).fetchone()
            assert row == (2,)
        finally:
            conn.execute(f"DROP DATABASE {pgwire.ident(name)}")
    with pytest.raises(ValueError):
        pgwire.ident("a\x00b")


def test_query_error_leaves_the_connection_usable(pg_server: PgServer) -> None:
    with _connect(pg_server) as conn:
        with pytest.raises(pgwire.QueryError) as err:
            conn.execute("SELECT * FROM no_such_table_here WHERE x = %s", (1,))
        assert str(err.value) == 'relation "no_such_table_here" does not exist'
        assert err.value.sqlstate == "42P01"
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_transaction_commits_or_rolls_back(pg_server: PgServer) -> None:
    with _connect(pg_server) as conn:
        conn.execute("CREATE TEMP TABLE t (x int)")
        with conn.transaction():
            conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(pgwire.QueryError), conn.transaction():
            conn.execute("INSERT INTO t VALUES (2)")
            conn.execute("SELECT 1/0")
        assert conn.status == "I"
        assert conn.execute("SELECT array_agg(x) FROM t").fetchone() == ("{1}",)


def test_a_terminated_session_says_so(pg_server: PgServer) -> None:
    conn = _connect(pg_server)
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()
    with _connect(pg_server) as other:
        other.execute("SELECT pg_terminate_backend(%s)", pid)
    time.sleep(0.1)
    with pytest.raises(pgwire.Error) as err:
        conn.execute("SELECT 1")
    assert "terminating connection" in str(err.value) or "closed the connection" in str(
        err.value)
    with pytest.raises(pgwire.OperationalError, match="the connection is closed"):
        conn.execute("SELECT 1")


def test_ctrl_c_cancels_the_running_statement(pg_server: PgServer) -> None:
    """A real SIGINT (from a timer thread) during a long statement: the statement stops on
    the server rather than running on after devenv has gone."""
    conn = pgwire.connect("127.0.0.1", pg_server.port, pg_server.user, pg_server.password,
                          "postgres", application_name="pgwire-cancel-test")
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
