"""A snapshot is an optimisation: a refresh-db whose steps all passed is swapped in even
when its snapshot does not fit on the disk (a real, small tmpfs under a native PostgreSQL's
data directory); ``cache: {keep: 0}`` writes no snapshot; a build the server took with it
is reported as not dropped, and the next command drops it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from devenv import loader
from devenv.postgres import database, siblings
from devenv.services.native import NativeBackend, fallback_base, layout

SMALL = ".small-disk"  # marks the tmpfs the small_disk fixture mounted

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
PSQL = "psql -X -q -v ON_ERROR_STOP=1"
MB = 1024 * 1024

NATIVE_DB: dict[str, Any] = {
    "image": "postgres:15", "backend": "native",
    "env": {"POSTGRES_USER": "app", "POSTGRES_PASSWORD": "full-pw", "POSTGRES_DB": "postgres"},
    "ports": ["5432"],
}

# Fills the disk the project (and so the server's data) is on, leaving 3 MB: the build is
# already made, a clone of it (about 7.5 MB for an almost empty database) is not possible.
FILL = ("import os; r = os.environ['DEVENV_ROOT']; st = os.statvfs(r); "
        "free = st.f_bavail * st.f_frsize; "
        "open(os.path.join(r, 'filler'), 'wb').write(bytes(max(0, free - 3 * 2**20)))")


def _config(name: str, steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"version": 1, "name": name, "services": {"db": NATIVE_DB},
            "database": {"service": "db", "name": "fulldb"}, "steps": steps, **extra}


def devenv(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run([sys.executable, "-m", "devenv", "--plain", *args], cwd=root,
                          env=env, capture_output=True, text=True, timeout=180)


def _down(root: Path) -> None:
    if not (root / "steps.yaml").exists():
        return
    project = loader.load(root / "steps.yaml")
    svc = project.services["db"]
    try:
        NativeBackend().down(project, svc, volumes=True)
    finally:
        shutil.rmtree(layout(project, svc).base, ignore_errors=True)


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 96 MB tmpfs the postgres user can enter: the project, and the server's data
    directory in its .devenv/, live on it."""
    base = Path(tempfile.mkdtemp(prefix="devenv-full-"))
    os.chmod(base, 0o755)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m,mode=755", "tmpfs", str(base)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): "
                    f"{r.stderr.strip()}")
    (base / SMALL).write_text("")
    try:
        yield base / "proj"
    finally:
        _down(base / "proj")
        if (base / "proj" / "steps.yaml").exists():
            link = fallback_base(loader.load(base / "proj" / "steps.yaml"))
            if link.is_symlink():
                link.unlink()
        subprocess.run(["umount", "-l", str(base)], check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def open_root() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="devenv-gone-"))
    os.chmod(base, 0o755)
    try:
        yield base / "proj"
    finally:
        _down(base / "proj")
        shutil.rmtree(base, ignore_errors=True)


