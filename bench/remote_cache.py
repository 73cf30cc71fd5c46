"""The team cache: a teammate's first refresh-db with a remote hit vs a cold build, and
pull + restore vs a bare `pg_restore -j` of the same dump, side by side in one run.

    python bench/remote_cache.py [--repeat 3] [--members 20000] [--scale 0] [--json FILE]
                                 [--compare-with DIR]

One PostgreSQL (local binaries, free port), one real OCI registry (the CNCF Distribution
registry, ../shared/registry/start-registry) on 127.0.0.1, the example project copied into
two checkouts: "ci" (builds once and pushes: `devenv ci-setup --profile local --push`) and
"mate" (a teammate's fresh checkout: no .devenv/, no database). `--scale N` adds a step
`pgbench -i -s N` to the example in both (N = 20: a database of about 340 MB, as
bench/refresh_db.py uses). Each repetition, in turn:

  * cold:  mate's `devenv refresh-db --no-remote-cache` (every step runs);
  * push:  what CI pays on top of its build to share it: dump the database mate just
           built and push it (devenv.workingdb.oci's dump_database + push_file, in-process,
           to a repository of its own);
  * hit:   mate's `devenv refresh-db` with the remote configured (pull, check, restore,
           nothing runs); whole processes, start-up included;
  * pull + restore, in-process: what refresh-db runs for a remote hit with nothing in the
           local cache, devenv.workingdb.oci.restore_for_refresh: the manifests looked up,
           the restore prepared (import role, CREATE DATABASE) while they are read and the
           blob downloads, the download checked (digest, header, checksum), then
           pg_restore -j J as the import role from the pulled file and the defusing pass.
           Not timed in the ratio, for the table: the download with its checks alone
           (fetch), and the restore alone into a database made untimed (restore_file);
  * bare pg_restore -j J: the same dump file (the archive a pull writes) into an empty
           database made just before (its CREATE DATABASE timed apart: the pull + restore
           includes the one it makes), by the same PostgreSQL, with the same J
           (devenv.postgres.dumpfiles.restore_jobs());
  * bare pg_restore -C -j J: the same file in one command that makes the database too.

These (and the restore alone) alternate their order, and a CHECKPOINT runs before each, so
none pays for another's dirty pages. Whole-process rows ("cold", "hit") run the code of
this tree (python -m devenv with this tree on PYTHONPATH).

Reports medians and the ratios, and the builds a pushed snapshot saves (see BENCHMARKS.md:
each pull saves 1 - hit/cold of a build, the push costs push/cold of one).
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

from bench.restore_phases import files_made  # noqa: E402
from devenv import fingerprint, graph, loader  # noqa: E402
from devenv.events import RecordingReporter  # noqa: E402
from devenv.postgres import database, dumpfiles, pgcluster, siblings  # noqa: E402
from devenv.session import Session  # noqa: E402
from devenv.state import StateStore  # noqa: E402
from devenv.workingdb import oci  # noqa: E402

DB = "healthplan_dev"
# ../shared beside the project root; a git worktree elsewhere finds the machine's copy
START = next((p for p in (ROOT.parent / "shared" / "registry" / "start-registry",
                          Path("/work/shared/registry/start-registry")) if p.exists()),
             ROOT.parent / "shared" / "registry" / "start-registry")


def checkout(base: Path, name: str, scale: int = 0) -> Path:
    d = base / name
    ignore = shutil.ignore_patterns("__pycache__", ".devenv")
    for part in ("examples", "services"):
        shutil.copytree(ROOT / part, d / part, ignore=ignore)
    # a name of its own (the same in every checkout: it is the cache's project), so the
    # example's services do not take the containers of the example run from this checkout
    (d / "steps.yaml").write_text((ROOT / "steps.yaml").read_text().replace(
        "name: healthplan\n", "name: hpbench-remote\n", 1))
    if scale:
        # The example plus pgbench's tables (in public, which the example's schemas
        # include): the ~300 MB database of the issue, built by a step like any other.
        text = (d / "steps.yaml").read_text()
        assert "\nsteps:\n" in text
        step = (f"\nsteps:\n  pgbench-data:\n    run: pgbench -i -s {scale} -q\n"
                "    needs: [postgres]\n\n")
        (d / "steps.yaml").write_text(text.replace("\nsteps:\n", step, 1))
    return d


# Pull + restore by another devenv tree (--compare-with), in its own process with that tree
# on PYTHONPATH; prints the seconds of fetch + restore_file alone. Trees from before the
# pull wrote a bare archive (Hit.offset) restore into a database made beforehand, untimed,
# as this bench did then.
OTHER = """
import dataclasses, sys, time
from pathlib import Path
from devenv import loader
from devenv.events import RecordingReporter
from devenv.postgres import database, dumpfiles
from devenv.session import Session
from devenv.workingdb import oci
steps, remote, tag, url, db = sys.argv[1:6]
project = loader.load(Path(steps))
client = oci.Client(oci.parse(remote))
target = database.parse_url(url)
server = dumpfiles.server_version_num(target)
old = "offset" in {f.name for f in dataclasses.fields(oci.Hit)}
if old:
    database.create(target, db, [], template="template0")
