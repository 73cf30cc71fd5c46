"""Each service's address for steps and processes: ``NAME_HOST``, ``NAME_PORT``,
``NAME_URL`` (see :func:`service_variables`)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from devenv.errors import ConfigError
from devenv.postgres import database
from devenv.schema import Project, ServiceSpec
from devenv.services import ports as portlib
from devenv.services.docker import port_specs


def service_prefix(name: str) -> str:
    """The variable prefix of service ``name``: ``redis`` -> ``REDIS``, ``mail-catcher``
    -> ``MAIL_CATCHER`` (a leading digit gets a ``_``)."""
    prefix = re.sub(r"[^A-Za-z0-9]", "_", name).upper()
    return f"_{prefix}" if prefix[:1].isdigit() else prefix


def service_variables(project: Project, target: database.Target | None = None,
                      stand_in: bool = False) -> dict[str, str]:
    """Each service's address for steps and processes: NAME_HOST, NAME_PORT (its first
    port), NAME_PORT_<container port> when it has several, NAME_URL from its ``url:``.

    The ports are the ones the service publishes since its last start (.devenv/ports.json,
    written by every backend's ``up``); the database service's are ``target``'s (it may
    be a server someone else runs). A service never started has none; with ``stand_in``
    (checking ${X} before anything starts, as `up` does) its container ports stand in.
    """
    store = portlib.PortStore(project.state_dir)
    out: dict[str, str] = {}
    for service in project.services.values():
        specs = port_specs(project, service)
        is_db = project.database is not None and project.database.service == service.name
        host = portlib.HOST
        found: dict[int, int] = {}
        for spec in specs:
            port = store.get(service.name, spec.container)
            if port is not None:
                found[spec.container] = port
        if is_db and target is not None and specs:
            host = target.host
            found[specs[0].container] = target.port
        if stand_in:
            for spec in specs:
                found.setdefault(spec.container, spec.host or spec.container)
        if not found or specs[0].container not in found:
            continue
        prefix = service_prefix(service.name)
        values = {"host": host, "port": str(found[specs[0].container])}
        values |= {f"port_{c}": str(p) for c, p in found.items()}
        out[f"{prefix}_HOST"] = host
        out[f"{prefix}_PORT"] = values["port"]
        if len(specs) > 1:
            out |= {f"{prefix}_PORT_{c}": str(p) for c, p in found.items()}
        if service.url:
            # the loader checked the names; a port not published yet stays as written
            out[f"{prefix}_URL"] = _fill(service.url, values)
    return out


def service_variable_names(project: Project) -> set[str]:
    """Every name :func:`service_variables` gives once all services have started."""
    return {n for s in project.services.values() for n in _names_of(project, s)}


def _names_of(project: Project, service: ServiceSpec) -> set[str]:
    specs = port_specs(project, service)
    if not specs:
        return set()
    prefix = service_prefix(service.name)
    out = {f"{prefix}_HOST", f"{prefix}_PORT"}
    if len(specs) > 1:
        out |= {f"{prefix}_PORT_{p.container}" for p in specs}
    if service.url:
        out.add(f"{prefix}_URL")
    return out


def with_service_hint(project: Project, exc: ConfigError, owner: str) -> ConfigError:
    """``exc`` (an undefined ``${X}``) saying how to get X when it is a service's address
    that is not known because the service has not started."""
    m = re.match(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\} is not defined", exc.message)
    if m is None:
        return exc
    for service in project.services.values():
        if m.group(1) in _names_of(project, service):
            return type(exc)(
                f"${{{m.group(1)}}} is the address of service {service.name}, known once it "
                f"has started: add {service.name} to needs: of {owner}", exc.file, exc.line,
                exc.path)
    return exc


def _fill(template: str, values: Mapping[str, str]) -> str:
    return re.sub(r"\$\{([^}]*)\}", lambda m: values.get(m.group(1), m.group(0)), template)


