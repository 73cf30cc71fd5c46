"""ci-setup as CI runs it: a real PostgreSQL from DATABASE_URL, reports, exit codes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devenv.postgres import database, siblings
from tests.dbcompare import dump_database

pytestmark = pytest.mark.postgres

MakeProject = Callable[..., Path]
PSQL = "psql -X -q -v ON_ERROR_STOP=1"


def config(db: str, extra_steps: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "version": 1, "name": "cis",
        "services": {"db": {"image": "postgres:15", "env": {"POSTGRES_PASSWORD": "x"}}},
        "database": {"service": "db", "name": db, "schemas": ["public", "app"]},
        "steps": {
            "schema": {"run": f"{PSQL} -c 'create table app.t(id int)'", "needs": ["db"]},
            "seed": {"run": f"{PSQL} -c 'insert into app.t values (1),(2)'",
                     "needs": ["schema"], "inputs": ["seed.txt"]},
            "local-user": {"run": "echo only-local", "needs": ["schema"],
                           "profiles": ["local"]},
            **(extra_steps or {}),
        },
    }


@pytest.fixture
def ci(make_project: MakeProject, pg_server: Any) -> Iterator[tuple[Path, str]]:
    db = pg_server.unique_db("ci")
    root = make_project(config(db), files={"seed.txt": "1\n"})
    yield root, pg_server.url(db)
    target = database.parse_url(pg_server.url(db))
    for info in siblings.related(target, db):
        database.drop(target, info.datname)


def ci_setup(root: Path, url: str | None, *args: str, env: dict[str, str] | None = None,
             ) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "GITHUB_ACTIONS", "GITLAB_CI")}
    if url:
        full["DATABASE_URL"] = url
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "devenv", "ci-setup", *args], cwd=root,
                          env=full, capture_output=True, text=True, timeout=180)


def validate_junit(path: Path) -> ET.Element:
    """The constraints of the JUnit schema Jenkins, GitLab and most CI systems read
    (jenkinsci/xunit-plugin junit-10.xsd), checked element by element: its text is not
    ours to ship, so the rules are written out here."""
    root = ET.parse(path).getroot()
    time_re = re.compile(r"(([0-9]{0,3},)*[0-9]{3}|[0-9]{0,3})*(\.[0-9]*)?")
    assert root.tag == "testsuites"
    assert set(root.attrib) <= {"name", "time", "tests", "failures", "errors"}
    assert time_re.fullmatch(root.attrib["time"])
    for suite in root:
        assert suite.tag == "testsuite"
        for required in ("name", "tests", "failures", "errors"):
            assert required in suite.attrib
        assert time_re.fullmatch(suite.attrib["time"])
        for case in suite:
            assert case.tag in {"testsuite", "properties", "testcase", "system-out",
                                "system-err"}
            if case.tag != "testcase":
                continue
            assert "name" in case.attrib
            assert set(case.attrib) <= {"name", "time", "classname", "group"}
            for child in case:
                assert child.tag in {"skipped", "error", "failure", "system-out",
                                     "system-err"}
                assert set(child.attrib) <= {"type", "message"}
        assert int(suite.attrib["tests"]) == len([c for c in suite if c.tag == "testcase"])
    return root


def test_external_database_reports_and_ci_profile(ci: tuple[Path, str], tmp_path: Path) -> None:
    root, url = ci
    r = ci_setup(root, url, "--junit", str(tmp_path / "j.xml"), "--json",
                 str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.rstrip().splitlines()[-1].endswith("ci-setup: ready (exit 0)")
    assert "(DATABASE_URL is set)" in r.stdout
    assert "----- schema: ok in" in r.stdout and "----- end of schema -----" in r.stdout
    assert "\x1b[" not in r.stdout and "⠋" not in r.stdout
    assert "[local-user] skipped: not in profile ci (runs in: local)" in r.stdout
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["exit_code"] == 0 and data["outcome"] == "ready"
    steps = {s["name"]: s for s in data["steps"]}
    assert steps["seed"]["status"] == "ok" and steps["seed"]["fingerprint"]
    assert steps["local-user"]["status"] == "skipped"
    assert data["fingerprint"] == subprocess.run(
        [sys.executable, "-m", "devenv", "fingerprint"], cwd=root, capture_output=True,
        text=True, check=True).stdout.strip()
    suite = validate_junit(tmp_path / "j.xml")[0]
    cases = {c.attrib["name"]: c for c in suite}
    assert cases["local-user"].find("skipped") is not None
    assert cases["seed"].find("failure") is None
    # the password never shows
    assert ":x@" not in r.stdout and "x@127" not in (tmp_path / "r.json").read_text()


def test_github_actions_groups(ci: tuple[Path, str]) -> None:
    root, url = ci
    r = ci_setup(root, url, env={"GITHUB_ACTIONS": "true"})
    assert r.returncode == 0, r.stdout
    assert re.search(r"^::group::schema: ok in \d+\.\ds$", r.stdout, re.M)
    assert r.stdout.count("::group::") == r.stdout.count("::endgroup::") == 2


def test_gitlab_sections(ci: tuple[Path, str]) -> None:
    root, url = ci
    r = ci_setup(root, url, env={"GITLAB_CI": "true"})
    assert r.returncode == 0, r.stdout
    assert re.search(r"section_start:\d+:schema\[collapsed=true\]", r.stdout)
    assert re.search(r"section_end:\d+:schema", r.stdout)


def test_failing_step_exit_1_and_report(ci: tuple[Path, str], tmp_path: Path) -> None:
    root, url = ci
    text = (root / "steps.yaml").read_text().replace("values (1),(2)", "values ('boom')")
    (root / "steps.yaml").write_text(text)
    r = ci_setup(root, url, "--junit", str(tmp_path / "j.xml"), "--json",
                 str(tmp_path / "r.json"))
    assert r.returncode == 1
    assert r.stdout.rstrip().splitlines()[-1].endswith("ci-setup: a step failed (exit 1)")
    suite = validate_junit(tmp_path / "j.xml")[0]
    failure = {c.attrib["name"]: c for c in suite}["seed"].find("failure")
    assert failure is not None and failure.attrib["message"] == "exit code 1"
    assert 'column "boom" does not exist' in (failure.text or "")
    assert json.loads((tmp_path / "r.json").read_text())["outcome"] == "a step failed"


def test_configuration_error_exit_2_with_report(make_project: MakeProject,
                                                tmp_path: Path) -> None:
    root = make_project("version: 1\nsteps:\n  a: {run: 'true', needs: [nope]}\n")
    r = ci_setup(root, None, "--junit", str(tmp_path / "j.xml"))
    assert r.returncode == 2
    last = r.stdout.rstrip().splitlines()[-1]
    assert last.endswith("ci-setup: configuration error (exit 2)")
    assert "steps.yaml:3: steps.a.needs[0]: unknown step 'nope'" in r.stdout
    suite = validate_junit(tmp_path / "j.xml")[0]
    assert suite[0].attrib["name"] == "setup" and suite[0].find("failure") is not None


def test_database_that_never_answers_exit_3(ci: tuple[Path, str]) -> None:
    from devenv.postgres.pgcluster import free_port

    root, _ = ci
    r = ci_setup(root, f"postgresql://postgres:secret@127.0.0.1:{free_port()}/x")
    assert r.returncode == 3, r.stdout
    assert r.stdout.rstrip().splitlines()[-1].endswith(
        "ci-setup: a service never became healthy (exit 3)")
    assert "secret" not in r.stdout + r.stderr


def test_cache_hit_restores_instead_of_running_steps(ci: tuple[Path, str], tmp_path: Path,
                                                     pg_server: Any) -> None:
    root, url = ci
    cache = tmp_path / "cache"
    cold = ci_setup(root, url, "--cache-dir", str(cache), "--json", str(tmp_path / "c.json"))
    assert cold.returncode == 0, cold.stdout
    assert "cache miss: no dump for key" in cold.stdout
    files = list(cache.glob("*.devenv-dump"))
    assert len(files) == 1
    before = dump_database(url)
    assert json.loads((tmp_path / "c.json").read_text())["cache"]["hit"] is False

    # a fresh CI machine: the database is gone, the cache dir came back from the CI cache
    database.drop(database.parse_url(url), database.parse_url(url).dbname)
    shutil.rmtree(root / ".devenv")
    warm = ci_setup(root, url, "--cache-dir", str(cache), "--json", str(tmp_path / "w.json"))
    assert warm.returncode == 0, warm.stdout
    assert "(cache hit)" in warm.stdout
    assert "[schema] started" not in warm.stdout and "[seed] started" not in warm.stdout
    assert dump_database(url) == before
    data = json.loads((tmp_path / "w.json").read_text())
    assert data["cache"]["hit"] is True
    assert {s["name"]: s["status"] for s in data["steps"]} == {
        "schema": "skipped", "seed": "skipped", "local-user": "skipped"}
    reasons = {s["name"]: s["reason"] for s in data["steps"]}
    assert reasons["seed"].startswith(f"restored from the CI cache ({files[0].name}); "
                                      "unchanged since ")

    # a changed input: another key, a miss, a cold build, and a second file
    (root / "seed.txt").write_text("2\n")
    again = ci_setup(root, url, "--cache-dir", str(cache))
    assert "cache miss" in again.stdout and "[seed] ok in" in again.stdout
    assert len(list(cache.glob("*.devenv-dump"))) == 2


def test_cache_hit_refuses_a_database_that_holds_data(ci: tuple[Path, str],
                                                      tmp_path: Path) -> None:
    """Issue 18 item 9: a hit never drops a database with data in it (it used DROP ...
    WITH (FORCE), silently). It stops with exit code 2 and says what to do; an empty
    database (CI's POSTGRES_DB) is still replaced."""
    root, url = ci
    target = database.parse_url(url)
    cache = tmp_path / "cache"
    assert ci_setup(root, url, "--cache-dir", str(cache)).returncode == 0
    # a second ci-setup in the same job: the database is devenv's own work, kept as it is
    again = ci_setup(root, url, "--cache-dir", str(cache))
    assert again.returncode == 0, again.stdout
    assert f"but database {target.dbname} already holds what devenv built here: not " \
        "restoring over it; the steps run as needed" in again.stdout
    assert "[seed] started" not in again.stdout
    # nothing ran: the dump of this database is in the cache already, not written again
    [dumped] = cache.glob("*.devenv-dump")
    assert f"no step ran: {dumped.name} already holds this database; not saved again" \
        in again.stdout and "saving" not in again.stdout, again.stdout
    database.drop(target, target.dbname)
    shutil.rmtree(root / ".devenv")

    # someone's data, in the database ci-setup is pointed at
    database.create(target, target.dbname, [])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE precious(v text); INSERT INTO precious VALUES ('mine')")
    before = dump_database(url)
    r = ci_setup(root, url, "--cache-dir", str(cache), "--json", str(tmp_path / "r.json"))
    assert r.returncode == 2, r.stdout
    [file] = cache.glob("*.devenv-dump")
    key = file.name.removesuffix(".devenv-dump").rsplit("-", 1)[-1]
    assert (f"error: the CI cache has a dump for key {key[:12]}, but "
            f"database {target.dbname} already holds data (1 relation(s), 0 schema(s) besides "
            "public) and ci-setup does not overwrite a database: point DATABASE_URL at an "
            "empty or missing database, drop this one, or run without --cache-dir") \
        in r.stdout
    assert r.stdout.rstrip().endswith("ci-setup: configuration error (exit 2)")
    assert dump_database(url) == before

    # an empty database, as CI's service container makes it: the dump replaces it
    database.drop(target, target.dbname)
    database.create(target, target.dbname, [])
    r = ci_setup(root, url, "--cache-dir", str(cache))
    assert r.returncode == 0 and "(cache hit)" in r.stdout, r.stdout


def test_corrupt_or_foreign_cache_is_ignored_never_loaded(ci: tuple[Path, str],
                                                          tmp_path: Path) -> None:
    root, url = ci
    cache = tmp_path / "cache"
    assert ci_setup(root, url, "--cache-dir", str(cache)).returncode == 0
    [file] = list(cache.glob("*.devenv-dump"))
    good = file.read_bytes()

    file.write_bytes(good[: len(good) - 100])  # truncated
    r = ci_setup(root, url, "--cache-dir", str(cache))
    assert r.returncode == 0
    assert f"ignoring cache file {file}: {file} is truncated" in r.stdout
    assert "(cache hit)" not in r.stdout

    file.write_bytes(good.replace(b'"project":"cis"', b'"project":"zzz"', 1))
    r = ci_setup(root, url, "--cache-dir", str(cache))
    assert f"ignoring cache file {file}: it belongs to project 'zzz'" in r.stdout

    file.write_bytes(b"not a dump at all\n" * 10)
    r = ci_setup(root, url, "--cache-dir", str(cache))
    assert r.returncode == 0 and f"ignoring cache file {file}" in r.stdout


@pytest.mark.parametrize("args", [["--cache-dir", "FILE"], ["--junit", "DIR"],
                                  ["--json", "/proc/no-such-dir/r.json"]])
def test_unusable_output_paths_are_usage_errors(ci: tuple[Path, str], tmp_path: Path,
                                                args: list[str]) -> None:
    root, url = ci
    (tmp_path / "FILE").write_text("x")
    (tmp_path / "DIR").mkdir()
    args = [str(tmp_path / a) if a in ("FILE", "DIR") else a for a in args]
    r = ci_setup(root, url, *args)
    assert r.returncode == 2, r.stdout
    assert "Traceback" not in r.stdout + r.stderr
    assert r.stdout.rstrip().splitlines()[-1].endswith("ci-setup: configuration error (exit 2)")
    assert "[schema] started" not in r.stdout  # nothing ran


def test_with_processes_starts_them_in_the_background(ci: tuple[Path, str]) -> None:
    from devenv.postgres.pgcluster import free_port

    root, url = ci
    port = free_port()
    text = (root / "steps.yaml").read_text() + (
        "processes:\n"
        "  web:\n"
        f"    run: [{sys.executable!r}, -m, http.server, '{port}', --bind, 127.0.0.1]\n"
        f"    ready: http://127.0.0.1:{port}/\n"
        "    needs: [seed]\n")
    (root / "steps.yaml").write_text(text)
    try:
        without = ci_setup(root, url)
        assert without.returncode == 0 and "web started" not in without.stdout
        r = ci_setup(root, url, "--with-processes")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "web is ready" in r.stdout
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
            assert resp.status == 200
    finally:
        subprocess.run([sys.executable, "-m", "devenv", "down"], cwd=root,
                       capture_output=True, timeout=60)
