"""Shared fixtures: throw-away projects built from dicts, and a real PostgreSQL server.

The PostgreSQL server is a real cluster started from the machine's server binaries
(``devenv.postgres.pgcluster``), one per test session (per xdist worker), on a free port.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv.postgres import pgcluster

# The devenv processes tests start (and kill, and time) are cold ones: a test that kills
# `devenv up` with SIGKILL means that process, not a client handing over to the preloaded
# server. tests/test_preload.py runs the preloaded path with a server of its own. A test
# that clears DEVENV_* from its commands' environment still leaves no server behind: their
# folder is this session's (pytest_sessionfinish stops what started there).
os.environ.setdefault("DEVENV_PRELOAD", "0")
_RUNTIME = tempfile.mkdtemp(prefix="devenv-tests-run-")
os.environ["XDG_RUNTIME_DIR"] = _RUNTIME


def pytest_sessionfinish(session: pytest.Session) -> None:
    import re
    import signal

    log = Path(_RUNTIME) / "devenv" / "preload.log"
    if log.exists():
        for pid in re.findall(r"\[(\d+)\] serving ", log.read_text()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
    shutil.rmtree(_RUNTIME, ignore_errors=True)


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Path]:
    """Write a project from dicts: ``make_project({"steps": {...}}, files={"a.txt": "x"})``.

    ``config`` may be a dict (dumped as YAML) or a string (written as is). Returns the root.
    """

    def make(
        config: dict[str, Any] | str,
        files: dict[str, str] | None = None,
        services: dict[str, dict[str, Any] | str] | None = None,
    ) -> Path:
        root = tmp_path / "proj"
        root.mkdir(exist_ok=True)
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        (root / "steps.yaml").write_text(text)
        for name, content in (files or {}).items():
            p = root / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(content)
        for name, svc in (services or {}).items():
            d = root / "services"
            d.mkdir(exist_ok=True)
            body = svc if isinstance(svc, str) else yaml.safe_dump(svc, sort_keys=False)
            (d / f"{name}.yaml").write_text(body)
        return root

    return make


class PgServer:
    """A running PostgreSQL cluster the tests may create databases on."""

    def __init__(self, cluster: pgcluster.Cluster) -> None:
        self.cluster = cluster
        self.host = "127.0.0.1"
        self.port = cluster.port
        self.user = cluster.user
        self.password = cluster.password

    def url(self, dbname: str = "postgres") -> str:
        return self.cluster.url(dbname)

    def unique_db(self, prefix: str = "t") -> str:
        return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL server for the session (per xdist worker)."""
    # Not under pytest's tmp root: that is 0700, and as root the server runs as 'postgres'.
    base = Path(tempfile.mkdtemp(prefix="devenv-test-pg-"))
    os.chmod(base, 0o755)
    cluster = pgcluster.Cluster(datadir=base / "data", port=pgcluster.free_port())
    cluster.start(extra_options="-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    pgcluster.wait_until_ready(cluster.url())
    try:
        yield PgServer(cluster)
    finally:
        cluster.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)
