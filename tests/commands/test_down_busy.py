"""``devenv down --volumes`` on a data folder something still holds: a clear error naming
the folder and what holds it, not an OSError traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv.services.native import layout
from tests.services.conftest import unique_name, write_project

NATIVE_DB = {"image": "postgres:15", "backend": "native",
             "env": {"POSTGRES_USER": "app", "POSTGRES_PASSWORD": "pw"}, "ports": ["5432"]}


@pytest.fixture
def open_root() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="devenv-down-"))
    os.chmod(base, 0o755)
    try:
        yield base / "proj"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_down_volumes_on_a_busy_data_folder_names_it_and_what_holds_it(open_root: Path,
                                                                       ) -> None:
    project = write_project(open_root, unique_name(), {"db": NATIVE_DB})
    base = layout(project, project.services["db"]).base
    data = base / "data"
    data.mkdir(parents=True)
    # busy for real: a file system mounted on the data folder (rmdir fails with EBUSY), and
    # a process working in it
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(data)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    (data / "PG_VERSION").write_text("15\n")
    sleeper = subprocess.Popen(["sleep", "60"], cwd=data)
    try:
        r = subprocess.run([sys.executable, "-m", "devenv", "--plain", "down", "--volumes",
                            "--yes"], cwd=open_root, capture_output=True, text=True,
                           timeout=60)
        out = r.stdout + r.stderr
        assert r.returncode == 3, out  # a service error
        assert "Traceback" not in out  # before: OSError: [Errno 16] Device or resource busy
        assert f"could not delete its data folder {base}: Device or resource busy" in out, out
        assert f"a file system is mounted on {data} (umount it)" in out
        assert f"process {sleeper.pid} (sleep) has files or its working directory in it" in out
        assert "run `devenv down --volumes` again" in out
    finally:
        sleeper.kill()
        sleeper.wait()
        subprocess.run(["umount", "-l", str(data)], check=False)
    r = subprocess.run([sys.executable, "-m", "devenv", "--plain", "down", "--volumes",
                        "--yes"], cwd=open_root, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and f"deleted {base}" in r.stdout, r.stdout + r.stderr
