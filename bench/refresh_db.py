"""A warm `devenv refresh-db` against DSLR's and Stellar's restore, on a ~300 MB database.

    python bench/refresh_db.py [--scale 20] [--reps 5] [--nocache-reps 1] [--json out.json]

One PostgreSQL (a local cluster from devenv.postgres.pgcluster, default settings), one project whose
steps load pgbench data (`pgbench -i -s 20`: ~300 MB with indexes) plus a few small steps.
Side by side, in interleaved rounds, each tool restoring the same content into a database
of its own:

  * devenv warm: the whole `devenv refresh-db` process with nothing changed (a swap of the
    ready copy); before each repetition the background re-clone of the ready copy has
    finished (its time is reported too);
  * dslr restore: `dslr restore NAME` (DROP + CREATE DATABASE ... TEMPLATE);
  * stellar restore: `stellar restore NAME` (DROP + rename of its spare copy, then a
    background copy, which is waited for before the next repetition);
  * devenv --no-cache: `devenv refresh-db --no-cache`, every step run again;
  * with --compare-with DIR: a warm refresh-db by the devenv source tree in DIR too (its
    PYTHONPATH), in the same rounds, for a before/after of a change side by side.

DSLR and Stellar are installed from PyPI, each in its own virtualenv under --venvs
(Stellar with SQLAlchemy<1.4, as it needs). A CHECKPOINT runs before each timed command,
so no tool pays for the previous one's dirty pages. Reports min/median/max seconds and the
ratios of the medians.
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devenv.postgres import pgcluster

PSQL = "psql -X -q -v ON_ERROR_STOP=1"
DB = "bench_dev"


def steps_yaml(scale: int) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "bench",
        "services": {"db": {"image": "postgres:15", "env": {"POSTGRES_PASSWORD": "x"}}},
        "database": {"service": "db", "name": DB, "schemas": ["public", "app"]},
        "steps": {
            "pgbench-data": {"run": f"pgbench -i -s {scale} -q", "needs": ["db"]},
            "app-schema": {"run": f"{PSQL} -f schema.sql", "needs": ["db"],
                           "inputs": ["schema.sql"]},
            "app-seed": {"run": f"{PSQL} -f seed.sql", "needs": ["app-schema"],
                         "inputs": ["seed.sql"]},
            "report": {"run": f"{PSQL} -f report.sql",
                       "needs": ["pgbench-data", "app-seed"], "inputs": ["report.sql"]},
        },
    }


FILES = {
    "schema.sql": "create table app.users(id serial primary key, email text unique, "
                  "branch int);\n",
    "seed.sql": "insert into app.users(email, branch) select 'u' || g || '@example.com', "
                "g % 20 + 1 from generate_series(1, 10000) g;\n",
    "report.sql": "create materialized view app.branch_report as select b.bid, "
                  "count(*) as accounts, sum(a.abalance) as balance from pgbench_branches b "
                  "join pgbench_accounts a using (bid) group by b.bid;\n",
}


# --------------------------------------------------------------------------- helpers


def sh(argv: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
       check: bool = True) -> tuple[float, str]:
    """Run a command; the time until *it* exits. Output goes to a file, not a pipe: Stellar
    forks its background copy with the pipe inherited, and waiting for the pipe's end would
    time the background copy too."""
    with tempfile.TemporaryFile(mode="w+") as out:
        t0 = time.perf_counter()
        p = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=out,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        code = p.wait()
        dt = time.perf_counter() - t0
        out.seek(0)
        text = out.read()
    if check and code != 0:
        raise SystemExit(f"failed ({code}): {' '.join(argv)}\n{text}")
    return dt, text


def query(url: str, q: str | sql.Composable, args: Sequence[Any] = ()) -> list[Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(q, args)
        return cur.fetchall() if cur.description else []


def wait_for(cond: Callable[[], bool], timeout: float = 600, what: str = "") -> float:
    t0 = time.perf_counter()
    while not cond():
        if time.perf_counter() - t0 > timeout:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)
    return time.perf_counter() - t0


def ensure_venv(base: Path, name: str, packages: Sequence[str]) -> Path:
    venv = base / name
    exe = venv / "bin" / name
    if not exe.exists():
        print(f"installing {name} into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q",
                        "--disable-pip-version-check", *packages], check=True)
    return exe


def stats(xs: Sequence[float]) -> dict[str, float]:
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs), "n": len(xs)}


# --------------------------------------------------------------------------- the bench


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=int, default=20, help="pgbench scale (20: ~300 MB)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--nocache-reps", type=int, default=1)
    ap.add_argument("--venvs", type=Path, default=Path(tempfile.gettempdir()) / "bench-venvs")
    ap.add_argument("--server-options", default="",
                    help="extra postgres -c options (default: the server's defaults)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the cluster and project")
    ap.add_argument("--what-if-deferred-drop", action="store_true",
                    help="also time a warm refresh-db whose old backup (NAME__prev) was "
                         "dropped beforehand, untimed: what deferring that DROP out of the "
                         "swap would give")
    ap.add_argument("--compare-with", type=Path, metavar="DIR",
                    help="also time a warm refresh-db by the devenv source tree in DIR "
                         "(e.g. `git archive HEAD~1 | tar -x -C DIR`), interleaved")
    args = ap.parse_args()

    dslr = ensure_venv(args.venvs, "dslr", ["dslr", "psycopg2-binary"])
    stellar = ensure_venv(args.venvs, "stellar",
                          ["stellar", "SQLAlchemy<1.4", "psycopg2-binary"])

    work = Path(tempfile.mkdtemp(prefix="devenv-bench-refresh-"))
    os.chmod(work, 0o755)  # the server runs as 'postgres' when we are root
    cluster = pgcluster.Cluster(datadir=work / "data", port=pgcluster.free_port())
    cluster.start(extra_options=args.server_options)
    pgcluster.wait_until_ready(cluster.url())
    results: dict[str, Any] = {}
    try:
        results = run(args, work, cluster, dslr, stellar)
    finally:
        if args.keep:
            print(f"kept: {work} (server on port {cluster.port})")
        else:
            cluster.stop(mode="immediate")
            shutil.rmtree(work, ignore_errors=True)
    if args.json and results:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def run(args: argparse.Namespace, work: Path, cluster: pgcluster.Cluster, dslr: Path,
        stellar: Path) -> dict[str, Any]:
    url = cluster.url
    root = work / "proj"
    root.mkdir()
    (root / "steps.yaml").write_text(yaml.safe_dump(steps_yaml(args.scale), sort_keys=False))
    for name, text in FILES.items():
        (root / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["DATABASE_URL"] = url(DB)
    devenv = [sys.executable, "-m", "devenv", "--plain"]
    reclone_log = root / ".devenv" / "logs" / "reclone.log"

    def ready_done() -> bool:
        names = {r[0] for r in query(url(), "SELECT datname FROM pg_database WHERE "
                                           "datname LIKE %s", (DB + "__ready%",))}
        return names == {DB + "__ready"}

    def checkpoint() -> None:
        query(url(), "CHECKPOINT")

    def reclone_seconds() -> list[float]:
        if not reclone_log.exists():
            return []
        out = []
        for line in reclone_log.read_text().splitlines():
            with_json = line.strip()
            if with_json.startswith("{"):
                out.append(float(json.loads(with_json)["seconds"]))
        return out

    print(f"server: PostgreSQL on port {cluster.port}; project in {root}", flush=True)
    cold, cold_text = sh([*devenv, "refresh-db"], cwd=root, env=env)
    if os.environ.get("BENCH_VERBOSE"):
        print(cold_text)
    wait_for(ready_done, what="the first ready copy")
    size = query(url(), "SELECT pg_database_size(%s)", (DB,))[0][0]
    accounts = query(url(DB), "SELECT count(*) FROM pgbench_accounts")[0][0]
    print(f"cold refresh-db (every step, snapshots): {cold:.2f}s; {DB} is "
          f"{size / 1e6:.0f} MB, {accounts} pgbench accounts", flush=True)

    # DSLR and Stellar each get a database of their own with the same content.
    for name in ("bench_dslr", "bench_stellar"):
        query(url(), sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
            sql.Identifier(name), sql.Identifier(DB)))
    dslr_cmd = [str(dslr), "--url", url("bench_dslr")]
    sh([*dslr_cmd, "snapshot", "base"])
    st_dir = work / "stellar"
    st_dir.mkdir()
    (st_dir / "stellar.yaml").write_text(yaml.safe_dump({
        "project_name": "bench", "tracked_databases": ["bench_stellar"],
        "url": url("").rstrip("/") + "/", "stellar_url": url("stellar_data"),
        "logging": 30}))
    st_env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    sh([str(stellar), "snapshot", "base"], cwd=st_dir, env=st_env)

    def stellar_idle() -> bool:
        rows = query(url("stellar_data"), "SELECT worker_pid FROM snapshot "
                                          "WHERE snapshot_name = 'base'")
        return bool(rows) and rows[0][0] is None

    wait_for(stellar_idle, what="stellar's first background copy")

    times: dict[str, list[float]] = {"devenv warm refresh-db": [], "dslr restore": [],
                                     "stellar restore": []}
    background: dict[str, list[float]] = {"devenv ready re-clone": [],
                                          "stellar background copy": []}
    for r in range(args.reps):
        checkpoint()
        dt, text = sh([*devenv, "refresh-db"], cwd=root, env=env)
        assert "ready copy" in text, text
        times["devenv warm refresh-db"].append(dt)
        wait_for(ready_done, what="the ready copy")
        background["devenv ready re-clone"] = reclone_seconds()[1:]

        if args.compare_with:
            checkpoint()
            other = {**env, "PYTHONPATH": str(args.compare_with.resolve())}
            dt, text = sh([*devenv, "refresh-db"], cwd=root, env=other)
            assert "ready copy" in text, text
            times.setdefault(f"devenv warm ({args.compare_with.name})", []).append(dt)
            wait_for(ready_done, what="the ready copy")

        if args.what_if_deferred_drop:
            query(url(), sql.SQL("DROP DATABASE IF EXISTS {}").format(
                sql.Identifier(DB + "__prev")))
            checkpoint()
            dt, text = sh([*devenv, "refresh-db"], cwd=root, env=env)
            assert "ready copy" in text, text
            times.setdefault("what-if: prev dropped before", []).append(dt)
            wait_for(ready_done, what="the ready copy")

        checkpoint()
        dt, _ = sh([*dslr_cmd, "restore", "base"])
        times["dslr restore"].append(dt)

        checkpoint()
        dt, _ = sh([str(stellar), "restore", "base"], cwd=st_dir, env=st_env)
        times["stellar restore"].append(dt)
        background["stellar background copy"].append(
            wait_for(stellar_idle, what="stellar's background copy"))
        print(f"round {r + 1}/{args.reps}: " + ", ".join(
            f"{k} {v[-1]:.3f}s" for k, v in times.items()), flush=True)

    # every tool left the same data in place
    for name in (DB, "bench_dslr", "bench_stellar"):
        n = query(url(name), "SELECT count(*) FROM pgbench_accounts")[0][0]
        assert n == accounts, (name, n)

    nocache: list[float] = []
    for _ in range(args.nocache_reps):
        checkpoint()
        dt, text = sh([*devenv, "refresh-db", "--no-cache"], cwd=root, env=env)
        if os.environ.get("BENCH_VERBOSE"):
            print(text)
        nocache.append(dt)
        wait_for(ready_done, what="the ready copy")
    times["devenv refresh-db --no-cache"] = nocache

    summary = {k: stats(v) for k, v in times.items() if v}
    bg = {k: stats(v) for k, v in background.items() if v}
    med = {k: v["median"] for k, v in summary.items()}
    ours = med["devenv warm refresh-db"]
    ratios = {k: v / ours for k, v in med.items() if k != "devenv warm refresh-db"}
    whatif = med.get("what-if: prev dropped before")
    print()
    print(f"database: {size / 1e6:.0f} MB (pgbench scale {args.scale} + 3 small steps); "
          f"{args.reps} rounds; PostgreSQL {query(url(), 'SHOW server_version')[0][0]}")
    print(f"{'':32} {'min':>8} {'median':>8} {'max':>8}  median / devenv warm")
    for k, s in summary.items():
        ratio = "" if k == "devenv warm refresh-db" else f"{ratios[k]:.2f}x"
        print(f"{k:32} {s['min']:8.3f} {s['median']:8.3f} {s['max']:8.3f}  {ratio}")
    for k, s in bg.items():
        print(f"{k + ' (background)':32} {s['min']:8.3f} {s['median']:8.3f} {s['max']:8.3f}")
    goal_stellar = ratios["stellar restore"] >= 2
    goal_dslr = ratios["dslr restore"] >= 4
    print(f"goal: >=2x faster than stellar restore: {'met' if goal_stellar else 'MISSED'} "
          f"({ratios['stellar restore']:.1f}x); >=4x faster than dslr restore: "
          f"{'met' if goal_dslr else 'MISSED'} ({ratios['dslr restore']:.1f}x)")
    for k in med:
        if k.startswith("devenv warm (") and med[k]:
            print(f"{k}: stellar restore is {med['stellar restore'] / med[k]:.2f}x slower, "
                  f"dslr restore {med['dslr restore'] / med[k]:.2f}x")
    if whatif:
        print(f"what-if (backup drop deferred): stellar {med['stellar restore'] / whatif:.1f}x, "
              f"dslr {med['dslr restore'] / whatif:.1f}x slower than that warm refresh-db")
    return {"size_bytes": size, "scale": args.scale, "reps": args.reps, "cold": cold,
            "times": times, "summary": summary, "background": bg, "ratios": ratios}


if __name__ == "__main__":
    raise SystemExit(main())
