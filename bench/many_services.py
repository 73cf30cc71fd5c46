"""`devenv up` against compose for 1, 4 and 12 services, first start and already running.

    python bench/many_services.py [--sizes 1,4,12] [--repeat 3]

Every service is the same small HTTP server (an image built once FROM the local
debian:bookworm-slim, Perl from the base: ../shared/images/build-debian-base), published
on a free host port. Timed, wall clock, in one run:

  * devenv (ready: tcp): `devenv up` (the console script, a subprocess, as users run it;
    ``--devenv PATH`` picks which install) with a steps.yaml declaring the N services with
    `ready: tcp` (ready = the published port answers from the host). Its preloaded server
    (devenv/preload.py) is warm after the first command, as on a developer's machine;
  * devenv cold: the same with ``DEVENV_PRELOAD=0``: every command imports devenv afresh;
  * devenv (from compose): `devenv up` with `services: {from: docker-compose.yml}`, the
    very compose file below (ready = its healthcheck passes *and* the port answers);
  * compose: ``docker compose up --wait`` where the v2 plugin exists; docker-compose v1
    has no ``--wait``: ``docker-compose up -d`` then polling every container's health
    each 50 ms (one list request) until all are healthy. The healthcheck connects to the
    port inside the container, ``interval: 1s`` (compose's default is 30 s).

first: no containers (removed between repeats, untimed); running: the same command again
with everything up. Prints medians (min-max) per size and the ratio compose / devenv.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.services_up import compose_cmd
from devenv.services.docker import connect

IMAGE = "devenv-bench/http:1"
SERVER = r"""use IO::Socket::INET;
$| = 1;
$SIG{TERM} = sub { exit 0 };
my $s = IO::Socket::INET->new(LocalPort => 8080, Listen => 50, ReuseAddr => 1,
                              Proto => 'tcp') or die "listen: $!";
