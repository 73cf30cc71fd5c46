"""The team cache: a teammate's first refresh-db with a remote hit vs a cold build, and
pull + restore vs a bare `pg_restore -j` of the same dump, side by side in one run.

    python bench/oci.py [--repeat 3] [--members 20000]

One PostgreSQL (local binaries, free port), one real OCI registry (the CNCF Distribution
registry, ../shared/registry/start-registry) on 127.0.0.1, the example project copied into
two checkouts: "ci" (builds once and pushes: `devenv ci-setup --profile local --push`) and
"mate" (a teammate's fresh checkout: no .devenv/, no database). Each repetition, in turn:

  * cold:  mate's `devenv refresh-db --no-remote-cache` (every step runs);
  * hit:   mate's `devenv refresh-db` with the remote configured (pull, check, restore,
           nothing runs); whole processes, start-up included;
  * pull + restore: devenv.workingdb.oci's fetch (manifest, download, digest and header
           checks) and restore_file into a new empty database, in-process;
  * bare pg_restore -j 2: the same dump (the pulled file's pg_dump archive) from a local
           file into a new empty database.

Reports medians, the ratios, and the builds a pushed snapshot saves: every teammate and CI
job whose steps match pulls instead of building, so a team of N saves N-1 builds of the
cold time each, per change of the steps.
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

from devenv import loader  # noqa: E402
from devenv.events import RecordingReporter  # noqa: E402
from devenv.postgres import database, dumpfiles, pgcluster, siblings  # noqa: E402
from devenv.session import Session  # noqa: E402
from devenv.workingdb import oci  # noqa: E402

DB = "healthplan_dev"
# ../shared beside the project root; a git worktree elsewhere finds the machine's copy
START = next((p for p in (ROOT.parent / "shared" / "registry" / "start-registry",
                          Path("/work/shared/registry/start-registry")) if p.exists()),
             ROOT.parent / "shared" / "registry" / "start-registry")


def checkout(base: Path, name: str) -> Path:
    d = base / name
    ignore = shutil.ignore_patterns("__pycache__", ".devenv")
    for part in ("examples", "services"):
        shutil.copytree(ROOT / part, d / part, ignore=ignore)
    shutil.copy(ROOT / "steps.yaml", d / "steps.yaml")
    return d


def fresh(d: Path, url: str) -> None:
    """A teammate's new checkout: no state, no database. (First the background re-clone
    of the last refresh-db ends: it would make a ready copy again.)"""
    while subprocess.run(["pgrep", "-f", "devenv.background reclone"],
                         capture_output=True).returncode == 0:
        time.sleep(0.05)
    target = database.parse_url(url)
    for info in siblings.related(target, DB):
        database.drop(target, info.datname)
    shutil.rmtree(d / ".devenv", ignore_errors=True)


def timed(argv: list[str], env: dict[str, str], cwd: Path, expect: str = "") -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0 or expect not in r.stdout:
        sys.exit(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stdout[-3000:]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--members", type=int, default=20000, help="FAKE_MEMBERS")
    args = ap.parse_args()
    devenv = [str(Path(sys.executable).parent / "devenv"), "--plain"]
    base = Path(tempfile.mkdtemp(prefix="devenv-bench-rc-"))
    os.chmod(base, 0o755)
    cluster = pgcluster.Cluster(base / "data", pgcluster.free_port())
    cluster.start("-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    port = pgcluster.free_port()
    reg = subprocess.run([str(START), str(base / "registry"), str(port)], check=True,
                         capture_output=True, text=True)
    reg_pid = int(reg.stdout.split()[-1])
    remote = f"oci://127.0.0.1:{port}/team/healthplan"
    try:
        url = cluster.url(DB)
        env = {**os.environ, "DATABASE_URL": url, "FAKE_MEMBERS": str(args.members),
               "PGPASSWORD": cluster.password, "DEVENV_CACHE_REMOTE": remote,
               "DEVENV_CACHE_AUTHOR": "ci"}
        env.pop("PGOPTIONS", None)
        ci, mate = checkout(base, "ci"), checkout(base, "mate")
        # CI builds once and pushes (the developers' profile, so the artifact holds
        # every step a teammate's refresh-db wants)
        push_s = timed([*devenv, "ci-setup", "--profile", "local", "--push"],
                       {**env, "CI": "true"}, ci, "pushed snapshot")
        fresh(ci, url)
        project = loader.load(mate / "steps.yaml")
        client = oci.Client(oci.parse(remote))
        tag = client.tags()[0]
        target = database.parse_url(url)
        server = dumpfiles.server_version_num(target)
        times: dict[str, list[float]] = {"cold": [], "hit": [], "pull_restore": [],
                                         "pg_restore_j": []}
        dump_bytes = 0
        for i in range(args.repeat):
            fresh(mate, url)
            times["cold"].append(timed([*devenv, "refresh-db", "--no-remote-cache"], env,
                                       mate))
            fresh(mate, url)
            times["hit"].append(timed([*devenv, "refresh-db"], env, mate,
                                      "restored snapshot"))
            fresh(mate, url)
            # pull + restore, in-process, into an empty database
            db1 = f"bench_pull_{i}"
            database.create(target, db1, [], template="template0")
            t0 = time.perf_counter()
            hit = oci.fetch(project, client, tag, server)
            assert hit is not None
            oci.restore_file(Session(project, RecordingReporter()), target.with_db(db1), db1, hit)
            times["pull_restore"].append(time.perf_counter() - t0)
            # the same dump from a local file, bare pg_restore -j 2
            bare = base / "bare.dump"
            with open(bare, "wb") as fh:
                for chunk in dumpfiles.payload(hit.path, hit.offset):
                    fh.write(chunk)
            dump_bytes = bare.stat().st_size
            hit.path.unlink()
            db2 = f"bench_bare_{i}"
            database.create(target, db2, [], template="template0")
            tool = dumpfiles.local_tools("pg_restore")[0][0]
            t0 = time.perf_counter()
            subprocess.run([tool, "-j", "2", "--no-owner", "-d", target.url(db2), str(bare)],
                           check=True, env={**os.environ, "PGPASSWORD": cluster.password})
            times["pg_restore_j"].append(time.perf_counter() - t0)
            for db in (db1, db2):
                database.drop(target, db)
        med = {k: statistics.median(v) for k, v in times.items()}
        result = {
            "cpus": os.cpu_count(), "fake_members": args.members, "repeat": args.repeat,
            "dump_mb": round(dump_bytes / 1e6, 2), "ci_build_and_push_s": round(push_s, 2),
            "median_s": {k: round(v, 3) for k, v in med.items()},
            "all_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
        }
        print(json.dumps(result, indent=2))
        saved = med["cold"] - med["hit"]
        print(f"\nteammate's first refresh-db, cold build   {med['cold']:7.2f} s")
        print(f"teammate's first refresh-db, remote hit   {med['hit']:7.2f} s   "
              f"{med['cold'] / med['hit']:.2f}x faster   (goal >= 3x)")
        print(f"pull + restore (in-process)               {med['pull_restore']:7.2f} s   "
              f"{med['pull_restore'] / med['pg_restore_j']:.2f}x bare   (goal <= 1.3x)")
        print(f"bare pg_restore -j 2 of the same dump     {med['pg_restore_j']:7.2f} s")
        print(f"per pushed snapshot: each of N teammates/CI jobs saves {saved:.2f} s "
              f"({med['cold']:.2f} s build -> {med['hit']:.2f} s pull); one build serves "
              "the team: N builds become 1 build + N-1 pulls")
    finally:
        os.kill(reg_pid, 15)
        cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
