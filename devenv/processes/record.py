"""The record of running processes, ``.devenv/processes.json``: what a later ``up``
keeps, ``devenv status`` shows (:func:`status`) and ``devenv down`` stops (:func:`stop_all`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devenv import jsonfile, proc
from devenv.envvars import mask
from devenv.processes import identity
from devenv.processes.ready import parse_ready, probe
from devenv.schema import Project

RECORD = "processes.json"


def record_path(project: Project) -> Path:
    return project.state_dir / RECORD


@contextlib.contextmanager
def records(project: Project) -> Iterator[dict[str, dict[str, Any]]]:
    """The records of ``.devenv/processes.json`` under a lock, written back (0600) after;
    the file is removed when no process is left."""
    # not sorted: records stay in start order, which messages list them in
    with jsonfile.update(record_path(project), indent=1, sort_keys=False,
                         keep=lambda doc: bool(doc["processes"])) as doc:
        data = _valid(doc)
        yield data
        doc.clear()
        doc.update({"version": 1, "processes": data})


def read_records(project: Project) -> dict[str, dict[str, Any]]:
    """What ``.devenv/processes.json`` says is running: name -> record."""
    return _valid(jsonfile.read(record_path(project)))


def _valid(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    procs = doc.get("processes")
    if not isinstance(procs, dict):
        return {}
    return {k: v for k, v in procs.items()
            if isinstance(v, dict) and isinstance(v.get("pid"), int)}


@dataclass(frozen=True)
class ProcessStatus:
    """What ``devenv status`` shows for a process."""

    name: str
    pid: int | None
    alive: bool
    since: float | None  # when it started (seconds since the epoch)
    ready: bool | None  # None: not running, or no way to tell now
    detached: bool = False
    command: str = ""
    log: str | None = None  # relative to the project root


def status(project: Project) -> list[ProcessStatus]:
    """Every declared process (and any recorded one no longer declared), running or not.

    For a live process with an HTTP or TCP ready check, ``ready`` is checked now; with a
    ``cmd:`` check it says whether the check passed when the process started.
    """
    recs = read_records(project)
    out = []
    for name in [*project.processes, *(n for n in recs if n not in project.processes)]:
        rec = recs.get(name)
        if rec is None:
            spec = project.processes[name]
            out.append(ProcessStatus(name, None, False, None, None,
                                     command=mask(proc.format_command(spec.run))))
            continue
        alive = identity.alive(rec)
        ready: bool | None = None
        if alive:
            ready = bool(rec.get("ready_at"))
            check = rec.get("ready")
            codes = rec.get("ready_status")
            codes = [c for c in codes if isinstance(c, int)] if isinstance(codes, list) else []
            if isinstance(check, str) and check:
                with contextlib.suppress(ValueError):
                    ready = probe(parse_ready(check, codes), timeout=1.0)[0]
        out.append(ProcessStatus(name, int(rec["pid"]), alive, rec.get("started_at"), ready,
                                 bool(rec.get("detached")), str(rec.get("command", "")),
                                 rec.get("log")))
    return out


def stop_all(project: Project, grace: float = identity.GRACE) -> list[str]:
    """Stop the processes ``up`` recorded (detached ones, and any left behind by an ``up``
    that was killed); returns the names of those that were running. Clears the record."""
    with records(project) as recs:
        results: dict[str, bool] = {}

        def stop(name: str, rec: Mapping[str, Any]) -> None:
            results[name] = identity.stop(rec, grace)

        threads = [threading.Thread(target=stop, args=(n, r)) for n, r in recs.items()
                   if isinstance(r.get("start_id"), str)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stopped = [n for n in recs if results.get(n)]
        recs.clear()
    return stopped

