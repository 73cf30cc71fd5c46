"""The typed records of a loaded configuration (steps.yaml and services/).

Everything here is frozen: the loader builds it once, and the graph, the planner, the
runner and the backends only read it. ``loc`` fields point back at the file and line a
record came from, so later errors can still name them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devenv.fields import STEP_FIELDS, STEP_OPTIONS, fingerprinted

DEFAULT_PROFILES = ("local", "ci")

Command = str | tuple[str, ...]
"""A shell string (run by /bin/sh) or an argv list."""


@dataclass(frozen=True)
class Location:
    """A place in a configuration file; ``file`` is relative to the project root."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class PortSpec:
    """A container port, published on 127.0.0.1 at ``host`` (``None``: a free port)."""

    container: int
    host: int | None = None


@dataclass(frozen=True)
class BuildSpec:
    """An image built from the repository (``build:`` on a service or a process)."""

    context: str  # relative to the project root (or absolute)
    dockerfile: str | None = None  # relative to the context
    args: Mapping[str, str] = field(default_factory=dict)
    #: the build's network (``host``, ``none``, a network name); None: the engine's default
    network: str | None = None

    def definition(self) -> dict[str, Any]:
        return {"context": self.context, "dockerfile": self.dockerfile,
                "args": dict(sorted(self.args.items())), "network": self.network}


@dataclass(frozen=True)
class ReadySpec:
    """When a service counts as ready (``ready:``): always checked from the host.

    ``tcp``: a connection to the published port stays open; ``http``: a GET of ``path`` on
    the published port answers (with one of ``status``, else below 500); ``cmd``:
    ``command`` exits 0 inside the container *and* the published ports take connections.
    ``port`` is the container port to check (None: every published port / the first one).
    """

    kind: str  # tcp, http, cmd
    port: int | None = None
    path: str = "/"
    command: tuple[str, ...] | None = None
    status: tuple[int, ...] = ()

    def definition(self) -> dict[str, Any]:
        return {"kind": self.kind, "port": self.port, "path": self.path,
                "command": list(self.command) if self.command else None,
                "status": list(self.status)}


@dataclass(frozen=True)
class ServiceSpec:
    """A long-lived dependency (a database) that a backend starts."""

    name: str
    image: str | None
    env: Mapping[str, str]
    ports: tuple[PortSpec, ...]
    healthcheck: tuple[str, ...] | None
    volumes: Mapping[str, str]
    command: tuple[str, ...] | None
    backend: str
    loc: Location
    backend_loc: Location | None = None  # the ``backend:`` key's own line, when written
    build: BuildSpec | None = None
    #: a URL template (``redis://${host}:${port}/0``) exported as NAME_URL to steps
    url: str | None = None
    #: services that must be ready before this one starts
    needs: tuple[str, ...] = ()
    ready: ReadySpec | None = None
    #: seconds to wait for the service to be ready (None: the backend's default, 120)
    ready_timeout: float | None = None

    def definition(self) -> dict[str, Any]:
        """What decides whether a running container still matches (its config hash).

        ``build`` is added only when set, so the hash of a service without one stays what
        it was (its container is not recreated on upgrade). ``url``, ``needs`` and
        ``ready`` change nothing inside the container and are left out.
        """
        out: dict[str, Any] = {
            "image": self.image,
            "env": dict(sorted(self.env.items())),
            "ports": [[p.container, p.host] for p in self.ports],
            "healthcheck": list(self.healthcheck) if self.healthcheck else None,
            "volumes": dict(sorted(self.volumes.items())),
            "command": list(self.command) if self.command else None,
        }
        if self.build is not None:
            out["build"] = self.build.definition()
        return out


@dataclass(frozen=True)
class DatabaseSpec:
    """The database the steps build and refresh-db replaces."""

    service: str
    name: str
    schemas: tuple[str, ...]
    user: str
    password: str
    loc: Location


