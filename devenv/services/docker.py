"""The docker backend: each service is one container (``{project}-{service}``) with named
volumes (``{project}_{service}_{volume}``), ports published on 127.0.0.1 only.

Containers and volumes carry labels (``devenv.project``, ``devenv.service``,
``devenv.config-hash``). A running container whose config hash matches the service's
definition is reused as is; one whose definition changed is recreated (its volumes are
kept, so the data survives). ``down`` stops containers (a later ``up`` starts them again);
``down --volumes`` removes containers and volumes.

The docker SDK is imported inside the methods: ``import devenv.services.docker`` is cheap.
What `up` asks most (is the engine there, is the container running as defined, which host
ports are taken) goes straight to the engine's local socket when there is one
(:mod:`devenv.services.engine`), so an `up` with everything running never imports the SDK.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devenv import logtail, waiting
from devenv.errors import ImageUnavailable, ServiceError
from devenv.events import Message, PhaseFinished, PhaseStarted, Reporter
from devenv.fingerprint import FileHasher, expand_inputs
from devenv.jsonfile import ensure_state_dir
from devenv.schema import BuildSpec, Location, PortSpec, Project, ReadySpec, ServiceSpec
from devenv.services import ports as portlib
from devenv.services.base import Endpoint, ExecResult, ServiceState
from devenv.services.engine import Engine, EngineError
from devenv.services.engine import local as local_engine
from devenv.services.support import (
    TAIL_LINES,
    Probe,
    config_hash,
    credentials,
    failure_message,
    http_probe,
    is_database,
    is_postgres,
    pg_probe,
    tcp_probe,
    with_ports,
    wrong_credentials_hint,
)

BUILD_TAIL_LINES = 40

LABEL_PROJECT = "devenv.project"
LABEL_SERVICE = "devenv.service"
LABEL_HASH = "devenv.config-hash"
LABEL_ROOT = "devenv.root"
# On a data volume: created by a devenv that writes READY_MARKER into it once the server
# on it first answered a query. Without the marker such a volume never held a finished
# cluster (the image's first initialisation was cut short), so nothing is lost by
# recreating it. Volumes made before this label existed are never recreated.
LABEL_MARKS_READY = "devenv.marks-ready"
READY_MARKER = ".devenv-ready"

HOST = portlib.HOST
SECOND_NS = 1_000_000_000
# Docker runs the first health check one interval after start: its 30 s default would
# make every start take 30 s.
HEALTH_INTERVAL_NS = SECOND_NS
STOP_TIMEOUT = 10
ERR_KEEP = 64 * 1024


def container_name(project: Project, service: ServiceSpec) -> str:
    return f"{project.name}-{service.name}"


def volume_name(project: Project, service: ServiceSpec, volume: str) -> str:
    return f"{project.name}_{service.name}_{volume}"


def build_context(project: Project, build: BuildSpec) -> Path:
    ctx = Path(build.context)
    return ctx if ctx.is_absolute() else project.root / ctx


def context_dir(project: Project, service: ServiceSpec) -> Path:
    assert service.build is not None
    return build_context(project, service.build)


def content_hash(project: Project, build: BuildSpec, owner: str, loc: Location) -> str:
    """A hash of the build's content: every file of its context (the way step inputs are
    hashed, generated files left out), the Dockerfile's name, the build args. ``owner``
    (``service web``, ``process worker``) and ``loc`` name it in an error."""
    import hashlib
    import json

    ctx = build_context(project, build)
    if not ctx.is_dir():
        raise ServiceError(f"{owner}: build context {ctx} is not a folder ({loc})")
    hasher = FileHasher()
    h = hashlib.sha256(json.dumps(build.definition(), sort_keys=True).encode())
    for rel in expand_inputs(ctx, ["."]):
        h.update(rel.encode() + b"\0" + hasher.digest(ctx / rel).encode() + b"\n")
    return h.hexdigest()


def image_tag(project: Project, name: str, build: BuildSpec, owner: str,
              loc: Location) -> str:
    """The tag of the image built for ``name`` (a service or a process: their names are
    unique in a project): a new tag for each content of its context, so "is it built" is
    "does the tag exist"."""
    return f"devenv/{project.name}-{name}:{content_hash(project, build, owner, loc)[:12]}"


def build_hash(project: Project, service: ServiceSpec) -> str:
    assert service.build is not None
    return content_hash(project, service.build, f"service {service.name}", service.loc)


def built_tag(project: Project, service: ServiceSpec) -> str:
    assert service.build is not None
    return image_tag(project, service.name, service.build, f"service {service.name}",
                     service.loc)


def build_image(client: Any, project: Project, name: str, build: BuildSpec, tag: str, *,
                owner: str, labels: Mapping[str, str], reporter: Reporter) -> bool:
    """Build ``tag`` from ``build``'s context unless an image of that tag exists (the tag
    names the context's content); the log goes to .devenv/logs/build-NAME.log. For a
    service's image and a process's alike. True when it built."""
    import docker

    try:
        client.images.get(tag)
        return False
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.DockerException as exc:
        raise ServiceError(f"docker: cannot inspect image {tag}: {short(exc)}") from None
    ensure_state_dir(project.state_dir)
    log_dir = project.state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"build-{name}.log"
    phase = f"build-{name}"
    reporter.emit(PhaseStarted(phase, f"building image {tag}"))
    t0 = time.monotonic()
    kwargs: dict[str, Any] = {
        "path": str(build_context(project, build)), "tag": tag, "rm": True,
        "forcerm": True, "decode": True, "buildargs": dict(build.args),
        "labels": dict(labels)}
    if build.dockerfile:
        kwargs["dockerfile"] = build.dockerfile
    if build.network:
        kwargs["network_mode"] = build.network
    error = ""
    with log.open("w", encoding="utf-8") as fh:
        try:
            for event in client.api.build(**kwargs):
                if "stream" in event:
                    fh.write(str(event["stream"]))
                elif "error" in event:
                    error = str(event["error"]).strip()
                    fh.write(error + "\n")
                elif "status" in event:
                    fh.write(str(event["status"]) + "\n")
                fh.flush()
        except docker.errors.DockerException as exc:
            error = short(exc)
            fh.write(error + "\n")
    if error:
        reporter.emit(PhaseFinished(phase, f"could not build {tag}", ok=False,
                                    duration=time.monotonic() - t0))
        tail = logtail.tail_file(log, BUILD_TAIL_LINES).lines
        raise ServiceError("\n".join(
            [f"{owner}: the image build failed ({error})",
             f"last {len(tail)} lines of {project.rel(log)}:",
             *(f"  | {line}" for line in tail)]))
    reporter.emit(PhaseFinished(phase, f"built {tag}", duration=time.monotonic() - t0))
    return True


def _image_path(image: str) -> str:
    """The Engine API path that inspects ``image`` (a name:tag, quoted)."""
    from urllib.parse import quote

    return f"/images/{quote(image, safe='/:')}/json"


def images_present(tags: Sequence[str]) -> bool:
    """Whether the engine on the local socket has an image of every one of ``tags``;
    False when it does not, or when there is no local socket to ask (the SDK then looks).
    A build tag names its context's content: present means built, nothing to do."""
    local = local_engine()
    if local is None:
        return False
    try:
        return all(local.request("GET", _image_path(tag))[0] == 200 for tag in tags)
    except (OSError, EngineError):
        return False


