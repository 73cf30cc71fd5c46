"""The healthplan example, end to end, on a real PostgreSQL server.

* the legacy Makefile's ``refresh-db`` builds the whole database, and builds it the same
  way twice (equal canonical dumps);
* the root ``steps.yaml`` graph, run by the tiny runner below (steps start as soon as
  their ``needs`` are done, several at a time), builds a database equal to the Makefile's,
  and running every step again on it changes nothing;
* the manual ``--fake`` really is needed;
* Flask and Django run as real servers: a JWT issued by Django works on Django's own
  endpoints and on requests Django forwards to Flask; no token, no entry.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
import requests
import yaml

from devenv.session import Session
from tests.dbcompare import diff_dumps, dump_database, table_counts

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "healthplan"
STEPS_FILE = ROOT / "steps.yaml"
# Fake-data volume for these tests (the command's default is 20,000; the benchmarks use
# that). Passed to the Makefile and to the graph's steps alike, via FAKE_MEMBERS.
FAKE_MEMBERS = 5_000


# --------------------------------------------------------------------------- helpers


def base_env() -> dict[str, str]:
    """The test process's environment without libpq or app settings leaking in."""
    drop = ("PG", "DATABASE_URL", "FLASK_", "DJANGO_", "JWT_", "FAKE_", "LOCAL_ADMIN_",
            "REDIS_", "PAYMENTS_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def db_env(pg: Any, dbname: str) -> dict[str, str]:
    return {
        "DATABASE_URL": pg.url(dbname),
        "PGHOST": pg.host,
        "PGPORT": str(pg.port),
        "PGUSER": pg.user,
        "PGPASSWORD": pg.password,
        "PGDATABASE": dbname,
    }


def drop_database(pg: Any, dbname: str) -> None:
    with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def create_database(pg: Any, dbname: str, schemas: list[str]) -> None:
    """What devenv does before the first step: the database and its schemas."""
    with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    with psycopg.connect(pg.url(dbname), autocommit=True) as conn:
        for schema in schemas:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')


def make_refresh_db(pg: Any, dbname: str) -> dict[str, float]:
    """Run the Makefile's refresh-db; returns its per-target timings (seconds)."""
    env = base_env() | {"DATABASE_URL": pg.url(dbname)}
    proc = subprocess.run(
        ["make", "--no-print-directory", "-C", str(EXAMPLE), "refresh-db",
         f"FAKE_MEMBERS={FAKE_MEMBERS}"],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, f"make refresh-db failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return {m[1]: int(m[2]) / 1000 for m in re.finditer(r"^== (\S+): (\d+) ms$", proc.stdout, re.M)}


# --------------------------------------------------------------------------- tiny runner


@dataclass
class StepResult:
    name: str
    seconds: float
    output: str


@dataclass
class Graph:
    doc: dict[str, Any]
    steps: dict[str, dict[str, Any]]  # selected steps, declaration order
    order: list[str] = field(default_factory=list)  # a topological order


def load_graph(profile: str, path: Path = STEPS_FILE) -> Graph:
    doc = yaml.safe_load(path.read_text())
    steps = {
        name: spec for name, spec in doc["steps"].items()
        if not spec.get("profiles") or profile in spec["profiles"]
    }
    order: list[str] = []
    done: set[str] = set()
    pending = dict(steps)
    while pending:  # Kahn, in declaration order among the ready ones
        ready = [n for n, s in pending.items()
                 if all(d in done or d not in doc["steps"] for d in s.get("needs", []))]
        assert ready, f"cycle or need outside profile {profile}: {sorted(pending)}"
        for n in ready:
            order.append(n)
            done.add(n)
            del pending[n]
    return Graph(doc, steps, order)


# --------------------------------------------------------------------------- fixtures


@dataclass
class Built:
    dbname: str
    url: str
    dump: str
    timings: dict[str, float]


@pytest.fixture(scope="module")
def makefile_db(pg_server: Any) -> Iterator[Built]:
    """One database built by `make refresh-db`, dumped right away (later tests may write)."""
    dbname = pg_server.unique_db("hp_make")
    try:
        timings = make_refresh_db(pg_server, dbname)
        built = Built(dbname, pg_server.url(dbname), dump_database(pg_server.url(dbname)), timings)
        print("\nmake refresh-db timings:", {k: f"{v:.2f}s" for k, v in timings.items()})
        yield built
    finally:
        drop_database(pg_server, dbname)


@pytest.fixture
def scratch_db(pg_server: Any) -> Iterator[str]:
    dbname = pg_server.unique_db("hp")
    try:
        yield dbname
    finally:
        drop_database(pg_server, dbname)


# --------------------------------------------------------------------------- tests


def test_refresh_db_builds_every_schema(makefile_db: Built) -> None:
    counts = table_counts(makefile_db.dump)
    tables_by_schema: dict[str, set[str]] = {}
    for qualified in counts:
        schema, table = qualified.split(".", 1)
        tables_by_schema.setdefault(schema, set()).add(table)

    assert tables_by_schema["public"] == {
        "alembic_version", "plans", "members", "enrollments", "claims", "member_notes",
        "claim_summaries"}
    assert {"django_migrations", "auth_user", "interactions", "member_attributes",
            "django_content_type", "django_session"} <= tables_by_schema["internal_apps"]
    # The shared table exists once, where Flask put it; Django's models do not shadow it.
    assert "member_notes" not in tables_by_schema["internal_apps"]
    assert "members" not in tables_by_schema["internal_apps"]
    assert tables_by_schema["billing"] == {"customers", "invoices", "invoice_lines"}

    assert counts["public.plans"] == 6
    assert counts["public.members"] == 30 + FAKE_MEMBERS
    assert counts["public.enrollments"] > FAKE_MEMBERS
    assert counts["public.claims"] > 2 * FAKE_MEMBERS
    assert counts["public.member_notes"] == 8 + 10  # Flask-era + Django fixtures
    assert counts["internal_apps.interactions"] == 24 + 30 * 60  # fixtures + seed_extra
    assert counts["internal_apps.member_attributes"] == 33 + 30 * 3
    assert counts["internal_apps.auth_user"] == 2  # fixture agent + local admin
    assert counts["billing.customers"] == 400
    assert counts["billing.invoices"] == 2872
    assert counts["billing.invoice_lines"] >= counts["billing.invoices"]

    with psycopg.connect(makefile_db.url) as conn:
        assert conn.execute("SELECT version_num FROM public.alembic_version").fetchone() == (
            "0007_claim_summaries",)
        applied = conn.execute(
            "SELECT app, name FROM internal_apps.django_migrations ORDER BY id").fetchall()
        # The faked migrations were recorded first, before migrate ran anything.
        assert applied[:2] == [("core", "0001_initial"), ("shared", "0001_initial")]
        assert ("crm", "0001_initial") in applied
        assert ("auth", "0012_alter_user_first_name_max_length") in applied
        users = conn.execute(
            "SELECT username, is_superuser FROM internal_apps.auth_user ORDER BY id").fetchall()
        assert users == [("support.agent", False), ("admin", True)]


def test_refresh_db_twice_gives_equal_dumps(pg_server: Any, makefile_db: Built,
                                            scratch_db: str) -> None:
    make_refresh_db(pg_server, scratch_db)
    again = dump_database(pg_server.url(scratch_db))
    assert again == makefile_db.dump, diff_dumps(makefile_db.dump, again, "first", "second")


def test_steps_graph_builds_the_makefiles_database(pg_server: Any, makefile_db: Built,
                                                   scratch_db: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from devenv import building, loader
    from devenv.events import RecordingReporter, Status
    from devenv.postgres import database

    monkeypatch.setenv("FAKE_MEMBERS", str(FAKE_MEMBERS))
    monkeypatch.delenv("PGOPTIONS", raising=False)
    project = loader.load(STEPS_FILE)
    target = database.parse_url(pg_server.url(scratch_db))
    started = time.monotonic()
    # no-docker: the Makefile's refresh-db (no PAYMENTS_URL) loads no stand-in either
    session = Session(project, RecordingReporter(), "no-docker")
    built_run = building.build(session, target, jobs=4)
    wall = time.monotonic() - started
    assert built_run.result.ok, [(r.name, r.reason) for r in built_run.result.results]
    print(f"\nsteps.yaml graph (devenv, local, 4 jobs) wall {wall:.2f}s:",
          {r.name: f"{r.duration:.2f}s" for r in built_run.result.results})
    built = dump_database(pg_server.url(scratch_db))
    assert built == makefile_db.dump, diff_dumps(makefile_db.dump, built, "makefile", "graph")

    # Every step re-run on the built database (as devenv does after a change) leaves it
    # exactly as a fresh build: no duplicated rows, no drifted sequences.
    again = building.build(session, target, jobs=4, force=True)
    statuses = {r.name: r.status for r in again.result.results}
    # payments-sync is not in no-docker: it is reported as skipped, every other step ran
    assert statuses.pop("payments-sync") == Status.SKIPPED
    assert set(statuses.values()) == {Status.OK}
    rerun = dump_database(pg_server.url(scratch_db))
    assert rerun == makefile_db.dump, diff_dumps(makefile_db.dump, rerun, "makefile", "re-run")


def test_the_profiles_leave_out_what_they_say() -> None:
    """ci: no local admin, no stand-in; no-docker: only what needs a container (the
    stand-in's load), so it builds the same database as local, without Docker."""
    from devenv import loader
    from devenv.services import launch

    local, ci, bare = load_graph("local"), load_graph("ci"), load_graph("no-docker")
    assert set(local.steps) - set(ci.steps) == {"local-user", "payments-sync"}
    assert set(local.steps) - set(bare.steps) == {"payments-sync"}
    project = loader.load(STEPS_FILE)
    assert launch.profile_services(project, "local") == {"postgres", "redis", "payments"}
    assert launch.profile_services(project, "no-docker") == {"postgres"}
    assert launch.profile_services(project, "ci") == {"postgres"}
    assert "local-user" not in {d for s in ci.steps.values() for d in s.get("needs", [])}
    # The graph really is a graph, not a chain: billing needs only the database, and
    # Flask's fake data does not wait for Django.
    assert local.steps["billing"]["needs"] == ["postgres"]
    fake_needs = set(local.steps["flask-fake-data"]["needs"])
    assert not any(n.startswith("django") for n in fake_needs)
    for spec in local.steps.values():
        assert spec.get("inputs"), "every step declares its inputs"
        for pattern in spec["inputs"]:
            assert list(ROOT.glob(pattern)), f"input glob {pattern} matches nothing"


def test_plain_migrate_fails_where_the_kind_fakes(pg_server: Any, scratch_db: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the Makefile has its --fake step: Flask already made member_notes. The
    django-migrate kind in steps.yaml sees that and fakes the migration by itself."""
    from devenv import building, loader
    from devenv.events import RecordingReporter
    from devenv.postgres import database

    monkeypatch.delenv("PGOPTIONS", raising=False)
    project = loader.load(STEPS_FILE)
    target = database.parse_url(pg_server.url(scratch_db))
    first = building.build(Session(project, RecordingReporter()), target, targets=["flask-migrate"])
    assert first.result.ok
    env = building.step_environment(project, target, scratch_db)
    env["PGOPTIONS"] = "-c search_path=internal_apps,public"
    proc = subprocess.run(
        ["python", "manage.py", "migrate"], cwd=EXAMPLE / "django_api", env=env,
        capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert 'relation "member_notes" already exists' in proc.stderr

    # the same half-migrated database (plain migrate stopped partway): the kind finishes it
    second = building.build(Session(project, RecordingReporter()), target, targets=["django-migrate"])
    assert second.result.ok
    log = (ROOT / ".devenv/logs/django-migrate.log").read_text()
    assert "shared.0001_initial is not recorded in django_migrations, but what it creates " \
           "already exists with the same columns (public.member_notes" in log
    with psycopg.connect(pg_server.url(scratch_db)) as conn:
        row = conn.execute("select count(*) from internal_apps.django_migrations where app = 'shared' "
                           "and name = '0001_initial'").fetchone()
    assert row == (1,)


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, name: str, argv: list[str], cwd: Path, env: dict[str, str],
                 port: int) -> None:
        self.name = name
        self.base = f"http://127.0.0.1:{port}"
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.output()}")
            try:
                if requests.get(self.base + "/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not healthy in {timeout}s:\n{self.output()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def test_django_jwt_works_on_django_and_forwarded_flask(pg_server: Any,
                                                        makefile_db: Built) -> None:
    graph = load_graph("local")
    secret = graph.doc["env"]["JWT_SECRET"]
    env = base_env() | db_env(pg_server, makefile_db.dbname) | {"JWT_SECRET": secret}
    flask_port, django_port = free_port(), free_port()
    flask = Server("flask", ["flask", "run", "--host", "127.0.0.1", "--port", str(flask_port)],
                   EXAMPLE / "flask_api", env | {"FLASK_APP": "app.py"}, flask_port)
    django = Server("django", ["python", "manage.py", "runserver", f"127.0.0.1:{django_port}",
                               "--noreload"],
                    EXAMPLE / "django_api", env | {"FLASK_URL": flask.base}, django_port)
    try:
        flask.wait_healthy()
        django.wait_healthy()
        assert requests.get(flask.base + "/health").json()["schema_revision"] == (
            "0007_claim_summaries")

        # Wrong password: no token.
        bad = requests.post(django.base + "/api/token",
                            json={"username": "support.agent", "password": "nope"})
        assert bad.status_code == 401
        # The fixture user gets a token from Django.
        r = requests.post(django.base + "/api/token",
                          json={"username": "support.agent", "password": "support-agent-password"})
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}

        # A Django endpoint.
        notes = requests.get(django.base + "/api/members/1/notes", headers=auth)
        assert notes.status_code == 200, notes.text
        assert "X-Served-By" not in notes.headers
        assert notes.json()["member_id"] == 1

        # A request Django does not serve: forwarded to Flask, which checks the same token.
        member = requests.get(django.base + "/api/members/1", headers=auth)
        assert member.status_code == 200, member.text
        assert member.headers["X-Served-By"] == "flask-api"
        assert member.headers["Via"] == "1.1 healthplan-django"
        assert member.json()["member_number"] == "HP00000001"
        note_count = member.json()["note_count"]
        whoami = requests.get(django.base + "/api/whoami", headers=auth).json()
        assert whoami["served_by"] == "flask"
        assert whoami["claims"]["sub"] == "support.agent"
        claims = requests.get(django.base + "/api/members/1/claims?status=paid", headers=auth)
        assert claims.status_code == 200 and all(c["status"] == "paid" for c in claims.json())

        # Both apps map public.member_notes: a note written through Django counts in Flask.
        created = requests.post(django.base + "/api/members/1/notes", headers=auth,
                                json={"body": "Called from the integration test."})
        assert created.status_code == 201, created.text
        assert created.json()["author"] == "support.agent"
        after = requests.get(django.base + "/api/members/1", headers=auth).json()
        assert after["note_count"] == note_count + 1

        # Without Redis (REDIS_URL unset: profile no-docker) a job cannot be queued, and
        # the app says why (tests/examples/test_example_services.py has the round trip).
        queued = requests.post(django.base + "/api/members/1/claims-summary", headers=auth)
        assert queued.status_code == 503
        assert queued.json() == {"error": "no job queue: REDIS_URL is not set"}

        # No token, or a token signed with another secret: refused by both apps.
        for url in (django.base + "/api/members/1/notes",   # Django's own
                    django.base + "/api/members/1",         # forwarded to Flask
                    flask.base + "/api/members/1"):         # Flask directly
            r = requests.get(url)
            assert r.status_code == 401, (url, r.status_code, r.text)
            assert r.json()["error"] == "missing_token"
        forged = jwt.encode({**jwt.decode(token, options={"verify_signature": False}),
                             "sub": "mallory"}, "another-secret-that-is-long-enough-000",
                            algorithm="HS256")
        for url in (django.base + "/api/me", django.base + "/api/whoami"):
            r = requests.get(url, headers={"Authorization": f"Bearer {forged}"})
            assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    finally:
        django.stop()
        flask.stop()


def test_models_match_their_migrations(pg_server: Any, makefile_db: Built) -> None:
    """Neither app has model changes its migrations lack (the migrations are hand-written)."""
    env = base_env() | db_env(pg_server, makefile_db.dbname)
    flask_check = subprocess.run(["flask", "db", "check"], cwd=EXAMPLE / "flask_api",
                                 env=env | {"FLASK_APP": "app.py"}, capture_output=True,
                                 text=True, timeout=120)
    assert flask_check.returncode == 0, flask_check.stdout + flask_check.stderr
    assert "No new upgrade operations detected" in flask_check.stdout + flask_check.stderr
    django_check = subprocess.run(
        ["python", "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=EXAMPLE / "django_api", env=env, capture_output=True, text=True, timeout=120)
    assert django_check.returncode == 0, django_check.stdout + django_check.stderr