t0 = time.perf_counter()
hit = oci.fetch(project, client, tag, server)
oci.restore_file(Session(project, RecordingReporter()), target, db, hit)
print(time.perf_counter() - t0)
hit.path.unlink()
"""


def files_ms(base: Path) -> float:
    """Milliseconds to make 300 files of 24 KB in a new folder of ``base`` (median of 3)."""
    return statistics.median(files_made(base, 3)) * 1000


def checkpoint(target: database.Target) -> None:
    with database.connect(target, "postgres") as conn:
        conn.execute("CHECKPOINT")


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
    ap.add_argument("--scale", type=int, default=0,
                    help="add a step `pgbench -i -s SCALE` (20: ~340 MB); 0: the example alone")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--dir", type=Path, default=None,
                    help="where the cluster, the registry and the checkouts go (default: "
                         "the system's temporary directory); CREATE DATABASE's time is "
                         "that file system's time to make ~300 files, printed at the end")
    ap.add_argument("--compare-with", type=Path, metavar="DIR",
                    help="also time pull + restore by the devenv tree in DIR, in the same "
                         "rounds (a before/after of a change)")
    args = ap.parse_args()
    devenv = [sys.executable, "-m", "devenv", "--plain"]
    jobs = dumpfiles.restore_jobs()
    base = Path(tempfile.mkdtemp(prefix="devenv-bench-rc-", dir=args.dir))
    os.chmod(base, 0o755)
    cluster = pgcluster.Cluster(base / "data", pgcluster.free_port())
    cluster.start("-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    port = pgcluster.free_port()
    reg = subprocess.run([str(START), str(base / "registry"), str(port)], check=True,
                         capture_output=True, text=True)
    reg_pid = int(reg.stdout.split()[-1])
    remote = f"oci://127.0.0.1:{port}/team/healthplan"
    load_before = os.getloadavg()
    try:
        url = cluster.url(DB)
        env = {**os.environ, "DATABASE_URL": url, "FAKE_MEMBERS": str(args.members),
               "PGPASSWORD": cluster.password, "DEVENV_CACHE_REMOTE": remote,
               "DEVENV_CACHE_AUTHOR": "ci", "PYTHONPATH": str(ROOT)}
        env.pop("PGOPTIONS", None)
        os.environ["PGPASSWORD"] = cluster.password  # pgbench's and pg_restore's
        ci, mate = checkout(base, "ci", args.scale), checkout(base, "mate", args.scale)
        # CI builds once and pushes (the developers' profile, so the artifact holds
        # every step a teammate's refresh-db wants)
        push_s = timed([*devenv, "ci-setup", "--profile", "local", "--push"],
                       {**env, "CI": "true"}, ci, "pushed snapshot")
        target = database.parse_url(url)
        with database.connect(target, DB) as conn:
            row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        db_bytes = int(row[0]) if row else 0
        fresh(ci, url)
        project = loader.load(mate / "steps.yaml")
        os.environ["DEVENV_CACHE_REMOTE"] = remote  # for the in-process restore_for_refresh
        mate_fps = fingerprint.compute(project)
        mate_steps = [n for n in graph.topo_order(project)
                      if project.steps[n].in_profile("local")]
        client = oci.Client(oci.parse(remote))
        tag = client.tags()[0]
        server = dumpfiles.server_version_num(target)
        # The dump file both restores read: the archive a pull writes.
        first = oci.fetch(project, client, tag, server)
        assert first is not None
        bare = base / "bare.dump"
        shutil.move(first.path, bare)
        tool = dumpfiles.local_tools("pg_restore")[0][0]
        ci_project = loader.load(ci / "steps.yaml")
        push_remote = oci.parse(f"oci://127.0.0.1:{port}/team/bench-push")
        times: dict[str, list[float]] = {k: [] for k in (
            "cold", "push", "hit", "pull_restore", "fetch", "restore_file", "pg_restore_j", "createdb",
            "pg_restore_C")}
        if args.compare_with:
            times["other"] = []
        for i in range(args.repeat):
            fresh(mate, url)
            times["cold"].append(timed([*devenv, "refresh-db", "--no-remote-cache"], env,
                                       mate))
            # what sharing the build costs CI: dump + push (into a repository of its own)
            steps = list(fingerprint.compute(ci_project))
            checkpoint(target)
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory(dir=base) as d:
                f = Path(d) / "push.devenv-snapshot"
                oci.dump_database(ci_project, target, DB, f"round{i}", steps, "ci", f, None)
                oci.push_file(ci_project, push_remote, f, RecordingReporter())
            times["push"].append(time.perf_counter() - t0)
            fresh(mate, url)
            checkpoint(target)
            times["hit"].append(timed([*devenv, "refresh-db"], env, mate,
                                      "restored snapshot"))
            fresh(mate, url)

            def pull_restore(db: str) -> None:
                # refresh-db's own path on a fresh checkout (nothing in the local cache):
                # oci.restore_for_refresh looks the snapshot up, prepares the restore (the
                # import role, CREATE DATABASE) while the manifests are read and the blob
                # downloads, checks the download, restores, keeps the records
                session = Session(project, RecordingReporter())
                t0 = time.perf_counter()
                got = oci.restore_for_refresh(session, target, db, StateStore(
                    project.state_dir), mate_fps, mate_steps, 0)
                times["pull_restore"].append(time.perf_counter() - t0)
                assert got is not None, getattr(session.reporter, "events", None)

            def restore_alone(db: str) -> None:
                # the parts apart, for the table (not in the ratio): the download and its
                # checks alone, then the restore from that file alone into a database made
                # untimed before it
                session = Session(project, RecordingReporter())
                t0 = time.perf_counter()
                hit = oci.fetch(project, client, tag, server)
                assert hit is not None
                times["fetch"].append(time.perf_counter() - t0)
                try:
                    prepared = dumpfiles.prepare_untrusted(target, db)
                    tool = dumpfiles.choose_tool("pg_restore", target, db,
                                                 hit.header.pg_dump_major, session.tools)
                    checkpoint(target)
                    t0 = time.perf_counter()
                    prepared.restore(tool, hit.path, label="the bench's snapshot")
                    times["restore_file"].append(time.perf_counter() - t0)
                finally:
                    hit.path.unlink()

            def bare_restore(db: str) -> None:
                # timed apart: restore_file's time includes the CREATE DATABASE it makes
                t0 = time.perf_counter()
                database.create(target, db, [], template="template0")
                times["createdb"].append(time.perf_counter() - t0)
                checkpoint(target)
                t0 = time.perf_counter()
                subprocess.run([tool, "-j", str(jobs), "--no-owner", "-d", target.url(db),
                                str(bare)], check=True)
                times["pg_restore_j"].append(time.perf_counter() - t0)

            def bare_create(db: str) -> None:
                # one command from the file to a database: pg_restore -C makes the
                # database the archive names (the build's: dropped by fresh() before)
                t0 = time.perf_counter()
                subprocess.run([tool, "-C", "-j", str(jobs), "--no-owner", "-d",
                                target.url("postgres"), str(bare)], check=True)
                times["pg_restore_C"].append(time.perf_counter() - t0)
                database.drop(target, DB)

            def other(db: str) -> None:
                r = subprocess.run(
                    [sys.executable, "-c", OTHER, str(mate / "steps.yaml"), remote, tag, url,
                     db], env={**env, "PYTHONPATH": str(args.compare_with)}, cwd=mate,
                    check=True, stdout=subprocess.PIPE, text=True)
                times["other"].append(float(r.stdout.split()[-1]))

            order = [(pull_restore, f"bench_pull_{i}"), (bare_restore, f"bench_bare_{i}"),
                     (bare_create, DB), (restore_alone, f"bench_alone_{i}")]
            if args.compare_with:
                order.append((other, f"bench_other_{i}"))
            for run, db in order if i % 2 == 0 else order[::-1]:
                checkpoint(target)
                run(db)
            for _, db in order:
                if db != DB:
                    database.drop(target, db)
        med = {k: statistics.median(v) for k, v in times.items()}
        result = {
            "cpus": os.cpu_count(), "fake_members": args.members, "pgbench_scale": args.scale,
            "repeat": args.repeat, "restore_jobs": jobs,
            "database_mb": round(db_bytes / 1e6, 1),
            "dump_mb": round(bare.stat().st_size / 1e6, 2),
            "ci_build_and_push_s": round(push_s, 2),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "base": str(base), "files_300_ms": round(files_ms(base), 1),
            "median_s": {k: round(v, 3) for k, v in med.items()},
            "median_of_round_ratios_pull_restore_vs_bare": round(statistics.median(
                a / b for a, b in zip(times["pull_restore"], times["pg_restore_j"],
                                      strict=True)), 3),
            "all_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
        }
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        per_pull = 1 - med["hit"] / med["cold"]
        push_cost = med["push"] / med["cold"]

        def runs(k: str) -> str:
            return ", ".join(f"{x:.2f}" for x in times[k])

        what = (f"the example + pgbench scale {args.scale}" if args.scale else "the example")
        print(f"\n{what}: database {db_bytes / 1e6:.0f} MB, dump {result['dump_mb']} MB, "
              f"median of {args.repeat}, pg_restore -j {jobs}, load average "
              f"{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
        print(f"teammate's first refresh-db, cold build  {med['cold']:7.2f} s"
              f"                       runs: {runs('cold')}")
        print(f"teammate's first refresh-db, remote hit  {med['hit']:7.2f} s  "
              f"{med['cold'] / med['hit']:5.2f}x faster (goal >= 3x)  runs: {runs('hit')}")
        print(f"pull + restore (in-process)              {med['pull_restore']:7.2f} s  "
              f"{med['pull_restore'] / med['pg_restore_j']:5.2f}x bare   (goal <= 1.3x)  "
              f"runs: {runs('pull_restore')}")
        paired = statistics.median(a / b for a, b in zip(times["pull_restore"],
                                                          times["pg_restore_j"], strict=True))
        print(f"  per round (the two back to back), median of pull + restore / bare: "
              f"{paired:.2f}x")
        print(f"  fetch: download + checks               {med['fetch']:7.2f} s"
              f"                       runs: {runs('fetch')}")
        print(f"  restore alone, its database made before {med['restore_file']:7.2f} s"
              f"                       runs: {runs('restore_file')}")
        print(f"bare pg_restore -j {jobs} of the same file     {med['pg_restore_j']:7.2f} s"
              f"                       runs: {runs('pg_restore_j')}")
        both = statistics.median(c + r for c, r in zip(times["createdb"],
                                                      times["pg_restore_j"], strict=True))
        print(f"  with its CREATE DATABASE (untimed above) {both:7.2f} s  pull + restore is "
              f"{med['pull_restore'] / both:.2f}x this      runs: {runs('createdb')} "
              "(CREATE DATABASE)")
        print(f"bare pg_restore -C -j {jobs} (makes the database) {med['pg_restore_C']:7.2f} s  "
              f"pull + restore is {med['pull_restore'] / med['pg_restore_C']:.2f}x this  "
              f"runs: {runs('pg_restore_C')}")
        if args.compare_with:
            print(f"pull + restore by {args.compare_with}  {med['other']:7.2f} s  "
                  f"{med['other'] / med['pg_restore_j']:5.2f}x bare"
                  f"                 runs: {runs('other')}")

            def per_round(a: str, b: str) -> float:
                return statistics.median(x / y for x, y in zip(times[a], times[b],
                                                               strict=True))

            print(f"  per round, median: {per_round('other', 'pg_restore_j'):.2f}x bare; this "
                  f"tree's pull + restore takes {per_round('pull_restore', 'other'):.2f}x "
                  "its time")
        print(f"making 300 files of 24 KB in {base}: {files_ms(base):.0f} ms (template0 is "
              "about 300 files: what CREATE DATABASE copies)")
        print(f"CI's dump + push of the build            {med['push']:7.2f} s"
              f"                       runs: {runs('push')}")
        print(f"builds saved per pushed snapshot: each pull saves {per_pull:.2f} of a build "
              f"(1 - hit/cold), the push costs {push_cost:.2f} of one (push/cold): a "
              f"snapshot pulled N times saves {per_pull:.2f}*N - {push_cost:.2f} builds "
              f"(N = 5: {5 * per_pull - push_cost:.2f})")
    finally:
        for d in base.iterdir():  # the checkouts share the example's services: stop them
            if (d / "steps.yaml").exists():
                subprocess.run([sys.executable, "-m", "devenv", "down", "--volumes", "--yes"],
                               cwd=d, capture_output=True, timeout=120,
                               env={**os.environ, "DATABASE_URL": cluster.url(DB)})
        os.kill(reg_pid, 15)
        cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
