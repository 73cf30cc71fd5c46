"""``devenv status``: what it says about each service's backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from devenv.postgres import pgcluster


@pytest.mark.postgres
def test_backend_reason_points_at_the_backend_key_line(make_project: Callable[..., Path],
                                                       ) -> None:
    if pgcluster.find_bindir() is None:
        pytest.skip("no PostgreSQL server binaries")
    root = make_project(
        "version: 1\n"
        "name: st\n"
        "services:\n"
        "  db:\n"                      # line 4: the service
        "    image: postgres:15\n"
        "    env: {POSTGRES_PASSWORD: pw}\n"
        "    backend: native\n"        # line 7: its backend key
        "steps:\n"
        "  noop: {run: 'true'}\n")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    out = subprocess.run([sys.executable, "-m", "devenv", "status", "--json"], cwd=root,
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    [db] = json.loads(out.stdout)["services"]
    assert db["why"] == "backend: native in steps.yaml:7"
