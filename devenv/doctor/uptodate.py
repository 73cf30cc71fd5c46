"""Up to date: which steps `up` would run and why; Alembic at its head; Django's migrations
all applied (and tables that exist without their migration recorded: the ``--fake`` case)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from devenv import graph
from devenv.doctor.apps import App, Introspection
from devenv.doctor.base import (
    FAIL,
    OK,
    WARN,
    Check,
    CheckDef,
    NotChecked,
    Problems,
    Remedy,
    fail,
    ok,
    warn,
)
from devenv.doctor.context import Context
from devenv.events import Action

BAD_REASONS = ("never run on this database", "its last run failed")


def _own(reason: str) -> str:
    """A decision's reason without its ``upstream changed: ...`` part."""
    parts = [p for p in reason.split("; ") if not p.startswith("upstream changed")]
    return "; ".join(parts)


def _summary(items: Sequence[tuple[str, str]], limit: int = 4) -> str:
    """``a, b (reason); c (other reason); and 5 after them``: the steps that changed
    themselves, grouped by why, then how many run only because something before them did."""
    groups: dict[str, list[str]] = {}
    follow = 0
    for name, reason in items:
        own = _own(reason)
        if own:
            groups.setdefault(own, []).append(name)
        else:
            follow += 1
    parts = []
    for reason, names in groups.items():
        shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more"
                                             if len(names) > limit else "")
        parts.append(f"{shown} ({reason})")
    text = "; ".join(parts)
    if follow:
        text += f"; and {follow} step{'s' if follow > 1 else ''} after them"
    return text


def check_steps(ctx: Context) -> Check:
    """The recorded fingerprints against the current ones: what `up` would run, and why."""
    project = ctx.project()
    decisions = ctx.decisions()
    if decisions is None:
        raise NotChecked("the database does not answer", "db.connect")
    active = [d for d in decisions if not d.reason.startswith("not in profile")]
    run = [d for d in active if d.action is Action.RUN]
    where = ""
    if project.database is not None:
        target = ctx.target().target
        where = f" on {target.dbname}" if target else ""
        if not ctx.server().exists:
            where += " (it does not exist yet)"
    if not run:
        return ok("steps.fingerprints", f"all {len(active)} steps of profile {ctx.profile} are "
                                        f"up to date{where}")
    status = FAIL if any(d.reason in BAD_REASONS for d in run) else WARN
    text = _summary([(d.step, d.reason) for d in run])
    finding = f"{len(run)} of {len(active)} steps would run{where}: {text}"
    details = [f"{d.step}: {d.reason}" for d in run]
    fix = "devenv up (runs them)"
    if status == FAIL:
        return fail("steps.fingerprints", finding, fix, details, [Remedy("up")])
    return warn("steps.fingerprints", finding, fix, details, [Remedy("up")])


def migrate_fix(ctx: Context, app: App, manual: str) -> tuple[str, list[Remedy]]:
    """How to bring ``app``'s migrations up: `up` when its migrating step would run anyway,
    else that step forced; ``manual`` (in the app's folder) when no step migrates it."""
    if not app.migrate_steps:
        return app.in_cwd(manual), []
    project = ctx.project()
    steps = [s for s in graph.topo_order(project, app.migrate_steps)
             if project.steps[s].in_profile(ctx.profile)]
    if not steps:
        return app.in_cwd(manual), []
    would = ctx.would_run()
    pending = [s for s in steps if s in would]
    if pending:
        return f"devenv up (runs {', '.join(pending)})", [Remedy("up")]
    last = steps[-1]
    return f"devenv run --force {last}", [Remedy("run-steps", (last,))]


def _why_no_database(ctx: Context) -> tuple[str, str] | None:
    """Why an app's migrations could not be read from the database: (reason, the check
    that says more), or ``None`` when the database is there."""
    if ctx.project().database is None:
        return None
    info = ctx.target()
    if info.target is None:
        return info.note, "services.running"
    server = ctx.server()
    if server.error:
        return "the server does not answer", "db.connect"
    if not server.exists:
        return "the database does not exist", "db.exists"
    return None


def _broken(app: App, result: Introspection) -> tuple[str, str]:
    return (f"{app.label}: {result.error}",
            f"fix the app so that it starts (doctor ran {app.python} in {app.rel_cwd})")


