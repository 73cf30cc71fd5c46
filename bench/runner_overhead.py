"""The runner's own cost per step, and `devenv --help` start-up time.

    python bench/runner_overhead.py [--steps 200] [--repeat 5]

Side by side in one run:
  * bare: the same 200 no-op commands spawned one after another with subprocess (output to
    a file, as devenv does) - the floor any runner pays;
  * devenv: `building.build` on a graph of 200 no-op steps, one job (so the two do the
    same sequential work), fingerprints, logs and state included;
  * devenv CLI: the whole `devenv run` process, start-up included;
  * `devenv --help` wall time against `python -c pass` (the interpreter's own start-up).
Reports medians; overhead per step = (devenv - bare) / steps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devenv import building, loader
from devenv.events import RecordingReporter
from devenv.session import Session


def make_project(root: Path, n: int) -> None:
    steps = {}
    for i in range(n):
        # a few layers of dependencies, like a real graph
        needs = [f"s{i - 1}"] if i % 10 else []
        steps[f"s{i}"] = {"run": ["true"], "needs": needs}
    (root / "steps.yaml").write_text(yaml.safe_dump({"version": 1, "name": "bench",
                                                     "steps": steps}))


def bare(n: int, logdir: Path) -> float:
    logdir.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    for i in range(n):
        with open(logdir / f"{i}.log", "wb") as fh:
            subprocess.Popen(["true"], stdout=fh, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True).wait()
    return time.perf_counter() - t0


def devenv_inprocess(root: Path) -> float:
    project = loader.load(root / "steps.yaml")
    t0 = time.perf_counter()
    result = building.build(Session(project, RecordingReporter()), None, force=True, jobs=1)
    elapsed = time.perf_counter() - t0
    assert result.result.ok
    return elapsed


def wall(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--compare-with", type=Path, metavar="DIR",
                    help="also time `--help` of the devenv tree in DIR (e.g. a git worktree "
                         "of an older commit), interleaved with this one's")
    args = ap.parse_args()
    n = args.steps
    devenv_bin = str(Path(sys.executable).parent / "devenv")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_project(root, n)
        rows: dict[str, list[float]] = {"bare": [], "devenv": [], "cli": [], "help": [],
                                        "python": [], "other": []}
        for _ in range(args.repeat):
            rows["bare"].append(bare(n, root / "barelogs"))
            rows["devenv"].append(devenv_inprocess(root))
            rows["cli"].append(wall([devenv_bin, "--plain", "run", "--force", "-j", "1"], root))
        for _ in range(max(10, args.repeat * 3)):
            rows["help"].append(wall([devenv_bin, "--help"], root))
            rows["python"].append(wall([sys.executable, "-c", "pass"], root))
            if args.compare_with:
                rows["other"].append(wall([sys.executable, "-m", "devenv", "--help"], root,
                                          {"PYTHONPATH": str(args.compare_with.resolve())}))
    med = {k: statistics.median(v) for k, v in rows.items() if v}
    per_step = (med["devenv"] - med["bare"]) / n * 1000
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    print(f"{n} no-op steps, sequential (1 job), median of {args.repeat}:")
    print(f"  bare subprocess loop      {med['bare'] * 1000:8.1f} ms  ({med['bare'] / n * 1000:.2f} ms/step)")
    print(f"  devenv runner (in-proc)   {med['devenv'] * 1000:8.1f} ms  ({med['devenv'] / n * 1000:.2f} ms/step)")
    print(f"  devenv run (whole CLI)    {med['cli'] * 1000:8.1f} ms")
    print(f"  runner overhead per step  {per_step:8.2f} ms  (goal < 5 ms)")
    print(f"  ratio devenv/bare         {med['devenv'] / med['bare']:8.2f}x")
    print("start-up, median:")
    print(f"  devenv --help             {med['help'] * 1000:8.1f} ms  (goal < 150 ms)")
    print(f"  python -c pass            {med['python'] * 1000:8.1f} ms")
    if "other" in med:
        print(f"  --help of {args.compare_with}  {med['other'] * 1000:8.1f} ms")
    print(f"  ratio                     {med['help'] / med['python']:8.2f}x")


if __name__ == "__main__":
    main()
