"""The user's connection string kept whole (issue 17; issue 18 items 6 and 12): every libpq
parameter given in the URL's query, in ``PG*`` variables or in a service file reaches
devenv's own connections, pg_dump/pg_restore and the steps, against a real PostgreSQL with
TLS whose CA the test makes (``cryptography``). The server takes TLS connections only, and
only with a client certificate signed by that CA (``clientcert=verify-full``): a tool or a
step that lost ``sslcert``/``sslkey``/``sslrootcert`` is refused, not quietly served.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devenv.commands import snapshot as cmd
from devenv.events import RecordingReporter
from devenv.postgres import database, dumpfiles, pgcluster
from devenv.session import Session

pytestmark = pytest.mark.postgres

PASSWORD = "tls pw"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    os.chmod(path, 0o600)


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
          issuer_key: ec.EllipticCurvePrivateKey | None, *, ca: bool = False,
          dns: list[str] | None = None, ips: list[str] | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer.subject if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if dns or ips:
        alt: list[x509.GeneralName] = [x509.DNSName(d) for d in dns or []]
        alt += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips or []]
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@dataclass
class Tls:
    cluster: pgcluster.Cluster
    ca: Path  # the CA that signed the server's and the client's certificates
    ca_key: Path
    other_ca: Path  # a CA that signed nothing here
    cert: Path  # the client's certificate (CN=postgres) and key
    key: Path

    def url(self, dbname: str = "postgres", host: str = "localhost", ca: Path | None = None,
            **extra: str) -> str:
        query = {"sslmode": "verify-full", "sslrootcert": str(ca or self.ca),
                 "sslcert": str(self.cert), "sslkey": str(self.key), **extra}
        pw = urllib.parse.quote(PASSWORD, safe="")
        return (f"postgresql://postgres:{pw}@{host}:{self.cluster.port}/"
                f"{urllib.parse.quote(dbname, safe='')}?"
                + urllib.parse.urlencode(query))

    def env(self, ca: Path | None = None) -> dict[str, str]:
        return {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(ca or self.ca),
                "PGSSLCERT": str(self.cert), "PGSSLKEY": str(self.key)}


@pytest.fixture(scope="module")
def tls() -> Iterator[Tls]:
    base = Path(tempfile.mkdtemp(prefix="devenv-test-tls-"))
    os.chmod(base, 0o755)
    cluster = pgcluster.Cluster(datadir=base / "data", port=pgcluster.free_port(),
                                password=PASSWORD)
    cluster.init()
    data = cluster.datadir
    ca_key, other_key, server_key, client_key = _key(), _key(), _key(), _key()
    ca = _cert("devenv test CA", ca_key, None, None, ca=True)
    other = _cert("devenv other CA", other_key, None, None, ca=True)
    _write_cert(ca, base / "ca.crt")
    _write_key(ca_key, base / "ca.key")
    _write_cert(other, base / "other-ca.crt")
    _write_cert(ca, data / "ca.crt")
    _write_cert(_cert("localhost", server_key, ca, ca_key, dns=["localhost"]),
                data / "server.crt")
    _write_key(server_key, data / "server.key")
    _write_cert(_cert("postgres", client_key, ca, ca_key), base / "client.crt")
    _write_key(client_key, base / "client.key")
    hba = data / "pg_hba.conf"
    # devenv_import restores untrusted dumps (tests/reliability/test_untrusted_dump.py): a
    # client certificate is for one user, so that role logs in with its password (over TLS)
    hba.write_text("local all all trust\n"
                   "hostssl all devenv_import 127.0.0.1/32 scram-sha-256\n"
                   "hostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-full\n"
                   "hostnossl all all 0.0.0.0/0 reject\n")
    if os.geteuid() == 0:
        info = pwd.getpwnam("postgres")
        for f in (data / "server.key", data / "server.crt", data / "ca.crt", hba):
            os.chown(f, info.pw_uid, info.pw_gid)
    cluster.start("-c ssl=on -c ssl_ca_file=ca.crt")
    try:
        yield Tls(cluster, base / "ca.crt", base / "ca.key", base / "other-ca.crt",
                  base / "client.crt", base / "client.key")
    finally:
        cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_user_pg_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("PG")] + ["DATABASE_URL"]:
        monkeypatch.delenv(var, raising=False)


def _ssl_in_use(target: database.Target, dbname: str = "postgres") -> bool:
    with database.connect(target, dbname) as conn:
        row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                           ).fetchone()
    return bool(row and row[0])


# --------------------------------------------------------------------------- parsing


def test_the_url_query_is_kept_and_written_back() -> None:
    url = ("postgresql://u:p%40ss@db.example:6543/app?sslmode=verify-full"
           "&sslrootcert=/ca.pem&target_session_attrs=read-write")
    t = database.parse_url(url, "other")
    assert (t.host, t.port, t.user, t.password, t.dbname) == ("db.example", 6543, "u", "p@ss",
                                                             "app")
    assert dict(t.params) == {"sslmode": "verify-full", "sslrootcert": "/ca.pem",
                              "target_session_attrs": "read-write"}
    assert database.parse_url(t.url()) == t
    env = t.env("app__build")
    assert env["PGSSLMODE"] == "verify-full" and env["PGSSLROOTCERT"] == "/ca.pem"
    assert env["PGTARGETSESSIONATTRS"] == "read-write"
    assert env["DATABASE_URL"] == ("postgresql://u:p%40ss@db.example:6543/app__build?"
                                   "sslmode=verify-full&sslrootcert=%2Fca.pem"
                                   "&target_session_attrs=read-write")
    # a Unix socket given as ?host= stays a socket (it became 127.0.0.1)
    sock = database.parse_url("postgresql://u@/app?host=/var/run/postgresql")
    assert sock.host == "/var/run/postgresql" and sock.params == ()
    assert database.parse_url(sock.url()) == sock
    with pytest.raises(database.DatabaseError,
                       match=r"^unknown connection parameter 'sslmdoe' in database URL"):
        database.parse_url("postgresql://u@h/app?sslmdoe=require")


def test_database_names_with_a_space_or_hash_are_encoded() -> None:
    t = database.Target("h", 5432, "u", "pw", "my db#1")
    assert t.url() == "postgresql://u:pw@h:5432/my%20db%231"
    assert database.parse_url(t.url()).dbname == "my db#1"
    assert psycopg.conninfo.conninfo_to_dict(t.url())["dbname"] == "my db#1"


def test_a_service_file_is_resolved_like_libpq(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    services = tmp_path / "pg_service.conf"
    services.write_text("[other]\nhost=nowhere\n\n[prod]\n# the team's server\nhost=db.example\n"
                        "port=6000\nuser=svc\ndbname=svcdb\nsslmode=verify-full\n")
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    t = database.parse_url("postgresql:///?service=prod&sslmode=require", "app")
    # the URL wins over the service, the service over the defaults; the project's database
    # name over the service's
    assert (t.host, t.port, t.user, t.dbname) == ("db.example", 6000, "svc", "app")
    assert dict(t.params) == {"sslmode": "require"}
    monkeypatch.setenv("PGSERVICE", "prod")
    assert database.parse_url("postgresql://x@h/app").params == (("sslmode", "verify-full"),)
    # a URL devenv wrote itself (the background re-clone's) is not the user's to redirect
    assert database.parse_url("postgresql://x@h/app", env_service=False).params == ()
    monkeypatch.setenv("PGSERVICE", "missing")
    with pytest.raises(database.DatabaseError,
                       match=r"^definition of service 'missing' not found"):
        database.parse_url("postgresql://x@h/app")


# --------------------------------------------------------------------------- devenv's own


def test_verify_full_with_the_right_ca_connects(tls: Tls) -> None:
    target = database.parse_url(tls.url())
    assert _ssl_in_use(target)


def test_the_same_options_from_pg_variables(tls: Tls, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in tls.env().items():
        monkeypatch.setenv(k, v)
    target = database.parse_url(
        f"postgresql://postgres:{urllib.parse.quote(PASSWORD)}@localhost:{tls.cluster.port}/"
        "postgres")
    assert target.params == ()
    assert _ssl_in_use(target)


def test_a_wrong_ca_fails_with_a_clear_message(tls: Tls) -> None:
    target = database.parse_url(tls.url(ca=tls.other_ca))
    with pytest.raises(database.DatabaseError) as err:
        _ssl_in_use(target)
    assert str(err.value).startswith(
        f"cannot connect to {target.redacted()}: connection to server at "
        f"localhost:{tls.cluster.port} failed: the server's certificate is not signed by a CA "
        f"in {tls.other_ca} (")
    assert "sslmode=verify-full)" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_wrong_host_name_fails_with_a_clear_message(tls: Tls) -> None:
    target = database.parse_url(tls.url(host="127.0.0.1"))
    with pytest.raises(database.DatabaseError,
                       match=r"the server's certificate is not for host \"127\.0\.0\.1\" "
                             r"\(.*sslmode=verify-full\)$"):
        _ssl_in_use(target)


def test_a_missing_root_certificate_is_not_skipped(tls: Tls, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.postgresql/root.crt
    target = database.parse_url(tls.url().replace(f"sslrootcert={urllib.parse.quote_plus(str(tls.ca))}&", ""))
    assert "sslrootcert" not in dict(target.params)
    with pytest.raises(database.DatabaseError,
                       match=r'root certificate file ".*/\.postgresql/root\.crt" does not '
                             "exist"):
        _ssl_in_use(target)


def test_every_libpq_parameter_is_honoured(tls: Tls) -> None:
    # target_session_attrs: the connection must honour it, not drop it
    target = database.parse_url(tls.url(target_session_attrs="read-write"))
    assert dict(target.conninfo())["target_session_attrs"] == "read-write"
    assert _ssl_in_use(target)
    standby = database.parse_url(tls.url(target_session_attrs="standby"))
    with pytest.raises(database.DatabaseError, match="server is not in hot standby mode"):
        _ssl_in_use(standby)


def test_a_socket_folder_given_as_host_stays_a_socket(tls: Tls) -> None:
    # ?host=/folder is a Unix socket (it became 127.0.0.1); the hba lets local connect
    target = database.parse_url(f"postgresql://postgres@/postgres?host="
                                f"{urllib.parse.quote(str(tls.cluster.sockdir))}"
                                f"&port={tls.cluster.port}")
    assert target.host == str(tls.cluster.sockdir)
    with database.connect(target, "postgres") as conn:
        row = conn.execute("SELECT inet_server_addr() IS NULL, current_database()").fetchone()
    assert row == (True, "postgres")


def _service_file(tls: Tls, path: Path, ca: Path) -> Path:
    path.write_text(f"[tlsdb]\nhost=localhost\nport={tls.cluster.port}\nuser=postgres\n"
                    f"password={PASSWORD}\nsslmode=verify-full\nsslrootcert={ca}\n"
                    f"sslcert={tls.cert}\nsslkey={tls.key}\n")
    return path


def test_pgservice_reaches_devenvs_connections(tls: Tls, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGSERVICEFILE", str(_service_file(tls, tmp_path / "s.conf", tls.ca)))
    monkeypatch.setenv("PGSERVICE", "tlsdb")
    target = database.parse_url("postgresql:///postgres")
    assert (target.host, target.port) == ("localhost", tls.cluster.port)
    assert _ssl_in_use(target)
    # the service's CA is the one checked: a wrong one there fails, on one line
    monkeypatch.setenv("PGSERVICEFILE",
                       str(_service_file(tls, tmp_path / "wrong.conf", tls.other_ca)))
    wrong = database.parse_url("postgresql:///postgres")
    with pytest.raises(database.DatabaseError,
                       match=r"the server's certificate is not signed by a CA in "
                             rf"{re.escape(str(tls.other_ca))} \(.*sslmode=verify-full\)$"):
        _ssl_in_use(wrong)


def test_a_crl_that_revokes_the_servers_certificate_is_applied(tls: Tls,
                                                                tmp_path: Path) -> None:
    # sslcrl was one of the parameters devenv's own client dropped
    server = x509.load_pem_x509_certificate((tls.cluster.datadir / "server.crt").read_bytes())
    ca_key = serialization.load_pem_private_key(tls.ca_key.read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    now = datetime.datetime.now(datetime.UTC)
    ca = x509.load_pem_x509_certificate(tls.ca.read_bytes())
    for name, serials in (("empty.crl", []), ("revoked.crl", [server.serial_number])):
        builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
                   .last_update(now - datetime.timedelta(minutes=5))
                   .next_update(now + datetime.timedelta(days=1)))
        for serial in serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(now - datetime.timedelta(minutes=1)).build())
        crl = builder.sign(ca_key, hashes.SHA256())
        (tmp_path / name).write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    # a CRL of the same CA that revokes nothing: connects
    assert _ssl_in_use(database.parse_url(tls.url(sslcrl=str(tmp_path / "empty.crl"))))
    target = database.parse_url(tls.url(sslcrl=str(tmp_path / "revoked.crl")))
    with pytest.raises(database.DatabaseError) as err:
        _ssl_in_use(target)
    assert str(err.value).endswith(
        f"failed: the server's certificate is not signed by a CA in {tls.ca}, or is revoked "
        f"by {tmp_path / 'revoked.crl'} (certificate verify failed; sslmode=verify-full)")


def test_the_cli_says_a_wrong_ca_in_one_line(tls: Tls, make_project: Callable[..., Path]
                                            ) -> None:
    root = _project(make_project, "tlsproj")
    r = _ci_setup(root, {"DATABASE_URL": tls.url("tls_cli_db", ca=tls.other_ca)})
    assert r.returncode == 3, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    lines = [line for line in (r.stdout + r.stderr).splitlines()
             if "the server's certificate is not signed by a CA in" in line]
    assert lines and all("sslmode=verify-full)" in line for line in lines)


# --------------------------------------------------------------------------- steps, tools

STEP = r"""
import os, sys, json, psycopg
env = {k: os.environ[k] for k in sorted(os.environ) if k.startswith("PG") or k == "DATABASE_URL"}
with psycopg.connect(os.environ["DATABASE_URL"]) as c:
    by_url = c.execute("SELECT ssl, current_database() FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
with psycopg.connect("") as c:
    by_env = c.execute("SELECT ssl, current_database() FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
open(os.environ["OUT"], "w").write(json.dumps({"env": env, "by_url": by_url, "by_env": by_env}))
"""


def _project(make_project: Callable[..., Path], db: str) -> Path:
    config: dict[str, Any] = {
        "version": 1, "name": "tlsproj",
        "services": {"db": {"image": "postgres:15"}},
        "database": {"service": "db", "name": db},
        "steps": {"show": {"run": f"{sys.executable} step.py", "needs": ["db"],
                           "env": {"OUT": "out.json"}}},
    }
    return make_project(config, files={"step.py": STEP})


def _ci_setup(root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("PG")
            and k != "DATABASE_URL"} | env
    full["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return subprocess.run([sys.executable, "-m", "devenv", "ci-setup"], cwd=root, env=full,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize("where", ["url", "pg-variables", "service"])
def test_steps_receive_the_same_options(tls: Tls, make_project: Callable[..., Path],
                                        where: str, tmp_path: Path) -> None:
    # The URL names the database, with a space and '#' (issue 18 item 12): the step
    # connects with the DATABASE_URL devenv gives it.
    db = f"tls step#{where}"
    root = _project(make_project, "tlsproj")
    if where == "url":
        env = {"DATABASE_URL": tls.url(db)}
    elif where == "service":
        env = {"DATABASE_URL": f"postgresql:///{urllib.parse.quote(db)}",
               "PGSERVICEFILE": str(_service_file(tls, tmp_path / "s.conf", tls.ca)),
               "PGSERVICE": "tlsdb"}
    else:
        env = {"DATABASE_URL": f"postgresql://postgres:{urllib.parse.quote(PASSWORD)}@"
                               f"localhost:{tls.cluster.port}/{urllib.parse.quote(db)}",
               **tls.env()}
    target = database.parse_url(tls.url(db))
    try:
        r = _ci_setup(root, env)
        assert r.returncode == 0, r.stdout + r.stderr
        out = json.loads((root / "out.json").read_text())
        assert out["by_url"] == [True, db] and out["by_env"] == [True, db]
        seen = out["env"]
        assert seen["PGSSLMODE"] == "verify-full" and seen["PGSSLROOTCERT"] == str(tls.ca)
        assert seen["PGSSLCERT"] == str(tls.cert) and seen["PGSSLKEY"] == str(tls.key)
        assert seen["PGDATABASE"] == db
        url = psycopg.conninfo.conninfo_to_dict(seen["DATABASE_URL"])
        assert url["dbname"] == db and url["host"] == "localhost"
        if where in ("url", "service"):
            assert {k: url[k] for k in ("sslmode", "sslrootcert", "sslcert", "sslkey")} == {
                "sslmode": "verify-full", "sslrootcert": str(tls.ca), "sslcert": str(tls.cert),
                "sslkey": str(tls.key)}
    finally:
        database.drop(target, db)


@pytest.mark.parametrize("where", ["url", "pg-variables"])
def test_pg_dump_and_pg_restore_keep_the_tls_options(tls: Tls, make_project: Callable[..., Path],
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path, where: str) -> None:
    """snapshot export and import with verify-full and a client certificate: the server
    refuses any connection without them, so pg_dump and pg_restore must have them all."""
    db = f"tls_dump_{where.replace('-', '_')}"
    root = _project(make_project, db)
    if where == "url":
        monkeypatch.setenv("DATABASE_URL", tls.url(db))  # the URL names the database
    else:
        monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres:"
                           f"{urllib.parse.quote(PASSWORD)}@localhost:{tls.cluster.port}/")
        for k, v in tls.env().items():
            monkeypatch.setenv(k, v)
    monkeypatch.setenv("DEVENV_PG_TOOLS", "local")
    target = database.parse_url(os.environ["DATABASE_URL"], db)
    from devenv import loader
    from devenv.postgres import siblings

    project = loader.load(root / "steps.yaml")
    try:
        database.create(target, f"{db}__u_base", [])
        with database.connect(target, f"{db}__u_base") as conn:
            conn.execute("CREATE TABLE kept(v text); INSERT INTO kept VALUES ('over tls')")
        siblings.set_meta(target, f"{db}__u_base",
                           siblings.meta("user", "tlsproj", name="base", key="k", steps=[],
                                          fingerprints={}, complete=True))
        file = tmp_path / "base.devenv-snapshot"
        assert cmd.export(Session(project, RecordingReporter()), "base", file) == 0
        assert cmd.import_(Session(project, RecordingReporter()), file, "again") == 0
        with database.connect(target, f"{db}__u_again") as conn:
            assert conn.execute("SELECT v FROM kept").fetchall() == [("over tls",)]
        env = dumpfiles.tool_env(target, db)
        assert env["PGSSLMODE"] == "verify-full" and env["PGSSLCERT"] == str(tls.cert)
    finally:
        for info in siblings.related(target, db):
            database.drop(target, info.datname)
