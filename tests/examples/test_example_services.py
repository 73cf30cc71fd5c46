"""The example's services beyond PostgreSQL, in real containers: `devenv up` on a copy of
the checkout builds Redis and the payment provider's stand-in (FROM debian:bookworm-slim),
loads the billing sample into the stand-in, and runs the RQ worker; a request to the app
puts a job on Redis and the worker's row lands in PostgreSQL. Without Docker, `up` names
the services that need it and the profiles that need none of them.

The copy gets a project name of its own (its containers and volumes cannot meet a
developer's `healthplan` ones) and free ports for the apps. Its images are the
checkout's: same folders, same content hash, so an image `devenv up` built for the
checkout (or an earlier run of this test) is tagged for the copy instead of rebuilt.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import psycopg
import pytest
import requests
import yaml

from devenv import loader, processes
from devenv.errors import EXIT_SERVICE
from devenv.services import addresses
from devenv.services.docker import built_tag
from tests.examples.test_healthplan import base_env
from tests.services.conftest import purge, unique_name

REPO = Path(__file__).resolve().parents[2]
BUILT = ("redis", "payments")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def copy_checkout(root: Path, name: str) -> Path:
    """The checkout's example, steps.yaml and services/ under ``root``, renamed to
    ``name``, with the apps on free ports (steps.yaml names 5001 and 8000)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".devenv")
    for part in ("examples", "services"):
        shutil.copytree(REPO / part, root / part, ignore=ignore)
    doc = yaml.safe_load((REPO / "steps.yaml").read_text())
    doc["name"] = name
    flask_port, django_port = free_port(), free_port()
    procs = doc["processes"]
    procs["flask"]["run"] = f"flask run --port {flask_port}"
    procs["flask"]["ready"] = f"http://127.0.0.1:{flask_port}/health"
    procs["django"]["run"] = (f"python manage.py runserver 127.0.0.1:{django_port} "
                              "--noreload")
    procs["django"]["env"]["FLASK_URL"] = f"http://127.0.0.1:{flask_port}"
    procs["django"]["ready"] = f"http://127.0.0.1:{django_port}/health"
    (root / "steps.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return root / "steps.yaml"


def devenv(root: Path, env: dict[str, str], *args: str,
           timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devenv", "--plain", *args], cwd=root,
                          env=env, capture_output=True, text=True, timeout=timeout)


@dataclass
class Up:
    root: Path
    env: dict[str, str]
    output: str
    secret: str
    flask: str


@pytest.fixture(scope="module")
def example_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    import docker

    client = docker.from_env()
    for base in ("debian:bookworm-slim", "postgres:15"):
        try:
            client.images.get(base)
        except docker.errors.ImageNotFound:
            pytest.skip(f"{base} is not here: ../shared/images/ builds it")
    name = unique_name()
    root = tmp_path_factory.mktemp("example") / "checkout"
    file = copy_checkout(root, name)
    project = loader.load(file)
    checkout = loader.load(REPO / "steps.yaml")
    for svc in BUILT:  # the checkout's image, if built, is this one
        with_cache = built_tag(checkout, checkout.services[svc])
        try:
            client.images.get(with_cache).tag(*built_tag(project,
                                                         project.services[svc]).split(":"))
        except docker.errors.ImageNotFound:
            pass
    env = base_env() | {"FAKE_MEMBERS": "500"}
    env.pop("PGOPTIONS", None)
    try:
        up = devenv(root, env, "up", "--detach")
        assert up.returncode == 0, up.stdout[-5000:] + up.stderr[-3000:]
        for svc in BUILT:  # keep the build for the next run and for the checkout
            with_cache = built_tag(checkout, checkout.services[svc])
            client.images.get(built_tag(project, project.services[svc])).tag(
                *with_cache.split(":"))
        doc = yaml.safe_load(file.read_text())
        yield Up(root, env, up.stdout + up.stderr, doc["env"]["JWT_SECRET"],
                 doc["processes"]["django"]["env"]["FLASK_URL"])
    finally:
        processes.stop_all(project, grace=5)
        purge(name)
        for svc in BUILT:  # the copy's tags (the image stays under the checkout's)
            try:
                client.images.remove(built_tag(project, project.services[svc]))
            except docker.errors.ImageNotFound:
                pass
        client.close()


@pytest.mark.docker
@pytest.mark.slow
def test_payments_sync_loads_the_billing_sample_into_the_stand_in(example_up: Up) -> None:
    project = loader.load(example_up.root / "steps.yaml")
    url = addresses.service_variables(project)["PAYMENTS_URL"]
    sample = json.loads((REPO / "examples/healthplan/billing/sample_billing.json").read_text())
    summary = requests.get(url + "/v1/summary", timeout=10).json()
    assert (summary["customers"], summary["invoices"]) == (len(sample["customers"]),
                                                           len(sample["invoices"]))
    customer = sample["customers"][7]
    got = requests.get(f"{url}/v1/customers/{customer['id']}", timeout=10).json()
    assert got["email"] == customer["email"]
    assert got["invoices"] == sorted(i["id"] for i in sample["invoices"]
                                     if i["customer"] == customer["id"])
    log = (example_up.root / ".devenv/logs/payments-sync.log").read_text()
    assert f"customers={len(sample['customers'])}" in log
    assert "[payments-sync] ok" in example_up.output


@pytest.mark.docker
@pytest.mark.slow
def test_a_request_queues_a_job_that_the_worker_writes_back(example_up: Up) -> None:
    """Flask (the app) -> a job on Redis -> the worker (RQ) -> a row in PostgreSQL."""
    from redis import Redis

    project = loader.load(example_up.root / "steps.yaml")
    variables = addresses.service_variables(project)
    token = jwt.encode({"sub": "support.agent", "iss": "healthplan-django",
                        "aud": "healthplan-api", "iat": int(time.time()),
                        "exp": int(time.time()) + 600},
                       example_up.secret, algorithm="HS256")
    auth = {"Authorization": f"Bearer {token}"}
    queued = requests.post(example_up.flask + "/api/members/3/claims-summary", headers=auth,
                           timeout=10)
    assert queued.status_code == 202, queued.text
    job_id = queued.json()["job_id"]
    # the job is on Redis (RQ keeps it, and its result, after it ran)
    redis = Redis.from_url(variables["REDIS_URL"])
    assert redis.exists(f"rq:job:{job_id}") == 1

    db = project.database
    assert db is not None
    dsn = (f"postgresql://{db.user}:{db.password}@{variables['POSTGRES_HOST']}:"
           f"{variables['POSTGRES_PORT']}/{db.name}")
    row = None
    deadline = time.monotonic() + 60
    with psycopg.connect(dsn, autocommit=True) as conn:
        while row is None and time.monotonic() < deadline:
            row = conn.execute("SELECT claim_count, amount_billed, amount_paid"
                               " FROM public.claim_summaries WHERE member_id = 3").fetchone()
            if row is None:
                time.sleep(0.2)
        expected = conn.execute("SELECT count(*), sum(amount_billed), sum(amount_paid)"
                                " FROM public.claims WHERE member_id = 3").fetchone()
    assert row is not None, (example_up.root / ".devenv/logs/worker.log").read_text()[-3000:]
    assert row == expected
    assert row[0] > 0
    status = redis.hget(f"rq:job:{job_id}", "status")
    assert status == b"finished"
    # Flask reads the worker's row back
    summary = requests.get(example_up.flask + "/api/members/3/claims-summary", headers=auth,
                           timeout=10).json()
    assert summary["claim_count"] == row[0]


def test_without_docker_up_names_what_needs_it(tmp_path: Path) -> None:
    """No Docker engine: `up` fails before starting anything, naming the services with no
    native backend and the profiles that need none of them."""
    copy_checkout(tmp_path, unique_name())
    env = base_env() | {"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    env.pop("DOCKER_CONTEXT", None)
    done = devenv(tmp_path, env, "up", "--detach", timeout=120)
    assert done.returncode == EXIT_SERVICE, done.stdout + done.stderr
    assert ("payments, redis need Docker, which is not available here (no Docker engine "
            f"answers at unix://{tmp_path}/no-docker.sock") in done.stderr
    assert ("the native backend runs PostgreSQL only (services/payments.yaml:4, "
            "services/redis.yaml:4). Start a Docker engine, or use a profile that needs "
            "none of them: --profile ci or --profile no-docker") in done.stderr
    assert not (tmp_path / ".devenv" / "ports.json").exists()  # nothing started
