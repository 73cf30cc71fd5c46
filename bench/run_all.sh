#!/usr/bin/env bash
# Runs every benchmark, one after another (they must not share the 2 cores), and keeps
# each one's output in bench/results/. BENCHMARKS.md quotes these files.
#   bench/run_all.sh            # ~15 minutes on the 2-core CI machine
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/results
mkdir -p "$out"
# Like any installed package, devenv runs from compiled bytecode (Stellar and DSLR, pip-
# installed into their venvs, have theirs). A shell with PYTHONDONTWRITEBYTECODE set would
# recompile devenv's modules on every run, about 30 ms each time.
unset PYTHONDONTWRITEBYTECODE
python3 -m compileall -q devenv
run() { name=$1; shift; echo "== $name: $*"; "$@" 2>&1 | tee "$out/$name.txt"; }
run runner_overhead python3 bench/runner_overhead.py --repeat 5
run services_up     python3 bench/services_up.py --repeat 5
run cold_build      python3 bench/cold_build.py --repeat 3
run cold_build_no_checkpoints python3 bench/cold_build.py --repeat 3 --without-checkpoints
run ci_setup        python3 bench/ci_setup.py --repeat 3
run refresh_db      python3 bench/refresh_db.py --scale 20 --reps 5 --nocache-reps 1
run fake_data       python3 bench/fake_data.py --repeat 3
run doctor          python3 bench/doctor.py --repeat 5
run remote_cache    python3 bench/remote_cache.py --repeat 5
run remote_cache_300mb python3 bench/remote_cache.py --repeat 3 --scale 20
run branch_switch   python3 bench/branch_switch.py --repeat 5
run edit_loop       python3 bench/edit_loop.py --edits 5
run many_services   python3 bench/many_services.py --repeat 3
