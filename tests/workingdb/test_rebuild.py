"""refresh-db on a real PostgreSQL: atomic swap, layered cache, undo, faults lose nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from devenv import loader
from devenv.events import RecordingReporter, Status, StepFinished, StepStarted
from devenv.postgres import database, siblings
from devenv.session import Session
from devenv.workingdb import rebuild
from tests.dbcompare import dump_database
from tests.refreshproj import FILES, PSQL, builds, config, lc_project, names, refresh

pytestmark = pytest.mark.postgres


@pytest.fixture
def lc(make_project: Callable[..., Path], pg_server: Any, monkeypatch: pytest.MonkeyPatch,
       ) -> Iterator[tuple[Path, database.Target]]:
    yield from lc_project(make_project, pg_server, monkeypatch)

def ran(rep: RecordingReporter) -> list[str]:
    return [e.name for e in rep.events if isinstance(e, StepStarted)]


def test_cold_warm_and_changed_input(lc: tuple[Path, database.Target]) -> None:
    root, target = lc
    db = target.dbname
    res, rep = refresh(root, target)
    assert res.swapped and res.source == "empty database"
    assert sorted(ran(rep)) == ["extra", "final", "schema", "seed"]
    cold = dump_database(target.url())
    assert not builds(target)
    assert f"{db}__ready" in names(target)

    # nothing changed: the ready copy is swapped in, no step runs
    res, rep = refresh(root, target)
    assert res.source == "ready clone" and ran(rep) == []
    assert dump_database(target.url()) == cold

    # without the ready copy, the full snapshot is restored, still no step runs
    database.drop(target, f"{db}__ready")
    res, rep = refresh(root, target)
    assert res.source.startswith("snapshot ") and ran(rep) == []
    assert dump_database(target.url()) == cold

    # a changed seed: restored from the snapshot after 'schema' (the barrier: extra runs
    # beside seed, so no snapshot holds extra without seed); schema does not run again
    (root / "seed.sql").write_text(FILES["seed.sql"].replace("200", "250"))
    res, rep = refresh(root, target)
    assert sorted(ran(rep)) == ["extra", "final", "seed"]
    assert res.source == f"snapshot {siblings.cache_name(db, _key(root, ['schema']))}"
    warm = dump_database(target.url())

    # ... and equals a database built from nothing
    res, rep = refresh(root, target, use_cache=False)
    assert sorted(ran(rep)) == ["extra", "final", "schema", "seed"]
    assert dump_database(target.url()) == warm
    with psycopg.connect(target.url()) as conn:
        assert conn.execute("select count(*) from app.items").fetchone() == (250,)


def _key(root: Path, steps: list[str]) -> str:
    from devenv import fingerprint

    project = loader.load(root / "steps.yaml")
    return fingerprint.combined(fingerprint.compute(project), steps)


def test_checkpoint_keeps_a_snapshot_of_everything_before_the_step(
        lc: tuple[Path, database.Target]) -> None:
    root, target = lc
    text = (root / "steps.yaml").read_text()
    text = text.replace("  seed:\n", "  seed:\n    checkpoint: true\n")
    (root / "steps.yaml").write_text(text)
    refresh(root, target)
    (root / "seed.sql").write_text(FILES["seed.sql"].replace("200", "250"))
    res, rep = refresh(root, target)
    # extra does not depend on seed: it is in the snapshot taken before seed
    assert sorted(ran(rep)) == ["final", "seed"]
    assert res.source == f"snapshot {siblings.cache_name(target.dbname, _key(root, ['schema', 'extra']))}"
    changed = dump_database(target.url())
    refresh(root, target, use_cache=False)
    assert dump_database(target.url()) == changed


def test_failing_step_leaves_working_database_untouched(lc: tuple[Path, database.Target],
                                                       ) -> None:
    root, target = lc
    refresh(root, target)
    before = dump_database(target.url())
    (root / "seed.sql").write_text("insert into app.nope values (1);\n")
    res, _ = refresh(root, target)
    assert not res.swapped and res.result is not None
    assert {r.name: r.status for r in res.result.results}["seed"] is Status.FAILED
    assert dump_database(target.url()) == before
    assert not builds(target)
    res, _ = refresh(root, target, keep_failed=True)
    assert len(builds(target)) == 1
    assert dump_database(target.url()) == before


def test_sessions_on_the_working_database_do_not_block_the_swap(
        lc: tuple[Path, database.Target]) -> None:
    root, target = lc
    refresh(root, target)
    conn = psycopg.connect(target.url(), autocommit=True)
    conn.execute("select 1")
    (root / "seed.sql").write_text(FILES["seed.sql"].replace("200", "201"))
    res, _ = refresh(root, target)
    assert res.swapped
    with pytest.raises(psycopg.OperationalError):
        conn.execute("select 1")  # ended by the swap, not left blocking it
    conn.close()


def test_undo_swaps_the_previous_database_back(lc: tuple[Path, database.Target]) -> None:
    root, target = lc
    refresh(root, target)
    first = dump_database(target.url())
    (root / "seed.sql").write_text(FILES["seed.sql"].replace("200", "10"))
    refresh(root, target)
    second = dump_database(target.url())
    assert first != second
    project = loader.load(root / "steps.yaml")
    rebuild.undo(Session(project, RecordingReporter()), target)
    assert dump_database(target.url()) == first
    assert dump_database(target.url(f"{target.dbname}__prev")) == second


def test_hostile_snapshot_names_are_refused() -> None:
    from devenv.errors import UsageError

    with pytest.raises(UsageError, match="invalid snapshot name"):
        siblings.user_name("demo_dev", 'x"; DROP DATABASE demo_dev; --')


def test_plan_refresh_names_the_snapshot_and_the_steps(lc: tuple[Path, database.Target]) -> None:
    import json as _json

    root, target = lc
    refresh(root, target)
    (root / "seed.sql").write_text(FILES["seed.sql"].replace("200", "7"))
    r = subprocess.run([sys.executable, "-m", "devenv", "plan", "--refresh", "--json"],
                       cwd=root, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    data = _json.loads(r.stdout)
    snap = siblings.cache_name(target.dbname, _key(root, ["schema"]))
    assert data["start_from"] == {"kind": "snapshot", "database": snap, "steps": ["schema"]}
    assert {s["name"]: s["action"] for s in data["steps"]} == {
        "schema": "skip", "seed": "run", "extra": "run", "final": "run"}
    _res, rep = refresh(root, target)
    assert sorted(ran(rep)) == ["extra", "final", "seed"]


def test_replaced_backup_is_dropped_in_the_background(lc: tuple[Path, database.Target]) -> None:
    root, target = lc
    project = loader.load(root / "steps.yaml")
    for _ in range(3):  # the second and third swaps each retire a backup
        rebuild.refresh(Session(project, RecordingReporter()), target, background_reclone=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            left = [n for n in names(target) if siblings.is_retired(target.dbname, n)]
            if not left and f"{target.dbname}__ready" in names(target):
                break
            time.sleep(0.1)
        assert not left, left
    assert f"{target.dbname}__prev" in names(target)


def _state_keys(root: Path) -> set[str]:
    data = json.loads((root / ".devenv" / "state.json").read_text())
    return set(data["databases"])


@pytest.mark.parametrize("background", [False, True], ids=["inline", "background"])
def test_records_of_dropped_databases_are_forgotten(lc: tuple[Path, database.Target],
                                                    background: bool) -> None:
    """Swaps retire and drop backups (and the build a snapshot was cloned from): their
    records leave state.json too, in the re-clone's pass, instead of piling up."""
    root, target = lc
    project = loader.load(root / "steps.yaml")
    (root / "seed.sql").write_text(FILES["seed.sql"])
    for n in range(3):
        (root / "seed.sql").write_text(FILES["seed.sql"] + f"-- change {n}\n")
        rebuild.refresh(Session(project, RecordingReporter()), target, background_reclone=background)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and background:
            busy = subprocess.run(["pgrep", "-f", f"devenv.background reclone .* {target.dbname} "],
                                  capture_output=True).returncode == 0
            if not busy and f"{target.dbname}__ready" in names(target):
                break
            time.sleep(0.05)
    live = {database.identity(target, n) for n in names(target)}
    keys = _state_keys(root)
    assert keys, "the refreshes recorded nothing"
    assert keys <= live, keys - live
    # what is there: the working database, its backup, the snapshots and the ready copy
    assert database.identity(target, target.dbname) in keys


