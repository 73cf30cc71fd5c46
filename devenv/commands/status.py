"""``devenv status [--json]``: services, the database and processes, and what ``up`` would do.

Nothing is started or changed. Passwords never appear: database URLs are redacted.
"""

from __future__ import annotations

import time
from typing import Any

from devenv import fingerprint, planner, processes
from devenv.commands.down import leftover_note, other_backends
from devenv.console import Output
from devenv.errors import EXIT_OK, ServiceError
from devenv.events import Action
from devenv.postgres import database
from devenv.schema import Project, ServiceSpec
from devenv.services import ServiceState
from devenv.session import Session
from devenv.state import NO_DATABASE, StateStore


def uptime(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h07m``, ``3d04h``."""
    if seconds is None:
        return ""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _service(session: Session, service: ServiceSpec) -> dict[str, Any]:
    project = session.project
    try:
        backend, why = session.backend(service.name)
    except ServiceError as exc:
        return {"name": service.name, "backend": None, "why": str(exc),
                "state": "unavailable", "health": "", "address": None, "started_at": None,
                "uptime": None, "config_matches": None, "detail": ""}
    try:
        st = backend.status(project, service)
    except ServiceError as exc:
        st = ServiceState(service.name, backend.name, "error", detail=str(exc))

    leftovers = [] if backend.name == "external" else [
        {"backend": b.name, "items": held, "note": leftover_note(b, service)}
        for b, held in other_backends(project, service, {backend.name})]
    return {"name": service.name, "backend": st.backend, "why": why, "state": st.state,
            "health": st.health, "address": st.address, "started_at": st.started_at,
            "uptime": time.time() - st.started_at if st.started_at else None,
            "config_matches": st.config_matches, "detail": st.detail, **(
                {"extra": dict(st.extra)} if st.extra else {}),
            **({"leftovers": leftovers} if leftovers else {})}


def _database(session: Session) -> dict[str, Any]:
    project, profile = session.project, session.profile
    db = project.database
    target, note = session.current_target()
    key: str | None = NO_DATABASE if db is None else None
    exists: bool | None = None
    refusing = False
    if target is not None:
        try:
            key = database.identity(target, target.dbname)
            exists = key is not None
            if key is None:
                note = f"database {target.dbname} does not exist yet"
            else:
                refusing = _refuses_connections(target)
        except database.DatabaseError as exc:
            note = str(exc)
    recorded = StateStore(project.state_dir).steps(key) if key else {}
    decisions = planner.decide(project, recorded, profile=profile,
                               fingerprints=fingerprint.compute(project))
    runs = [d for d in decisions if d.action is Action.RUN]
    return {
        "name": db.name if db else None,
        "url": target.redacted() if target is not None else None,
        "exists": exists,
        # left so by a snapshot save or swap killed midway; up, refresh-db and the
        # snapshot commands open it again (status changes nothing)
        "refuses_connections": refusing,
        "note": note,
        "profile": profile,
        "steps_total": len(decisions),
        "steps_to_run": len(runs),
        # without the database (not running) the records cannot be matched to it
        "steps_known": key is not None or exists is False,
        "up_to_date": key is not None and not runs,
        "steps": [{"name": d.step, "action": d.action.value, "reason": d.reason}
                  for d in decisions],
    }


def _refuses_connections(target: database.Target) -> bool:
    with database.connect(target, "postgres", timeout=3) as conn:
        row = conn.execute("SELECT datallowconn FROM pg_database WHERE datname = %s",
                           (target.dbname,)).fetchone()
    return row is not None and not row[0]


def _processes(project: Project) -> list[dict[str, Any]]:
    now = time.time()
    return [{"name": p.name, "state": "running" if p.alive else "stopped",
             "pid": p.pid if p.alive else None, "ready": p.ready if p.alive else None,
             "started_at": p.since if p.alive else None,
             "uptime": now - p.since if p.alive and p.since else None,
             "detached": p.detached, "log": p.log}
            for p in processes.status(project)]


def collect(session: Session) -> dict[str, Any]:
    """Everything ``status`` shows, as plain data (what ``--json`` prints)."""
    project, profile = session.project, session.profile
    planner.check_profile(project, profile)
    services = [_service(session, s) for s in project.services.values()]
    db = _database(session)
    procs = _processes(project)
    would: list[str] = []
    for s in services:
        if s["backend"] == "external":
            continue
        if s["state"] != "running":
            would.append(f"start service {s['name']}")
        elif s["config_matches"] is False:
            would.append(f"recreate service {s['name']} (its definition changed)")
    if project.database is not None and db["refuses_connections"]:
        would.append(f"let {db['name']} accept connections again")
    if project.database is not None and not db["steps_known"]:
        would.append("run the steps that changed (which: known once the database answers)")
    elif db["steps_to_run"]:
        would.append(f"run {db['steps_to_run']} of {db['steps_total']} steps")
    wanted = set(processes.selected(project, profile))
    stopped = [p["name"] for p in procs if p["name"] in wanted and p["state"] != "running"]
    if stopped:
        would.append(f"start {len(stopped)} process{'es' if len(stopped) > 1 else ''} "
                     f"({', '.join(stopped)})")
    return {"project": project.name, "root": str(project.root), "services": services,
            "database": db if project.database else None, "processes": procs,
            "up_would": would}


def run(session: Session, out: Output, *, as_json: bool = False) -> int:
    data = collect(session)
    if as_json:
        out.json(data)
        return EXIT_OK
    if data["services"]:
        rows = [[s["name"], s["backend"] or "-", s["state"], s["health"] or "-",
                 s["address"] or "-", uptime(s["uptime"]) or "-",
                 {True: "current", False: "changed", None: "-"}[s["config_matches"]]]
                for s in data["services"]]
        styles = ["green" if s["state"] == "running" and s["health"] in ("healthy", "")
                  else "yellow" for s in data["services"]]
        out.table(["service", "backend", "state", "health", "address", "uptime", "config"],
                  rows, styles)
        for s in data["services"]:
            why = f"{s['backend']}: {s['why']}" if s["backend"] else s["why"]
            detail = f"; {s['detail']}" if s["detail"] else ""
            out.text(f"  {s['name']}: {why}{detail}")
            for left in s.get("leftovers", []):
                out.text(f"  {s['name']}: {left['note']}: {', '.join(left['items'])}; "
                         f"`devenv down --volumes` removes them (and the {s['backend']} "
                         "data)")
    else:
        out.text("no services")
    db = data["database"]
    if db is not None:
        where = f" on {db['url']}" if db["url"] else ""
        if db["exists"] and db["refuses_connections"]:
            head = (f"database {db['name']}{where}: exists but REFUSES CONNECTIONS (a "
                    "snapshot save or refresh-db swap was interrupted); devenv up, refresh-db "
                    "or doctor --fix opens it again")
        elif db["exists"]:
            head = f"database {db['name']}{where}: exists"
        else:
            head = f"database {db['name']}{where}: {db['note']}"
        out.text("")
        out.text(head)
        runs = [s for s in db["steps"] if s["action"] == "run"]
        if not db["steps_known"]:
            out.text("  steps: which would run is known once the database answers")
        elif db["up_to_date"]:
            out.text(f"  steps: all {db['steps_total']} up to date (profile {db['profile']})")
        else:
            out.text(f"  steps: {len(runs)} of {db['steps_total']} would run "
                     f"(profile {db['profile']})")
            for s in runs[:10]:
                out.text(f"    {s['name']}: {s['reason']}")
            if len(runs) > 10:
                out.text(f"    ... and {len(runs) - 10} more (devenv plan shows all)")
    if data["processes"]:
        out.text("")
        rows = [[p["name"], p["state"], str(p["pid"] or "-"),
                 {True: "yes", False: "no", None: "-"}[p["ready"]], uptime(p["uptime"]) or "-"]
                for p in data["processes"]]
        out.table(["process", "state", "pid", "ready", "uptime"], rows)
    out.text("")
    if data["up_would"]:
        out.text("devenv up would: " + "; ".join(data["up_would"]))
    else:
        out.text("devenv up would do nothing: everything is up and up to date")
    return EXIT_OK
