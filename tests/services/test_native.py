"""The native backend against the machine's real PostgreSQL server binaries."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devenv.errors import ServiceError
from devenv.events import Message, RecordingReporter
from devenv.schema import Project
from devenv.services import ports as portlib
from devenv.services.native import NativeBackend, fallback_base, layout, legacy_base
from tests.services.conftest import unique_name, write_project

pytestmark = pytest.mark.postgres

NATIVE_DB: dict[str, Any] = {
    "image": "postgres:15", "backend": "native",
    "env": {"POSTGRES_USER": "app", "POSTGRES_PASSWORD": "n4tive-pw", "POSTGRES_DB": "appdb"},
    "ports": ["5432"],
}


def query(port: int, sql: str, dbname: str = "appdb") -> Any:
    with psycopg.connect(host="127.0.0.1", port=port, user="app", password="n4tive-pw",
                         dbname=dbname, autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else None


def _cleanup(project: Project) -> None:
    backend = NativeBackend()
    for svc in project.services.values():
        try:
            backend.down(project, svc, volumes=True)
        finally:
            shutil.rmtree(layout(project, svc).base, ignore_errors=True)


@pytest.fixture
def open_root() -> Iterator[Path]:
    """A project folder the postgres user can enter (pytest's tmp root is 0700)."""
    base = Path(tempfile.mkdtemp(prefix="devenv-native-"))
    os.chmod(base, 0o755)
    try:
        yield base / "proj"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_start_endpoint_stop_and_the_data_survives_a_restart(open_root: Path,
                                                             tmp_path: Path) -> None:
    project = write_project(open_root, unique_name(), {"db": NATIVE_DB})
    svc = project.services["db"]
    b = NativeBackend()
    try:
        assert b.available()[0]
        ep = b.up(project, svc, RecordingReporter(), timeout=60)
        port = ep.port(5432)
        assert (ep.host, ep.backend) == ("127.0.0.1", "native")
        lay = layout(project, svc)
        if os.geteuid() == 0:
            # the server runs as postgres, which .devenv/ keeps out: the data is elsewhere
            assert lay.base == fallback_base(project) / "db"
            st = project.state_dir.stat()
            assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o700, 0)
        else:
            assert lay.base == project.state_dir / "native" / "db"
        assert (lay.datadir / "PG_VERSION").exists()
        query(port, "CREATE TABLE kept AS SELECT 42 AS answer")  # POSTGRES_DB was created
        assert b.endpoint(project, svc) == ep
        st = b.status(project, svc)
        assert (st.backend, st.state, st.health, st.address, st.config_matches) == (
            "native", "running", "healthy", f"127.0.0.1:{port}", True)
        assert st.detail == f"data in {lay.base}" + (
            " (the server runs as postgres (PostgreSQL refuses root), and .devenv/ stays "
            "closed to other users)" if os.geteuid() == 0 else "")
        assert any("ready to accept connections" in line for line in b.logs(project, svc))

        r = b.exec(project, svc, ["psql", "-d", "appdb", "-At", "-c", "select answer from kept"])
        assert (r.returncode, r.output.strip()) == (0, "42")
        dump = tmp_path / "appdb.sql"
        r = b.exec(project, svc, ["pg_dump", "-d", "appdb"], stdout=dump)
        assert r.returncode == 0 and "CREATE TABLE public.kept" in dump.read_text()

        assert b.down(project, svc) == [
            f"stopped native PostgreSQL for db (pid {st.extra['pid']})"]
        assert b.endpoint(project, svc) is None
        assert b.status(project, svc).state == "stopped"

        ep2 = b.up(project, svc, RecordingReporter(), timeout=60)
        assert ep2.port(5432) == port  # remembered in .devenv/ports.json
        assert query(port, "SELECT answer FROM kept") == [(42,)]

        assert b.data(project, svc) == [f"folder {lay.base}"]
        assert b.down(project, svc, volumes=True)[-1] == f"deleted {lay.base}"
        assert not lay.base.exists()
        assert b.status(project, svc).state == "missing"
    finally:
        _cleanup(project)


@pytest.mark.skipif(os.geteuid() != 0, reason="the fallback is for root, whose server runs "
                    "as postgres")
