"""The remote snapshot cache against a real OCI registry (the CNCF Distribution registry,
started by ../shared/registry/start-registry) and a real PostgreSQL: push, a teammate's
pull on another checkout, auth, a registry that goes away, a damaged blob, signatures,
concurrent pushes, and the docker backend pulling postgres:15 from it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv import fingerprint, loader
from devenv.events import RecordingReporter
from devenv.postgres import database, dumpfiles, pgcluster, siblings
from devenv.workingdb import oci
from tests.dbcompare import dump_database

pytestmark = [pytest.mark.postgres, pytest.mark.registry]

START = Path(__file__).resolve().parents[2].parent / "shared" / "registry" / "start-registry"
if not START.exists():  # a worktree beside the main checkout
    START = Path("/work/shared/registry/start-registry")
PSQL = "psql -X -q -v ON_ERROR_STOP=1"
USER, PASSWORD = "team", "s3cret-pw"


@dataclass
class Registry:
    dir: Path
    port: int
    pid: int
    auth: bool

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def remote(self, repo: str) -> str:
        return f"oci://{self.host}/{repo}"

    def blobs(self) -> list[Path]:
        return list((self.dir / "storage").rglob("blobs/sha256/*/*/data"))


def _start(base: Path, auth: bool) -> Registry:
    port = pgcluster.free_port()
    args = [str(START), str(base), str(port)] + ([f"{USER}:{PASSWORD}"] if auth else [])
    try:
        cp = subprocess.run(args, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"the registry could not start: {exc}")
    if cp.returncode != 0:
        pytest.skip(f"the registry could not start: {cp.stderr.strip()[-300:]}")
    return Registry(base, port, int(cp.stdout.split()[-1]), auth)


def _kill(reg: Registry) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(reg.pid, signal.SIGTERM)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An open registry (no auth) for the session."""
    reg = _start(tmp_path_factory.mktemp("registry"), auth=False)
    yield reg
    _kill(reg)


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry that wants HTTP basic auth (team / s3cret-pw)."""
    reg = _start(tmp_path_factory.mktemp("registry-auth"), auth=True)
    yield reg
    _kill(reg)


# --------------------------------------------------------------------------- projects


def config(db: str, remote: str, name: str = "remproj", local_step: bool = False,
           **cache: Any) -> dict[str, Any]:
    extra = {"local-user": {"run": "echo local-user >> ran.log", "needs": ["seed"],
                            "profiles": ["local"]}} if local_step else {}
    return {
        "version": 1, "name": name,
        "services": {"db": {"image": "postgres:15", "env": {"POSTGRES_PASSWORD": "x"}}},
        "database": {"service": "db", "name": db, "schemas": ["public", "app"]},
        "cache": {"remote": remote, **cache},
        "steps": {
            "schema": {"run": f"{PSQL} -f schema.sql && echo schema >> ran.log",
                       "needs": ["db"], "inputs": ["schema.sql"]},
            "seed": {"run": f"{PSQL} -f seed.sql && echo seed >> ran.log",
                     "needs": ["schema"], "inputs": ["seed.sql"]},
            **extra,
        },
    }


FILES = {
    "schema.sql": "create table app.items(id serial primary key, v text);\n",
    "seed.sql": "insert into app.items(v) select 'v' || g from generate_series(1, 500) g;\n",
}


@dataclass
class Checkout:
    root: Path
    url: str
    db: str

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a devenv run in this checkout: its database, this tree's
        devenv, no docker credentials and no remote-cache setting of the caller's."""
        full = {k: v for k, v in os.environ.items()
                if not k.startswith("DEVENV_CACHE") and k not in ("DOCKER_CONFIG", "CI")}
        full["DATABASE_URL"] = self.url
        full["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
        full["DOCKER_CONFIG"] = str(self.root / ".no-docker-config")
        full.update(extra or {})
        return full

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 180,
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "devenv", "--plain", *args],
                              cwd=self.root, env=self.env(env), capture_output=True,
                              text=True, timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        """:meth:`run` in the background (its output, stderr included, on ``stdout``)."""
        return subprocess.Popen([sys.executable, "-m", "devenv", "--plain", *args],
                                cwd=self.root, env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def as_teammate(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """For calls in this process: the environment :meth:`env` gives a run here."""
        for k in list(os.environ):
            if k.startswith("DEVENV_CACHE") or k == "CI":
                monkeypatch.delenv(k)
        monkeypatch.setenv("DOCKER_CONFIG", str(self.root / ".no-docker-config"))

    def ran(self) -> list[str]:
        log = self.root / "ran.log"
        return log.read_text().split() if log.exists() else []

    def project(self) -> Any:
        return loader.load(self.root / "steps.yaml")

    def target(self) -> database.Target:
        return database.parse_url(self.url)


@pytest.fixture
def checkouts(tmp_path: Path, pg_server: Any, registry: Registry,
              ) -> Iterator[Any]:
    """make(name=..., remote=..., **cache): a checkout of the project in its own folder
    with its own database (a teammate's machine)."""
    made: list[Checkout] = []
    repo = f"snap-{uuid.uuid4().hex[:8]}"

    def make(label: str, remote: str | None = None, files: dict[str, str] | None = None,
             **kw: Any) -> Checkout:
        db = pg_server.unique_db("rc")
        root = tmp_path / label
        root.mkdir()
        (root / "steps.yaml").write_text(yaml.safe_dump(
            config(db, remote or registry.remote(repo), **kw), sort_keys=False))
        for name, text in {**FILES, **(files or {})}.items():
            (root / name).write_text(text)
        c = Checkout(root, pg_server.url(db), db)
        made.append(c)
        return c

    yield make
    for c in made:
        target = c.target()
        for info in siblings.related(target, c.db):
            database.drop(target, info.datname)


def _one_line_then_build(r: subprocess.CompletedProcess[str], c: Checkout, why: str) -> None:
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [ln for ln in r.stdout.splitlines() if "remote cache:" in ln]
    assert len(lines) == 1, r.stdout
    assert why in lines[0], lines[0]
    assert "Traceback" not in r.stdout + r.stderr
    assert c.ran() == ["schema", "seed"], r.stdout


# --------------------------------------------------------------------------- tests


def test_ci_push_then_teammate_refresh_pulls(checkouts: Any) -> None:
    ci = checkouts("ci")
    r = ci.run("ci-setup", "--push", env={"CI": "true"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pushed snapshot" in r.stdout
    mate = checkouts("mate")
    r = mate.run("refresh-db")
    assert r.returncode == 0, r.stdout + r.stderr
    key = fingerprint.combined(
        fingerprint.compute(mate.project()), ["schema", "seed"])
    assert (f"restored snapshot {key[:12]} from oci://" in r.stdout
            and "(pushed by ci on 20" in r.stdout), r.stdout
    assert mate.ran() == []  # no step ran: the work came from CI
    assert dump_database(mate.url) == dump_database(ci.url)
    # the pulled snapshot is now a local cache snapshot: the next refresh needs no remote
    assert siblings.find(mate.target(), mate.db, siblings.cache_name(mate.db, key))
    r = mate.run("refresh-db", "--no-remote-cache")
    # from that snapshot, or from the ready copy the background re-clone makes of it (which
    # this refresh may start before it ends): locally either way, and no step runs
    assert r.returncode == 0 and "oci://" not in r.stdout and mate.ran() == [], r.stdout
    assert (f"starting from snapshot {siblings.cache_name(mate.db, key)}" in r.stdout
            or "ready copy" in r.stdout), r.stdout
    assert dump_database(mate.url) == dump_database(ci.url)


def test_ci_job_with_an_empty_database_restores_beside_it_then_swaps(
        checkouts: Any, pg_server: Any) -> None:
    """A CI job whose service container made the (empty) database: ci-setup restores CI's
    snapshot into a database of its own beside it, and only then puts it in its place; no
    step runs and nothing else is left on the server."""
    ci = checkouts("ci")
    r = ci.run("ci-setup", "--push", env={"CI": "true"})
    assert r.returncode == 0 and "pushed snapshot" in r.stdout, r.stdout + r.stderr
    job = checkouts("job")
    target = job.target()
    database.create(target, job.db, [])  # what POSTGRES_DB makes
    empty = _oid(pg_server, job.db)
    r = job.run("ci-setup", env={"CI": "true"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "restored snapshot " in r.stdout and "(pushed by ci on 20" in r.stdout, r.stdout
    assert job.ran() == []
    assert dump_database(job.url) == dump_database(ci.url)
    assert _oid(pg_server, job.db) not in (None, empty)  # the restored one took its place
    assert [d.datname for d in siblings.related(target, job.db)] == [job.db]
    assert _can_log_in(pg_server) is False


def test_two_teammates_pull_at_once_on_one_server(checkouts: Any, pg_server: Any) -> None:
    """Two checkouts (two worktrees, two projects' databases) refresh from the remote at the
    same moment on one server: both restore as the one import role, one after the other
    where they meet, and both end with CI's database and the role closed."""
    ci = checkouts("ci")
    r = ci.run("ci-setup", "--push", env={"CI": "true"})
    assert r.returncode == 0 and "pushed snapshot" in r.stdout, r.stdout + r.stderr
    mates = [checkouts(f"mate{i}") for i in range(2)]
    running = [m.start("refresh-db") for m in mates]
    outs = [p.communicate(timeout=180)[0] for p in running]
    for m, p, out in zip(mates, running, outs, strict=True):
        assert p.returncode == 0, out
        assert "restored snapshot " in out and "remote cache:" not in out, out
        assert m.ran() == []
        assert dump_database(m.url) == dump_database(ci.url)
    assert _can_log_in(pg_server) is False


def test_two_worktrees_up_at_once_on_a_fresh_server(checkouts: Any, pg_server: Any,
                                                      tmp_path: Path) -> None:
    """Two git worktrees of one project (one database name, one server) run `up` at the
    same moment with nothing built yet: one pulls CI's snapshot while the other waits for
    the database lock (saying for whom); the second then parks the first one's database
    (another branch's) and pulls its own. No step runs, no build database is left, and
    the working database is CI's."""
    ci = checkouts("ci")
    r = ci.run("ci-setup", "--push", env={"CI": "true"})
    assert r.returncode == 0 and "pushed snapshot" in r.stdout, r.stdout + r.stderr
    proto = checkouts("proto")  # its steps.yaml and files, for the repository
    repo = tmp_path / "repo"
    shutil.copytree(proto.root, repo)

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       cwd=repo, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "-m", "init")
    other = tmp_path / "feature"
    git("worktree", "add", "-q", "-b", "feature", str(other))
    running = [Checkout(root, proto.url, proto.db).start("up") for root in (repo, other)]
    outs = [p.communicate(timeout=180)[0] for p in running]
    for p, out in zip(running, outs, strict=True):
        assert p.returncode == 0, out
        assert "remote cache:" not in out and "Traceback" not in out, out
        assert "restored snapshot " in out, out
    assert sum("warning: waiting: another checkout" in out for out in outs) == 1, outs
    for root in (repo, other):
        assert not (root / "ran.log").exists(), outs
    assert dump_database(proto.url) == dump_database(ci.url)
    left = [d.datname for d in siblings.related(proto.target(), proto.db)]
    assert not [n for n in left if siblings.is_build(proto.db, n)], left
    # the one that went first has its database parked for its branch
    assert len([n for n in left if siblings.is_branch(proto.db, n)]) == 1, left


def test_ci_profile_snapshot_serves_the_local_profile(checkouts: Any) -> None:
    """CI pushes its profile's steps; a developer's profile has one more (local only): the
    pull restores CI's part and runs only that one step."""
    ci = checkouts("ci", local_step=True)
    r = ci.run("ci-setup", "--push")
    assert r.returncode == 0 and "pushed snapshot" in r.stdout, r.stdout + r.stderr
    assert ci.ran() == ["schema", "seed"]
    mate = checkouts("mate", local_step=True)
    r = mate.run("refresh-db")
    assert r.returncode == 0 and "restored snapshot" in r.stdout, r.stdout + r.stderr
    assert mate.ran() == ["local-user"], r.stdout


def test_snapshot_push_and_pull_then_up(checkouts: Any) -> None:
    a = checkouts("a")
    assert a.run("up").returncode == 0
    assert a.run("snapshot", "save", "base").returncode == 0
    r = a.run("snapshot", "push", "base")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pushed snapshot 'base' as 127.0.0.1:" in r.stdout
    # a teammate's `up` on a new checkout fills its empty database from the remote
    b = checkouts("b")
    r = b.run("up")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "restored snapshot" in r.stdout and b.ran() == [], r.stdout
    assert dump_database(b.url) == dump_database(a.url)
    # and `snapshot pull` makes a local cache snapshot that refresh-db starts from
    c = checkouts("c")
    key = fingerprint.combined(
        fingerprint.compute(c.project()), ["schema", "seed"])
    r = c.run("snapshot", "pull", key)
    assert r.returncode == 0, r.stdout + r.stderr
    r = c.run("refresh-db", "--no-remote-cache")
    assert r.returncode == 0 and c.ran() == [], r.stdout


def test_partial_remote_snapshot_runs_only_the_rest(checkouts: Any) -> None:
    """The remote holds the schema step only (a checkpoint): the teammate's refresh-db
    restores it and runs seed alone."""
    files = {"seed.sql": FILES["seed.sql"]}
    a = checkouts("a", files=files)
    text = (a.root / "steps.yaml").read_text()
    (a.root / "steps.yaml").write_text(text.replace("inputs:\n    - seed.sql",
                                                    "inputs:\n    - seed.sql\n    "
                                                    "checkpoint: true"))
    assert a.run("refresh-db").returncode == 0
    project = a.project()
    key = fingerprint.combined(fingerprint.compute(project),
                                            ["schema"])
    snap = siblings.cache_name(a.db, key)
    assert siblings.find(a.target(), a.db, snap), "the checkpoint kept no snapshot"
    r = a.run("snapshot", "push", key[:12])
    assert r.returncode == 0, r.stdout + r.stderr
    b = checkouts("b")
    (b.root / "steps.yaml").write_text((a.root / "steps.yaml").read_text().replace(
        a.db, b.db))
    r = b.run("refresh-db")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"restored snapshot {key[:12]}" in r.stdout and b.ran() == ["seed"], r.stdout
    assert dump_database(b.url) == dump_database(a.url)


def test_auth_required_given_and_missing(checkouts: Any, auth_registry: Registry,
                                         tmp_path: Path) -> None:
    remote = auth_registry.remote(f"auth-{uuid.uuid4().hex[:6]}")
    creds = {"DEVENV_CACHE_USER": USER, "DEVENV_CACHE_PASSWORD": PASSWORD}
    ci = checkouts("ci", remote=remote)
    r = ci.run("ci-setup", "--push", env={"CI": "true", **creds})
    assert r.returncode == 0 and "pushed snapshot" in r.stdout, r.stdout + r.stderr
    # no credentials: one line, then the build
    anon = checkouts("anon", remote=remote)
    r = anon.run("refresh-db")
    _one_line_then_build(r, anon, "answered 401: it needs credentials")
    # wrong ones
    bad = checkouts("bad", remote=remote)
    r = bad.run("refresh-db", env={"DEVENV_CACHE_USER": USER,
                                   "DEVENV_CACHE_PASSWORD": "nope"})
    _one_line_then_build(r, bad, "answered 401: the credentials were refused")
    # docker's config.json (what `docker login` writes) works, and is never printed
    import base64
    import json

    good = checkouts("good", remote=remote)
    cfg = good.root / ".no-docker-config"
    cfg.mkdir()
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (cfg / "config.json").write_text(json.dumps({"auths": {auth_registry.host:
                                                          {"auth": token}}}))
    r = good.run("refresh-db")
    assert r.returncode == 0 and "restored snapshot" in r.stdout, r.stdout + r.stderr
    assert good.ran() == []
    for out in (r.stdout + r.stderr, ):
        assert PASSWORD not in out and token not in out


def test_credential_helper(auth_registry: Registry, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    """credHelpers runs docker-credential-NAME get (a real executable on PATH)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-teamvault"
    helper.write_text("#!/bin/sh\nread host\n[ \"$host\" = \"" + auth_registry.host + "\" ] "
                      "|| exit 1\nprintf '{\"Username\":\"%s\",\"Secret\":\"%s\"}' "
                      f"{USER} {PASSWORD}\n")
    helper.chmod(0o755)
    (tmp_path / "config.json").write_text(
        '{"credHelpers": {"' + auth_registry.host + '": "teamvault"}}')
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    for k in ("DEVENV_CACHE_USER", "DEVENV_CACHE_PASSWORD", "DEVENV_CACHE_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    assert oci.credentials(auth_registry.host) == (USER, PASSWORD)
    client = oci.Client(oci.parse(auth_registry.remote("x")))
    client.ping()


def test_registry_down(checkouts: Any) -> None:
    port = pgcluster.free_port()  # nothing listens there
    c = checkouts("c", remote=f"oci://127.0.0.1:{port}/team/db")
    r = c.run("refresh-db")
    _one_line_then_build(r, c, "is unreachable")


@pytest.mark.parametrize("command", ["refresh-db", "up"])
def test_miss_on_a_fresh_checkout_builds_and_leaves_nothing_behind(
        checkouts: Any, registry: Registry, pg_server: Any, command: str) -> None:
    """Nothing local, nothing in the registry: the database prepared for a pull while the
    registry was asked is dropped again, the steps build the database, and nothing else
    is left on the server (no other database of the project's, no role able to log in)."""
    c = checkouts("c", remote=registry.remote(f"empty-{uuid.uuid4().hex[:6]}"))
    r = c.run(command)
    _one_line_then_build(r, c, "no snapshot of these steps")
    target = c.target()
    # no build left behind (the prepared one was dropped, the real one swapped in)
    assert not [d.datname for d in siblings.related(target, c.db)
                if siblings.is_build(c.db, d.datname)]
    import psycopg

    with psycopg.connect(c.url) as conn:
        row = conn.execute("SELECT count(*) FROM app.items").fetchone()
    assert row == (500,)
    assert _can_log_in(pg_server) in (False, None)


class _BlobProxy:
    """A real TCP proxy in front of the registry; what reaches the client of a blob
    download (a request whose line holds ``ASKED``) is the subclass's to decide
    (:meth:`_blob_bytes`)."""

    ASKED = b"/blobs/sha256:"

    def __init__(self, upstream: int) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.upstream = upstream
        self.blob_asked = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _blob_bytes(self, data: bytes, sent: int) -> tuple[bytes, bool]:
        """What to pass on of ``data`` (``sent`` bytes of the blob went before), and
        whether to cut the connection after it."""
        return data, False

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        up = socket.create_connection(("127.0.0.1", self.upstream))
        blob = threading.Event()

        def forward(src: socket.socket, dst: socket.socket, to_client: bool) -> None:
            sent = 0
            try:
                while data := src.recv(65536):
                    if not to_client and self.ASKED in data and b"GET " in data:
                        blob.set()
                        self.blob_asked.set()
                    cut = False
                    if to_client and blob.is_set():
                        data, cut = self._blob_bytes(data, sent)
                        sent += len(data)
                    dst.sendall(data)
                    if cut:
                        break
            except OSError:
                pass
            for s in (client, up):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()

        threading.Thread(target=forward, args=(up, client, True), daemon=True).start()
        forward(client, up, False)


class _CuttingProxy(_BlobProxy):
    """Lets a blob download start, then closes the connection: the registry going away
    mid-pull."""

    def __init__(self, upstream: int, cut_after: int = 2000) -> None:
        self.cut_after = cut_after
        super().__init__(upstream)

    def _blob_bytes(self, data: bytes, sent: int) -> tuple[bytes, bool]:
        data = data[:max(0, self.cut_after - sent)]
        return data, sent + len(data) >= self.cut_after


def test_registry_goes_away_mid_pull(checkouts: Any, registry: Registry) -> None:
    repo = f"cut-{uuid.uuid4().hex[:6]}"
    ci = checkouts("ci", remote=registry.remote(repo))
    assert ci.run("ci-setup", "--push").returncode == 0
    proxy = _CuttingProxy(registry.port)
    mate = checkouts("mate", remote=f"oci://127.0.0.1:{proxy.port}/{repo}")
    r = mate.run("refresh-db")
    _one_line_then_build(r, mate, "the download from 127.0.0.1")
    # nothing of the partial download is left behind
    assert not [p for p in (mate.root / ".devenv" / "remote").rglob("*") if p.is_file()]


def test_corrupted_blob_in_registry_storage(checkouts: Any, registry: Registry) -> None:
    repo = f"bad-{uuid.uuid4().hex[:6]}"
    ci = checkouts("ci", remote=registry.remote(repo))
    before = set(registry.blobs())
    assert ci.run("ci-setup", "--push").returncode == 0
    new = [b for b in registry.blobs() if b not in before and b.stat().st_size > 1000]
    assert len(new) == 1
    data = bytearray(new[0].read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    new[0].write_bytes(bytes(data))
    mate = checkouts("mate", remote=registry.remote(repo))
    r = mate.run("refresh-db")
    _one_line_then_build(r, mate, "digest does not match its manifest")



class _GatedProxy(_BlobProxy):
    """Holds a blob's bytes back until ``release`` is set: a slow download, during which a
    test looks at the server."""

    def __init__(self, upstream: int) -> None:
        self.release = threading.Event()
        self.held_until_released = False
        super().__init__(upstream)

    def _blob_bytes(self, data: bytes, sent: int) -> tuple[bytes, bool]:
        if not self.release.is_set():
            self.held_until_released = self.release.wait(60)
        return data, False


def _can_log_in(pg_server: Any) -> bool | None:
    import psycopg

    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as conn:
        row = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s",
                           (dumpfiles.IMPORT_ROLE,)).fetchone()
    return None if row is None else bool(row[0])


def _oid(pg_server: Any, datname: str) -> int | None:
    import psycopg

    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as conn:
        row = conn.execute("SELECT oid::int FROM pg_database WHERE datname = %s",
                           (datname,)).fetchone()
    return None if row is None else int(row[0])


def _while_held(proxy: _GatedProxy, pg_server: Any, datname: str,
                seen: dict[str, Any]) -> threading.Thread:
    """A thread that waits (30 s at most) until the blob is asked for and ``datname``
    exists, notes then whether it does and whether the import role can log in, and lets
    the blob through: what the server holds while the dump downloads."""

    def watch() -> None:
        try:
            proxy.blob_asked.wait(30)
            for _ in range(6000):
                if _oid(pg_server, datname) is not None:
                    break
                threading.Event().wait(0.005)
            seen["blob asked"] = proxy.blob_asked.is_set()
            seen["database"] = _oid(pg_server, datname)
            seen["role can log in"] = _can_log_in(pg_server)
        finally:
            proxy.release.set()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def _pulling_checkouts(checkouts: Any, registry: Registry, corrupt: bool,
                       monkeypatch: pytest.MonkeyPatch) -> tuple[Checkout, Checkout,
                                                                _GatedProxy]:
    """CI pushes a snapshot (one byte of its blob flipped with ``corrupt``); a teammate's
    checkout reaches the registry through a :class:`_GatedProxy`. For calls in this
    process, the environment is the teammate's (as ``Checkout.run`` makes it)."""
    repo = f"prep-{uuid.uuid4().hex[:6]}"
    ci = checkouts("ci", remote=registry.remote(repo))
    before = set(registry.blobs())
    r = ci.run("ci-setup", "--push")
    assert r.returncode == 0 and "pushed snapshot" in r.stdout, r.stdout + r.stderr
    if corrupt:
        new = [b for b in registry.blobs() if b not in before and b.stat().st_size > 1000]
        assert len(new) == 1
        data = bytearray(new[0].read_bytes())
        data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
        new[0].write_bytes(bytes(data))
    proxy = _GatedProxy(registry.port)
    mate = checkouts("mate", remote=f"oci://127.0.0.1:{proxy.port}/{repo}")
    mate.as_teammate(monkeypatch)
    return ci, mate, proxy


def test_refresh_hit_prepares_the_database_while_the_blob_downloads(
        checkouts: Any, registry: Registry, pg_server: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The build database exists (empty, the import role unable to log in yet) while the
    blob is still held back by the proxy; once it arrives, the restore gives the same
    database as CI's, owned by the target's user, and the role is closed again."""
    from devenv.session import Session
    from devenv.state import StateStore

    ci, mate, proxy = _pulling_checkouts(checkouts, registry, False, monkeypatch)
    project = mate.project()
    target = mate.target()
    build = siblings.build_name(mate.db, "prep")
    steps = ["schema", "seed"]
    fps = fingerprint.compute(project)
    reporter = RecordingReporter()
    seen: dict[str, Any] = {}
    watcher = _while_held(proxy, pg_server, build, seen)
    try:
        got = oci.restore_for_refresh(Session(project, reporter, database_url=mate.url),
                                      target, build, StateStore(project.state_dir), fps,
                                      steps, 0)
        watcher.join(60)
        assert got == (fingerprint.combined(fps, steps), tuple(steps)), reporter.events
        # the overlap: the database was there before the download could end
        assert seen == {"blob asked": True, "database": _oid(pg_server, build),
                        "role can log in": False}, seen
        assert proxy.held_until_released
        assert dump_database(pg_server.url(build)) == dump_database(ci.url)
        import psycopg

        with psycopg.connect(pg_server.url("postgres"), autocommit=True) as conn:
            row = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database "
                               "WHERE datname = %s", (build,)).fetchone()
        assert row is not None and row[0] == target.user
        assert _can_log_in(pg_server) is False
        assert not [p for p in (mate.root / ".devenv" / "remote").rglob("*") if p.is_file()]
    finally:
        proxy.release.set()
        database.drop(target, build)


class _HeldManifests(_GatedProxy):
    """Holds the answer to a manifest request (a lookup of a snapshot's tag) until
    ``release`` is set."""

    ASKED = b"/manifests/"


def test_miss_prepares_during_the_lookup_then_leaves_nothing(
        checkouts: Any, registry: Registry, pg_server: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing in the local cache, refresh-db prepares the build database before the
    registry is asked (the client's import and the manifests' lookup hide its CREATE
    DATABASE); when the registry holds no snapshot of these steps, that database is
    dropped and the import role left unable to log in."""
    from devenv.events import Message
    from devenv.session import Session
    from devenv.state import StateStore

    proxy = _HeldManifests(registry.port)
    mate = checkouts("mate", remote=f"oci://127.0.0.1:{proxy.port}/empty-{uuid.uuid4().hex[:6]}")
    mate.as_teammate(monkeypatch)
    project = mate.project()
    target = mate.target()
    build = siblings.build_name(mate.db, "miss")
    fps = fingerprint.compute(project)
    reporter = RecordingReporter()
    seen: dict[str, Any] = {}
    watcher = _while_held(proxy, pg_server, build, seen)
    try:
        got = oci.restore_for_refresh(Session(project, reporter, database_url=mate.url),
                                      target, build, StateStore(project.state_dir), fps,
                                      ["schema", "seed"], 0)
        watcher.join(60)
        assert got is None
        # the manifest's answer was held: the database existed before the lookup ended
        assert seen["blob asked"] is True and seen["database"] is not None, seen
        assert seen["role can log in"] is False, seen
        assert proxy.held_until_released
        said = [e.text for e in reporter.events
                if isinstance(e, Message) and e.text.startswith("remote cache:")]
        assert len(said) == 1 and "no snapshot of these steps" in said[0], said
        assert _oid(pg_server, build) is None  # dropped again
        assert _can_log_in(pg_server) is False
    finally:
        proxy.release.set()
        database.drop(target, build)


def test_an_empty_database_stays_until_the_restore_beside_it_is_done(
        checkouts: Any, registry: Registry, pg_server: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """ci-setup and up on an empty database that exists (a CI service container's): while
    the blob downloads, that database is still there as it was and the one the restore
    goes into exists beside it (made during the lookup); afterwards the restored one has
    its name and nothing else is left."""
    from devenv.session import Session

    ci, mate, proxy = _pulling_checkouts(checkouts, registry, False, monkeypatch)
    project = mate.project()
    target = mate.target()
    database.create(target, mate.db, [])
    empty = _oid(pg_server, mate.db)
    seen: dict[str, Any] = {}

    def watch() -> None:
        try:
            proxy.blob_asked.wait(30)
            seen["working"] = _oid(pg_server, mate.db)
            seen["beside"] = [d.datname for d in siblings.related(target, mate.db)
                              if siblings.is_build(mate.db, d.datname)]
        finally:
            proxy.release.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        assert oci.restore_fresh(Session(project, RecordingReporter(), database_url=mate.url),
                                 target) is True
        watcher.join(60)
        assert seen["working"] == empty, seen
        assert len(seen["beside"]) == 1, seen
        assert _oid(pg_server, mate.db) not in (None, empty)
        assert [d.datname for d in siblings.related(target, mate.db)] == [mate.db]
        assert dump_database(mate.url) == dump_database(ci.url)
        assert _can_log_in(pg_server) is False
    finally:
        proxy.release.set()


@pytest.mark.parametrize("entry", ["refresh-db", "up, database missing",
                                   "ci-setup, empty database"])
def test_refused_download_after_the_preparation_leaves_nothing(
        checkouts: Any, registry: Registry, pg_server: Any,
        monkeypatch: pytest.MonkeyPatch, entry: str) -> None:
    """A blob damaged in the registry's storage is refused after the download, which the
    preparation overlapped: nothing is restored, the database it prepared is dropped (an
    empty one that was there before is left as it was), the import role cannot log in,
    the downloaded file is gone, and the refusal is one line."""
    from devenv.events import Message
    from devenv.session import Session
    from devenv.state import StateStore

    _, mate, proxy = _pulling_checkouts(checkouts, registry, True, monkeypatch)
    project = mate.project()
    target = mate.target()
    session = Session(project, RecordingReporter(), database_url=mate.url)
    seen: dict[str, Any] = {}
    try:
        if entry == "refresh-db":
            name = siblings.build_name(mate.db, "prep")
            watcher = _while_held(proxy, pg_server, name, seen)
            steps = ["schema", "seed"]
            got: object = oci.restore_for_refresh(session, target, name,
                                                  StateStore(project.state_dir),
                                                  fingerprint.compute(project), steps, 0)
            assert got is None
        else:
            name = mate.db
            existing = None
            if entry == "ci-setup, empty database":
                database.create(target, name, [])  # CI's service container made it
                existing = _oid(pg_server, name)
            watcher = _while_held(proxy, pg_server, name, seen)
            assert oci.restore_fresh(session, target) is False
        watcher.join(60)
        assert seen["blob asked"] and proxy.held_until_released
        warned = [e.text for e in session.reporter.events  # type: ignore[attr-defined]
                  if isinstance(e, Message) and e.text.startswith("remote cache:")]
        assert len(warned) == 1 and "digest does not match its manifest" in warned[0], warned
        assert seen["role can log in"] is False
        if entry == "ci-setup, empty database":
            # dropped only once a download has passed: still the same database
            assert seen["database"] == existing and _oid(pg_server, name) == existing
        else:
            assert seen["database"] is not None  # prepared while the blob downloaded...
            assert _oid(pg_server, name) is None  # ...and dropped when it was refused
        assert _can_log_in(pg_server) is False
        assert not [p for p in (mate.root / ".devenv" / "remote").rglob("*") if p.is_file()]
    finally:
        proxy.release.set()
        if entry == "refresh-db":
            database.drop(target, siblings.build_name(mate.db, "prep"))


def test_ctrl_c_during_the_download_leaves_no_database_and_no_login(
        checkouts: Any, registry: Registry, pg_server: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """refresh-db interrupted (SIGINT) while the blob downloads, the build database already
    prepared: the preparation is waited for, the database dropped, the role closed."""
    import psycopg

    _, mate, proxy = _pulling_checkouts(checkouts, registry, False, monkeypatch)
    prefix = siblings.build_name(mate.db, "")

    def builds() -> list[str]:
        with psycopg.connect(pg_server.url("postgres"), autocommit=True) as conn:
            return [r[0] for r in conn.execute(
                "SELECT datname FROM pg_database WHERE left(datname, %s) = %s",
                (len(prefix), prefix)).fetchall()]

    env = {k: v for k, v in os.environ.items()}
    env.update(DATABASE_URL=mate.url, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    p = subprocess.Popen([sys.executable, "-m", "devenv", "--plain", "refresh-db"],
                         cwd=mate.root, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        assert proxy.blob_asked.wait(60), "the blob was never asked for"
        for _ in range(6000):
            if builds():
                break
            threading.Event().wait(0.005)
        prepared = builds()
        assert len(prepared) == 1, prepared  # the build database, made during the download
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=60)
    finally:
        proxy.release.set()
        if p.poll() is None:
            p.kill()
    assert p.returncode != 0, out
    assert "Traceback" not in out, out
    assert builds() == [], out
    assert _can_log_in(pg_server) is False
    assert not [f for f in (mate.root / ".devenv" / "remote").rglob("*") if f.is_file()]


def _keypair(path: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    priv, pub = path.with_suffix(".pem"), path.with_suffix(".pub")
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat
                                                  .SubjectPublicKeyInfo))
    return priv, pub


def test_signatures(checkouts: Any, registry: Registry, tmp_path: Path) -> None:
    team_priv, team_pub = _keypair(tmp_path / "team")
    other_priv, _ = _keypair(tmp_path / "other")
    repo = registry.remote(f"sig-{uuid.uuid4().hex[:6]}")
    # validly signed, by a key the project does not trust
    rogue = checkouts("rogue", remote=repo)
    r = rogue.run("ci-setup", "--push", env={"DEVENV_CACHE_SIGN_KEY": str(other_priv)})
    assert r.returncode == 0 and ", signed by " in r.stdout, r.stdout + r.stderr
    mate = checkouts("mate", remote=repo, trust=[str(team_pub)])
    r = mate.run("refresh-db")
    _one_line_then_build(r, mate, "which this project does not trust")
    # signed by the team's key (CI holds the PEM text in a secret): restored
    # (CI trusts the team key too: it refuses the rogue artifact, builds, and pushes)
    ci = checkouts("ci", remote=repo, trust=[str(team_pub)])
    r = ci.run("ci-setup", "--push", env={"DEVENV_CACHE_SIGN_KEY": team_priv.read_text()})
    assert r.returncode == 0, r.stdout + r.stderr
    mate2 = checkouts("mate2", remote=repo, trust=[str(team_pub)])
    r = mate2.run("refresh-db")
    assert r.returncode == 0 and "restored snapshot" in r.stdout and mate2.ran() == [], \
        r.stdout
    # unsigned: refused where the project trusts keys
    # (ci2 trusts only the rogue key: refuses the team's artifact, builds, pushes unsigned)
    other_pub = other_priv.with_suffix(".pub")
    ci2 = checkouts("ci2", remote=repo, trust=[str(other_pub)])
    r = ci2.run("ci-setup", "--push")
    assert r.returncode == 0 and "pushed snapshot" in r.stdout, r.stdout
    mate3 = checkouts("mate3", remote=repo, trust=[str(team_pub)])
    _one_line_then_build(mate3.run("refresh-db"), mate3, "the snapshot is unsigned")


def test_other_project_and_newer_server_are_refused(checkouts: Any, registry: Registry,
                                                    tmp_path: Path) -> None:
    repo = registry.remote(f"mix-{uuid.uuid4().hex[:6]}")
    other = checkouts("other", remote=repo, name="otherproj")
    assert other.run("ci-setup", "--push").returncode == 0
    # same steps, so the same fingerprint: only the project annotation tells them apart
    mine = checkouts("mine", remote=repo)
    _one_line_then_build(mine.run("refresh-db"), mine, "is a snapshot of project 'otherproj'")
    # a dump from PostgreSQL 17 (its file's header and annotation say so)
    mine2 = checkouts("mine2", remote=repo, name="newproj")
    project = mine2.project()
    key = fingerprint.combined(fingerprint.compute(project),
                                            ["schema", "seed"])
    f = tmp_path / "new.devenv-snapshot"
    dumpfiles.write(f, dumpfiles.Header(project="newproj", database=mine2.db, name="x", key=key,
                                steps=["schema", "seed"], fingerprints={},
                                server_version_num=170002, pg_dump_major=17, created=0.0),
                lambda sink: sink(b"PGDMP not really"))
    oci.push_file(project, oci.parse(repo), f, RecordingReporter())
    _one_line_then_build(mine2.run("refresh-db"), mine2, "dumped from PostgreSQL 17")


def test_concurrent_pushes_of_one_fingerprint(checkouts: Any, registry: Registry) -> None:
    """Two CI jobs push the same fingerprint at once (two different dumps: pg_dump's output
    differs run to run): the tag ends on one complete artifact that restores."""
    repo = registry.remote(f"race-{uuid.uuid4().hex[:6]}")
    ci = checkouts("ci", remote=repo)
    assert ci.run("up").returncode == 0
    assert ci.run("snapshot", "save", "base").returncode == 0
    project = ci.project()
    target = ci.target()
    info = siblings.find(target, ci.db, siblings.user_name(ci.db, "base"))
    assert info is not None
    files = []
    for i in range(2):
        f = ci.root / ".devenv" / f"push{i}.devenv-snapshot"
        oci.dump_database(project, target, info.datname, info.key, info.steps,
                                   "base", f, None)
        files.append(f)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "DEVENV_CACHE_REMOTE": repo}
    procs = [subprocess.Popen([sys.executable, "-m", "devenv.background", "push",
                               str(ci.root / "steps.yaml"), str(f)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for f in files]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    mate = checkouts("mate", remote=repo)
    r = mate.run("refresh-db")
    assert r.returncode == 0 and "restored snapshot" in r.stdout and mate.ran() == [], \
        r.stdout
    assert dump_database(mate.url) == dump_database(ci.url)


def test_background_push(checkouts: Any) -> None:
    a = checkouts("a")
    assert a.run("up").returncode == 0
    assert a.run("snapshot", "save", "base").returncode == 0
    r = a.run("snapshot", "push", "base", "--background")
    assert r.returncode == 0 and "in the background (pid" in r.stdout, r.stdout + r.stderr
    pid = int(r.stdout.split("(pid ")[1].split(";")[0])
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        if Path(f"/proc/{pid}/stat").exists() and \
                Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            break
        time.sleep(0.2)
    log = (a.root / ".devenv" / "logs" / "push.log").read_text()
    assert "pushed snapshot" in log, log
    assert not list((a.root / ".devenv" / "remote").rglob("*.devenv-snapshot"))
    b = checkouts("b")
    r = b.run("refresh-db")
    assert r.returncode == 0 and b.ran() == [], r.stdout


def test_doctor_reports_the_remote(checkouts: Any, auth_registry: Registry) -> None:
    remote = auth_registry.remote(f"doc-{uuid.uuid4().hex[:6]}")
    creds = {"DEVENV_CACHE_USER": USER, "DEVENV_CACHE_PASSWORD": PASSWORD}
    ci = checkouts("ci", remote=remote)
    assert ci.run("ci-setup", "--push", env=creds).returncode == 0
    r = ci.run("doctor", env=creds)
    assert (f"{remote}: reachable, authenticated as {USER}; 1 snapshot(s) there, 1 match "
            "the current steps; refresh-db on a new checkout pulls the full one") in r.stdout, \
        r.stdout
    r = ci.run("doctor")
    assert "answered 401" in r.stdout, r.stdout


@pytest.mark.docker
def test_docker_backend_pulls_postgres_from_the_registry(registry: Registry,
                                                         tmp_path: Path) -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker command")
    image = f"{registry.host}/postgres:15"
    subprocess.run(["docker", "tag", "postgres:15", image], check=True)
    subprocess.run(["docker", "push", image], check=True, capture_output=True)
    subprocess.run(["docker", "rmi", image], check=True, capture_output=True)
    name = f"pull{uuid.uuid4().hex[:6]}"
    root = tmp_path / name
    root.mkdir()
    (root / "steps.yaml").write_text(yaml.safe_dump({
        "version": 1, "name": name,
        "services": {"db": {"image": image, "backend": "docker",
                            "env": {"POSTGRES_PASSWORD": "x"}}},
        "database": {"service": "db", "name": "app"},
        "steps": {"hello": {"run": f"{PSQL} -c 'select 1'", "needs": ["db"]}},
    }))
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    try:
        r = subprocess.run([sys.executable, "-m", "devenv", "--plain", "up"], cwd=root,
                           env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"pulled {image}" in r.stdout and "could not pull" not in r.stdout, r.stdout
        assert subprocess.run(["docker", "image", "inspect", image],
                              capture_output=True).returncode == 0
    finally:
        subprocess.run([sys.executable, "-m", "devenv", "down", "--volumes", "--yes"], cwd=root,
                       env=env, capture_output=True, timeout=120)
        subprocess.run(["docker", "rmi", "-f", image], capture_output=True)


def test_malicious_dump_pushed_as_an_artifact(checkouts: Any, registry: Registry,
                                              pg_server: Any, tmp_path: Path) -> None:
    """Issue 18's dump: a CHECK constraint calls a function doing COPY ... TO PROGRAM. Pushed
    as a valid artifact of the project (right key, right annotations), then pulled by a
    teammate's refresh-db: the program must not run."""
    import psycopg

    pwned = Path(tempfile_dir()) / f"pwned-{uuid.uuid4().hex[:8]}"
    repo = registry.remote(f"evil-{uuid.uuid4().hex[:6]}")
    mate = checkouts("mate", remote=repo)
    evil = pg_server.unique_db("evil")
    target = database.parse_url(pg_server.url(evil))
    database.create(target, evil, [])
    try:
        with psycopg.connect(pg_server.url(evil), autocommit=True) as conn:
            conn.execute("create function ok(int) returns bool language plpgsql as "
                         "$$ begin return true; end $$")
            conn.execute("create table victim(x int check (ok(x)))")
            conn.execute("insert into victim values (1)")
            conn.execute("create or replace function ok(int) returns bool language plpgsql "
                         f"as $$ begin copy (select 1) to program 'touch {pwned}'; "
                         "return true; end $$")
        project = mate.project()
        key = fingerprint.combined(fingerprint.compute(project),
                                                ["schema", "seed"])
        tool = dumpfiles.choose_tool("pg_dump", target, evil, 15, None)
        f = tmp_path / "evil.devenv-snapshot"
        dumpfiles.write(f, dumpfiles.Header(project=project.name, database=mate.db, name="x",
                                    key=key, steps=["schema", "seed"], fingerprints={},
                                    server_version_num=dumpfiles.server_version_num(target),
                                    pg_dump_major=tool.major, created=0.0),
                    lambda sink: dumpfiles.dump(tool, sink))
        oci.push_file(project, oci.parse(repo), f, RecordingReporter())
        # pg_restore -j 2 (what a pulled snapshot restores with on 2 CPUs or more): the
        # refusal comes from one of its worker connections, and still stops it all
        r = mate.run("refresh-db", env={"DEVENV_RESTORE_JOBS": "2"})
        assert r.returncode == 0, r.stdout + r.stderr
        assert not pwned.exists(), "the pulled dump ran a program on the host"
        _one_line_then_build(r, mate, "asks for rights an import does not have")
    finally:
        database.drop(target, evil)
        pwned.unlink(missing_ok=True)


def tempfile_dir() -> str:
    import tempfile

    return tempfile.gettempdir()


def test_config_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """cache.remote is checked where it is written; DEVENV_CACHE_REMOTE overrides it and
    `off` turns it off (what --cache-remote / --no-remote-cache set)."""
    from devenv.errors import ConfigError

    (tmp_path / "steps.yaml").write_text("version: 1\nname: p\nsteps: {a: {run: 'true'}}\n"
                                         "cache:\n  remote: https://ghcr.io/acme/db\n")
    with pytest.raises(ConfigError) as err:
        loader.load(tmp_path / "steps.yaml")
    assert str(err.value).startswith("steps.yaml:5: cache.remote: expected oci://REGISTRY/"
                                     "REPOSITORY, got 'https://ghcr.io/acme/db'")
    (tmp_path / "steps.yaml").write_text("version: 1\nname: p\nsteps: {a: {run: 'true'}}\n"
                                         "cache:\n  remote: oci://ghcr.io/Acme/db\n"
                                         "  trust: [keys/ci.pub]\n")
    project = loader.load(tmp_path / "steps.yaml")
    assert project.cache_trust == (str(tmp_path / "keys" / "ci.pub"),)
    monkeypatch.delenv("DEVENV_CACHE_REMOTE", raising=False)
    remote = oci.configured(project)
    assert remote is not None and (remote.registry, remote.repository) == ("ghcr.io", "acme/db")
    assert not remote.insecure
    monkeypatch.setenv("DEVENV_CACHE_REMOTE", "off")
    assert oci.configured(project) is None
    monkeypatch.setenv("DEVENV_CACHE_REMOTE", "oci://127.0.0.1:5000/team/db")
    other = oci.configured(project)
    assert other is not None and other.insecure and other.ref("k") == "127.0.0.1:5000/team/db:k"


def test_snapshot_pull_prepares_while_downloading_and_skips_what_is_here(
        checkouts: Any, registry: Registry, pg_server: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`snapshot pull`: the build database is made while the blob is held back, the result
    is the local cache snapshot refresh-db starts from; pulled again, the manifest's key
    says it is here, and the blob is not downloaded a second time."""
    ci, mate, proxy = _pulling_checkouts(checkouts, registry, False, monkeypatch)
    key = fingerprint.combined(fingerprint.compute(mate.project()), ["schema", "seed"])
    build = siblings.build_name(mate.db)  # where `snapshot pull` restores, then renames
    seen: dict[str, bool] = {}

    def watch() -> None:
        proxy.blob_asked.wait(30)
        for _ in range(6000):
            if _oid(pg_server, build) is not None:
                break
            threading.Event().wait(0.005)
        seen["build database while held"] = _oid(pg_server, build) is not None
        proxy.release.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    r = mate.run("snapshot", "pull", key)
    watcher.join(60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert seen == {"build database while held": True}
    assert siblings.find(mate.target(), mate.db, siblings.cache_name(mate.db, key))
    assert _can_log_in(pg_server) is False
    proxy.blob_asked.clear()
    r = mate.run("snapshot", "pull", key)
    assert r.returncode == 0 and f"snapshot {key[:12]} is already here" in r.stdout, r.stdout
    assert not proxy.blob_asked.is_set()  # the manifest was enough
    r = mate.run("refresh-db", "--no-remote-cache")
    assert r.returncode == 0 and mate.ran() == [], r.stdout
    assert dump_database(mate.url) == dump_database(ci.url)