def test_recover_leaves_a_user_snapshot_whose_name_ends_like_a_leftover(
        lc: tuple[Path, database.Target]) -> None:
    """Only the exact name a cut `--undo` could leave (DB__x) is a leftover: a user's
    snapshot named `keep__x` (DB__u_keep__x) is theirs."""
    root, target = lc
    db = target.dbname
    refresh(root, target)
    mine = siblings.user_name(db, "keep__x")
    database.create(target, mine, [])
    database.create(target, siblings.exchange_name(db), [])
    done = rebuild.recover(target, db, RecordingReporter())
    assert done == [f"dropped leftover {siblings.exchange_name(db)}"]
    assert mine in names(target)


def test_parallel_chains_need_no_checkpoint(make_project: Callable[..., Path], pg_server: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Two app chains side by side, no `checkpoint:` keys (issue 13.3): from the second edit
    of a leaf on, refresh-db restores everything else and runs only the leaf."""
    db = pg_server.unique_db("par")
    steps = {
        "flask-migrate": {"run": f"{PSQL} -c 'create table public.f(id int)'",
                          "needs": ["db"]},
        "flask-fixtures": {"run": f"{PSQL} -c 'insert into public.f values (1)'",
                           "needs": ["flask-migrate"]},
        "django-migrate": {"run": f"{PSQL} -c 'create table app.d(v text)'", "needs": ["db"]},
        "django-fixtures": {"run": f"{PSQL} -f fixture.sql", "needs": ["django-migrate"],
                            "inputs": ["fixture.sql"]},
    }
    cfg = {**config(db), "steps": steps}
    root = make_project(cfg, files={"fixture.sql": "insert into app.d values ('v0');\n"})
    monkeypatch.setenv("DATABASE_URL", pg_server.url(db))
    target = database.parse_url(pg_server.url(db))
    try:
        res, rep = refresh(root, target)
        assert len(ran(rep)) == 4
        runs = []
        for i in range(1, 6):
            (root / "fixture.sql").write_text(f"insert into app.d values ('v{i}');\n")
            res, rep = refresh(root, target)
            assert res.swapped
            runs.append(sorted(ran(rep)))
            with psycopg.connect(target.url()) as conn:
                assert conn.execute("select v from app.d").fetchall() == [(f"v{i}",)]
                assert conn.execute("select count(*) from public.f").fetchone() == (1,)
        # The first edit runs the untouched steps once more and keeps a snapshot of them;
        # from then on only the edited fixture runs.
        assert len(runs[0]) == 4
        assert runs[1:] == [["django-fixtures"]] * 4
        # plan --refresh says where it starts and why the older snapshots do not fit
        (root / "fixture.sql").write_text("insert into app.d values ('v9');\n")
        project = loader.load(root / "steps.yaml")
        source, _ = rebuild.plan_refresh(project, target)
        assert source.kind == "snapshot" and set(source.held) == {
            "flask-migrate", "flask-fixtures", "django-migrate"}
        from devenv import fingerprint

        fps = fingerprint.compute(project)
        unused = dict(rebuild.unused_snapshots(project, target, fps, list(fps),
                                                 source.datname))
        assert any("changed since: django-fixtures" in why for why in unused.values()), unused
        # ... and the result equals a database built from nothing
        refresh(root, target)
        warm = dump_database(target.url())
        refresh(root, target, use_cache=False)
        assert dump_database(target.url()) == warm
    finally:
        for info in siblings.related(target, db):
            database.drop(target, info.datname)


def test_a_checkpoint_among_the_untouched_steps_does_not_deadlock(
        lc: tuple[Path, database.Target]) -> None:
    """`extra` is a checkpoint (it waits for every step it does not lead to, seed among
    them); an edit of seed makes the untouched steps, extra included, run first: extra must
    not wait for seed, which waits for it."""
    root, target = lc
    text = (root / "steps.yaml").read_text()
    (root / "steps.yaml").write_text(text.replace("  extra:\n", "  extra:\n    checkpoint: true\n"))
    res, _ = refresh(root, target)
    assert res.swapped
    (root / "seed.sql").write_text(FILES["seed.sql"].replace("200", "230"))
    res, rep = refresh(root, target)
    assert res.swapped, [(r.name, r.status, r.reason) for r in res.result.results] \
        if res.result else res
    assert sorted(ran(rep)) == ["extra", "final", "seed"]
    with psycopg.connect(target.url()) as conn:
        assert conn.execute("select count(*) from app.items").fetchone() == (230,)


def test_the_untouched_steps_kept_first_are_closed_upstream(
        lc: tuple[Path, database.Target]) -> None:
    """Records of mixed history (another branch's database: a step recorded as matching
    below one that does not) must not make an untouched step wait for a changed one it
    needs (found on the example after a branch switch: every step was cancelled)."""
    from devenv import fingerprint
    from devenv.state import StateStore

    root, target = lc
    refresh(root, target)
    project = loader.load(root / "steps.yaml")
    fps = fingerprint.compute(project)
    steps = ["schema", "seed", "extra", "final"]
    store = StateStore(project.state_dir)
    key = database.identity(target, target.dbname)
    assert key is not None
    records = store.steps(key)

    def with_changed(name: str) -> list[str]:
        changed = {**records, name: {**records[name], "fingerprint": "from another branch"}}
        store.put(key, "lc", changed)
        return rebuild.dynamic_point(project, target, store, fps, steps, [])

    assert with_changed("schema") == []  # seed, extra, final all need schema
    assert with_changed("extra") == ["schema", "seed"]
    # and a refresh with such records runs to the end
    store.put(key, "lc", {**records, "schema": {**records["schema"], "fingerprint": "x"}})
    database.drop(target, f"{target.dbname}__ready")
    for info in siblings.related(target, target.dbname):
        if info.kind == "snapshot":
            database.drop(target, info.datname)
    res, _ = refresh(root, target)
    assert res.swapped


def test_a_step_whose_work_is_outside_the_database_runs_again_after_a_restore(
        lc: tuple[Path, database.Target]) -> None:
    """outside_database: true (a step loading a provider's stand-in): no snapshot holds
    its work, so refresh-db runs it whether it starts from a snapshot or swaps in the
    ready copy, and up runs it in place when it changes (no rebuild for it)."""
    root, target = lc
    cfg = config(target.dbname)
    cfg["steps"]["notify"] = {"run": "echo loaded >> stand-in.txt", "needs": ["seed"],
                              "inputs": ["notify.txt"], "outside_database": True}
    (root / "steps.yaml").write_text(yaml.safe_dump(cfg))
    (root / "notify.txt").write_text("v1\n")
    loads = root / "stand-in.txt"

    refresh(root, target)  # cold: every step
    assert loads.read_text().count("loaded") == 1
    res, rep = refresh(root, target)  # nothing changed: the ready copy is swapped in
    assert res.source == "ready clone" and ran(rep) == ["notify"]
    skipped = {e.result.name: e.result.reason for e in rep.events
               if isinstance(e, StepFinished) and e.result.status is Status.SKIPPED}
    assert skipped == {n: "in the ready copy" for n in ("schema", "seed", "extra", "final")}
    assert loads.read_text().count("loaded") == 2
    (root / "seed.sql").write_text(FILES["seed.sql"].replace("200", "20"))
    res, rep = refresh(root, target)  # first edit: the steps seed leads to run again
    res, rep = refresh(root, target)  # nothing changed since
    (root / "seed.sql").write_text(FILES["seed.sql"].replace("200", "30"))
    res, rep = refresh(root, target)  # from the snapshot of what seed does not lead to
    assert res.source.startswith("snapshot "), res.source
    assert "notify" in ran(rep) and "schema" not in ran(rep)
    _source, planned = rebuild.plan_refresh(loader.load(root / "steps.yaml"), target)
    assert [(d.action.value, d.reason) for d in planned if d.step == "notify"] == [
        ("run", "its work is outside the database (no snapshot holds it)")]
    listed = subprocess.run([sys.executable, "-m", "devenv", "snapshot", "list", "--json"],
                            cwd=root, capture_output=True, text=True, timeout=120)
    snaps = json.loads(listed.stdout)["snapshots"]
    assert snaps and all("notify" not in snap["steps"] for snap in snaps), snaps
    assert any(snap["all_steps"] for snap in snaps)  # the full one: all the database holds

    count = loads.read_text().count("loaded")
    (root / "notify.txt").write_text("v2\n")
    up = subprocess.run([sys.executable, "-m", "devenv", "--plain", "up", "--no-processes"],
                        cwd=root, capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "not running on top" not in up.stdout and "[notify] ok" in up.stdout, up.stdout
    assert loads.read_text().count("loaded") == count + 1