def prune_images(client: Any, labels: Mapping[str, str], keep: str) -> None:
    """Remove the earlier builds carrying ``labels`` (every edit of a context makes one)
    but ``keep``; an image still in use stays (removing it fails, quietly)."""
    with contextlib.suppress(Exception):
        for image in client.images.list(filters={"label": [f"{k}={v}"
                                                           for k, v in labels.items()]}):
            if keep in image.tags:
                continue
            with contextlib.suppress(Exception):
                client.images.remove(image.id, noprune=False)


def resolved(project: Project, service: ServiceSpec) -> ServiceSpec:
    """``service`` with the image it runs: for ``build:``, the tag of its current build."""
    from dataclasses import replace

    if service.build is None:
        return service
    return replace(service, image=built_tag(project, service))


def port_specs(project: Project, service: ServiceSpec) -> tuple[PortSpec, ...]:
    """The service's ports; the database service is always published (the steps reach it
    from the host), on a free port when it names none."""
    if service.ports or not is_database(project, service):
        return service.ports
    return (PortSpec(5432),)


def short(exc: BaseException) -> str:
    """An engine error in one line (its explanation when it has one)."""
    text = str(exc).strip()
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, str) and explanation:
        text = explanation
    elif isinstance(explanation, bytes) and explanation:
        text = explanation.decode(errors="replace")
    return text.splitlines()[-1] if text else type(exc).__name__


def _client_kwargs() -> dict[str, Any]:
    """How to reach the engine: DOCKER_HOST (and DOCKER_TLS_*) win, then the current
    docker context (DOCKER_CONTEXT or ``docker context use``), then the default socket."""
    if os.environ.get("DOCKER_HOST"):
        return {}
    try:
        from docker.context import ContextAPI
        from docker.context.config import get_current_context_name

        name = os.environ.get("DOCKER_CONTEXT") or get_current_context_name()
        if not name or name == "default":
            return {}
        ctx = ContextAPI.get_context(name)
    except Exception:  # an unreadable ~/.docker: the default socket is the best guess
        return {}
    if ctx is None or not ctx.Host:
        return {}
    return {"base_url": ctx.Host, "tls": ctx.TLSConfig or False}


def _where(client: Any) -> str:
    """The engine's address as a user would write it (DOCKER_HOST style)."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    url = str(client.api.base_url)
    if url.startswith("http+docker://"):  # the SDK's name for a unix socket
        return _client_kwargs().get("base_url") or "unix:///var/run/docker.sock"
    return url


def connect(timeout: float = 120) -> Any:
    """A docker SDK client for the engine the docker CLI would use."""
    import docker

    kwargs = _client_kwargs()
    if kwargs:
        return docker.DockerClient(timeout=int(timeout), **kwargs)
    return docker.from_env(timeout=int(timeout))


def _started_at(value: str | None) -> float | None:
    """Docker's RFC 3339 time (nanoseconds, ``Z``) as seconds since the epoch."""
    if not value or value.startswith("0001-"):
        return None
    head, _, rest = value.partition(".")
    frac = ""
    zone = "+00:00"
    if rest:
        digits = "".join(ch for ch in rest if ch.isdigit())
        frac = "." + digits[:6]
        tail = rest[len(digits):]
        zone = "+00:00" if tail in ("", "Z") else tail
    try:
        return dt.datetime.fromisoformat(head + frac + zone).timestamp()
    except ValueError:
        return None


def published(attrs: Mapping[str, Any]) -> dict[int, int]:
    """Container port -> host port, from a running container's NetworkSettings (or its
    HostConfig when it is stopped)."""
    out: dict[int, int] = {}
    net = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    bindings = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
    for source in (bindings, net):
        for key, binds in source.items():
            if not binds:
                continue
            container = int(str(key).split("/")[0])
            for b in binds:
                if b.get("HostPort"):
                    out[container] = int(b["HostPort"])
                    break
    return out


@dataclass(frozen=True)
class _Watch:
    """A container being waited for: its name and id, how to read its state again (its
    ``docker inspect``; None once it is gone), and its last log lines for a message."""

    name: str
    id: str
    reload: Callable[[], Mapping[str, Any] | None]
    tail: Callable[[], list[str]]


# Engines (their sockets) that answered a ping in this process: each service chooses its
# backend, and a dozen services asked the same engine a dozen times in one `up`. An engine
# that stops later fails the request that follows, with its own message.
_ANSWERED: set[str] = set()


