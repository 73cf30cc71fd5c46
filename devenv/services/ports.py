"""Host ports for services: free-port checks and ``.devenv/ports.json``.

A service port with no fixed host port (``"5432"``) gets a free one the first time; it is
remembered so the URL in a developer's tools stays the same across ``up``/``down``. If the
remembered port has since been taken by something else, another is picked and the caller
says so.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devenv import jsonfile
from devenv.errors import ServiceError
from devenv.schema import PortSpec, Project, ServiceSpec

HOST = "127.0.0.1"


def is_free(port: int, host: str = HOST) -> bool:
    """Whether nothing listens on ``host:port`` (we can bind it ourselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR, as Docker's port proxy and PostgreSQL use: connections left in
        # TIME_WAIT by a listener that just went away must not make its port look taken
        # (they do for a plain bind), while a live listener still does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port(avoid: set[int] | None = None) -> int:
    """A port on 127.0.0.1 that nothing listens on now (and not in ``avoid``)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if not avoid or port not in avoid:
            return port
    raise ServiceError("could not find a free TCP port on 127.0.0.1")


class PortStore:
    """``.devenv/ports.json``: service -> container port -> host port."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.path = state_dir / "ports.json"

    def _read(self) -> dict[str, Any]:
        return jsonfile.read(self.path)

    def _locked(self) -> contextlib.AbstractContextManager[dict[str, Any]]:
        return jsonfile.update(self.path, indent=1)

    def get(self, service: str, container: int) -> int | None:
        """The host port remembered for ``service``'s ``container`` port."""
        value = self._read().get(service, {}).get(str(container))
        return value if isinstance(value, int) else None

    def remember(self, service: str, ports: dict[int, int]) -> None:
        """Record the host ports ``service`` publishes now."""
        if not ports:
            return
        current = self._read().get(service, {})
        if all(current.get(str(c)) == h for c, h in ports.items()):
            return  # nothing changed: no write on every `up`
        with self._locked() as data:
            entry = data.setdefault(service, {})
            for container, host in ports.items():
                entry[str(container)] = host


@dataclass(frozen=True)
class Choice:
    """The host port for one container port, and a note when it is not the remembered one."""

    container: int
    host: int
    note: str = ""


def port_label(service: ServiceSpec, spec: PortSpec) -> str:
    text = f"{spec.host}:{spec.container}" if spec.host else str(spec.container)
    return f'{service.loc.file} (services.{service.name}.ports "{text}")'


def choose(project: Project, service: ServiceSpec,
           holder: Callable[[int], str | None] | None = None,
           taken: set[int] | None = None) -> list[Choice]:
    """Host ports for each of ``service``'s ports.

    A fixed host port must be free, else :class:`ServiceError` naming the port, what
    holds it when ``holder`` can tell (a container, say) and what to do. A free port is
    the remembered one when it is still free, otherwise a new one (with a note).
    ``taken`` holds ports that look free but are claimed (e.g. by stopped containers).
    """
    store = PortStore(project.state_dir)
    taken = set(taken or ())
    out: list[Choice] = []
    for spec in service.ports:
        if spec.host is not None:
            if not is_free(spec.host):
                who = holder(spec.host) if holder else None
                by = f"by {who}" if who else "by another program"
                raise ServiceError(
                    f"service {service.name}: host port {spec.host} on {HOST} is already in "
                    f"use {by}; {port_label(service, spec)} asks for it. Stop what holds "
                    f"port {spec.host} (e.g. `ss -ltnp 'sport = :{spec.host}'` shows it), or "
                    f"change the host port in {service.loc.file} (write \"{spec.container}\" "
                    "to let devenv pick a free one)")
            out.append(Choice(spec.container, spec.host))
            taken.add(spec.host)
            continue
        remembered = store.get(service.name, spec.container)
        if remembered is not None and remembered not in taken and is_free(remembered):
            out.append(Choice(spec.container, remembered))
            taken.add(remembered)
            continue
        port = free_port(taken)
        note = ""
        if remembered is not None:
            who = holder(remembered) if holder else None
            note = (f"port {remembered} (remembered for {service.name}:{spec.container}) is "
                    f"taken by {who or 'something else'} now; using {port} instead")
        out.append(Choice(spec.container, port, note))
        taken.add(port)
    return out
