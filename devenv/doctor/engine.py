"""Engine: which backend runs the services and why, the images they need, their host ports."""

from __future__ import annotations

import contextlib

from devenv import pids
from devenv.doctor.base import FAIL, OK, WARN, Check, CheckDef, NotChecked, Problems, ok
from devenv.doctor.context import Context
from devenv.errors import DevenvError, first_line
from devenv.postgres.database import redact_url
from devenv.services import docker
from devenv.services.ports import is_free


def _uses_docker(ctx: Context, name: str) -> bool:
    choice = ctx.backend(name)
    return choice.backend is not None and choice.backend.name == "docker"


def check_backend(ctx: Context) -> Check:
    """A backend can run every service here (the Docker engine answers, with its version),
    or the database is external."""
    project = ctx.project()
    if not project.services:
        return ok("engine.backend", "no services to run")
    problems = Problems("engine.backend")
    for name, _service in project.services.items():
        if ctx.is_external(name):
            ext = ctx.external()
            assert ext is not None

            problems.add(OK, f"{name}: external database {redact_url(ext[0])} ({ext[1]}); "
                             "devenv does not start it", "")
            continue
        choice = ctx.backend(name)
        if choice.backend is None:
            problems.add(FAIL, choice.error or f"{name}: no backend",
                         "start the Docker engine (or install PostgreSQL's server binaries "
                         "for the native backend), or point DATABASE_URL at a running server")
            continue
        what = choice.backend.name
        if what == "docker":
            info = ctx.docker()
            if info.version:
                what = f"docker engine {info.version}"
        problems.add(OK, f"{name}: {what} ({choice.why})", "")
    # services on the same backend for the same reason: one sentence naming them all
    said: dict[str, list[str]] = {}
    for _status, finding, _fix in problems.items:
        name, _, rest = finding.partition(": ")
        said.setdefault(rest, []).append(name)
    return problems.result("; ".join(f"{', '.join(names)}: {rest}"
                                     for rest, names in said.items()))


def check_images(ctx: Context) -> Check:
    """The images of the services that run in Docker are on this machine; those built from
    the repository (``build:``) are built for their context as it is now."""
    project = ctx.project()
    docker_services = [s for n, s in project.services.items()
                       if not ctx.is_external(n) and _uses_docker(ctx, n)
                       and (s.image or s.build)]
    if not docker_services:
        return ok("engine.images", "no service runs in Docker here: no image needed")
    info = ctx.docker()
    if info.client is None:
        raise NotChecked(f"the Docker engine does not answer ({info.error})", "engine.backend")
    problems = Problems("engine.images")
    for service in docker_services:
        built = service.build is not None
        try:
            image = (docker.image_tag(project, service.name, service.build,
                                      f"service {service.name}", service.loc)
                     if service.build is not None else service.image)
        except DevenvError as exc:  # a context folder gone
            problems.add(FAIL, first_line(exc), f"fix build: of service {service.name} in "
                                                f"{service.loc}")
            continue
        assert image is not None
        try:
            info.client.images.get(image)
        except Exception as exc:
            if type(exc).__name__ != "ImageNotFound":
                problems.add(FAIL, f"cannot ask the engine about image {image}: "
                                   f"{first_line(exc)}", "check the Docker engine")
            elif built:
                problems.add(WARN, f"service {service.name}'s image is not built for its "
                                   f"context as it is now ({image})",
                             "devenv up (builds it)")
            else:
                problems.add(FAIL, f"image {image} (service {service.name}) is not on this "
                                   "machine", f"docker pull {image}")
            continue
        problems.add(OK, f"{image}" + (" (built here)" if built else ""), "")
    return problems.result("images present: " + ", ".join(f for _, f, _ in problems.items))


def port_in_use(port: int) -> bool:
    """Whether something listens on the port (on 127.0.0.1 or all addresses)."""
    try:
        return not is_free(port)
    except OSError:  # not a "taken" error: nothing we could tell listens there
        return False


def _container_on(ctx: Context, port: int) -> str | None:
    info = ctx.docker()
    if info.client is None:
        return None
    try:
        for c in info.client.containers.list():
            for bindings in (c.ports or {}).values():
                for b in bindings or []:
                    if str(b.get("HostPort")) == str(port):
                        image = c.image.tags[0] if c.image and c.image.tags else "?"
                        return f"container {c.name} ({image})"
    except Exception:
        return None
    return None


def holder(ctx: Context, port: int) -> str:
    """Who holds ``port``: a container, a process, or someone we cannot see."""
    found = _container_on(ctx, port)
    if found:
        return found
    pid = pids.port_owner(port)
    if pid is not None:
        return f"pid {pid[0]} ({pid[1]})"
    return "another program"


def _free_port_near(port: int) -> int:
    for candidate in range(port + 1, min(port + 200, 65535)):
        if not port_in_use(candidate):
            return candidate
    return port


def check_ports(ctx: Context) -> Check:
    """The host ports the services publish are free, or held by this project's services."""
    project = ctx.project()
    problems = Problems("engine.ports")
    fixed = 0
    for name, service in project.services.items():
        if ctx.is_external(name):
            continue
        for spec in service.ports:
            if spec.host is None:
                continue
            fixed += 1
            port = spec.host
            if not port_in_use(port):
                problems.add(OK, f"{port} free ({name})", "")
                continue
            ep = None
            with contextlib.suppress(Exception):
                ep = ctx.endpoint(name)
            if ep is not None and ep.port(spec.container) == port:
                problems.add(OK, f"{port} held by {name} (this project's)", "")
                continue
            who = holder(ctx, port)
            free = _free_port_near(port)
            problems.add(FAIL, f"host port {port} (service {name}) is in use by {who}",
                         f"stop {who}, or publish {name} on a free port: ports: "
                         f"[\"{free}:{spec.container}\"] in {service.loc.file}")
    if not fixed:
        return ok("engine.ports", "no fixed host port: each service gets a free one when "
                                  "it starts")
    return problems.result("host ports: " + ", ".join(f for _, f, _ in problems.items))


CHECKS = [
    CheckDef("engine.backend", "Engine", check_backend),
    CheckDef("engine.images", "Engine", check_images),
    CheckDef("engine.ports", "Engine", check_ports),
]
