"""Where an untrusted restore's time goes, phase by phase, beside a bare `pg_restore -j`.

    python bench/restore_phases.py [--scale 1] [--repeat 5] [--jobs 2]

A local cluster (devenv.postgres.pgcluster), a database of pgbench data (`pgbench -i -s
SCALE`), its custom-format dump; then, alternately, `dumpfiles.restore_untrusted` of that
file (what `snapshot pull`, a remote-cache hit and `snapshot import` do: the import role,
the database created owned by it, `pg_restore -j`, the defusing pass) with each phase
timed, and a bare `createdb` + `pg_restore -j` of the same file as the server's superuser.
Each after a CHECKPOINT. Medians. Last, what making files costs on this file system, and
how many template0 (which every CREATE DATABASE copies) holds.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devenv.postgres import database, dumpfiles, pgcluster


def files_made(base: Path, repeat: int) -> list[float]:
    """Seconds to make 300 files of 24 KB (template0's count) in a new folder of ``base``,
    ``repeat`` times: what CREATE DATABASE costs on that file system."""
    made: list[float] = []
    for i in range(repeat):
        d = base / f"files{i}"
        d.mkdir()
        t0 = time.perf_counter()
        for j in range(300):
            (d / str(j)).write_bytes(b"x" * 24576)
        made.append(time.perf_counter() - t0)
        shutil.rmtree(d)
    return made


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="devenv-bench-phases-"))
    os.chmod(base, 0o755)
    cluster = pgcluster.Cluster(base / "data", pgcluster.free_port())
    cluster.start("-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    try:
        target = database.parse_url(cluster.url("src"))
        bindir = pgcluster.find_bindir()
        assert bindir is not None
        env = {**os.environ, **target.env()}
        database.create(target, "src", [])
        subprocess.run([str(bindir / "pgbench"), "-i", "-q", "-s", str(args.scale), "src"],
                       env=env, check=True, capture_output=True)
        dump = base / "src.dump"
        subprocess.run([str(bindir / "pg_dump"), "-Fc", "-f", str(dump), "src"], env=env,
                       check=True)
        tool = dumpfiles.choose_tool("pg_restore", target, "postgres", 15, None)
        phases: dict[str, list[float]] = {}

        def timed(name: str) -> None:
            inner: Callable[..., Any] = getattr(dumpfiles, name)

            def wrapper(*a: Any, **k: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return inner(*a, **k)
                finally:
                    phases.setdefault(name, []).append(time.perf_counter() - t0)
            setattr(dumpfiles, name, wrapper)

        for name in ("_privileged", "_prepare_import_role", "_open_import_role", "restore",
                     "_defuse", "_close_import_role"):
            timed(name)
        total: list[float] = []
        bare: list[float] = []
        create: list[float] = []
        for i in range(args.repeat):
            with database.connect(target, "postgres") as conn:
                conn.execute("CHECKPOINT")
            t0 = time.perf_counter()
            dumpfiles.restore_untrusted(target, f"u{i}", tool, dump, jobs=args.jobs)
            total.append(time.perf_counter() - t0)
            with database.connect(target, "postgres") as conn:
                conn.execute("CHECKPOINT")
                t0 = time.perf_counter()
                conn.execute(f"CREATE DATABASE b{i} TEMPLATE template0")
                create.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run([str(bindir / "pg_restore"), "-j", str(args.jobs), "-d", f"b{i}",
                            str(dump)], env=env, check=True)
            bare.append(time.perf_counter() - t0)

        def ms(v: list[float]) -> str:
            return f"{statistics.median(v) * 1000:7.1f} ms"

        print(f"dump {dump.stat().st_size / 1e6:.1f} MB (pgbench scale {args.scale}), "
              f"-j {args.jobs}, median of {args.repeat}, load {os.getloadavg()[0]:.1f}")
        print(f"restore_untrusted, in all          {ms(total)}")
        for name, v in phases.items():
            print(f"  {name:32s} {ms(v)}")
        accounted = sum(statistics.median(v) for v in phases.values())
        print(f"  creating the database (the rest)  "
              f"{(statistics.median(total) - accounted) * 1000:7.1f} ms")
        print(f"bare pg_restore -j {args.jobs}                 {ms(bare)}  "
              f"(its CREATE DATABASE {ms(create).strip()})")
        # What CREATE DATABASE costs here comes from the file system: it copies
        # template0, a file per relation.
        with database.connect(target, "postgres") as conn:
            oid = conn.execute("SELECT oid FROM pg_database WHERE datname = 'template0'"
                               ).fetchone()
        assert oid is not None
        files = list((base / "data" / "base" / str(oid[0])).iterdir())
        made = files_made(base, args.repeat)
        print(f"this file system: 300 files of 24 KB made in {ms(made).strip()}; "
              f"template0 is {len(files)} files "
              f"({sum(f.stat().st_size for f in files) / 1e6:.1f} MB)")
    finally:
        cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