@dataclass(frozen=True)
class StepSpec:
    """One unit of work in the graph."""

    name: str
    kind: str
    run: Command | None
    cwd: str | None
    env: Mapping[str, str]
    search_path: tuple[str, ...]
    needs: tuple[str, ...]
    inputs: tuple[str, ...]
    profiles: tuple[str, ...]  # empty: every profile
    timeout: float | None
    checkpoint: bool
    python: str | None
    options: Mapping[str, Any]
    loc: Location
    description: str | None = None
    key_lines: Mapping[str, int] = field(default_factory=dict, compare=False)
    #: "incremental", "rebuild", or None (the kind's default); not fingerprinted: it says
    #: how the step may run again, not what it does.
    rerun: str | None = None
    #: its work lives in another service, not the database: no snapshot holds it
    outside_database: bool = False

    def in_profile(self, profile: str) -> bool:
        return not self.profiles or profile in self.profiles

    def definition(self) -> dict[str, Any]:
        """The parts of the step that decide its result (hashed into its fingerprint): its
        fingerprinted fields (devenv.fields.STEP_FIELDS) and its kind's options.

        ``timeout``, ``profiles``, ``checkpoint``, ``description``, ``rerun`` and
        ``outside_database`` are left out: changing them does not change what the step
        does.
        """
        out: dict[str, Any] = {}
        for f in fingerprinted(STEP_FIELDS):
            value = getattr(self, f.name)
            if f.omit_default and value == f.default:
                continue
            value = _plain(value)
            out[f.name] = sorted(value) if f.unordered else value
        out[STEP_OPTIONS] = _plain(self.options)
        return out


@dataclass(frozen=True)
class ProcessSpec:
    """A long-running app process that `devenv up` starts after the steps."""

    name: str
    run: Command
    cwd: str | None
    env: Mapping[str, str]
    needs: tuple[str, ...]
    ready: str | None
    ready_timeout: float
    profiles: tuple[str, ...]
    loc: Location
    search_path: tuple[str, ...] = ()
    #: True: the process reconnects by itself after its database is swapped, so a swap
    #: leaves it running; False: devenv restarts it after every swap.
    reconnects: bool = False
    # HTTP statuses that count as ready (``ready: {http: URL, status: [...]}``); empty:
    # any answer below 500 (see devenv.processes.ReadyCheck)
    ready_status: tuple[int, ...] = ()
    #: run inside a container of this image (the repository mounted at its own path,
    #: the host's network), for an app that needs system libraries the host lacks
    image: str | None = None
    #: or in a container of an image built from the repository (as a service's ``build:``)
    build: BuildSpec | None = None

    def in_profile(self, profile: str) -> bool:
        return not self.profiles or profile in self.profiles


@dataclass(frozen=True)
class Project:
    """A whole loaded configuration."""

    root: Path
    file: Path
    name: str
    services: Mapping[str, ServiceSpec]
    database: DatabaseSpec | None
    env: Mapping[str, str]
    steps: Mapping[str, StepSpec]  # in declaration order
    processes: Mapping[str, ProcessSpec]
    profiles: tuple[str, ...]
    cache_keep: int
    env_lines: Mapping[str, int] = field(default_factory=dict, compare=False)
    #: what ``up`` does when a step that is not incremental changed on a database it
    #: already ran on: "rebuild" (build beside, swap in, keep the old one as __prev) or
    #: "stop" (say so and name the command).
    up_rebuild: str = "rebuild"
    # cache: {remote: oci://..., sign_key: FILE, trust: [FILE...]} (devenv.workingdb.oci)
    cache_remote: str | None = None
    cache_sign_key: str | None = None
    cache_trust: tuple[str, ...] = ()

    @property
    def state_dir(self) -> Path:
        return self.root / ".devenv"

    def rel(self, path: Path) -> str:
        """``path`` relative to the project root when it is inside it."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
