"""Time to a healthy database: devenv's docker backend against docker compose.

    python bench/services_up.py [--repeat 5] [--interval 1s]

The same PostgreSQL service (the local postgres:15 image, a named volume, a published
port), three situations, each measured ``--repeat`` times, in one run:

  * running:  the container already runs and is healthy (a second `devenv up`);
  * stopped:  the container exists but is stopped (after `devenv down` / `compose stop`);
  * first:    no container and an empty volume (the image's initdb runs).

devenv: ``Session.start`` (what `devenv up` does for services: pick the
backend, reuse/start/create the container, wait until ``SELECT 1`` answers through the
published port), in process.

compose: ``docker compose up --wait`` where the v2 plugin exists; docker-compose v1 has
no ``--wait``, so there it is ``docker-compose up -d`` followed by polling the container's
health every 50 ms until "healthy" (what ``--wait`` does). The compose file carries the
usual ``pg_isready`` healthcheck with ``--interval`` (compose's own default is 30 s; 1 s is
what people write when they care). Both stop the container with SIGINT.

Prints medians (min-max) and the ratio compose / devenv.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devenv import loader
from devenv.events import RecordingReporter
from devenv.services.docker import DockerBackend
from devenv.session import Session

ENV = {"POSTGRES_USER": "app", "POSTGRES_PASSWORD": "bench-pw"}


def compose_cmd() -> list[str]:
    """``docker compose`` (v2) if the plugin answers, else ``docker-compose`` (v1)."""
    if shutil.which("docker"):
        r = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if r.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    sys.exit("neither `docker compose` nor `docker-compose` is installed")


class Compose:
    def __init__(self, root: Path, interval: str) -> None:
        self.cmd = compose_cmd()
        self.v2 = self.cmd == ["docker", "compose"]
        self.project = f"bench-compose-{uuid.uuid4().hex[:6]}"
        self.file = root / "docker-compose.yml"
        self.file.write_text(yaml.safe_dump({
            "version": "2.4",
            "services": {"db": {
                "image": "postgres:15",
                "environment": ENV,
                "ports": ["127.0.0.1::5432"],
                "volumes": ["data:/var/lib/postgresql/data"],
                "stop_signal": "SIGINT",
                "healthcheck": {"test": ["CMD-SHELL", "pg_isready -h 127.0.0.1 -U app "
                                         "-d postgres"],
                                "interval": interval, "timeout": "5s", "retries": 30},
            }},
            "volumes": {"data": {}},
        }, sort_keys=False))
        self.client = DockerBackend().client()

    def _run(self, *args: str) -> None:
        subprocess.run([*self.cmd, "-f", str(self.file), "-p", self.project, *args],
                       check=True, capture_output=True, text=True)

    def _container(self) -> Any:
        found = self.client.containers.list(all=True, filters={"label": [
            f"com.docker.compose.project={self.project}", "com.docker.compose.service=db"]})
        return found[0] if found else None

    def up(self) -> None:
        if self.v2:
            self._run("up", "-d", "--wait")
            return
        self._run("up", "-d")
        c = self._container()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            c.reload()
            if (c.attrs["State"].get("Health") or {}).get("Status") == "healthy":
                return
            time.sleep(0.05)
        raise RuntimeError("compose: the container never became healthy")

    def stop(self) -> None:
        self._run("stop")

    def down(self) -> None:
        self._run("down", "-v")


class Devenv:
    def __init__(self, root: Path) -> None:
        name = f"bench-devenv-{uuid.uuid4().hex[:6]}"
        (root / "steps.yaml").write_text(yaml.safe_dump({
            "version": 1, "name": name,
            "services": {"db": {"image": "postgres:15", "env": ENV, "ports": ["5432"],
                                "volumes": {"data": "/var/lib/postgresql/data"}}},
            "database": {"service": "db", "name": "app"},
            "steps": {"noop": {"run": "true"}},
        }, sort_keys=False))
        self.project = loader.load(root / "steps.yaml")
        self.backend = DockerBackend()

    def up(self) -> None:
        Session(self.project, RecordingReporter()).start(["db"])

    def stop(self) -> None:
        self.backend.down(self.project, self.project.services["db"])

    def down(self) -> None:
        self.backend.down(self.project, self.project.services["db"], volumes=True)


def timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(tool: Compose | Devenv, repeat: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"first": [], "stopped": [], "running": []}
    try:
        for _ in range(repeat):
            tool.down()
            out["first"].append(timed(tool.up))
            for _ in range(2):
                out["running"].append(timed(tool.up))
            tool.stop()
            out["stopped"].append(timed(tool.up))
    finally:
        tool.down()
    return out


def fmt(xs: list[float]) -> str:
    med = statistics.median(xs)
    unit, k = ("ms", 1000) if med < 1 else ("s", 1)
    prec = 0 if unit == "ms" else 2
    return f"{med * k:.{prec}f} {unit} ({min(xs) * k:.{prec}f}-{max(xs) * k:.{prec}f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--interval", default="1s", help="the compose healthcheck's interval")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "compose").mkdir()
        (Path(tmp) / "devenv").mkdir()
        compose = Compose(Path(tmp) / "compose", args.interval)
        dev = Devenv(Path(tmp) / "devenv")
        # interleaved, so that a busy moment of the machine hits both
        d = measure(dev, args.repeat)
        c = measure(compose, args.repeat)
    print(f"time to a healthy PostgreSQL: median (min-max) of {args.repeat} runs "
          f"({2 * args.repeat} for already running)")
    print(f"compose: {' '.join(compose.cmd)}"
          + ("" if compose.v2 else " (v1: up -d + poll health every 50 ms = --wait)")
          + f", healthcheck interval {args.interval}")
    rows = [("already running", "running"), ("stopped -> healthy", "stopped"),
            ("first start (initdb)", "first")]
    w = max(len(r[0]) for r in rows)
    print(f"{'situation'.ljust(w)}  {'devenv':>24}  {'compose':>24}  compose/devenv")
    for label, key in rows:
        ratio = statistics.median(c[key]) / statistics.median(d[key])
        print(f"{label.ljust(w)}  {fmt(d[key]):>24}  {fmt(c[key]):>24}  {ratio:>10.1f}x")


if __name__ == "__main__":
    main()
