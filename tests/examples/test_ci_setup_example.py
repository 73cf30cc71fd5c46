"""`devenv ci-setup` on the example, as a CI job runs it: the database CI provides
(DATABASE_URL), the ci profile, JUnit and JSON reports, then a second job that hits the
cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devenv.postgres import database, siblings
from tests.dbcompare import dump_data, dump_schema, pg_dump_binary
from tests.examples.test_healthplan import FAKE_MEMBERS

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def checkout(tmp_path: Path, pg_server: Any) -> Iterator[tuple[Path, dict[str, str], str]]:
    root = tmp_path / "checkout"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".devenv")
    for part in ("examples", "services"):
        shutil.copytree(REPO / part, root / part, ignore=ignore)
    shutil.copy(REPO / "steps.yaml", root / "steps.yaml")
    db = pg_server.unique_db("hp_ci")
    env = {**os.environ, "DATABASE_URL": pg_server.url(db), "FAKE_MEMBERS": str(FAKE_MEMBERS),
           "CI": "true", "GITHUB_ACTIONS": "true"}
    env.pop("PGOPTIONS", None)
    yield root, env, db
    target = database.parse_url(pg_server.url(db))
    for info in siblings.related(target, db):
        database.drop(target, info.datname)


def test_ci_setup_on_the_example(checkout: tuple[Path, dict[str, str], str], tmp_path: Path,
                                 pg_server: Any) -> None:
    root, env, db = checkout
    cache, reports = tmp_path / "cache", tmp_path / "reports"
    argv = [sys.executable, "-m", "devenv", "ci-setup", "--cache-dir", str(cache),
            "--junit", str(reports / "devenv.xml"), "--json", str(reports / "devenv.json")]
    cold = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert cold.returncode == 0, cold.stdout[-5000:] + cold.stderr[-2000:]
    assert cold.stdout.rstrip().splitlines()[-1].endswith("ci-setup: ready (exit 0)")
    assert cold.stdout.count("::group::") == 7  # every step of the ci profile, folded
    suite = ET.parse(reports / "devenv.xml").getroot()[0]
    cases = {c.attrib["name"]: c for c in suite if c.tag == "testcase"}
    assert len(cases) == 9
    assert cases["local-user"].find("skipped") is not None
    assert cases["payments-sync"].find("skipped") is not None  # ci: no stand-in
    assert all(c.find("failure") is None for c in cases.values())
    data = json.loads((reports / "devenv.json").read_text())
    assert data["cache"]["hit"] is False and data["cache"]["saved"]
    built_data = dump_data(pg_server.url(db))
    # A dump and restore re-parses some expressions (a CHECK ... IN (...) comes back as an
    # equivalent ANY(ARRAY[...]) form): the schema a cache hit must have is the one plain
    # pg_dump | psql gives, made here independently of devenv.
    round_trip = pg_server.unique_db("hp_rt")
    database.create(database.parse_url(pg_server.url()), round_trip, [], template="template0")
    pg_env = {**os.environ, "PGPASSWORD": pg_server.password}
    dumped = subprocess.run([pg_dump_binary(), "--no-owner", pg_server.url(db)], env=pg_env,
                            capture_output=True, check=True).stdout
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", pg_server.url(round_trip)],
                   input=dumped, env=pg_env, capture_output=True, check=True)
    built_schema = dump_schema(pg_server.url(round_trip))
    database.drop(database.parse_url(pg_server.url()), round_trip)

    # the next CI job: a fresh database and machine state, the cache restored
    target = database.parse_url(pg_server.url(db))
    database.drop(target, db)
    shutil.rmtree(root / ".devenv")
    warm = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert warm.returncode == 0, warm.stdout[-5000:]
    assert "(cache hit)" in warm.stdout and "::group::" not in warm.stdout
    assert dump_data(pg_server.url(db)) == built_data
    assert dump_schema(pg_server.url(db)) == built_schema