def check_alembic(ctx: Context) -> Check:
    """Each Alembic history: one head, and the database at it."""
    apps = [a for a in ctx.apps() if a.kind in ("flask", "alembic")]
    if not apps:
        return ok("alembic.revision", "no Alembic migrations in the steps")
    results = ctx.introspection()
    problems = Problems("alembic.revision")
    for app in apps:
        result = results[app.key]
        if not result.ok:
            finding, fix = _broken(app, result)
            problems.add(FAIL, finding, fix)
            continue
        state = result.data.get("alembic")
        if not state and app.kind == "flask" and result.data.get("models"):
            # Not Flask-SQLAlchemy (plain SQLAlchemy, another wrapper): its history, if
            # any, is a plain Alembic one, checked through its alembic step.
            if not any(a.kind == "alembic" and a.cwd == app.cwd for a in apps):
                problems.add(OK, f"{app.label}: no Flask-Migrate history ("
                                 f"{result.data['models']})", "")
            continue
        if not state:
            problems.add(OK, f"{app.label}: no migrations folder", "")
            continue
        if "heads" not in state:
            problems.add(FAIL, f"{app.label}: cannot read its migrations: {state.get('error')}",
                         f"fix {state.get('directory')} so that alembic can read it")
            continue
        heads: list[str] = state["heads"]
        versions = state.get("versions", state.get("directory"))
        if len(heads) > 1:
            if app.kind == "flask":
                merge = ["flask", "--app", str(app.options["app"]), "db", "merge", "-m",
                         "merge heads", *heads]
            else:
                merge = ["alembic", "-c", str(app.options["config"]), "merge", "-m",
                         "merge heads", *heads]
            problems.add(FAIL, f"{versions} has {len(heads)} heads ({', '.join(heads)}): "
                               "'upgrade head' is ambiguous",
                         app.in_cwd(shlex.join(merge)))
            continue
        head = heads[0] if heads else "none"
        current = state.get("current")
        if current is None:
            why = _why_no_database(ctx) or (
                str(state.get("error") or result.data.get("database")), "db.connect")
            problems.add(WARN, f"{app.label}: head {head}; the database was not checked: "
                               f"{why[0]}", f"fix {why[1]} first")
            continue
        if state.get("unknown"):
            problems.add(FAIL, f"{app.label}: the database is at revision "
                               f"{', '.join(state['unknown'])}, which is not in {versions} "
                               "(applied from another branch?)",
                         "devenv refresh-db (rebuilds the database from these migrations)")
            continue
        pending = state.get("pending") or []
        if pending:
            at = ", ".join(current) or "no revision"
            files = ", ".join(p["revision"] for p in pending[:3]) + (
                f" and {len(pending) - 3} more" if len(pending) > 3 else "")
            manual = (f"flask --app {app.options['app']} db upgrade" if app.kind == "flask"
                      else f"alembic -c {app.options['config']} upgrade head")
            fix, remedies = migrate_fix(ctx, app, manual)
            plural = "s" if len(pending) > 1 else ""
            problems.add(FAIL, f"{app.label}: the database is at {at}, the head is {head}: "
                               f"{len(pending)} migration{plural} to apply ({files})",
                         fix, *remedies)
            continue
        problems.add(OK, f"{app.label}: at head {head}", "")
    return problems.result("; ".join(f for _, f, _ in problems.items))


def _manage(app: App, args: str) -> str:
    manage = app.options.get("manage")
    if manage:
        return f"python {manage} {args}"
    return f"django-admin {args} --settings {app.options.get('settings')}"


def check_django(ctx: Context) -> Check:
    """Each Django project: no unapplied migration, no table without its migration recorded."""
    apps = [a for a in ctx.apps() if a.kind == "django"]
    if not apps:
        return ok("django.migrations", "no Django project in the steps")
    project = ctx.project()
    results = ctx.introspection()
    problems = Problems("django.migrations")
    for app in apps:
        result = results[app.key]
        if not result.ok:
            finding, fix = _broken(app, result)
            problems.add(FAIL, finding, fix)
            continue
        label = f"Django {result.data.get('settings')} ({app.rel_cwd})"
        state = result.data.get("migrations") or {}
        if state.get("error"):
            why = _why_no_database(ctx) or (str(state["error"]), "db.connect")
            problems.add(WARN, f"{label}: migrations not checked: {why[0]}",
                         f"fix {why[1]} first")
            continue
        conflicts = state.get("conflicts") or {}
        if conflicts:
            names = "; ".join(f"{', '.join(n)} in {a}" for a, n in conflicts.items())
            problems.add(FAIL, f"{label}: conflicting migrations ({names})",
                         app.in_cwd(_manage(app, "makemigrations --merge")))
            continue
        table = state.get("table", "django_migrations")
        faked = set()
        kind_steps = [s for s in app.migrate_steps if project.steps[s].kind == "django-migrate"]
        for item in state.get("fake") or []:
            faked.add(item["migration"])
            present = ", ".join(item["present"])
            if item["missing"]:
                problems.add(FAIL, f"{item['migration']} is not recorded in {table}, and only "
                                   f"some of its tables exist (present: {present}; missing: "
                                   f"{', '.join(item['missing'])})",
                             "create the missing tables (or drop the present ones) so the "
                             f"database matches {item['migration']}, then devenv up")
                continue
            fakers = app.fake_steps.get(item["app"], [])
            if fakers:
                fix = (f"devenv run --force {' '.join(fakers)} (it runs migrate "
                       f"{item['app']} --fake)")
                remedies = [Remedy("run-steps", tuple(fakers))]
            elif kind_steps:
                fix = (f"devenv run --force {kind_steps[-1]} (kind django-migrate fakes what "
                       "already exists)")
                remedies = [Remedy("run-steps", (kind_steps[-1],))]
            else:
                fix = app.in_cwd(_manage(app, f"migrate {item['app']} {item['name']} --fake"))
                remedies = []
            problems.add(FAIL, f"{item['migration']} is not recorded in {table} but its "
                               f"tables exist ({present}; another app created them): a "
                               "plain migrate fails with 'already exists'", fix, *remedies)
        rest = [m for m in state.get("unapplied") or [] if m not in faked]
        if rest and not faked:
            fix, remedies = migrate_fix(ctx, app, _manage(app, "migrate"))
            shown = ", ".join(rest[:4]) + (f" and {len(rest) - 4} more" if len(rest) > 4
                                           else "")
            plural = "s" if len(rest) > 1 else ""
            problems.add(FAIL, f"{label}: {len(rest)} unapplied migration{plural}: {shown}",
                         fix, *remedies)
            continue
        if not faked:
            problems.add(OK, f"{label}: {state.get('applied', 0)} migrations applied, none "
                             "pending", "")
    return problems.result("; ".join(f for _, f, _ in problems.items))


CHECKS = [
    CheckDef("steps.fingerprints", "Up to date", check_steps),
    CheckDef("alembic.revision", "Up to date", check_alembic, timeout=30.0),
    CheckDef("django.migrations", "Up to date", check_django, timeout=30.0),
]
