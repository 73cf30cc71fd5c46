"""Choosing the backend of each service (docker, else the local server binaries for
PostgreSQL, and a fallback remembered when an image could not be had), the services a
run needs, and where a started database answers. :class:`devenv.session.Session` uses
these; a database someone else runs is its :class:`~devenv.services.external.ExternalBackend`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from devenv import graph, jsonfile
from devenv.errors import ServiceError
from devenv.jsonfile import ensure_state_dir
from devenv.postgres import database
from devenv.schema import Project, ServiceSpec
from devenv.services import BACKENDS, Backend, Endpoint
from devenv.services.docker import connect
from devenv.services.support import is_postgres


def _fallback_file(project: Project) -> Path:
    return project.state_dir / "backends.json"


def _remembered_fallback(project: Project, service: ServiceSpec) -> str | None:
    """Why ``service`` runs natively although Docker answers (its image could not be had),
    or None once that no longer holds (the image is there now)."""
    record = jsonfile.read(_fallback_file(project)).get(service.name)
    if not isinstance(record, dict) or record.get("image") != service.image:
        return None
    try:
        connect(timeout=5).images.get(service.image)
    except Exception:
        return str(record.get("reason", "its image could not be pulled"))
    _forget_fallback(project, service)
    return None


def remember_fallback(project: Project, service: ServiceSpec, reason: str) -> None:
    ensure_state_dir(project.state_dir)
    with jsonfile.update(_fallback_file(project), indent=1) as data:
        data[service.name] = {"backend": "native", "image": service.image, "reason": reason}


def _forget_fallback(project: Project, service: ServiceSpec) -> None:
    with jsonfile.update(_fallback_file(project), indent=1) as data:
        data.pop(service.name, None)


def choose_backend(service: ServiceSpec, project: Project | None = None,
                   ) -> tuple[Backend, str]:
    """The backend for ``service`` and why it was chosen (``project``: to honour a
    fallback to native that an earlier ``up`` made because the image was missing)."""
    if service.backend in BACKENDS:
        backend = BACKENDS[service.backend]()
        ok, why = backend.available()
        if not ok:
            raise ServiceError(f"service {service.name}: backend {service.backend} is not "
                               f"available: {why}")
        return backend, f"backend: {service.backend} in {service.backend_loc or service.loc}"
    if service.backend == "external":
        raise ServiceError(f"service {service.name} is external: set DATABASE_URL or pass "
                           "--database-url")
    if project is not None:
        why_native = _remembered_fallback(project, service)
        if why_native is not None:
            native = BACKENDS["native"]()
            if native.available()[0]:
                return native, f"native: {why_native} (the local PostgreSQL binaries run it)"
    reasons: list[str] = []
    for name in ("docker", "native"):
        if name == "native" and not is_postgres(service):
            # the native backend runs a local PostgreSQL server, nothing else
            reasons.append("native: runs PostgreSQL only")
            continue
        backend = BACKENDS[name]()
        ok, why = backend.available()
        if ok:
            suffix = f" ({'; '.join(reasons)})" if reasons else ""
            return backend, f"{why}{suffix}"
        reasons.append(f"{name}: {why}")
    if not is_postgres(service):
        raise ServiceError(f"service {service.name}: no backend can run it here: "
                           + "; ".join(reasons)
                           + f". It has no native backend: start a Docker engine ({service.loc})")
    raise ServiceError(f"service {service.name}: no backend can run it here: "
                       + "; ".join(reasons)
                       + ". Start a Docker engine, install PostgreSQL's server binaries, or "
                         "point DATABASE_URL at a running server")


def with_needed(project: Project, names: Sequence[str]) -> list[str]:
    """``names`` and every service they need (``needs:`` between services), in declaration
    order."""
    wanted = graph.reachable(names, lambda n: project.services[n].needs)
    return [s for s in project.services if s in wanted]


def needed_services(project: Project, steps: Sequence[str] | None = None,
                    profile: str | None = None) -> list[str]:
    """Services the given steps need (None: every step, or every step of ``profile``),
    plus the database's service."""
    if steps is None:
        names = [n for n, s in project.steps.items() if profile is None or s.in_profile(profile)]
    else:
        names = list(steps)
    wanted = set(graph.services_for(project, names))
    if project.database is not None:
        wanted.add(project.database.service)
    return [s for s in project.services if s in wanted]


def profile_services(project: Project, profile: str) -> set[str]:
    """Every service a profile's steps and processes need (``devenv up`` in it)."""
    wanted = set(needed_services(project, profile=profile))
    wanted.update(n for p in project.processes.values()
                  if p.in_profile(profile)
                  for n in p.needs if n in project.services)
    return set(with_needed(project, sorted(wanted)))


def no_backend(project: Project, failed: Mapping[str, ServiceError]) -> ServiceError:
    """One error for every service no backend can run here, before any starts. A service
    that is not PostgreSQL has no native backend, so without Docker it cannot run at all:
    those are named together, with the profiles that need none of them."""
    others = sorted(n for n in failed if not is_postgres(project.services[n]))
    if len(failed) == 1 and not others:
        return next(iter(failed.values()))
    docker_ok, docker_why = BACKENDS["docker"]().available()
    # with Docker up, each failure has its own cause (a backend: native, say): say each
    lines = [str(exc) for n, exc in failed.items() if n not in others or docker_ok]
    if others and not docker_ok:
        where = ", ".join(str(project.services[n].loc) for n in others)
        spared = [p for p in project.profiles if not profile_services(project, p) & set(others)]
        hint = (f", or use a profile that needs none of them: "
                f"{' or '.join(f'--profile {p}' for p in spared)}") if spared else ""
        lines.append(f"{', '.join(others)} {'needs' if len(others) == 1 else 'need'} Docker, "
                     f"which is not available here ({docker_why}); the native backend runs "
                     f"PostgreSQL only ({where}). Start a Docker engine{hint}")
    return ServiceError("\n".join(lines))


def candidates(service: ServiceSpec) -> list[tuple[Backend, str]]:
    """The backends that may hold ``service`` here, with why: its ``backend:`` when that is
    available, else (``auto``) every available one, docker first. For commands that act
    on what exists (down, logs), not only on what ``up`` would choose."""
    names = [service.backend] if service.backend in BACKENDS else (
        ["docker", "native"] if service.backend == "auto" else [])
    out: list[tuple[Backend, str]] = []
    for name in names:
        backend = BACKENDS[name]()
        ok, why = backend.available()
        if ok:
            out.append((backend, why))
    return out


def locate(project: Project, service: ServiceSpec) -> Backend | None:
    """The backend that has something of ``service`` (a container, a data folder)."""
    for backend, _why in candidates(service):
        if backend.status(project, service).state != "missing":
            return backend
    return None


def target_at(project: Project, ep: Endpoint) -> database.Target:
    """The project's database on its started service at ``ep``."""
    db = project.database
    assert db is not None
    svc = project.services[db.service]
    container_port = svc.ports[0].container if svc.ports else 5432
    return database.Target(ep.host, ep.port(container_port), db.user, db.password, db.name)