def test_a_project_folder_closed_to_postgres_puts_the_data_under_var_lib(tmp_path: Path,
                                                                       ) -> None:
    root = tmp_path / "proj"  # pytest's tmp folders are 0700: postgres cannot enter
    project = write_project(root, unique_name(), {"db": NATIVE_DB})
    svc = project.services["db"]
    b = NativeBackend()
    rec = RecordingReporter()
    try:
        ep = b.up(project, svc, rec, timeout=60)
        base = fallback_base(project) / "db"
        assert str(base).startswith(f"/var/lib/devenv/{project.name}-")
        assert layout(project, svc).base == base
        reason = f"the postgres user (which runs the server, as PostgreSQL refuses root) " \
                 f"cannot enter {root}"
        assert [e.text for e in rec.events if isinstance(e, Message)] == [
            f"db: data in {base}: {reason}"]
        st = b.status(project, svc)
        assert st.state == "running" and st.detail == f"data in {base} ({reason})"
        assert query(ep.port(5432), "SELECT 1") == [(1,)]
    finally:
        _cleanup(project)
    assert not fallback_base(project).exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root's server runs as another user")
def test_a_cluster_an_earlier_devenv_made_inside_devenv_dir_is_moved_out(open_root: Path,
                                                                        ) -> None:
    import pwd

    project = write_project(open_root, unique_name(), {"db": NATIVE_DB})
    svc = project.services["db"]
    b = NativeBackend()
    outside = fallback_base(project) / "db"
    try:
        port = b.up(project, svc, RecordingReporter(), timeout=60).port(5432)
        query(port, "CREATE TABLE kept AS SELECT 7 AS n")
        b.down(project, svc)
        # what devenv did before: the cluster in .devenv/native/, .devenv/ 0710 group postgres
        legacy = project.state_dir / "native" / "db"
        legacy.parent.mkdir(mode=0o710)
        shutil.move(str(outside), str(legacy))
        gid = pwd.getpwnam("postgres").pw_gid
        for folder in (project.state_dir, legacy.parent):
            os.chown(folder, 0, gid)
            os.chmod(folder, 0o710)
        assert layout(project, svc).base == legacy  # status and down still find it there

        port = b.up(project, svc, RecordingReporter(), timeout=60).port(5432)
        assert query(port, "SELECT n FROM kept") == [(7,)]
        assert layout(project, svc).base == outside and not legacy.parent.exists()
        st = project.state_dir.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o700, 0)
    finally:
        _cleanup(project)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root's server runs as another user")
def test_a_cluster_an_earlier_devenv_kept_under_var_tmp_moves_to_var_lib(open_root: Path,
                                                                         ) -> None:
    """/var/tmp is cleaned by systemd-tmpfiles (files unused for 30 days): a cluster found
    there is used as it is, and moved under /var/lib/devenv once stopped, rows and all."""
    project = write_project(open_root, unique_name(), {"db": NATIVE_DB})
    svc = project.services["db"]
    b = NativeBackend()
    outside = fallback_base(project) / "db"
    legacy = legacy_base(project) / "db"
    try:
        port = b.up(project, svc, RecordingReporter(), timeout=60).port(5432)
        query(port, "CREATE TABLE kept AS SELECT 7 AS n")
        b.down(project, svc)
        legacy.parent.mkdir(mode=0o711)
        shutil.move(str(outside), str(legacy))  # where devenv 0.1 kept it
        assert layout(project, svc).base == legacy  # status and down still find it there

        port = b.up(project, svc, RecordingReporter(), timeout=60).port(5432)
        assert query(port, "SELECT n FROM kept") == [(7,)]
        assert layout(project, svc).base == outside
        assert str(outside).startswith("/var/lib/devenv/") and not legacy.parent.exists()
    finally:
        _cleanup(project)
        shutil.rmtree(legacy.parent, ignore_errors=True)


def test_only_postgres_services_and_fixed_port_conflicts(open_root: Path) -> None:
    sock = __import__("socket").socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    taken = sock.getsockname()[1]
    project = write_project(open_root, unique_name(), {
        "cache": {"image": "redis:7", "ports": ["6379"]},
        "db": {**NATIVE_DB, "ports": [f"{taken}:5432"]}}, database=False)
    b = NativeBackend()
    try:
        with pytest.raises(ServiceError) as err:
            b.up(project, project.services["cache"], RecordingReporter())
        assert str(err.value).startswith("service cache (image redis:7) needs Docker: the "
                                         "native backend runs PostgreSQL only.")
        with pytest.raises(ServiceError) as err:
            b.up(project, project.services["db"], RecordingReporter())
        assert f"host port {taken} on 127.0.0.1 is already in use" in str(err.value)
        assert not (layout(project, project.services["db"]).datadir / "PG_VERSION").exists()
    finally:
        sock.close()
        _cleanup(project)
    assert portlib.is_free(taken)
