"""`devenv doctor`'s wall time on the healthplan example with everything healthy.

    python bench/doctor.py [--repeat 5] [--docker] [--fake-members 2000]

Copies the example (examples/, steps.yaml, services/) into a temporary folder and builds
its database, then times:
  * `devenv doctor` as a user runs it (a new process each time, start-up included),
    the median of --repeat runs; every run must exit 0 with no warning;
  * one in-process run, check by check (when each finished), to show the critical path.

The database is a throw-away local PostgreSQL cluster given as DATABASE_URL (what CI
does), or with --docker the example's own postgres service in a container (a unique
project name; removed at the end with `devenv down --volumes --yes`). Goal: under 3 s.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devenv.postgres import pgcluster  # noqa: E402


def copy_example(dest: Path, name: str) -> Path:
    root = dest / "repo"
    root.mkdir()
    shutil.copytree(ROOT / "examples", root / "examples",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "services", root / "services")
    text = (ROOT / "steps.yaml").read_text()
    (root / "steps.yaml").write_text(text.replace("name: healthplan", f"name: {name}", 1))
    return root


def devenv(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devenv", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--docker", action="store_true",
                        help="run the database in the example's own container")
    parser.add_argument("--fake-members", type=int, default=2000)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="devenv-bench-doctor-"))
    os.chmod(tmp, 0o755)
    name = f"bench-doctor-{uuid.uuid4().hex[:6]}"
    root = copy_example(tmp, name)
    env = dict(os.environ)
    env["FAKE_MEMBERS"] = str(args.fake_members)
    env.pop("DATABASE_URL", None)
    cluster = None
    try:
        if not args.docker:
            cluster = pgcluster.Cluster(datadir=tmp / "pg", port=pgcluster.free_port())
            cluster.start(extra_options="-c fsync=off")
            pgcluster.wait_until_ready(cluster.url())
            env["DATABASE_URL"] = cluster.url("healthplan_dev")
        t0 = time.perf_counter()
        built = devenv(root, env, "--plain", "up", "--no-processes")
        if built.returncode != 0:
            print(built.stdout + built.stderr)
            return 1
        print(f"built the example in {time.perf_counter() - t0:.1f}s "
              f"({'docker' if args.docker else 'local cluster via DATABASE_URL'}, "
              f"FAKE_MEMBERS={args.fake_members})")

        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            done = devenv(root, env, "--plain", "doctor")
            times.append(time.perf_counter() - t0)
            last = done.stdout.strip().splitlines()[-1]
            if done.returncode != 0 or " 0 warnings, 0 failing" not in last:
                print(done.stdout + done.stderr)
                return 1
        print(f"devenv doctor (CLI, new process): median {statistics.median(times):.2f}s, "
              f"min {min(times):.2f}s, max {max(times):.2f}s over {args.repeat} runs; "
              f"{last}")

        # One in-process run: when each check finished.
        code = (
            "import time, sys\n"
            "t0 = time.perf_counter()\n"
            "import devenv.doctor as d\n"
            "spans = {}\n"
            "orig = d._run_one\n"
            "def timed(defn, ctx, fut):\n"
            "    orig(defn, ctx, fut)\n"
            "    spans[defn.id] = time.perf_counter() - t0\n"
            "d._run_one = timed\n"
            "d.run_checks(d.Context(None))\n"
            "for k, v in sorted(spans.items(), key=lambda kv: kv[1]):\n"
            "    print(f'  {v:5.2f}s  {k}')\n"
        )
        spans = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                               capture_output=True, text=True, timeout=120)
        print("in-process, when each check finished (from import):")
        print(spans.stdout.rstrip() or spans.stderr)
        return 0
    finally:
        if args.docker:
            devenv(root, env, "down", "--volumes", "--yes")
        if cluster is not None:
            cluster.stop(mode="immediate")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
