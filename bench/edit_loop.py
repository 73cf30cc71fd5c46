"""The edit loop on a graph with two parallel app chains and no `checkpoint:` keys.

    python bench/edit_loop.py [--edits 5] [--members 20000]

A copy of the example with every `checkpoint: true` removed (a Flask chain and a Django
chain side by side, the shape real two-app graphs have). After one cold build
(`refresh-db --no-cache`), a leaf fixture (crm's member_attributes.json, loaded by
django-fixtures) is edited and `devenv refresh-db` run, --edits times. For each edit:

  * the whole command's time;
  * the steps that really had to run (the edited step and what depends on it), and the time
    of those steps alone: `devenv run --only --force STEPS` (each in its own process,
    in dependency order): what a perfect cache could not avoid. The critical path of
    their recorded durations is printed too (it leaves out interpreter start-up, which a
    warm start hides).

Goals (issue 13): from the second edit on, >= 5x faster than the cold build, and within
1.3x of the time of the steps that had to run, run alone.
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

from devenv import graph, loader  # noqa: E402
from devenv.postgres import database, pgcluster  # noqa: E402
from devenv.state import StateStore  # noqa: E402

DB = "healthplan_dev"
FIXTURE = "examples/healthplan/django_api/crm/fixtures/member_attributes.json"
BILLING = "examples/healthplan/billing/sample_billing.json"


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stdout[-3000:]}")
    return elapsed, r.stdout


def ran_since(proj: Path, url: str, since: float) -> dict[str, float]:
    """step -> duration, for the steps recorded on the working database after ``since``."""
    target = database.parse_url(url)
    key = database.identity(target, DB)
    recs = StateStore(proj / ".devenv").steps(key) if key else {}
    out = {}
    for name, rec in recs.items():
        stamp = time.mktime(time.strptime(str(rec.get("finished_at", ""))[:19],
                                          "%Y-%m-%dT%H:%M:%S"))
        if stamp >= int(since) and "duration" in rec:
            out[name] = float(rec["duration"])
    return out


def critical_path(proj: Path, durations: dict[str, float]) -> float:
    project = loader.load(proj / "steps.yaml")
    finish: dict[str, float] = {}
    for name in graph.topo_order(project):
        if name not in durations:
            continue
        before = [finish[u] for u in graph.upstream(project, name) if u in finish]
        finish[name] = max(before, default=0.0) + durations[name]
    return max(finish.values(), default=0.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--edits", type=int, default=5)
    ap.add_argument("--members", type=int, default=20000, help="FAKE_MEMBERS")
    ap.add_argument("--leaf", choices=["crm", "billing"], default="crm",
                    help="crm: member_attributes.json (django-fixtures, which two steps "
                         "need); billing: sample_billing.json (the billing step, a leaf)")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="devenv-bench-edit-"))
    os.chmod(base, 0o755)
    proj = base / "project"
    ignore = shutil.ignore_patterns("__pycache__", ".devenv")
    for part in ("examples", "services"):
        shutil.copytree(ROOT / part, proj / part, ignore=ignore)
    # a name of its own: the example's services must not take the developer's containers
    text = (ROOT / "steps.yaml").read_text().replace("name: healthplan\n",
                                                      "name: hpbench-edit\n", 1)
    (proj / "steps.yaml").write_text("\n".join(
        line for line in text.splitlines() if line.strip() != "checkpoint: true") + "\n")
    cluster = pgcluster.Cluster(base / "data", pgcluster.free_port())
    cluster.start("-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    try:
        url = cluster.url(DB)
        env = {**os.environ, "DATABASE_URL": url, "FAKE_MEMBERS": str(args.members),
               "PGPASSWORD": cluster.password}
        env.pop("PGOPTIONS", None)
        devenv = [str(Path(sys.executable).parent / "devenv"), "--plain"]
        cold, _ = timed([*devenv, "refresh-db", "--no-cache"], env, proj)
        fixture = proj / (FIXTURE if args.leaf == "crm" else BILLING)
        original = fixture.read_text()
        rows = []
        for i in range(1, args.edits + 1):
            # an edit that keeps the file valid: a trailing space per edit (JSON ignores it)
            fixture.write_text(original + " " * i)
            since = time.time()
            took, _ = timed([*devenv, "refresh-db"], env, proj)
            durations = ran_since(proj, url, since)
            # The same steps alone, as `devenv run --only --force` runs them on the working
            # database (their own processes, in dependency order, in parallel where they
            # can): what a perfect cache could not avoid.
            alone, _ = timed([*devenv, "run", "--only", "--force", *sorted(durations)], env,
                             proj)
            rows.append({"edit": i, "seconds": round(took, 3), "ran": sorted(durations),
                         "steps_alone_s": round(alone, 3),
                         "critical_path_s": round(critical_path(proj, durations), 3)})
        later = rows[1:] or rows
        med = statistics.median(r["seconds"] for r in later)
        med_cp = statistics.median(r["steps_alone_s"] for r in later)
        result = {"cpus": os.cpu_count(), "fake_members": args.members, "cold_s": round(cold, 3),
                  "edits": rows, "median_from_second_edit_s": round(med, 3),
                  "speedup_vs_cold": round(cold / med, 2),
                  "over_steps_alone": round(med / med_cp, 2) if med_cp else None}
        print(json.dumps(result, indent=2))
        print(f"\ncold build (refresh-db --no-cache)      {cold:6.2f} s")
        for r in rows:
            print(f"edit {r['edit']}: refresh-db                   {r['seconds']:6.2f} s   ran "
                  f"{', '.join(r['ran'])}; the same steps alone {r['steps_alone_s']:.2f} s "
                  f"(their own durations' critical path {r['critical_path_s']:.2f} s)")
        print(f"from the 2nd edit on: {cold / med:.2f}x faster than cold (goal >= 5x); "
              f"{med / med_cp:.2f}x the time of those steps alone (goal <= 1.3x)"
              if med_cp else "no step ran")
    finally:
        subprocess.run([sys.executable, "-m", "devenv", "down", "--volumes", "--yes"],
                       cwd=proj, capture_output=True, timeout=120,
                       env={**os.environ, "DATABASE_URL": cluster.url(DB)})
        cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
