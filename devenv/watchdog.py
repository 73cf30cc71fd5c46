"""No step outlives the devenv run that started it, even a devenv killed with SIGKILL.

Every step process carries a run tag in its environment (``DEVENV_RUN``), which it and
everything it starts inherit through ``fork``, ``setsid``, double forks and daemonising:
the tag finds them where a process group does not. The runner stops the tagged processes
of a step that timed out (a ``setsid`` child escapes its process group) and of the whole
run when the run ends, however it ends.

A devenv killed by SIGKILL (or SIGHUP, a closed terminal, an OOM kill) cleans up nothing,
so each run also starts ``python -m devenv.watchdog RUN`` in its own session, reading a
pipe only devenv writes to. When devenv dies, for whatever reason, the kernel closes the
pipe; the watchdog reads end-of-file and kills every process tagged with the run until
none is left. It imports only devenv's small process modules (psutil only once it has
processes to find), so it starts in a few tens of milliseconds.

``DEVENV_RUN`` is a ``:``-separated list: a step that runs devenv itself adds the inner
run's tags to the outer ones, so stopping the outer run stops the inner steps too. A step
gets ``RUN-N`` (N counts the steps of the run), so a step's own processes can be told apart.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys
import time
from collections.abc import Mapping

from devenv import pids

ENV = "DEVENV_RUN"


def new_run_id() -> str:
    """A short random id; also part of the build database's name (``db__b_<id>``)."""
    return secrets.token_hex(6)


def tag_env(env: Mapping[str, str], tag: str) -> dict[str, str]:
    """``env`` with ``tag`` appended to ``DEVENV_RUN`` (kept: an outer run's tags)."""
    out = dict(env)
    prior = out.get(ENV, "")
    out[ENV] = f"{prior}:{tag}" if prior else tag
    return out


def tagged(run: str, step: str | None = None) -> list[int]:
    """The pids of live processes tagged with run ``run`` (or with one step of it:
    ``step`` is its full tag ``RUN-N``). Zombies do not count: they run nothing."""
    out = []
    for pid, value in pids.with_env(ENV):
        tags = value.split(":")
        if step in tags if step is not None else any(
                t == run or t.startswith(run + "-") for t in tags):
            out.append(pid)
    return out


def kill_tagged(run: str, step: str | None = None, grace: float = 1.0,
                limit: float = 30.0) -> int:
    """SIGTERM the processes tagged with ``run`` (or one ``step`` of it), SIGKILL what is
    left after ``grace`` seconds, and repeat until none is left (one may fork while we
    look) or ``limit`` seconds have passed. Returns how many processes it signalled."""
    seen: set[int] = set()
    deadline_term = time.monotonic() + grace

    deadline = time.monotonic() + limit
    # a plain loop, not devenv.waiting: the watchdog starts with every run, and that
    # module's imports (socket, dataclasses) would add tens of milliseconds to each
    while True:
        found = tagged(run, step)
        sig = signal.SIGTERM if time.monotonic() < deadline_term else signal.SIGKILL
        for pid in found:
            if sig is signal.SIGKILL or pid not in seen:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            seen.add(pid)
        if not found or time.monotonic() >= deadline:
            return len(seen)
        time.sleep(0.05)


def main(argv: list[str]) -> int:
    """``python -m devenv.watchdog RUN``: wait for end-of-file on stdin, then stop the run."""
    run = argv[0]
    # A terminal closing (SIGHUP) or a Ctrl-C meant for devenv must not stop the watchdog
    # before it has done its work (it runs in its own session, but be sure).
    for sig in (signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    while True:
        try:
            if not os.read(0, 4096):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    kill_tagged(run, grace=0.5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
