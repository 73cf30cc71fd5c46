"""Doctor test helpers: run the checks or the command on a project, build its database, and
a throw-away Flask + Django monorepo (built once per module, cloned per test)."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv import building, loader
from devenv.commands import doctor as cmd
from devenv.console import Output
from devenv.doctor import Check, Context, run_checks
from devenv.events import RecordingReporter
from devenv.postgres import database, siblings
from devenv.session import Session
from devenv.state import StateStore
from tests.doctor import twoapps


def checks(root: Path) -> dict[str, Check]:
    """Every check on the project at ``root``, by id."""
    return {c.id: c for c in run_checks(Context(root / "steps.yaml"))}


def run_doctor(root: Path, *, fix: bool = False, as_json: bool = False) -> tuple[int, str]:
    """``devenv doctor`` (plain output): exit code and what it printed."""
    buf = io.StringIO()
    code = cmd.run(root / "steps.yaml", Output(plain=True, stream=buf), fix=fix,
                   as_json=as_json, plain=True)
    return code, buf.getvalue()


def final(out: str) -> dict[str, tuple[str, str]]:
    """The checks as the plain output of a run last shows them: id -> (status, finding)
    (after --fix, the second listing: the checks run again)."""
    import re

    found: dict[str, tuple[str, str]] = {}
    for line in out.splitlines():
        m = re.match(r"^(ok|warn|FAIL)\s+(\S+)\s+(.*)$", line)
        if m:
            found[m.group(2)] = (m.group(1).lower(), m.group(3))
    return found


def build(root: Path, targets: Sequence[str] = ()) -> None:
    """Run the steps (``targets`` and what they need) as `devenv run` does."""
    project = loader.load(root / "steps.yaml")
    target, note = Session(project, RecordingReporter()).current_target()
    assert target is not None, note
    built = building.build(Session(project, RecordingReporter()), target, targets=targets)
    assert built.result.ok, [(r.name, r.status, r.reason, r.log) for r in built.result.results]


def drop_all(url: str, db: str) -> None:
    target = database.parse_url(url)
    for info in siblings.related(target, db):
        database.drop(target, info.datname)


@pytest.fixture
def pgdb(pg_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """A unique database name on the test server, as DATABASE_URL; dropped afterwards
    (with every ``NAME__*`` beside it)."""
    db = pg_server.unique_db("doc")
    url = pg_server.url(db)
    monkeypatch.setenv("DATABASE_URL", url)
    yield db, url
    drop_all(url, db)


@dataclass(frozen=True)
class Built:
    root: Path
    db: str
    url: str


@pytest.fixture(scope="module")
def twoapps_template(pg_server: Any, tmp_path_factory: pytest.TempPathFactory,
                     ) -> Iterator[Built]:
    """The two-app monorepo, built once: every step run on a template database."""
    db = pg_server.unique_db("tpl")
    url = pg_server.url(db)
    root = tmp_path_factory.mktemp("twoapps") / "proj"
    root.mkdir()
    (root / "steps.yaml").write_text(yaml.safe_dump(twoapps.config("twoapps", db),
                                                    sort_keys=False))
    for rel, text in twoapps.FILES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", url)
        try:
            build(root)
            yield Built(root, db, url)
        finally:
            drop_all(url, db)


@pytest.fixture
def twoapps_project(twoapps_template: Built, pg_server: Any, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> Iterator[Built]:
    """A copy of the built monorepo with a database cloned from the template (its step
    records carried over, so it is up to date), free to break."""
    root = tmp_path / "proj"
    shutil.copytree(twoapps_template.root, root,
                    ignore=shutil.ignore_patterns("__pycache__", "logs"))
    db = pg_server.unique_db("doc")
    url = pg_server.url(db)
    target = database.parse_url(url)
    siblings.clone(target, twoapps_template.db, db)
    store = StateStore(root / ".devenv")
    src = database.identity(target, twoapps_template.db)
    dst = database.identity(target, db)
    assert src and dst
    store.copy(src, dst, target.redacted(db))
    monkeypatch.setenv("DATABASE_URL", url)
    try:
        yield Built(root, db, url)
    finally:
        drop_all(url, db)


def sql(url: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for s in statements:
            conn.execute(s)  # type: ignore[call-overload]  # test-only literal SQL


MakeProject = Callable[..., Path]
