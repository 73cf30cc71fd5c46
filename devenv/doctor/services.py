"""Services: running and healthy, and started from the definition steps.yaml has now."""

from __future__ import annotations

from devenv.doctor.base import FAIL, OK, WARN, Check, CheckDef, Problems, Remedy, ok
from devenv.doctor.context import Context
from devenv.errors import DevenvError, first_line


def check_running(ctx: Context) -> Check:
    """Each service runs and its health check passes."""
    project = ctx.project()
    if not project.services:
        return ok("services.running", "no services")
    problems = Problems("services.running")
    for name in project.services:
        if ctx.is_external(name):
            problems.add(OK, f"{name}: external (not started by devenv)", "")
            continue
        choice = ctx.backend(name)
        if choice.backend is None:
            problems.add(FAIL, f"{name}: not checked: no backend can run it (engine.backend)",
                         "fix engine.backend first")
            continue
        try:
            state = ctx.status(name)
        except (DevenvError, OSError) as exc:
            problems.add(FAIL, f"{name}: cannot ask {choice.backend.name} about it: "
                               f"{first_line(exc)}", "fix engine.backend first")
            continue
        assert state is not None
        where = f" at {state.address}" if state.address else ""
        detail = f": {state.detail}" if state.detail else ""
        start = Remedy("start-services", (name,))
        if state.state != "running":
            what = "has never been started" if state.state == "missing" else f"is {state.state}"
            problems.add(FAIL, f"{name} {what} ({state.backend}){detail}",
                         "devenv up (starts what is stopped)", start)
        elif state.health == "unhealthy":
            problems.add(FAIL, f"{name} runs{where} but its health check fails{detail}",
                         f"devenv logs {name} (why it fails), then devenv up")
        elif state.health == "starting":
            problems.add(WARN, f"{name} runs{where} but is still starting", "wait a moment, "
                               "or devenv up (waits until it is healthy)", start)
        else:
            health = state.health or "running"
            problems.add(OK, f"{name} {health}{where} ({state.backend})", "")
    return problems.result("; ".join(f for _, f, _ in problems.items))


def check_config(ctx: Context) -> Check:
    """Each running service was started from the definition steps.yaml has now."""
    project = ctx.project()
    problems = Problems("services.config")
    for name, service in project.services.items():
        if ctx.is_external(name) or ctx.backend(name).backend is None:
            continue
        try:
            state = ctx.status(name)
        except (DevenvError, OSError):
            continue  # services.running reports it
        if state is None or state.state != "running":
            continue
        if state.config_matches is False:
            problems.add(WARN, f"{name} runs with an older definition than "
                               f"{service.loc.file} (its config hash differs)",
                         "devenv up (recreates it from the current definition)",
                         Remedy("start-services", (name,)))
        else:
            problems.add(OK, name, "")
    if not problems.items:
        return ok("services.config", "no running service to compare")
    return problems.result("running services match their definitions: "
                           + ", ".join(f for _, f, _ in problems.items))


CHECKS = [
    CheckDef("services.running", "Services", check_running),
    CheckDef("services.config", "Services", check_config),
]