def _write(root: Path, config: dict[str, Any]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "steps.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    if (root.parent / SMALL).exists():
        # As root, the native server's data lives outside .devenv/ (under /var/lib/devenv): put
        # that folder on the small disk too, through a symlink where devenv will look.
        base = fallback_base(loader.load(root / "steps.yaml"))
        data = root.parent / "server-data"
        data.mkdir(exist_ok=True)
        os.chmod(data, 0o755)
        if not base.exists():
            # /var/lib/devenv itself is made by the first native server on the machine
            base.parent.mkdir(parents=True, exist_ok=True)
            base.symlink_to(data)


def _target(root: Path) -> database.Target:
    project = loader.load(root / "steps.yaml")
    ep = NativeBackend().endpoint(project, project.services["db"])
    assert ep is not None
    return database.Target("127.0.0.1", ep.port(5432), "app", "full-pw", "fulldb")


def test_a_snapshot_that_does_not_fit_skips_the_cache_not_the_build(small_disk: Path) -> None:
    root = small_disk
    _write(root, _config(f"full-{uuid.uuid4().hex[:6]}", {
        "schema": {"run": f"{PSQL} -c 'create table t as select 42 as answer'",
                   "needs": ["db"]},
        "fill": {"run": f"python3 -c \"{FILL}\"", "needs": ["schema"]},
        "more": {"run": f"{PSQL} -c 'insert into t values (43)'", "needs": ["fill"]},
    }))
    r = devenv(root, "refresh-db")
    out = r.stdout + r.stderr
    # before: "done: 2 ok", then "error: could not write to file ...: No space left on
    # device", exit 1, and the build was thrown away
    assert r.returncode == 0, out
    assert "done in" in out and "3 ok" in out
    # each step is a snapshot point: after "fill" the disk is full, so neither that
    # snapshot nor the final one fits
    assert "cache skipped: could not write the snapshot after fill (" in out, out
    assert "cache skipped: could not write the final snapshot (" in out, out
    assert "No space left on device" in out and "ran out of disk space" in out
    assert "fulldb is fresh: 3 steps ran" in out
    target = _target(root)
    with psycopg.connect(target.url(), connect_timeout=5) as conn:
        assert conn.execute("select answer from t order by 1").fetchall() == [(42,), (43,)]
    # the snapshot after "schema" (taken before the disk filled) is kept, complete; no
    # half-made one of both steps is left behind
    assert [(d.steps, d.meta.get("complete")) for d in siblings.related(target, "fulldb")
            if d.kind == "snapshot"] == [(["schema"], True)], out


def test_keep_0_writes_no_snapshot(make_project: Callable[..., Path], pg_server: Any) -> None:
    db = pg_server.unique_db("k0")
    root = make_project({
        "version": 1, "name": "k0", "services": {"db": {"image": "postgres:15"}},
        "database": {"service": "db", "name": db}, "cache": {"keep": 0},
        "steps": {
            "a": {"run": f"{PSQL} -c 'create table a(x int)'", "needs": ["db"]},
            "b": {"run": f"{PSQL} -c 'create table b(x int)'", "needs": ["a"],
                  "checkpoint": True},
        }})
    env = {**os.environ, "DATABASE_URL": pg_server.url(db)}
    target = database.parse_url(pg_server.url(db))
    try:
        r = subprocess.run([sys.executable, "-m", "devenv", "--plain", "refresh-db"],
                           cwd=root, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        names = sorted(d.datname for d in siblings.related(target, db))
        # before: a snapshot after "a" (the checkpoint) and a full one, and a ready copy of
        # it, written only to be kept against keep: 0
        assert names == [db], names
    finally:
        for info in siblings.related(target, db):
            database.drop(target, info.datname)


def test_a_build_the_server_took_with_it_is_not_called_dropped(open_root: Path) -> None:
    root = open_root
    name = f"gone-{uuid.uuid4().hex[:6]}"
    _write(root, _config(name, {}))  # where the server's data lives depends on the project
    project = loader.load(root / "steps.yaml")
    pidfile = layout(project, project.services["db"]).datadir / "postmaster.pid"
    _write(root, _config(name, {
        "schema": {"run": f"{PSQL} -c 'create table t(x int)'", "needs": ["db"]},
        # the server dies under the build (PostgreSQL's immediate shutdown), as under a
        # `docker kill` of its container
        "die": {"run": f"kill -QUIT $(head -1 {pidfile}); sleep 2; {PSQL} -c 'select 1'",
                "needs": ["schema"]},
    }))
    r = devenv(root, "refresh-db")
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "the partial build was dropped" not in out  # before: said so, wrongly
    assert ("the partial build could not be dropped (server gone); the next command "
            "drops it") in out, out
    assert "the database went away during the run" in out
    # the next command starts the server again and drops the leftover build
    config = yaml.safe_load((root / "steps.yaml").read_text())
    config["steps"]["die"]["run"] = "true"
    _write(root, config)
    r = devenv(root, "refresh-db")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "dropped leftover fulldb__" in out, out


def test_a_step_that_meets_a_full_disk_during_refresh_is_diagnosed(small_disk: Path) -> None:
    root = small_disk
    _write(root, _config(f"full-{uuid.uuid4().hex[:6]}", {
        # more than the disk holds; unlogged, so that the table's own file meets the full
        # disk (an ERROR), not the write-ahead log (which would stop the server)
        "load": {"run": f"{PSQL} -c \"create unlogged table big as select repeat('x', 1000) "
                        "from generate_series(1, 200000)\"", "needs": ["db"]},
    }))
    r = devenv(root, "refresh-db")
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "[load] FAILED" in out and "No space left on device" in out
    # before: refresh-db said only that the step failed (run said why)
    assert ("error: the database server ran out of disk space (service db): free space on "
            "its volume (devenv snapshot gc drops old snapshots), then run again") in out, out