class DockerBackend:
    """Runs services as containers on the Docker engine ``docker.from_env()`` finds."""

    name = "docker"

    def __init__(self) -> None:
        self._client: Any = None
        self._local: Engine | None = None
        self._local_known = False

    # ------------------------------------------------------------------ engine

    def _engine(self) -> Engine | None:
        """The engine's local unix socket, if the docker CLI would use one (else the SDK
        answers everything)."""
        if not self._local_known:
            self._local = local_engine()
            self._local_known = True
        return self._local

    def available(self) -> tuple[bool, str]:
        local = self._engine()
        if local is not None and local.path in _ANSWERED:
            return True, f"a Docker engine answers at {local.where}"
        if local is not None and local.ping():
            _ANSWERED.add(local.path)
            return True, f"a Docker engine answers at {local.where}"
        # not there (or not a local socket): the SDK looks again and says why
        try:
            client = connect(timeout=5)
        except Exception as exc:
            # from_env() pings the engine already: name where it looked, and why it failed
            where = os.environ.get("DOCKER_HOST") or _client_kwargs().get(
                "base_url") or "unix:///var/run/docker.sock"
            reason = short(exc)
            if "FileNotFoundError" in reason or "No such file" in reason:
                reason = "no such socket"
            elif "ConnectionRefused" in reason or "Connection refused" in reason:
                reason = "connection refused"
            return False, (f"no Docker engine answers at {where} ({reason}); start Docker, or "
                           "fix DOCKER_HOST / the docker context")
        try:
            client.ping()
        except Exception as exc:
            return False, f"no Docker engine answers at {_where(client)} ({short(exc)})"
        finally:
            with contextlib.suppress(Exception):
                client.close()
        return True, f"a Docker engine answers at {_where(client)}"

    def client(self) -> Any:
        if self._client is None:
            try:
                self._client = connect()
            except Exception as exc:
                raise ServiceError(f"cannot reach the Docker engine: {short(exc)}") from None
        return self._client

    def _container(self, project: Project, service: ServiceSpec) -> Any | None:
        """The service's container, or ``None``; a container of that name that devenv did
        not create for this project is an error (we never touch it)."""
        import docker

        name = container_name(project, service)
        try:
            c = self.client().containers.get(name)
        except docker.errors.NotFound:
            return None
        except docker.errors.DockerException as exc:
            raise ServiceError(f"docker: cannot inspect container {name}: {short(exc)}"
                               ) from None
        labels = c.labels or {}
        if labels.get(LABEL_PROJECT) != project.name or labels.get(LABEL_SERVICE) != service.name:
            raise ServiceError(
                f"a container named {name} exists but devenv did not create it for service "
                f"{service.name} of project {project.name}; remove or rename it "
                f"(docker rm -f {name}), or rename the project (name: in "
                f"{project.file.name})")
        return c

    def _labels(self, project: Project, service: ServiceSpec) -> dict[str, str]:
        return {LABEL_PROJECT: project.name, LABEL_SERVICE: service.name,
                LABEL_HASH: config_hash(service), LABEL_ROOT: str(project.root)}

    def _filters(self, project: Project, service: ServiceSpec | None) -> dict[str, Any]:
        labels = [f"{LABEL_PROJECT}={project.name}"]
        if service is not None:
            labels.append(f"{LABEL_SERVICE}={service.name}")
        return {"label": labels}

    # ------------------------------------------------------------------ up

    def up(self, project: Project, service: ServiceSpec, reporter: Reporter,
           timeout: float = 120) -> Endpoint:
        """Reuse, start or (re)create the service's container and wait until it is ready."""
        if service.build is not None:
            service = resolved(project, service)
            assert service.image is not None
            self._build(project, service, service.image, reporter)
        if not service.image:
            raise ServiceError(f"service {service.name} has no image; the docker backend "
                               f"needs one ({service.loc})")
        want = config_hash(service)
        c: Any = None
        seen = self._seen(project, service)
        watch = self._as_is(project, service, want, seen) if seen else None
        started = False
        if watch is None:
            # the local socket's "no such container" ({}) saves asking the SDK again
            c = self._container(project, service) if seen is None or seen else None
            if c is not None and (c.labels or {}).get(LABEL_HASH) != want:
                reporter.emit(Message(f"{service.name}: its definition changed since "
                                      f"container {c.name} was created; recreating it "
                                      "(volumes are kept)"))
                self._remove(c, force=False)
                c = None
            recreating = ""
            if c is not None and c.status != "running":
                name = c.name
                c = self._start_existing(project, service, c)
                if c is None:
                    recreating = f"recreating container {name} on it (volumes are kept)"
            started = c is None or c.status != "running"
            if c is None:
                cid = self._create_and_start(project, service, reporter, recreating)
                watch = self._watch(cid, container_name(project, service))
            else:
                watch = self._watch(str(c.id), str(c.name), c)
        cid = watch.id
        try:
            ep = self._wait(project, service, watch, timeout)
        except ServiceError as exc:
            try:
                c = self._container(project, service)
            except ServiceError:
                raise exc from None  # what went wrong first is the news
            if c is None:
                raise
            cid = self._recover(project, service, reporter, c, exc)
            ep = self._wait(project, service, self._watch(cid, str(c.name)), timeout)
            started = True
        if started:
            self._mark_ready(project, service, cid)
        portlib.PortStore(project.state_dir).remember(service.name, dict(ep.ports))
        if service.build is not None and started:
            # a container (re)started on its current image: older builds can go now (a
            # container already running as defined had them pruned when it started, and
            # asking again would import the SDK on every up)
            self._prune_builds(project, service)
        return ep

    def _seen(self, project: Project, service: ServiceSpec) -> dict[str, Any] | None:
        """The service's container as the engine's local socket describes it: its
        ``docker inspect``, ``{}`` when there is none, None when that cannot be asked (no
        local socket, an error): the SDK is asked then, and names anything wrong."""
        local = self._engine()
        if local is None:
            return None
        try:
            attrs = local.inspect(container_name(project, service))
        except (OSError, EngineError):
            return None
        return {} if attrs is None else attrs

    def _as_is(self, project: Project, service: ServiceSpec, want: str,
               attrs: Mapping[str, Any]) -> _Watch | None:
        """How to follow the container ``attrs`` describes when it is the service's and
        runs with the current definition (hash ``want``), so that only its readiness is
        left to check; None when anything else is to be done (the full path does it)."""
        local = self._engine()
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        if (local is None or labels.get(LABEL_PROJECT) != project.name
                or labels.get(LABEL_SERVICE) != service.name
                or labels.get(LABEL_HASH) != want
                or (attrs.get("State") or {}).get("Status") != "running"):
            return None
        cid = str(attrs["Id"])
        return self._watch_engine(local, cid, container_name(project, service),
                                  lambda: self._tail_of(cid), first=attrs)

    def _recover(self, project: Project, service: ServiceSpec, reporter: Reporter, c: Any,
                 exc: ServiceError) -> str:
        """After ``exc`` (the service did not become ready): when its data volume holds a
        first initialisation that never finished and holds nothing, a new container on a
        new volume (its id); else ``exc`` again, with what is known about the volume."""
        import docker

        unfinished = self.unfinished_init(project, service, c)
        if unfinished is None:
            raise exc
        what, recreate = unfinished
        if not recreate:
            raise ServiceError(f"{exc}\n{what}") from None
        reporter.emit(Message(f"{service.name}: {what}; recreating it", "warn"))
        self._remove(c, force=True)
        for vname in self._volume_names(project, service):
            with contextlib.suppress(docker.errors.NotFound):
                self._remove_volume(self.client().volumes.get(vname))
        return self._create_and_start(project, service, reporter, "")

    def _watch(self, cid: str, name: str, c: Any = None) -> _Watch:
        """How to follow container ``cid`` (``c``: its SDK object if at hand) while waiting
        for it: through the local socket when there is one (an inspect there costs a
        fraction of the SDK's), else with the SDK."""
        local = self._engine()
        if local is not None:
            return self._watch_engine(
                local, cid, name, (lambda: self._tail(c)) if c is not None else (
                    lambda: self._tail_of(cid)))
        import docker

        sdk = c if c is not None else self.client().containers.get(cid)

        def reload() -> Mapping[str, Any] | None:
            try:
                sdk.reload()
            except docker.errors.NotFound:
                return None
            return dict(sdk.attrs)

        return _Watch(name, cid, reload, lambda: self._tail(sdk))

    def _watch_engine(self, local: Engine, cid: str, name: str,
                      tail: Callable[[], list[str]],
                      first: Mapping[str, Any] | None = None) -> _Watch:
        """``first``: the inspect the caller has just made, which the first attempt of the
        wait reads instead of asking again (twelve running services, twelve requests less
        on every `up`); the attempts after it ask the engine."""
        kept = [first] if first is not None else []

        def reload() -> Mapping[str, Any] | None:
            if kept:
                return kept.pop()
            try:
                return local.inspect(cid)
            except (OSError, EngineError) as exc:
                raise ServiceError(f"docker: cannot inspect container {name}: "
                                   f"{exc or type(exc).__name__}") from None

        return _Watch(name, cid, reload, tail)

    def _tail_of(self, cid: str) -> list[str]:
        """The last lines of container ``cid``'s log ([] when it cannot be read)."""
        try:
            c = self.client().containers.get(cid)
        except Exception:
            return []
        return self._tail(c)

    def _create_and_start(self, project: Project, service: ServiceSpec, reporter: Reporter,
                          recreating: str) -> str:
        """Create and start the service's container; its id."""
        cid = self._create(project, service, reporter, recreating)
        try:
            self._call("POST", f"/containers/{cid}/start")
        except EngineError as exc:
            with contextlib.suppress(EngineError):  # gone already: nothing to remove
                self._call("DELETE", f"/containers/{cid}", {"force": "1", "v": "1"})
            raise self._start_error(project, service, exc) from None
        return cid

    # ---------------------------------------------- an interrupted first initialisation

    def _volume_names(self, project: Project, service: ServiceSpec) -> list[str]:
        return [volume_name(project, service, v) for v in service.volumes]

    def _data_mount(self, service: ServiceSpec, c: Any) -> tuple[str, str, str] | None:
        """(volume, its mount path, PGDATA) for the named volume holding PGDATA."""
        env = dict(e.split("=", 1) for e in (c.attrs.get("Config") or {}).get("Env") or []
                   if "=" in e)
        pgdata = env.get("PGDATA", "/var/lib/postgresql/data").rstrip("/")
        for m in c.attrs.get("Mounts") or []:
            dest = str(m.get("Destination", "")).rstrip("/")
            if m.get("Type") == "volume" and (pgdata == dest or pgdata.startswith(dest + "/")):
                return str(m.get("Name", "")), dest, pgdata
        return None

    def _read(self, c: Any, path: str) -> bytes | None:
        """A file of the container (running or not), or None when it is not there."""
        import io
        import tarfile

        import docker

        try:
            stream, _ = c.get_archive(path)
            data = b"".join(stream)
        except (docker.errors.NotFound, docker.errors.APIError):
            return None
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = tar.next()
            fh = tar.extractfile(member) if member is not None else None
            return fh.read() if fh is not None else b""

    def _mark_ready(self, project: Project, service: ServiceSpec, cid: str) -> None:
        """Write READY_MARKER into the data volume of container ``cid``: its cluster is
        finished (the server on it answered a query). Only after a start: a running
        container was marked then."""
        import io
        import tarfile

        if not is_database(project, service):
            return
        try:
            c = self.client().containers.get(cid)
        except Exception:  # a missing marker costs only the recovery
            return
        mount = self._data_mount(service, c)
        if mount is None:
            return
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            body = b"devenv saw the server on this volume answer a query\n"
            info = tarfile.TarInfo(READY_MARKER)
            info.size = len(body)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(body))
        with contextlib.suppress(Exception):  # a missing marker costs only the recovery
            c.put_archive(mount[1], buf.getvalue())

    def unfinished_init(self, project: Project, service: ServiceSpec, c: Any,
                        ) -> tuple[str, bool] | None:
        """When the data volume holds a first initialisation that never finished: what
        happened, and whether recreating the volume loses nothing (it was made by a devenv
        that marks a finished cluster, and carries no such mark)."""
        if not is_database(project, service):
            return None
        mount = self._data_mount(service, c)
        if mount is None:
            return None
        vname, dest, pgdata = mount
        if self._read(c, f"{dest}/{READY_MARKER}") is not None:
            return None  # it held a finished cluster: never recreated
        version = self._read(c, f"{pgdata}/PG_VERSION")
        if not version:
            return None  # empty: the image initialises it on the next start
        if self._read(c, f"{pgdata}/global/pg_control") is None:
            why = "initdb was cut short (no global/pg_control)"
        else:
            hba = self._read(c, f"{pgdata}/pg_hba.conf") or b""
            lines = [ln.split() for ln in hba.decode(errors="replace").splitlines()
                     if ln.strip() and not ln.lstrip().startswith("#")]
            # initdb allows TCP logins from 127.0.0.1 and ::1 only; the image's init then
            # adds a line for everyone else (how the published port is reached). Any other
            # address means someone opened it: a finished cluster.
            if any(ln[0].startswith("host") and len(ln) > 3
                   and ln[3] not in ("127.0.0.1/32", "::1/128") for ln in lines):
                return None
            why = ("the image's init stopped after initdb, before it allowed logins from "
                   "outside the container")
        try:
            labels = self.client().volumes.get(vname).attrs.get("Labels") or {}
        except Exception:
            labels = {}
        what = (f"volume {vname} never finished its first initialisation ({why}: the "
                "container was stopped or killed during it)")
        if labels.get(LABEL_MARKS_READY) == "1":
            return f"{what}, so it holds no data", True
        # made before devenv marked volumes: say the fix, do not delete on a guess
        return (f"{what}. If it holds nothing you need: docker rm -f {c.name} && "
                f"docker volume rm {vname}, then devenv up"), False
    def _prune_builds(self, project: Project, service: ServiceSpec) -> None:
        """Remove the service's earlier builds once the container runs the current one."""
        assert service.image is not None
        with contextlib.suppress(ServiceError):
            prune_images(self.client(), {LABEL_PROJECT: project.name,
                                         LABEL_SERVICE: service.name}, service.image)

    def _start_existing(self, project: Project, service: ServiceSpec, c: Any) -> Any | None:
        """Start a stopped container; ``None`` when it must be recreated (its free port was
        taken meanwhile)."""
        import docker

        if c.status == "paused":  # `docker pause`: its ports are still bound
            try:
                c.unpause()
            except docker.errors.APIError as exc:
                raise self._start_error(project, service, exc) from None
            return c
        fixed = {p.host for p in service.ports if p.host}
        for host in published(c.attrs).values():
            if portlib.is_free(host):
                continue
            if host in fixed:
                # the same message as for a new container, naming what holds the port
                portlib.choose(project, service, holder=self._holder)
            # recreated on another port; _create's note names the old and the new port
            self._remove(c, force=False)
            return None
        try:
            c.start()
        except docker.errors.APIError as exc:
            raise self._start_error(project, service, exc) from None
        return c

    def _start_error(self, project: Project, service: ServiceSpec,
                     exc: BaseException) -> ServiceError:
        text = short(exc)
        if "port is already allocated" in text or "address already in use" in text:
            return ServiceError(
                f"service {service.name}: a host port it publishes is in use ({text}); stop "
                f"what holds it, or change the port in {service.loc.file}")
        return ServiceError(f"service {service.name}: docker could not start container "
                            f"{container_name(project, service)}: {text}")

    def _holder(self, port: int) -> str | None:
        """Which container publishes host ``port``, if one does."""
        try:
            for c in self._listed(stopped=False):
                if port in _listed_ports(c):
                    return f"container {str((c.get('Names') or ['?'])[0]).lstrip('/')}"
        except Exception:
            return None
        return None

    def _claimed_ports(self, project: Project) -> set[int]:
        """Host ports that other (possibly stopped) containers are bound to."""
        out: set[int] = set()
        with contextlib.suppress(Exception):
            for c in self._listed(stopped=True):
                if c.get("State") == "running":
                    out.update(_listed_ports(c))
                    continue
                if c.get("State") == "created" and (c.get("Labels") or {}).get(
                        LABEL_PROJECT) == project.name:
                    # one this `up` is starting now (devenv starts what it creates at
                    # once and removes it when that fails): the engine answers an inspect
                    # of it only once its start is over, and its ports are new free ones
                    continue
                # the list shows a stopped container's ports as none: its fixed bindings
                # (HostConfig) are in its full description only
                attrs = self._inspect(str(c["Id"]))
                if attrs is not None:
                    out.update(published(attrs).values())
        return out

    def _listed(self, stopped: bool) -> list[dict[str, Any]]:
        """Every container of the engine in ``docker ps``'s short form (one request; the
        SDK's ``containers.list`` inspects each one as well)."""
        local = self._engine()
        if local is not None:
            return local.containers(stopped=stopped)
        return list(self.client().api.containers(all=stopped))

    def _inspect(self, cid: str) -> dict[str, Any] | None:
        """A container's full description, None when it is gone."""
        local = self._engine()
        if local is not None:
            return local.inspect(cid)
        import docker

        try:
            return dict(self.client().api.inspect_container(cid))
        except docker.errors.NotFound:
            return None

    def _image_exists(self, image: str) -> bool:
        try:
            self._call("GET", _image_path(image))
        except EngineError as exc:
            if exc.status == 404:
                return False
            raise ServiceError(f"docker: cannot inspect image {image}: {short(exc)}"
                               ) from None
        return True

    def _ensure_image(self, service: ServiceSpec, reporter: Reporter) -> None:
        """Pull the image when it is missing (never otherwise), showing progress."""
        assert service.image is not None
        if self._image_exists(service.image):
            return
        import docker

        client = self.client()
        phase = f"pull-{service.name}"
        reporter.emit(PhaseStarted(phase, f"pulling {service.image}"))
        t0 = time.monotonic()
        repo, tag = _split_image(service.image)
        layers: dict[str, tuple[int, int]] = {}
        last_shown = 0.0
        try:
            for event in client.api.pull(repo, tag=tag, stream=True, decode=True):
                if "error" in event:
                    raise docker.errors.APIError(str(event["error"]))
                detail = event.get("progressDetail") or {}
                if event.get("id") and detail.get("total"):
                    layers[event["id"]] = (int(detail.get("current", 0)), int(detail["total"]))
                now = time.monotonic()
                if layers and now - last_shown > 1.0:
                    done = sum(c for c, _ in layers.values())
                    total = sum(t for _, t in layers.values())
                    reporter.emit(PhaseStarted(phase, f"pulling {service.image}: "
                                               f"{done / 1e6:.0f} of {total / 1e6:.0f} MB"))
                    last_shown = now
            client.images.get(service.image)
        except docker.errors.DockerException as exc:
            reporter.emit(PhaseFinished(phase, f"could not pull {service.image}", ok=False,
                                        duration=time.monotonic() - t0))
            raise ImageUnavailable(
                f"service {service.name}: image {service.image} is not on this machine and "
                f"could not be pulled ({short(exc)}). Pull or build it by hand "
                f"(docker pull {service.image}), or fix the image name in {service.loc}"
            ) from None
        reporter.emit(PhaseFinished(phase, f"pulled {service.image}",
                                    duration=time.monotonic() - t0))

    def _build(self, project: Project, service: ServiceSpec, tag: str,
               reporter: Reporter) -> None:
        """Build ``tag`` from the service's context unless an image of that tag exists
        (asked over the engine's socket first: no SDK import when it does)."""
        assert service.build is not None
        if self._image_exists(tag):
            return
        build_image(self.client(), project, service.name, service.build, tag,
                    owner=f"service {service.name}", reporter=reporter,
                    labels={LABEL_PROJECT: project.name, LABEL_SERVICE: service.name})

    def _create(self, project: Project, service: ServiceSpec, reporter: Reporter,
                recreating: str = "") -> str:
        """Create the container (its volumes too) and return its id; ``recreating`` is
        added to a note about a port that had to change."""
        self._ensure_image(service, reporter)
        labels = self._labels(project, service)
        # ports first: a port in the way must not leave a new volume behind
        spec = with_ports(service, port_specs(project, service))
        choices = portlib.choose(project, spec, holder=self._holder,
                                 taken=self._claimed_ports(project))
        for ch in choices:
            if ch.note:
                extra = f"; {recreating}" if recreating else ""
                reporter.emit(Message(f"{service.name}: {ch.note}{extra}", "warn"))
        volumes: dict[str, str] = {}
        for vol, path in service.volumes.items():
            vname = volume_name(project, service, vol)
            self._ensure_volume(vname, {LABEL_PROJECT: project.name,
                                        LABEL_SERVICE: service.name, LABEL_MARKS_READY: "1"})
            volumes[vname] = path
        # the Engine API's container config (what the SDK's containers.create sends)
        config: dict[str, Any] = {
            "Image": service.image,
            "Labels": labels,
            "Env": [f"{k}={v}" for k, v in service.env.items()],
            "HostConfig": {"NetworkMode": "default"},
        }
        if choices:
            config["ExposedPorts"] = {f"{ch.container}/tcp": {} for ch in choices}
            config["HostConfig"]["PortBindings"] = {
                f"{ch.container}/tcp": [{"HostIp": HOST, "HostPort": str(ch.host)}]
                for ch in choices}
        if volumes:
            config["Volumes"] = {path: {} for path in volumes.values()}
            config["HostConfig"]["Binds"] = [f"{v}:{path}:rw" for v, path in volumes.items()]
        if service.command:
            config["Cmd"] = list(service.command)
        if service.healthcheck:
            hc = service.healthcheck
            test = ["CMD-SHELL", hc[0]] if len(hc) == 1 else ["CMD", *hc]
            config["Healthcheck"] = {"Test": test, "Interval": HEALTH_INTERVAL_NS,
                                     "Timeout": 5 * SECOND_NS, "Retries": 3,
                                     "StartPeriod": 0}
        if is_postgres(service):
            # PostgreSQL's fast shutdown; SIGTERM waits for every client to disconnect.
            config["StopSignal"] = "SIGINT"
        name = container_name(project, service)
        try:
            return str(self._call("POST", "/containers/create", {"name": name}, config)["Id"])
        except EngineError as exc:
            if exc.status == 409:  # another devenv created it a moment ago
                c = self._container(project, service)
                if c is not None:
                    return str(c.id)
            raise ServiceError(f"service {service.name}: docker could not create container "
                               f"{name}: {short(exc)}") from None

    def _call(self, method: str, path: str, query: dict[str, str] | None = None,
              body: Any = None) -> Any:
        """An Engine API request, over the local socket when there is one, else through
        the SDK's client (any engine it reaches); an error status is EngineError."""
        local = self._engine()
        if local is not None:
            try:
                return local.call(method, path, query, body)
            except OSError as exc:
                raise EngineError(0, f"{exc.strerror or exc}") from None
        import requests  # the SDK's client is a requests session (loaded with it)

        api = self.client().api
        try:
            # unversioned, as on the local socket: the engine answers in its own version
            resp = api.request(method, f"{api.base_url}{path}", params=query, json=body,
                               timeout=api.timeout)
        except requests.exceptions.RequestException as exc:
            raise EngineError(0, short(exc)) from None
        if resp.status_code >= 400:
            try:
                message = str(resp.json().get("message", ""))
            except (ValueError, AttributeError):
                message = resp.text.strip()
            raise EngineError(resp.status_code, message or f"{method} {path} answered "
                                                           f"{resp.status_code}")
        return resp.json() if resp.content.strip() else None

    def _ensure_volume(self, name: str, labels: Mapping[str, str]) -> None:
        """Named volume ``name``, created (with ``labels``) when it is missing."""
        try:
            self._call("GET", f"/volumes/{name}")
            return
        except EngineError as exc:
            if exc.status != 404:
                raise ServiceError(f"docker: cannot inspect volume {name}: {short(exc)}"
                                   ) from None
        try:
            self._call("POST", "/volumes/create", body={"Name": name, "Labels": dict(labels)})
        except EngineError as exc:
            raise ServiceError(f"docker: cannot create volume {name}: {short(exc)}"
                               ) from None

    def up_now(self, project: Project, service: ServiceSpec) -> Endpoint | None:
        """The service's endpoint when its container already runs as defined and passes
        its readiness check at this moment: one inspect and one check, nothing started
        and no waiting; None when :meth:`up` has anything more to do (an image to build,
        a container to create or start, a check that has not passed yet)."""
        if service.build is not None:
            # the tag names the context's content: a changed folder is another tag, which
            # the running container does not have (its definition hash says so below)
            service = resolved(project, service)
            assert service.image is not None
            if not self._image_exists(service.image):
                return None  # up builds it
        if not service.image:
            return None
        seen = self._seen(project, service)
        watch = self._as_is(project, service, config_hash(service), seen) if seen else None
        if watch is None:
            return None
        attrs = watch.reload()  # the inspect just made, not a second one
        try:
            probe = self._attempt(project, service, watch, attrs)
        except ServiceError:
            return None  # up says what is wrong, with the container's log
        if not probe.ready or attrs is None:
            return None
        ep = Endpoint(HOST, published(attrs), self.name)
        portlib.PortStore(project.state_dir).remember(service.name, dict(ep.ports))
        return ep

    def _wait(self, project: Project, service: ServiceSpec, c: _Watch, timeout: float,
              ) -> Endpoint:
        """Until the service is ready (see :meth:`_attempt`)."""
        seen: list[Mapping[str, Any]] = []

        def attempt(_left: float) -> tuple[bool, str]:
            attrs = c.reload()
            probe = self._attempt(project, service, c, attrs)
            assert attrs is not None  # _attempt raised otherwise
            seen[:] = [attrs]
            return probe.ready, probe.detail

        # short pauses: a small server answers a moment after its start, and an attempt
        # is one inspect over the local socket plus a connection
        waited = waiting.until(attempt, timeout, pause=0.02, factor=1.5, longest=0.1)
        if not waited.done:
            raise ServiceError(failure_message(
                service, f"did not become healthy within {timeout:.0f}s "
                         f"({waited.detail or 'not ready'})", c.tail()))
        # the ports as of the check that passed (no reload since)
        return Endpoint(HOST, published(seen[-1]), self.name)

    def _attempt(self, project: Project, service: ServiceSpec, c: _Watch,
                 attrs: Mapping[str, Any] | None) -> Probe:
        """One readiness check of container ``c`` as ``attrs`` (its inspect) shows it: a
        query for the database, else its ``ready:`` check, else its healthcheck and its
        ports from the host, else its ports answering. Raises :class:`ServiceError` when
        waiting more cannot help (gone, exited, a database refusing the credentials)."""
        if attrs is None:
            raise ServiceError(f"service {service.name}: container {c.name} was removed "
                               "while starting")
        state = attrs.get("State") or {}
        status = state.get("Status", "")
        if status in ("exited", "dead"):
            code = state.get("ExitCode")
            raise ServiceError(failure_message(
                service, f"exited with code {code} while starting (container {c.name})",
                c.tail()))
        if status != "running":
            return Probe(False, f"container is {status}")
        ports = published(attrs)
        if is_database(project, service):
            user, password = credentials(project, service)
            specs = port_specs(project, service)
            port = ports.get(specs[0].container) if specs else None
            probe = pg_probe(port, user, password) if port else Probe(
                False, "no published port")
            if probe.fatal:
                vols = ", ".join(volume_name(project, service, v)
                                 for v in service.volumes) or f"container {c.name}"
                raise ServiceError(f"service {service.name}: {probe.detail}: "
                                   + wrong_credentials_hint(service, vols))
            return probe
        if service.ready is not None:
            return self._ready_probe(service, service.ready, c.id, ports)
        if service.healthcheck:
            health = state.get("Health") or {}
            hs = health.get("Status", "starting")
            log = health.get("Log") or []
            last = (log[-1].get("Output") or "").strip() if log else ""
            if hs != "healthy":
                return Probe(False, f"health check {hs}" + (f": {last}" if last else ""))
            # healthy inside is not enough: the host must reach it too
        return _tcp_all(ports)

    def _ready_probe(self, service: ServiceSpec, ready: ReadySpec, cid: str,
                     ports: Mapping[int, int]) -> Probe:
        """One attempt of a ``ready:`` check, always over the published ports from the
        host (a container's own view of itself says nothing about the way in)."""
        if ready.port is not None:
            if ready.port not in ports:
                return Probe(False, f"container port {ready.port} is not published (add it "
                                    f"to ports: in {service.loc.file})")
            chosen = {ready.port: ports[ready.port]}
        else:
            chosen = dict(ports)
        if ready.kind == "http":
            if not chosen:
                return Probe(False, "no published port to ask (add ports:)")
            first = ports.get(service.ports[0].container) if service.ports and \
                ready.port is None else None
            host_port = first or next(iter(chosen.values()))
            return http_probe(host_port, ready.path, ready.status)
        probe = _tcp_all(chosen)
        if not probe.ready or ready.kind != "cmd":
            return probe
        assert ready.command is not None
        local = self._engine()
        try:
            if local is not None:  # the local socket: no SDK import on a daily `up`
                code, out = local.exec(cid, list(ready.command), timeout=30)
            else:
                api = self.client().api
                exec_id = api.exec_create(cid, list(ready.command), stdout=True,
                                          stderr=True)["Id"]
                out = api.exec_start(exec_id)
                code = api.exec_inspect(exec_id).get("ExitCode")
        except Exception as exc:  # the container went away: the next loop says so
            return Probe(False, f"ready command could not run: {short(exc)}")
        if code == 0:
            return Probe(True)
        text = out.decode(errors="replace").strip() if isinstance(out, bytes) else ""
        return Probe(False, f"ready command exited with {code}"
                            + (f": {text.splitlines()[-1]}" if text else ""))

    def _tail(self, c: Any, lines: int = TAIL_LINES) -> list[str]:
        try:
            data = c.logs(tail=lines)
        except Exception:
            return []
        text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
        return logtail.tail_text(text, lines) if text.strip() else []

    # ------------------------------------------------------------------ status

    def status(self, project: Project, service: ServiceSpec) -> ServiceState:
        with contextlib.suppress(ServiceError):  # a missing context: shown as changed
            service = resolved(project, service)
        name = container_name(project, service)
        c = self._container(project, service)
        if c is None:
            return ServiceState(service.name, self.name, "missing",
                                detail=f"no container {name}")
        attrs = c.attrs
        state = attrs.get("State") or {}
        status = state.get("Status", "")
        running = status == "running"
        shown = {"running": "running", "dead": "exited",
                 "restarting": "running"}.get(status, "stopped")
        if status == "exited" and state.get("ExitCode") not in (0, None):
            shown = "exited"  # it failed (a clean `docker stop` of postgres exits 0)
        ports = published(attrs)
        specs = port_specs(project, service)
        main = specs[0].container if specs else None
        address = f"{HOST}:{ports[main]}" if main is not None and main in ports else None
        health = str((state.get("Health") or {}).get("Status", ""))
        if running and is_database(project, service) and main in ports:
            user, password = credentials(project, service)
            probe = pg_probe(ports[main], user, password, timeout=1)
            health = "healthy" if probe.ready else "unhealthy"
        if not running:
            health = ""
        detail = f"container {name}"
        if status in ("exited", "dead"):
            detail += f" exited with code {state.get('ExitCode')}"
        if (not running or health == "unhealthy") and is_database(project, service):
            unfinished = self.unfinished_init(project, service, c)
            if unfinished is not None:
                what, recreate = unfinished
                detail += f"; {what}" + ("; devenv up recreates it" if recreate else "")
        vols = [volume_name(project, service, v) for v in service.volumes]
        extra = {"container": name, "id": c.short_id, "image": str(service.image)}
        if vols:
            extra["volumes"] = ", ".join(vols)
        return ServiceState(
            service.name, self.name, shown, health, address,
            _started_at(state.get("StartedAt")) if running else None,
            (c.labels or {}).get(LABEL_HASH) == config_hash(service), detail, extra)

    def endpoint(self, project: Project, service: ServiceSpec) -> Endpoint | None:
        seen = self._seen(project, service)
        if seen == {}:
            return None
        labels = ((seen or {}).get("Config") or {}).get("Labels") or {}
        if seen and labels.get(LABEL_PROJECT) == project.name and labels.get(
                LABEL_SERVICE) == service.name:  # else the SDK path below names the error
            running = (seen.get("State") or {}).get("Status") == "running"
            return Endpoint(HOST, published(seen), self.name) if running else None
        c = self._container(project, service)
        if c is None or c.status != "running":
            return None
        return Endpoint(HOST, published(c.attrs), self.name)

    # ------------------------------------------------------------------ down

    def _remove(self, c: Any, force: bool) -> None:
        import docker

        held = list(published(c.attrs).values()) if c.status == "running" else []
        try:
            if not force and c.status in ("running", "restarting"):
                c.stop(timeout=STOP_TIMEOUT)
            # v=True: anonymous volumes die with their container (a new one gets new ones);
            # named volumes are only removed by down --volumes.
            c.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        _wait_released(held)

    def down(self, project: Project, service: ServiceSpec, volumes: bool = False) -> list[str]:
        """Stop the container (kept, so ``up`` restarts it); with ``volumes``, remove the
        container and its volumes."""
        return self._down(project, service, volumes)

    def leftovers(self, project: Project, volumes: bool = False) -> list[str]:
        """``down`` for containers and volumes of the project whose service is no longer
        in the configuration."""
        known = set(project.services)
        out: list[str] = []
        client = self.client()
        for c in client.containers.list(all=True, filters=self._filters(project, None)):
            if (c.labels or {}).get(LABEL_SERVICE) not in known:
                out += self._down_container(c, volumes)
        if volumes:
            for v in client.volumes.list(filters=self._filters(project, None)):
                if (v.attrs.get("Labels") or {}).get(LABEL_SERVICE) not in known:
                    out += self._remove_volume(v)
        return out

    def _down(self, project: Project, service: ServiceSpec, volumes: bool) -> list[str]:
        import docker

        client = self.client()
        out: list[str] = []
        seen: set[str] = set()
        found = client.containers.list(all=True, filters=self._filters(project, service))
        for c in found:
            seen.add(c.id)
            out += self._down_container(c, volumes)
        if volumes:
            vols = {v.name: v for v in client.volumes.list(
                filters=self._filters(project, service))}
            for vol in service.volumes:
                vname = volume_name(project, service, vol)
                if vname not in vols:
                    with contextlib.suppress(docker.errors.NotFound):
                        vols[vname] = client.volumes.get(vname)
            for v in vols.values():
                out += self._remove_volume(v)
        return out

    def _down_container(self, c: Any, volumes: bool) -> list[str]:
        import docker

        if volumes:
            self._remove(c, force=True)
            return [f"removed container {c.name}"]
        if c.status in ("running", "restarting", "paused"):
            held = list(published(c.attrs).values())
            try:
                c.stop(timeout=STOP_TIMEOUT)
            except docker.errors.NotFound:
                return []
            _wait_released(held)
            return [f"stopped container {c.name}"]
        return []

    def _remove_volume(self, v: Any) -> list[str]:
        import docker

        try:
            v.remove(force=True)
        except docker.errors.NotFound:
            return []
        except docker.errors.APIError as exc:
            raise ServiceError(f"docker: cannot remove volume {v.name}: {short(exc)}"
                               ) from None
        return [f"removed volume {v.name}"]

    def data(self, project: Project, service: ServiceSpec) -> list[str]:
        client = self.client()
        names = {v.name for v in client.volumes.list(filters=self._filters(project, service))}
        out = [f"volume {n}" for n in sorted(names)]
        for c in client.containers.list(all=True, filters=self._filters(project, service)):
            out.append(f"container {c.name} (and anything stored inside it)")
        return out

    def data_leftovers(self, project: Project) -> list[str]:
        """What :meth:`leftovers` with ``volumes`` would delete."""
        known = set(project.services)
        client = self.client()
        out = [f"container {c.name}" for c in client.containers.list(
            all=True, filters=self._filters(project, None))
            if (c.labels or {}).get(LABEL_SERVICE) not in known]
        out += [f"volume {v.name}" for v in client.volumes.list(
            filters=self._filters(project, None))
            if (v.attrs.get("Labels") or {}).get(LABEL_SERVICE) not in known]
        return out

    # ------------------------------------------------------------------ logs / exec

    def logs(self, project: Project, service: ServiceSpec, follow: bool = False,
             tail: int | None = None) -> Iterator[str]:
        c = self._container(project, service)
        if c is None:
            raise ServiceError(f"service {service.name} has no container "
                               f"({container_name(project, service)}): start it with "
                               "`devenv up`")
        stream = self.client().api.logs(c.id, stream=True, follow=follow,
                                        tail=tail if tail is not None else "all")
        buf = b""
        try:
            for chunk in stream:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    yield line.decode(errors="replace")
            if buf:
                yield buf.decode(errors="replace")
        finally:
            with contextlib.suppress(Exception):
                stream.close()

    def exec(self, project: Project, service: ServiceSpec, argv: Sequence[str], *,
             stdin: Path | None = None, stdout: Path | None = None,
             env: Mapping[str, str] | None = None) -> ExecResult:
        """Run ``argv`` inside the running container; stdin/stdout stream from/to host
        files (nothing is held in memory)."""
        from docker.utils.socket import frames_iter

        c = self._container(project, service)
        if c is None or c.status != "running":
            raise ServiceError(f"service {service.name} is not running: start it with "
                               "`devenv up`")
        api = self.client().api
        full_env: dict[str, str] = {}
        if is_postgres(service):
            full_env["PGUSER"] = service.env.get("POSTGRES_USER", "postgres")
            full_env["PGHOST"] = "/var/run/postgresql"
        full_env.update(env or {})
        exec_id = api.exec_create(c.id, list(argv), stdin=stdin is not None, stdout=True,
                                  stderr=True, environment=[f"{k}={v}" for k, v in
                                                            full_env.items()])["Id"]
        sock = api.exec_start(exec_id, socket=True)
        raw = getattr(sock, "_sock", sock)
        raw.settimeout(None)  # a dump can be silent for minutes (CREATE INDEX)
        failure: list[BaseException] = []

        def feed() -> None:
            assert stdin is not None
            try:
                with stdin.open("rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        raw.sendall(block)
            except OSError as exc:  # the command stopped reading: its exit code says why
                failure.append(exc)
            finally:
                with contextlib.suppress(OSError):
                    raw.shutdown(socket.SHUT_WR)

        writer = threading.Thread(target=feed, daemon=True) if stdin is not None else None
        if writer is not None:
            writer.start()
        err = bytearray()
        out_fh = stdout.open("wb") if stdout is not None else None
        try:
            for stream_id, data in frames_iter(sock, tty=False):
                if stream_id == 1 and out_fh is not None:
                    out_fh.write(data)
                else:
                    err += data
                    if len(err) > ERR_KEEP:
                        del err[:len(err) - ERR_KEEP]
        finally:
            if out_fh is not None:
                out_fh.close()
            if writer is not None:
                writer.join()
            with contextlib.suppress(Exception):
                sock.close()
        info = api.exec_inspect(exec_id)
        code = info.get("ExitCode")
        return ExecResult(int(code) if code is not None else -1,
                          bytes(err).decode(errors="replace"))


def _listed_ports(c: Mapping[str, Any]) -> set[int]:
    """The host ports a container publishes, from its ``docker ps`` form."""
    return {int(p["PublicPort"]) for p in c.get("Ports") or []
            if isinstance(p, dict) and p.get("PublicPort")}


def _tcp_all(ports: Mapping[int, int]) -> Probe:
    """Every published port takes a connection from the host (ready when none is). The
    ports are asked at once: a quiet server costs each one the probe's settle time."""
    hosts = list(dict.fromkeys(ports.values()))
    probes: dict[int, Probe] = {}
    if len(hosts) > 1:
        askers = [threading.Thread(target=lambda h=h: probes.__setitem__(h, tcp_probe(h)),
                                   daemon=True) for h in hosts]
        for t in askers:
            t.start()
        for t in askers:
            t.join()
    for host in hosts:
        probe = probes.get(host) or tcp_probe(host)
        if not probe.ready:
            return Probe(False, f"port {host}: {probe.detail}")
    return Probe(True)


def _wait_released(ports: list[int], limit: float = 5) -> None:
    """Wait (a little) until the engine's port proxy lets go of ``ports``: it does so a
    moment after the container stops, and an `up` right after a `down` must not find its
    own port taken."""
    taken = list(ports)

    def released(_left: float) -> bool:
        taken[:] = [p for p in taken if not portlib.is_free(p)]
        return not taken

    waiting.until(released, limit)


def _split_image(image: str) -> tuple[str, str]:
    """``repo[:tag]`` (``@digest`` kept whole) as (repo, tag); the tag defaults to latest."""
    if "@" in image:
        return image, ""
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = image.rsplit(":", 1)
        return repo, tag
    return image, "latest"
