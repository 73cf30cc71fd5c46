"""Service backends: who runs a service (a Docker container, a local server, someone else).

Each backend is one module with an object satisfying :class:`Backend`, registered by name
in :data:`BACKENDS` as a factory, so importing this package stays cheap (the docker SDK
is imported only when the docker backend is used).
"""

from __future__ import annotations

from collections.abc import Callable

from devenv.services.base import Backend, Endpoint, ExecResult, ServiceState
from devenv.services.docker import DockerBackend
from devenv.services.native import NativeBackend

__all__ = ["BACKENDS", "Backend", "Endpoint", "ExecResult", "ServiceState"]

BACKENDS: dict[str, Callable[[], Backend]] = {
    "docker": DockerBackend,
    "native": NativeBackend,
}
