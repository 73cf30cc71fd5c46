"""The example's database, three ways, side by side in one run.

    python bench/cold_build.py [--repeat 3] [--members 20000]

  * make:   `make -C examples/healthplan refresh-db` - the legacy dance, one step after another;
  * cold:   `devenv refresh-db --no-cache` - every step, in parallel where the graph allows,
            typed Flask/Django steps warm-started (set up while the steps they need run);
  * cold, no warm start: the same with DEVENV_WARM_START=0 - what the graph's parallelism
            alone gives;
  * warm:   `devenv refresh-db` with nothing changed - the ready copy swapped in by a rename.

Each is the whole command (process start-up included), against the same PostgreSQL started
from local binaries on a free port. Medians of --repeat runs; ratios against make. Between
warm runs the bench waits for the background re-clone of the ready copy to finish, and
reports its duration too (it is off the developer's critical path).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devenv.postgres import pgcluster  # noqa: E402

DB = "healthplan_dev"


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stdout[-3000:]}")
    return elapsed


def wait_ready_clone(url: str, timeout: float = 120) -> float:
    """Wait until the background re-clone (``python -m devenv.workingdb.rebuild``) has finished and
    DB__ready exists; its duration. Waiting for the process, not just the name: after a
    cold build an older ready copy still exists while the re-clone replaces it."""
    import psycopg

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        busy = subprocess.run(["pgrep", "-f", "devenv.background reclone"], capture_output=True)
        if busy.returncode != 0:
            with psycopg.connect(url, autocommit=True) as conn:
                row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                   (f"{DB}__ready",)).fetchone()
            if row:
                return time.perf_counter() - t0
        time.sleep(0.02)
    raise SystemExit("the ready copy never came back")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--members", type=int, default=20000, help="FAKE_MEMBERS")
    ap.add_argument("--without-checkpoints", action="store_true",
                    help="run devenv on a copy of the example whose steps.yaml has no "
                         "`checkpoint: true` (what the checkpoint costs a cold build)")
    args = ap.parse_args()
    devenv = [str(Path(sys.executable).parent / "devenv"), "--plain"]
    base = Path(tempfile.mkdtemp(prefix="devenv-bench-"))
    os.chmod(base, 0o755)
    project_dir = ROOT
    if args.without_checkpoints:
        project_dir = base / "project"
        ignore = shutil.ignore_patterns("__pycache__", ".devenv")
        for part in ("examples", "services"):
            shutil.copytree(ROOT / part, project_dir / part, ignore=ignore)
        text = (ROOT / "steps.yaml").read_text()
        (project_dir / "steps.yaml").write_text(
            "\n".join(line for line in text.splitlines()
                      if line.strip() != "checkpoint: true") + "\n")
    cluster = pgcluster.Cluster(base / "data", pgcluster.free_port())
    cluster.start("-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    state = ROOT / ".devenv"
    saved_state = None
    if state.exists():
        saved_state = base / "saved-state"
        shutil.copytree(state, saved_state, symlinks=True)
    try:
        url = cluster.url(DB)
        env = {**os.environ, "DATABASE_URL": url, "FAKE_MEMBERS": str(args.members),
               "PGPASSWORD": cluster.password}
        env.pop("PGOPTIONS", None)
        make = ["make", "-s", "-C", str(ROOT / "examples" / "healthplan"), "refresh-db",
                f"DATABASE_URL={url}", f"PYTHON={sys.executable}",
                f"FLASK={Path(sys.executable).parent / 'flask'}"]
        times: dict[str, list[float]] = {"make": [], "cold": [], "cold_nowarm": [],
                                         "warm": [], "reclone": []}
        nowarm = {**env, "DEVENV_WARM_START": "0"}
        for _ in range(args.repeat):
            times["make"].append(timed(make, env, ROOT))
            times["cold_nowarm"].append(timed([*devenv, "refresh-db", "--no-cache"], nowarm,
                                              project_dir))
            wait_ready_clone(cluster.url("postgres"))
            times["cold"].append(timed([*devenv, "refresh-db", "--no-cache"], env,
                                       project_dir))
            wait_ready_clone(cluster.url("postgres"))
            times["warm"].append(timed([*devenv, "refresh-db"], env, project_dir))
            # the warm run used the ready copy up: the time until the next one is there
            times["reclone"].append(wait_ready_clone(cluster.url("postgres")))
        import psycopg

        with psycopg.connect(url) as conn:
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        med = {k: statistics.median(v) for k, v in times.items()}
        result = {
            "cpus": os.cpu_count(), "fake_members": args.members, "repeat": args.repeat,
            "checkpoints": not args.without_checkpoints,
            "database_mb": round((size[0] if size else 0) / 1e6, 1),
            "median_s": {k: round(v, 3) for k, v in med.items()},
            "all_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
            "speedup_vs_make": {"cold": round(med["make"] / med["cold"], 2),
                                "cold_nowarm": round(med["make"] / med["cold_nowarm"], 2),
                                "warm": round(med["make"] / med["warm"], 2)},
        }
        print(json.dumps(result, indent=2))
        print(f"\nmake refresh-db              {med['make']:7.2f} s   1.00x")
        print(f"devenv refresh-db (cold)     {med['cold']:7.2f} s   {med['make'] / med['cold']:.2f}x"
              "   (goal >= 1.3x)")
        print(f"  without warm start         {med['cold_nowarm']:7.2f} s   "
              f"{med['make'] / med['cold_nowarm']:.2f}x   (DEVENV_WARM_START=0)")
        print(f"devenv refresh-db (warm)     {med['warm']:7.2f} s   {med['make'] / med['warm']:.2f}x"
              "   (goal >= 20x)")
        print(f"background re-clone          {med['reclone']:7.2f} s   (after the command returned)")
    finally:
        cluster.stop("immediate")
        shutil.rmtree(state, ignore_errors=True)
        if saved_state is not None:
            shutil.copytree(saved_state, state, symlinks=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
