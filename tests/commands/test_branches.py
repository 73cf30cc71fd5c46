"""Branch-aware databases (issue 13): a real git repository with two branches whose
migrations diverge, switched back and forth; a real PostgreSQL; real ``devenv`` runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devenv.postgres import database, siblings
from devenv.workingdb import branches

pytestmark = pytest.mark.postgres

PSQL = "psql -X -q -v ON_ERROR_STOP=1"
# A real incremental migration tool in a few lines: applies each migrations/*.sql once,
# in name order, and records it (like django_migrations / alembic_version).
MIGRATE = """\
set -e
psql -X -q -v ON_ERROR_STOP=1 -c 'create table if not exists app.applied(name text primary key)'
for f in migrations/*.sql; do
  n=$(basename "$f")
  done=$(psql -X -qtA -c "select 1 from app.applied where name = '$n'")
  if [ -z "$done" ]; then
    psql -X -q -v ON_ERROR_STOP=1 -1 -f "$f" -c "insert into app.applied values ('$n')"
    echo "applied $n"
  fi
done
"""


def git(root: Path, *args: str) -> str:
    out = subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t",
                          *args], cwd=root, capture_output=True, text=True, check=True)
    return out.stdout


class Repo:
    """A throw-away repository on its own database: runs the real `devenv` there."""

    timeout = 180

    def __init__(self, root: Path, url: str) -> None:
        self.root, self.url = root, url

    def devenv(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("CI", "NO_COLOR")}
        env["DATABASE_URL"] = self.url
        return subprocess.run([sys.executable, "-m", "devenv", "--plain", *args],
                              cwd=self.root, env=env, capture_output=True, text=True,
                              timeout=self.timeout)

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(query)
            return cur.fetchall() if cur.description else []


@pytest.fixture
def repo(make_project: Callable[..., Path], pg_server: Any) -> Iterator[Repo]:
    db = pg_server.unique_db("br")
    root = make_project({
        "version": 1, "name": "br",
        "services": {"db": {"image": "postgres:15"}},
        "database": {"service": "db", "name": db, "schemas": ["public", "app"]},
        "steps": {
            "migrate": {"run": "sh migrate.sh", "rerun": "incremental",
                        "inputs": ["migrations/**", "migrate.sh"], "needs": ["db"]},
            "fixtures": {"run": f"{PSQL} -f fixtures.sql", "inputs": ["fixtures.sql"],
                         "needs": ["migrate"]},
        },
    }, files={
        "migrate.sh": MIGRATE,
        "migrations/0001_tasks.sql": "create table app.tasks(id serial, title text);\n",
        "fixtures.sql": "insert into app.tasks(title) values ('one'), ('two');\n",
        ".gitignore": ".devenv/\n",
    })
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "main")
    git(root, "switch", "-qc", "feature")
    (root / "migrations/0002_priority.sql").write_text(
        "alter table app.tasks add column priority int not null default 0;\n"
        "alter table app.tasks alter column priority drop default;\n")
    (root / "fixtures.sql").write_text(
        "insert into app.tasks(title, priority) values ('one', 1), ('two', 2);\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "feature: priority")
    git(root, "switch", "-q", "main")
    r = Repo(root, pg_server.url(db))
    try:
        yield r
    finally:
        target = database.parse_url(pg_server.url(db))
        for info in siblings.related(target, db):
            database.drop(target, info.datname)


def test_switching_branches_ten_times_keeps_each_branchs_rows(repo: Repo) -> None:
    r = repo.devenv("up", "--no-processes")
    assert r.returncode == 0, r.stdout + r.stderr
    repo.sql("insert into app.tasks(title) values ('made on main')")
    target = database.parse_url(repo.url)
    assert branches.recorded(target) == "main"

    hand = {"main": "made on main", "feature": "made on feature"}
    timings = []
    for i in range(10):
        branch = "feature" if i % 2 == 0 else "main"
        git(repo.root, "switch", "-q", branch)
        t0 = time.monotonic()
        r = repo.devenv("up", "--no-processes")
        timings.append(time.monotonic() - t0)
        out = r.stdout + r.stderr
        assert r.returncode == 0, out  # never a step failing for a phantom migration
        assert f"branch {branch!r} is checked out" in out, out
        cols = {c for (c,) in repo.sql("select column_name from information_schema.columns "
                                       "where table_schema = 'app' and table_name = 'tasks'")}
        assert ("priority" in cols) == (branch == "feature")
        titles = sorted(t for (t,) in repo.sql("select title from app.tasks"))
        if i == 0:
            assert titles == ["one", "two"]  # built for the branch from a snapshot
            repo.sql("insert into app.tasks(title, priority) values ('made on feature', 5)")
            titles.append("made on feature")
        # the fixture rows once each (never duplicated), and this branch's own row
        assert sorted(titles) == sorted(["one", "two", hand[branch]]), (i, titles)
        assert branches.recorded(target) == branch
    other = {p.branch for p in branches.parked(target, "br")}
    assert other == {"feature"}
    # from the second visit on, a switch is a rename, not a build
    assert "swapped in its own database" in r.stdout + r.stderr

    listed = repo.devenv("branches", "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    data = json.loads(listed.stdout)
    assert data["checked_out"] == data["working_database_branch"] == "main"
    [parked] = data["parked"]
    assert parked["branch"] == "feature" and parked["size"] > 0
    assert parked["database"] == siblings.branch_name(target.dbname, "feature")
    assert parked["created_at"] <= parked["parked_at"] <= time.time()
    table = repo.devenv("branches")
    assert table.returncode == 0, table.stdout + table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == f"{target.dbname} (working): branch main; checked out: main"
    assert lines[1].split() == ["BRANCH", "DATABASE", "SIZE", "BUILT", "LAST", "USED"]
    row = lines[2].split()
    assert row[:2] == ["feature", parked["database"]] and row[-1] == "ago", lines


def test_no_git_checkout_keeps_todays_behaviour(repo: Repo) -> None:
    import shutil

    shutil.rmtree(repo.root / ".git")
    assert repo.devenv("up", "--no-processes").returncode == 0
    assert branches.recorded(database.parse_url(repo.url)) is None


def test_hook_install_and_uninstall(repo: Repo) -> None:
    r = repo.devenv("branches", "hook", "install")
    assert r.returncode == 0, r.stdout + r.stderr
    hook = repo.root / ".git/hooks/post-checkout"
    assert hook.exists() and os.access(hook, os.X_OK)
    assert repo.devenv("up", "--no-processes").returncode == 0
    env = {**os.environ, "DATABASE_URL": repo.url}
    env.pop("CI", None)
    out = subprocess.run(["git", "switch", "feature"], cwd=repo.root, env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0
    assert "branch 'feature' is checked out" in out.stdout + out.stderr
    assert branches.recorded(database.parse_url(repo.url)) == "feature"
    r = repo.devenv("branches", "hook", "uninstall")
    assert r.returncode == 0 and not hook.exists()


def test_parked_names_fit_and_stay_unique() -> None:
    db = "d" * 50
    a = siblings.branch_name(db, "feature/" + "x" * 80)
    b = siblings.branch_name(db, "feature/" + "x" * 81)
    assert len(a.encode()) <= 63 and len(b.encode()) <= 63 and a != b
    assert siblings.branch_name("app", "Feature/JIRA-12") != siblings.branch_name(
        "app", "feature/jira-12")


def test_a_refresh_keeps_the_branch_label(repo: Repo) -> None:
    """refresh-db swaps in a new database: it is still main's, so switching to feature parks
    it as main's (found while trying the example: it was labelled with the next branch)."""
    assert repo.devenv("up", "--no-processes").returncode == 0
    r = repo.devenv("refresh-db")
    assert r.returncode == 0, r.stdout + r.stderr
    target = database.parse_url(repo.url)
    assert branches.recorded(target) == "main"
    repo.sql("insert into app.tasks(title) values ('made on main')")
    git(repo.root, "switch", "-q", "feature")
    r = repo.devenv("up", "--no-processes")
    assert r.returncode == 0 and "parked the database of 'main'" in r.stdout + r.stderr, \
        r.stdout + r.stderr
    git(repo.root, "switch", "-q", "main")
    r = repo.devenv("up", "--no-processes")
    assert "swapped in its own database" in r.stdout + r.stderr, r.stdout + r.stderr
    assert repo.sql("select count(*) from app.tasks where title = 'made on main'") == [(1,)]


def test_a_second_worktree_on_another_branch_is_told_whose_database_it_parks(
        repo: Repo, tmp_path: Path) -> None:
    """Two worktrees of one repository share the server and the database name: the second
    one's `up` parks the first one's database, and says whose it was."""
    assert repo.devenv("up", "--no-processes").returncode == 0
    other = tmp_path / "wt-feature"
    git(repo.root, "worktree", "add", "-q", str(other), "feature")
    r = Repo(other, repo.url).devenv("up", "--no-processes")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert (f"was the working database of the checkout at {repo.root} (branch 'main'); its "
            "app processes now see branch 'feature''s database") in out, out
    assert "parked the database of 'main'" in out


def test_the_working_database_is_never_listed_as_parked(repo: Repo) -> None:
    """A switch killed between its rename and its comment leaves the working database
    saying kind "branch": it is still not parked, and `branches drop` leaves it alone."""
    assert repo.devenv("up", "--no-processes").returncode == 0
    target = database.parse_url(repo.url)
    info = siblings.find(target, target.dbname, target.dbname)
    assert info is not None
    siblings.set_meta(target, target.dbname, {**info.meta, "kind": "branch"})
    assert branches.parked(target, "br") == []
    r = repo.devenv("branches", "drop", "main")
    assert r.returncode != 0 and "no parked database for branch 'main'" in r.stdout + r.stderr
    assert siblings.find(target, target.dbname, target.dbname) is not None


def test_refresh_db_after_a_switch_parks_the_other_branchs_database(repo: Repo) -> None:
    """refresh-db instead of up after `git switch`: the database of main, with its rows, is
    parked for main (not made __prev, which the next refresh would drop)."""
    assert repo.devenv("up", "--no-processes").returncode == 0
    repo.sql("insert into app.tasks(title) values ('made on main')")
    git(repo.root, "switch", "-q", "feature")
    r = repo.devenv("refresh-db")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "was built for branch 'main', not the checked-out one: parked it" in out, out
    assert "kept as" not in out  # no __prev was made of it
    assert repo.devenv("refresh-db").returncode == 0  # would have dropped a __prev
    git(repo.root, "switch", "-q", "main")
    r = repo.devenv("up", "--no-processes")
    assert "swapped in its own database" in r.stdout + r.stderr, r.stdout + r.stderr
    assert repo.sql("select count(*) from app.tasks where title = 'made on main'") == [(1,)]


def test_a_taken_park_name_keeps_both_databases(repo: Repo) -> None:
    """The working database says it is main's (a snapshot restore or --undo brought one
    back) while main's is parked: a switch parks it beside, as a copy, instead of stopping;
    both keep their rows, and switching back swaps in the newest."""
    assert repo.devenv("up", "--no-processes").returncode == 0
    repo.sql("insert into app.tasks(title) values ('first on main')")
    git(repo.root, "switch", "-q", "feature")
    assert repo.devenv("up", "--no-processes").returncode == 0
    target = database.parse_url(repo.url)
    first = siblings.branch_name(target.dbname, "main")
    # a copy of main's database swapped in on feature, as a restore of one would
    siblings.clone(target, first, "br_restored")
    siblings.swap(target, target.dbname, "br_restored")
    branches.record(target, "br", "main", repo.root)
    repo.sql("insert into app.tasks(title) values ('later on main')")
    r = repo.devenv("up", "--no-processes")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    copy = siblings.branch_name(target.dbname, "main", 1)
    assert (f"{first} already holds a database parked earlier for 'main': parking this one "
            f"beside it as {copy}; both are kept") in out, out
    assert sorted(p.datname for p in branches.parked(target, "br") if p.branch == "main") \
        == sorted([first, copy])
    git(repo.root, "switch", "-q", "main")
    r = repo.devenv("up", "--no-processes")
    assert r.returncode == 0 and "swapped in its own database" in r.stdout, r.stdout + r.stderr
    assert repo.sql("select title from app.tasks where title like '%on main' order by 1") \
        == [("first on main",), ("later on main",)]
    with psycopg.connect(repo.url.rsplit("/", 1)[0] + "/" + first) as conn:
        rows = conn.execute("select title from app.tasks where title like '%on main'")
        assert rows.fetchall() == [("first on main",)]