print "listening on 8080\n";
while (my $c = $s->accept) {
  my $body = "ok\n";
  print $c "HTTP/1.0 200 OK\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
  close $c;
}
"""
HEALTH = ["CMD", "perl", "-MIO::Socket::INET", "-e",
          "exit !IO::Socket::INET->new(q(127.0.0.1:8080))"]


def ensure_image() -> None:
    client = connect()
    try:
        client.images.get(IMAGE)
        return
    except Exception:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "server.pl").write_text(SERVER)
        (Path(tmp) / "Dockerfile").write_text(
            'FROM debian:bookworm-slim\nCOPY server.pl /server.pl\n'
            'CMD ["perl", "/server.pl"]\n')
        client.images.build(path=tmp, tag=IMAGE, rm=True)


def purge(label: str) -> None:
    client = connect()
    for c in client.containers.list(all=True, filters={"label": label}):
        c.remove(force=True, v=True)


class Compose:
    def __init__(self, root: Path, n: int) -> None:
        self.cmd = compose_cmd()
        self.v2 = self.cmd == ["docker", "compose"]
        self.project = f"benchc{uuid.uuid4().hex[:6]}"
        self.file = root / "docker-compose.yml"
        self.file.write_text(yaml.safe_dump({"services": {
            f"s{i}": {"image": IMAGE, "ports": ["127.0.0.1::8080"],
                      "healthcheck": {"test": HEALTH, "interval": "1s", "timeout": "5s",
                                      "retries": 30}}
            for i in range(n)}}, sort_keys=False))
        self.client = connect()

    def up(self) -> None:
        base = [*self.cmd, "-f", str(self.file), "-p", self.project]
        if self.v2:
            subprocess.run([*base, "up", "-d", "--wait"], check=True, capture_output=True)
            return
        subprocess.run([*base, "up", "-d"], check=True, capture_output=True)
        deadline = time.monotonic() + 120
        flt = {"label": f"com.docker.compose.project={self.project}"}
        while time.monotonic() < deadline:
            # one list request per poll (its Status says "(healthy)"): the SDK's
            # containers.list would inspect every container too, a dozen requests every
            # 50 ms to the engine that is busy starting them
            listed = self.client.api.containers(all=True, filters=flt)
            if listed and all("(healthy)" in c.get("Status", "") for c in listed):
                return
            time.sleep(0.05)
        raise RuntimeError("compose: not every container became healthy")

    def down(self) -> None:
        purge(f"com.docker.compose.project={self.project}")


class Devenv:
    command: ClassVar[list[str]] = [sys.executable, "-m", "devenv"]

    def __init__(self, root: Path, n: int, from_compose: Path | None = None,
                 preload: bool = True) -> None:
        # CI set turns the preloaded server off: the warm rows would be cold ones
        self.env = {k: v for k, v in os.environ.items() if k != "CI" or not preload}
        self.env["DEVENV_PRELOAD"] = "1" if preload else "0"
        self.name = f"benchd{uuid.uuid4().hex[:6]}"
        self.root = root
        services: dict[str, Any]
        if from_compose is not None:
            (root / "docker-compose.yml").write_text(from_compose.read_text())
            services = {"from": "docker-compose.yml"}
        else:
            services = {f"s{i}": {"image": IMAGE, "ports": ["8080"], "ready": "tcp"}
                        for i in range(n)}
        (root / "steps.yaml").write_text(yaml.safe_dump({
            "version": 1, "name": self.name, "services": services,
            "steps": {"noop": {"run": "true", "needs": sorted(
                yaml.safe_load((root / "docker-compose.yml").read_text())["services"])
                if from_compose is not None else list(services)}}}, sort_keys=False))

    def up(self) -> None:
        subprocess.run([*self.command, "--plain", "-f", str(self.root / "steps.yaml"), "up"],
                       check=True, capture_output=True, env=self.env)

    def down(self) -> None:
        purge(f"devenv.project={self.name}")


def timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def fmt(xs: list[float]) -> str:
    return f"{statistics.median(xs):6.2f}s ({min(xs):.2f}-{max(xs):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,4,12")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--devenv", help="the devenv console script to time (default: the one "
                    "installed beside this interpreter, else python -m devenv)")
    args = ap.parse_args()
    script = args.devenv or shutil.which("devenv", path=str(Path(sys.executable).parent))
    if script:
        Devenv.command = [script]
    ensure_image()
    print(f"compose: {' '.join(compose_cmd())}; devenv: {' '.join(Devenv.command)}; "
          f"image {IMAGE}; repeat {args.repeat}")
    print(f"{'services':>8}  {'tool':<22} {'first start':<22} {'already running':<22}")
    for n in (int(x) for x in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            dirs = [Path(tmp) / d for d in ("c", "d", "f", "k")]
            for d in dirs:
                d.mkdir()
            compose = Compose(dirs[0], n)
            tools: list[tuple[str, Compose | Devenv]] = [
                ("devenv (ready: tcp)", Devenv(dirs[1], n)),
                ("devenv (from compose)", Devenv(dirs[2], n, compose.file)),
                ("devenv cold", Devenv(dirs[3], n, preload=False)),
                ("compose", compose)]
            results: dict[str, tuple[list[float], list[float]]] = {}
            try:
                for _ in range(args.repeat):
                    for label, tool in tools:  # interleaved: load drifts hit all alike
                        first = timed(tool.up)
                        running = timed(tool.up)
                        tool.down()
                        r = results.setdefault(label, ([], []))
                        r[0].append(first)
                        r[1].append(running)
            finally:
                for _, tool in tools:
                    tool.down()
            for label, (first, running) in results.items():
                print(f"{n:>8}  {label:<22} {fmt(first):<22} {fmt(running):<22}")
            c = results["compose"]
            d = results["devenv (ready: tcp)"]
            print(f"{n:>8}  {'compose / devenv':<22} "
                  f"{statistics.median(c[0]) / statistics.median(d[0]):>6.1f}x"
                  f"{'':<15} {statistics.median(c[1]) / statistics.median(d[1]):>6.1f}x")


if __name__ == "__main__":
    main()
