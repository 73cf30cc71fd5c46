"""ci-setup on the example: cold (no cache) vs cache hit, side by side in one run.

    python bench/ci_setup.py [--repeat 3] [--members 20000]

Each run is what a CI job does on a fresh machine: an empty database on the server CI
provides (DATABASE_URL), no .devenv/ state, and a --cache-dir that the CI cache action
either restored (hit) or did not (cold). Whole process timed. Goal: a hit >= 10x faster.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devenv.postgres import database, pgcluster, siblings  # noqa: E402

DB = "healthplan_ci"


def reset(url: str) -> None:
    """A fresh CI machine: the empty database the CI service container creates
    (POSTGRES_DB), no local state."""
    target = database.parse_url(url)
    for info in siblings.related(target, DB):
        database.drop(target, info.datname)
    database.create(target, DB, [])
    shutil.rmtree(ROOT / ".devenv", ignore_errors=True)


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"failed:\n{r.stdout[-3000:]}\n{r.stderr[-2000:]}")
    return elapsed, r.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--members", type=int, default=20000)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="devenv-bench-ci-"))
    os.chmod(base, 0o755)
    saved = None
    if (ROOT / ".devenv").exists():
        saved = base / "state"
        shutil.copytree(ROOT / ".devenv", saved, symlinks=True)
    cluster = pgcluster.Cluster(base / "data", pgcluster.free_port())
    cluster.start("-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    try:
        url = cluster.url(DB)
        env = {**os.environ, "DATABASE_URL": url, "FAKE_MEMBERS": str(args.members), "CI": "true"}
        cache = base / "cache"
        cmd = [sys.executable, "-m", "devenv", "ci-setup", "--cache-dir", str(cache)]
        cold: list[float] = []
        hit: list[float] = []
        for _ in range(args.repeat):
            shutil.rmtree(cache, ignore_errors=True)
            reset(url)
            t, out = timed(cmd, env)
            assert "cache miss" in out
            cold.append(t)
            reset(url)
            t, out = timed(cmd, env)
            assert "(cache hit)" in out, out
            hit.append(t)
        c, h = statistics.median(cold), statistics.median(hit)
        size = sum(p.stat().st_size for p in cache.glob("*"))
        print(f"ci-setup, {args.members} fake members, median of {args.repeat}, dump {size / 1e6:.1f} MB")
        print(f"  cold (steps run, dump saved)   {c:6.2f} s   {cold}")
        print(f"  cache hit (dump restored)      {h:6.2f} s   {hit}")
        print(f"  ratio                          {c / h:6.1f}x   (goal >= 10x)")
    finally:
        cluster.stop("immediate")
        shutil.rmtree(ROOT / ".devenv", ignore_errors=True)
        if saved is not None:
            shutil.copytree(saved, ROOT / ".devenv", symlinks=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
