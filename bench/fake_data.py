"""100,000 fake members (6 columns), four ways, side by side in one run.

    python bench/fake_data.py [--rows 100000] [--repeat 1]

  * kind:        a devenv ``kind: faker`` step, run through the real runner
                 (``building.build``: its own process, COPY into PostgreSQL);
  * bulk_create: the usual seed script: Faker objects saved with Django's
                 ``bulk_create`` in batches of 1,000 (a throw-away Django project);
  * faker alone: the same Faker calls appending the values to a list, no database
                 (the "limit" for anything built on Faker the usual way);
  * kind, no DB: the kind's own generation path (its batches, no COPY), in-process,
                 to show what the database part costs;
  * ... no fast path: the same without the kind's cached weighted picks (which give
                 identical values), to show what that optimisation buys.

The first three are whole processes (interpreter start-up included). Each writes the same
columns (first_name, last_name, unique email, date_of_birth 65-100, phone_number, a plan
picked among 10 existing ones) into the same Django-created table, on one PostgreSQL
started from local binaries on a free port (fsync off, as in the test suite). Medians of
--repeat runs.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devenv import building, loader  # noqa: E402
from devenv.console import PlainReporter  # noqa: E402
from devenv.events import Status  # noqa: E402
from devenv.postgres import database, pgcluster  # noqa: E402
from devenv.session import Session  # noqa: E402

SETTINGS = '''import os
import urllib.parse

_url = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql",
                         "NAME": _url.path.lstrip("/"), "USER": _url.username,
                         "PASSWORD": urllib.parse.unquote(_url.password or ""),
                         "HOST": _url.hostname, "PORT": _url.port}}
INSTALLED_APPS = ["fakeapp"]
SECRET_KEY = "bench"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
'''

MODELS = '''from django.db import models


class Plan(models.Model):
    code = models.CharField(max_length=20, unique=True)


class Member(models.Model):
    first_name = models.CharField(max_length=80)
    last_name = models.CharField(max_length=80)
    email = models.EmailField(unique=True)
    birth_date = models.DateField()
    phone = models.CharField(max_length=32)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT)
'''

MANAGE = '''import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")
from django.core.management import execute_from_command_line

execute_from_command_line(sys.argv)
'''

# The usual seed script: what a Django project without devenv does.
BULK_CREATE = '''import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")
django.setup()
from faker import Faker

from fakeapp.models import Member, Plan

rows = int(sys.argv[1])
Faker.seed(42)
fake = Faker("en_US")
plans = list(Plan.objects.all())
batch = []
for _ in range(rows):
    batch.append(Member(
        first_name=fake.first_name(),
        last_name=fake.last_name(),
        email=fake.unique.email(),
        birth_date=fake.date_of_birth(minimum_age=65, maximum_age=100),
        phone=fake.phone_number(),
        plan=fake.random_element(plans),
    ))
    if len(batch) == 1000:
        Member.objects.bulk_create(batch)
        batch = []
if batch:
    Member.objects.bulk_create(batch)
'''

FAKER_ALONE = '''import sys

from faker import Faker

rows = int(sys.argv[1])
Faker.seed(42)
fake = Faker("en_US")
plans = list(range(1, 11))
values = []
for _ in range(rows):
    values.append((
        fake.first_name(),
        fake.last_name(),
        fake.unique.email(),
        fake.date_of_birth(minimum_age=65, maximum_age=100),
        fake.phone_number(),
        fake.random_element(plans),
    ))
assert len(values) == rows
'''

STEPS = '''version: 1
name: fakebench
services: {{db: {{image: "postgres:15"}}}}
database: {{service: db, name: {db}}}
steps:
  members:
    kind: faker
    seed: 42
    locale: en_US
    tables:
      fakeapp_member:
        rows: {rows}
        columns:
          first_name: first_name
          last_name: last_name
          email: {{unique: email}}
          birth_date: {{date_of_birth: {{minimum_age: 65, maximum_age: 100}}}}
          phone: phone_number
          plan_id: {{ref: fakeapp_plan.id}}
'''


def write_django(base: Path) -> Path:
    app = base / "django_app"
    files = {"manage.py": MANAGE, "benchsite/__init__.py": "",
             "benchsite/settings.py": SETTINGS, "fakeapp/__init__.py": "",
             "fakeapp/models.py": MODELS, "fakeapp/migrations/__init__.py": "",
             "seed_bulk_create.py": BULK_CREATE, "faker_alone.py": FAKER_ALONE}
    for name, text in files.items():
        p = app / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return app


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stdout[-3000:]}")
    return elapsed


def fresh_db(target: database.Target, app: Path) -> dict[str, str]:
    """An empty database with the Django tables and 10 plans; the env to reach it."""
    import psycopg

    database.drop(target, target.dbname)
    database.create(target, target.dbname, ["public"])
    env = {**os.environ, "DATABASE_URL": target.url()}
    env.pop("PGOPTIONS", None)
    run([sys.executable, "manage.py", "migrate", "-v", "0"], app, env)
    with psycopg.connect(target.url(), autocommit=True) as conn:
        conn.execute("INSERT INTO fakeapp_plan (code) SELECT 'PLAN-' || g "
                     "FROM generate_series(1, 10) g")
    return env


def count(target: database.Target) -> int:
    import psycopg

    with psycopg.connect(target.url()) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT email) FROM fakeapp_member"
                           ).fetchone()
    assert row is not None and row[0] == row[1]
    return int(row[0])


def kind_step(base: Path, target: database.Target, rows: int) -> float:
    root = base / "devenv_project"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    (root / "steps.yaml").write_text(STEPS.format(db=target.dbname, rows=rows))
    project = loader.load(root / "steps.yaml")
    t0 = time.perf_counter()
    res = building.build(Session(project, PlainReporter(io.StringIO())), target,
                            dbname=target.dbname)
    elapsed = time.perf_counter() - t0
    if not res.result.ok:
        log = (root / ".devenv" / "logs" / "members.log").read_text()
        sys.exit(f"the faker step failed:\n{log[-3000:]}")
    assert res.result.results[0].status is Status.OK
    return elapsed


def kind_no_db(rows: int, fast: bool = True) -> float:
    """The kind's generation path (same batches and streams), without a database."""
    from faker import Faker

    from devenv.kinds import _faker_run as fr
    from devenv.kinds.faker_data import faker_for, parse_tables

    spec = parse_tables({"t": {"rows": rows, "columns": {
        "first_name": "first_name", "last_name": "last_name", "email": {"unique": "email"},
        "birth_date": {"date_of_birth": {"minimum_age": 65, "maximum_age": 100}},
        "phone": "phone_number", "plan_id": {"ref": "p.id"}}}})[0]
    t0 = time.perf_counter()
    fake = faker_for("en_US") if fast else Faker("en_US")
    if fast:
        fr.speed_up(fake)
    fake.unique.clear()
    table = fr.Table(spec, 0, "public", "t", {})
    ctx = fr.Context({"step": "bench"})
    batchers = [fr._batcher(c, table, fake, 42, {"p.id": list(range(1, 11))}, ctx)
                for c in spec.columns]
    n = sum(len(b) for b in fr._rows(batchers, rows))
    assert n == rows
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="devenv-fakebench-"))
    os.chmod(base, 0o755)
    cluster = pgcluster.Cluster(base / "data", pgcluster.free_port())
    cluster.start("-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    pgcluster.wait_until_ready(cluster.url())
    times: dict[str, list[float]] = {"kind": [], "bulk_create": [], "faker alone": [],
                                     "kind, no DB": [], "no fast path": []}
    try:
        app = write_django(base)
        target = database.Target("127.0.0.1", cluster.port, cluster.user, cluster.password,
                                 "fakebench")
        database.create(target, target.dbname, ["public"])
        env = {**os.environ, "DATABASE_URL": target.url()}
        run([sys.executable, "manage.py", "makemigrations", "fakeapp", "-v", "0"], app, env)
        for i in range(args.repeat):
            fresh_db(target, app)
            times["kind"].append(kind_step(base, target, args.rows))
            assert count(target) == args.rows
            env = fresh_db(target, app)
            times["bulk_create"].append(
                run([sys.executable, "seed_bulk_create.py", str(args.rows)], app, env))
            assert count(target) == args.rows
            times["faker alone"].append(
                run([sys.executable, "faker_alone.py", str(args.rows)], app, env))
            times["kind, no DB"].append(kind_no_db(args.rows))
            times["no fast path"].append(kind_no_db(args.rows, fast=False))
            print(f"run {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()),
                  flush=True)
    finally:
        cluster.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{args.rows:,} members x 6 columns, median of {args.repeat} run(s)")
    print(f"{'method':<14} {'seconds':>8} {'rows/s':>10}  vs kind")
    for k, v in med.items():
        print(f"{k:<14} {v:>8.2f} {args.rows / v:>10,.0f}  {v / med['kind']:>6.2f}x")
    speedup = med["bulk_create"] / med["kind"]
    vs_limit = med["kind"] / med["faker alone"]
    print(f"\nkind vs bulk_create: {speedup:.1f}x faster (goal >= 5x): "
          f"{'met' if speedup >= 5 else 'MISSED'}")
    print(f"kind vs faker alone: {vs_limit:.2f}x the time (goal <= 1.5x): "
          f"{'met' if vs_limit <= 1.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
