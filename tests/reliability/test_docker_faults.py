"""Faults around the database service, caused for real on the Docker engine: the container
killed mid-step, the engine not answering, the data volume's disk full."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow]
PSQL = "psql -X -q -v ON_ERROR_STOP=1"


def _docker_ok() -> bool:
    r = subprocess.run(["docker", "image", "inspect", "postgres:15"], capture_output=True)
    return r.returncode == 0


@pytest.fixture
def project(make_project: Callable[..., Path]) -> Iterator[Callable[..., Path]]:
    if not _docker_ok():
        pytest.skip("no Docker engine with the postgres:15 image")
    made: list[Path] = []

    def make(steps: dict[str, Any], name: str | None = None) -> Path:
        name = name or f"rf{uuid.uuid4().hex[:8]}"
        root = make_project({
            "version": 1, "name": name,
            "services": {"db": {"image": "postgres:15", "env": {"POSTGRES_PASSWORD": "pw"},
                                "ports": ["5432"],
                                "volumes": {"data": "/var/lib/postgresql/data"}}},
            "database": {"service": "db", "name": "app_dev"},
            "steps": steps,
        })
        made.append(root)
        return root

    yield make
    for root in made:
        subprocess.run([sys.executable, "-m", "devenv", "down", "--volumes", "--yes"], cwd=root,
                       env=_env(), capture_output=True, timeout=120)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(extra)
    return env


def devenv(root: Path, *args: str, env: dict[str, str] | None = None,
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devenv", "--plain", *args], cwd=root,
                          env=env or _env(), capture_output=True, text=True, timeout=300)


def test_container_killed_mid_step(project: Callable[..., Path]) -> None:
    root = project({"slow": {
        "run": f"test -f again || {{ touch started; {PSQL} -c 'select pg_sleep(60)'; }}",
        "needs": ["db"]}})
    p = subprocess.Popen([sys.executable, "-m", "devenv", "--plain", "run"], cwd=root, env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (root / "started").exists():
        assert p.poll() is None, p.communicate()[0]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(0.5)
    project_name = (root / "steps.yaml").read_text().split("name: ", 1)[1].split()[0]
    subprocess.run(["docker", "kill", f"{project_name}-db"], check=True, capture_output=True)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 1, out
    assert "[slow] FAILED" in out
    assert "the database went away during the run" in out
    assert "`devenv up` starts it again" in out
    # the next run starts the container again and carries on
    (root / "again").touch()
    r = devenv(root, "run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "db is healthy" in r.stdout


def test_engine_not_answering(project: Callable[..., Path]) -> None:
    root = project({"s": {"run": "true", "needs": ["db"]}})
    text = (root / "steps.yaml").read_text().replace("image: postgres:15",
                                                     "image: postgres:15\n    backend: docker")
    (root / "steps.yaml").write_text(text)
    r = devenv(root, "run", env=_env(DOCKER_HOST="unix:///tmp/devenv-no-such-engine.sock"))
    assert r.returncode == 3, r.stdout + r.stderr
    assert "backend docker is not available" in r.stderr
    assert "devenv-no-such-engine.sock" in r.stderr
    assert "Traceback" not in r.stderr


def test_data_volume_disk_full(project: Callable[..., Path]) -> None:
    name = f"rf{uuid.uuid4().hex[:8]}"
    volume = f"{name}_db_data"
    # the data volume, made by hand as a small tmpfs (labelled as devenv labels its own)
    subprocess.run(["docker", "volume", "create", "--driver", "local", "--opt", "type=tmpfs",
                    "--opt", "device=tmpfs", "--opt", "o=size=96m",
                    "--label", f"devenv.project={name}", "--label", "devenv.service=db",
                    volume], check=True, capture_output=True)
    root = project({"fill": {
        "run": f"{PSQL} -c \"create table big as select g, repeat('x', 1000) as pad "
               "from generate_series(1, 400000) g\"",
        "needs": ["db"]}}, name=name)
    r = devenv(root, "run")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "[fill] FAILED" in r.stdout
    assert "the database server ran out of disk space (service db)" in r.stdout


def _in_container(container: str, *argv: str) -> bool:
    return subprocess.run(["docker", "exec", container, *argv], capture_output=True).returncode == 0


def test_container_killed_during_its_first_initialisation(project: Callable[..., Path]) -> None:
    root = project({"s": {"run": f"{PSQL} -c 'select 1'", "needs": ["db"]}})
    name = (root / "steps.yaml").read_text().split("name: ", 1)[1].split()[0]
    container = f"{name}-db"
    p = subprocess.Popen([sys.executable, "-m", "devenv", "--plain", "up"], cwd=root,
                         env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # kill it while initdb runs: PG_VERSION is written first, global/pg_control later
    deadline = time.monotonic() + 120
    while not _in_container(container, "test", "-s", "/var/lib/postgresql/data/PG_VERSION"):
        assert time.monotonic() < deadline and p.poll() is None, p.communicate()[0]
        time.sleep(0.05)
    # the machine goes down: devenv and the container die together (a devenv that lives on
    # sees the container exit and recreates the volume at once, as `up` does below)
    p.kill()
    subprocess.run(["docker", "kill", container], check=True, capture_output=True)
    p.communicate(timeout=30)
    # before: the volume never worked again (the next up: "could not find the database
    # system", or a login refused and blamed on the credentials); doctor said only `up`
    r = devenv(root, "doctor")
    assert (f"volume {name}_db_data never finished its first initialisation" in r.stdout
            and "devenv up recreates it" in r.stdout), r.stdout + r.stderr
    r = devenv(root, "up")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert (f"db: volume {name}_db_data never finished its first initialisation" in out
            and "so it holds no data; recreating it" in out), out
    assert "db is healthy" in out and "[s] ok" in out
    # the recreated volume carries the mark of a finished cluster: it is never recreated
    r2 = subprocess.run(["docker", "exec", container, "test", "-f",
                         "/var/lib/postgresql/data/.devenv-ready"], capture_output=True)
    assert r2.returncode == 0


@pytest.mark.parametrize("marked", [True, False], ids=["made-by-devenv", "older-volume"])
def test_volume_left_between_initdb_and_the_images_login_setup(
        project: Callable[..., Path], marked: bool) -> None:
    """The other window of the first initialisation: initdb finished, the image's init did
    not get to allow logins from outside the container. Made for real by running the
    image's initdb on a volume labelled as devenv labels its own, and stopping there. A
    volume made before devenv marked volumes is never deleted on a guess: the fix is said."""
    root = project({"s": {"run": f"{PSQL} -c 'select 1'", "needs": ["db"]}})
    name = (root / "steps.yaml").read_text().split("name: ", 1)[1].split()[0]
    vol = f"{name}_db_data"
    mark = ["--label", "devenv.marks-ready=1"] if marked else []
    subprocess.run(["docker", "volume", "create", "--label", f"devenv.project={name}",
                    "--label", "devenv.service=db", *mark, vol],
                   check=True, capture_output=True)
    subprocess.run(["docker", "run", "--rm", "-v", f"{vol}:/var/lib/postgresql/data",
                    "--entrypoint", "sh", "postgres:15", "-c",
                    "chown postgres /var/lib/postgresql/data && setpriv --reuid=postgres "
                    "--regid=postgres --init-groups sh -c 'echo pw > /tmp/pw && initdb -D "
                    "/var/lib/postgresql/data -U postgres --pwfile=/tmp/pw "
                    "--auth-host=scram-sha-256 >/dev/null'"], check=True, capture_output=True)
    r = devenv(root, "up")
    out = r.stdout + r.stderr
    # before: "no pg_hba.conf entry for host", blamed on the credentials, on every up
    if not marked:
        assert r.returncode == 3, out
        assert (f"volume {vol} never finished its first initialisation (the image's init "
                "stopped after initdb") in out, out
        assert (f"If it holds nothing you need: docker rm -f {name}-db && docker volume rm "
                f"{vol}, then devenv up") in out
        return
    assert r.returncode == 0, out
    assert (f"volume {vol} never finished its first initialisation (the image's init "
            "stopped after initdb") in out, out
    assert "[s] ok" in out
