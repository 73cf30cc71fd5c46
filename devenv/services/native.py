"""The native backend: a PostgreSQL server run from the machine's own server binaries.

For where no Docker engine answers. Only PostgreSQL-like services (an image named
``postgres*``, or ``backend: native``). The data lives in ``.devenv/native/<service>/``
(``data/`` plus its log and socket folder beside it). PostgreSQL will not run as root, so
as root the server runs as the ``postgres`` user (see :mod:`devenv.postgres.pgcluster`), which
would have to pass through ``.devenv/``; that stays 0700, so as root the data goes to
``/var/lib/devenv/<project>-<hash of the root>/<service>/`` instead and status says so
(not /var/tmp, where systemd-tmpfiles deletes files unused for 30 days: a developer back
from a month away would find a cluster with files missing). A cluster an earlier devenv
made under /var/tmp is moved there the next time it is stopped when ``up`` runs.

POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB / POSTGRES_HOST_AUTH_METHOD=trust of the
service's env apply on first start, like the image's entrypoint.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devenv import jsonfile, logtail, pids, proc, waiting
from devenv.errors import ServiceError
from devenv.events import Message, Reporter
from devenv.jsonfile import ensure_state_dir
from devenv.postgres import database, pgcluster
from devenv.schema import PortSpec, Project, ServiceSpec
from devenv.services import ports as portlib
from devenv.services.base import Endpoint, ExecResult, ServiceState
from devenv.services.support import (
    TAIL_LINES,
    config_hash,
    credentials,
    failure_message,
    follow_file,
    is_postgres,
    pg_probe,
    with_ports,
    wrong_credentials_hint,
)

HOST = portlib.HOST
FALLBACK_BASE = Path("/var/lib/devenv")
# where devenv 0.1 put it: read, and moved to FALLBACK_BASE once stopped
LEGACY_BASE = Path("/var/tmp")
SERVER_USER = "postgres"


@dataclass(frozen=True)
class Layout:
    """Where one service's server keeps its files."""

    base: Path
    fallback_reason: str = ""

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "data.log"  # pgcluster: <datadir>.log

    @property
    def sockdir(self) -> Path:
        return self.base / "data.sock"

    @property
    def meta(self) -> Path:
        return self.base / "devenv.json"


def _server_user() -> pwd.struct_passwd | None:
    """The account the server runs as when it is not us (we are root)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        return None


def traversable(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether ``user`` may enter every folder from ``/`` down to ``path`` (mode bits)."""
    groups = {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem}
    for folder in [*reversed(path.parents), path]:
        try:
            st = folder.stat()
        except OSError:
            return True  # not created yet: we create it traversable
        if st.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def fallback_base(project: Project) -> Path:
    return FALLBACK_BASE / f"{project.name}-{_digest(project)}"


def legacy_base(project: Project) -> Path:
    return LEGACY_BASE / f"devenv-{project.name}-{_digest(project)}"


def _digest(project: Project) -> str:
    return hashlib.sha256(str(project.root).encode()).hexdigest()[:8]


def layout(project: Project, service: ServiceSpec) -> Layout:
    """The folder for ``service``: in ``.devenv/native/`` when we are the server's user;
    as root (the server runs as ``postgres``) under /var/lib/devenv, with the reason."""
    preferred = project.state_dir / "native" / service.name
    user = _server_user()
    if user is None:
        return Layout(preferred)
    fallback = fallback_base(project) / service.name
    if not (fallback / "data" / "PG_VERSION").exists():
        legacy = legacy_base(project) / service.name
        if (legacy / "data" / "PG_VERSION").exists():
            # an earlier devenv's, under /var/tmp: up moves it once the server is stopped
            # (_move_to_fallback)
            return Layout(legacy, f"the server runs as {SERVER_USER} (PostgreSQL refuses "
                                  "root); kept under /var/tmp by an earlier devenv")
    if not traversable(project.root, user):
        return Layout(fallback, f"the {SERVER_USER} user (which runs the server, as "
                                f"PostgreSQL refuses root) cannot enter {project.root}")
    if (preferred / "data" / "PG_VERSION").exists() \
            and not (fallback / "data" / "PG_VERSION").exists():
        # made inside .devenv/ by an earlier devenv (which opened .devenv/ to the postgres
        # group for it); up moves it out once the server is stopped (_move_to_fallback)
        return Layout(preferred)
    # The server's account would have to pass through .devenv/, which stays 0700 (it holds
    # credentials): the cluster lives outside it.
    return Layout(fallback, f"the server runs as {SERVER_USER} (PostgreSQL refuses root), "
                            "and .devenv/ stays closed to other users")


def _move_to_fallback(project: Project, service: ServiceSpec, lay: Layout) -> Layout:
    """Move a stopped cluster an earlier devenv made as root where it no longer belongs
    (in ``.devenv/native/``, or under /var/tmp) to :func:`fallback_base`, and close
    ``.devenv/`` again (0700, root's group)."""
    user = _server_user()
    legacy = legacy_base(project) / service.name
    from_legacy = lay.base == legacy
    if user is None or (lay.fallback_reason and not from_legacy) \
            or not (lay.datadir / "PG_VERSION").exists() or _pid_info(lay.datadir) is not None:
        return lay
    target = Layout(fallback_base(project) / service.name,
                    f"the server runs as {SERVER_USER} (PostgreSQL refuses root), and "
                    ".devenv/ stays closed to other users")
    target.base.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
    shutil.move(str(lay.base), str(target.base))
    with contextlib.suppress(OSError):
        lay.base.parent.rmdir()  # .devenv/native/ or /var/tmp/devenv-*, once emptied
    if from_legacy:
        return target
    state = project.state_dir
    st = state.stat()
    # another service's server may still run in there: close .devenv/ once none is left
    if st.st_uid == 0 and st.st_gid == user.pw_gid and not lay.base.parent.exists():
        os.chown(state, 0, 0)
        os.chmod(state, 0o700)
    return target


def _prepare_dirs(project: Project, lay: Layout) -> None:
    """Create the service folder so that the server's user can reach and own it."""
    user = _server_user()
    if lay.fallback_reason:
        top = lay.base.parent
        top.mkdir(mode=0o711, parents=True, exist_ok=True)
    else:
        # we are the server's user: .devenv/ stays 0700 and the server still reaches it
        (project.state_dir / "native").mkdir(mode=0o700, exist_ok=True)
    lay.base.mkdir(mode=0o700, exist_ok=True)
    if user is not None:
        os.chown(lay.base, user.pw_uid, user.pw_gid)


def _pid_info(datadir: Path) -> tuple[int, float | None, int | None] | None:
    """(pid, start time, port) of a live postmaster of ``datadir``, from postmaster.pid."""
    try:
        lines = (datadir / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    started = float(lines[2]) if len(lines) > 2 and lines[2].strip().isdigit() else None
    port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
    return pid, started, port


def _main_port(service: ServiceSpec) -> PortSpec:
    return service.ports[0] if service.ports else PortSpec(5432)


class NativeBackend:
    """Runs PostgreSQL services with the local server binaries (``initdb``, ``pg_ctl``)."""

    name = "native"

    def available(self) -> tuple[bool, str]:
        bindir = pgcluster.find_bindir()
        if bindir is None:
            return False, ("no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in "
                           "the usual places (/usr/lib/postgresql/*/bin, ...)")
        if os.geteuid() == 0 and _server_user() is None:
            return False, (f"running as root and there is no '{SERVER_USER}' user to run "
                           "the server as (PostgreSQL refuses root)")
        return True, f"PostgreSQL server binaries in {bindir}"

    def _check(self, service: ServiceSpec) -> None:
        if not is_postgres(service):
            raise ServiceError(
                f"service {service.name} (image {service.image}) needs Docker: the native "
                f"backend runs PostgreSQL only. Start a Docker engine, or set backend: "
                f"native only on PostgreSQL services ({service.loc})")

    def _cluster(self, service: ServiceSpec, lay: Layout, port: int) -> pgcluster.Cluster:
        password = service.env.get("POSTGRES_PASSWORD", "")
        return pgcluster.Cluster(datadir=lay.datadir, port=port,
                                 user=service.env.get("POSTGRES_USER", "postgres"),
                                 # initdb needs some password; trust auth replaces it below
                                 password=password or "devenv-unused")

    def _meta(self, lay: Layout) -> dict[str, Any]:
        return jsonfile.read(lay.meta)

    def _write_meta(self, lay: Layout, data: Mapping[str, Any]) -> None:
        tmp = lay.meta.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(data), indent=1, sort_keys=True))
        os.replace(tmp, lay.meta)

    # ------------------------------------------------------------------ up

    def up(self, project: Project, service: ServiceSpec, reporter: Reporter,
           timeout: float = 120) -> Endpoint:
        """Start (or reuse) the server and wait for a real query to succeed."""
        self._check(service)
        ensure_state_dir(project.state_dir)  # 0700 before anything (ports.json) creates it
        lay = _move_to_fallback(project, service, layout(project, service))
        spec = _main_port(service)
        want = config_hash(service)
        meta = self._meta(lay)
        running = _pid_info(lay.datadir)
        if running is not None and meta.get("config_hash") != want:
            reporter.emit(Message(f"{service.name}: its definition changed since the server "
                                  "started; restarting it (the data is kept)"))
            self._cluster(service, lay, running[2] or 0).stop()
            running = None
        if running is None:
            port = self._start(project, service, lay, reporter, timeout)
        else:
            port = running[2] or 0
        ep = self._wait(project, service, lay, port, timeout)
        portlib.PortStore(project.state_dir).remember(service.name, {spec.container: port})
        return ep

    def _start(self, project: Project, service: ServiceSpec, lay: Layout, reporter: Reporter,
               timeout: float) -> int:
        password = service.env.get("POSTGRES_PASSWORD", "")
        trust = service.env.get("POSTGRES_HOST_AUTH_METHOD") == "trust"
        if not password and not trust:
            raise ServiceError(
                f"service {service.name}: POSTGRES_PASSWORD is not set in its env "
                f"({service.loc}); set it (or POSTGRES_HOST_AUTH_METHOD: trust to allow "
                "logging in without one)")
        spec = _main_port(service)
        # the server listens on one port: the first one the service names
        choice = portlib.choose(project, with_ports(service, (spec,)))[0]
        if choice.note:
            reporter.emit(Message(f"{service.name}: {choice.note}", "warn"))
        _prepare_dirs(project, lay)
        cluster = self._cluster(service, lay, choice.host)
        fresh = not cluster.initialized()
        if fresh and lay.fallback_reason:
            reporter.emit(Message(f"{service.name}: data in {lay.base}: {lay.fallback_reason}",
                                  "warn"))
        try:
            if fresh:
                cluster.init()
                if trust and not password:
                    _trust_host_logins(lay.datadir)
            cluster.start(timeout=timeout)
        except pgcluster.ClusterError as exc:
            raise ServiceError(failure_message(
                service, f"did not start (native PostgreSQL in {lay.datadir}): "
                         f"{str(exc).splitlines()[0]}",
                logtail.tail_file(lay.log, TAIL_LINES).lines)) from None
        meta = self._meta(lay)
        meta.update({"config_hash": config_hash(service), "port": choice.host,
                     "bindir": str(cluster.bindir)})
        self._write_meta(lay, meta)
        if fresh:
            self._first_start(project, service, lay, choice.host, timeout)
        return choice.host

    def _first_start(self, project: Project, service: ServiceSpec, lay: Layout, port: int,
                     timeout: float) -> None:
        """What the image's entrypoint does once: create POSTGRES_DB."""
        dbname = service.env.get("POSTGRES_DB") or service.env.get("POSTGRES_USER")
        if not dbname or dbname == "postgres":
            return
        self._wait(project, service, lay, port, timeout)
        user = service.env.get("POSTGRES_USER", "postgres")
        target = database.Target(HOST, port, user, service.env.get("POSTGRES_PASSWORD", ""),
                                 "postgres")
        try:
            database.ensure(target, dbname, ())
        except database.DatabaseError as exc:
            raise ServiceError(f"service {service.name}: cannot create database {dbname}: "
                               f"{exc}") from None

    def _wait(self, project: Project, service: ServiceSpec, lay: Layout, port: int,
              timeout: float) -> Endpoint:
        user, password = credentials(project, service)

        def attempt(_left: float) -> tuple[bool, str]:
            if _pid_info(lay.datadir) is None:
                raise ServiceError(failure_message(
                    service, f"stopped while starting (native PostgreSQL in {lay.datadir})",
                    logtail.tail_file(lay.log, TAIL_LINES).lines))
            probe = pg_probe(port, user, password)
            if probe.fatal:
                raise ServiceError(f"service {service.name}: {probe.detail}: "
                                   + wrong_credentials_hint(service, str(lay.datadir)))
            return probe.ready, probe.detail

        waited = waiting.until(attempt, timeout, pause=0.05, factor=1.5, longest=0.25)
        if not waited.done:
            raise ServiceError(failure_message(
                service, f"did not become healthy within {timeout:.0f}s ({waited.detail})",
                logtail.tail_file(lay.log, TAIL_LINES).lines))
        return Endpoint(HOST, {_main_port(service).container: port}, self.name)

    # ------------------------------------------------------------------ status

    def status(self, project: Project, service: ServiceSpec) -> ServiceState:
        lay = layout(project, service)
        where = f"data in {lay.base}" + (f" ({lay.fallback_reason})"
                                         if lay.fallback_reason else "")
        if not (lay.datadir / "PG_VERSION").exists():
            return ServiceState(service.name, self.name, "missing",
                                detail=f"no data yet (would be in {lay.base})"
                                + (f": {lay.fallback_reason}" if lay.fallback_reason else ""))
        meta = self._meta(lay)
        matches = meta.get("config_hash") == config_hash(service) if meta else None
        info = _pid_info(lay.datadir)
        extra = {"data": str(lay.base)}
        if lay.fallback_reason:
            extra["fallback"] = lay.fallback_reason
        if info is None:
            return ServiceState(service.name, self.name, "stopped", config_matches=matches,
                                detail=where, extra=extra)
        pid, started, port = info
        health = ""
        if port:
            user, password = credentials(project, service)
            health = "healthy" if pg_probe(port, user, password, timeout=1).ready \
                else "unhealthy"
        extra["pid"] = str(pid)
        return ServiceState(service.name, self.name, "running", health,
                            f"{HOST}:{port}" if port else None, started, matches, where, extra)

    def up_now(self, project: Project, service: ServiceSpec) -> Endpoint | None:
        return None  # one server at most: up's own check is as quick

    def endpoint(self, project: Project, service: ServiceSpec) -> Endpoint | None:
        if not is_postgres(service):
            return None
        info = _pid_info(layout(project, service).datadir)
        if info is None or info[2] is None:
            return None
        return Endpoint(HOST, {_main_port(service).container: info[2]}, self.name)

    # ------------------------------------------------------------------ down

    def down(self, project: Project, service: ServiceSpec, volumes: bool = False) -> list[str]:
        """Stop the server; with ``volumes`` delete its folder (data, log)."""
        if not is_postgres(service):
            return []
        lay = layout(project, service)
        out: list[str] = []
        info = _pid_info(lay.datadir)
        if info is not None:
            self._cluster(service, lay, info[2] or 0).stop(mode="fast")
            out.append(f"stopped native PostgreSQL for {service.name} (pid {info[0]})")
        if volumes and lay.base.exists():
            try:
                shutil.rmtree(lay.base)
            except OSError as exc:
                raise ServiceError(_undeletable(service, lay.base, exc)) from None
            out.append(f"deleted {lay.base}")
            if lay.fallback_reason:
                with contextlib.suppress(OSError):
                    lay.base.parent.rmdir()  # only when no other service's data is left
        return out

    def data(self, project: Project, service: ServiceSpec) -> list[str]:
        if not is_postgres(service):
            return []
        lay = layout(project, service)
        return [f"folder {lay.base}"] if lay.base.exists() else []

    # ------------------------------------------------------------------ logs / exec

    def logs(self, project: Project, service: ServiceSpec, follow: bool = False,
             tail: int | None = None) -> Iterator[str]:
        lay = layout(project, service)
        if not lay.log.exists():
            raise ServiceError(f"service {service.name} has no log yet ({lay.log}): start "
                               "it with `devenv up`")
        return follow_file(lay.log, tail, follow)

    def exec(self, project: Project, service: ServiceSpec, argv: Sequence[str], *,
             stdin: Path | None = None, stdout: Path | None = None,
             env: Mapping[str, str] | None = None) -> ExecResult:
        """Run ``argv`` with the server's own binaries (``pg_dump`` of its version)."""
        lay = layout(project, service)
        info = _pid_info(lay.datadir)
        if info is None or info[2] is None:
            raise ServiceError(f"service {service.name} is not running: start it with "
                               "`devenv up`")
        if stdin is not None and stdout is not None:
            raise ValueError("exec streams stdin or stdout, not both")
        bindir = Path(str(self._meta(lay).get("bindir") or pgcluster.find_bindir() or ""))
        cmd = list(argv)
        if cmd and "/" not in cmd[0] and (bindir / cmd[0]).exists():
            cmd[0] = str(bindir / cmd[0])
        full_env = dict(os.environ)
        full_env.update({"PGHOST": str(lay.sockdir), "PGPORT": str(info[2]),
                         "PGUSER": service.env.get("POSTGRES_USER", "postgres")})
        full_env.update(env or {})
        try:
            if stdout is not None:
                with stdout.open("wb") as fh:
                    def sink(block: bytes) -> None:
                        fh.write(block)

                    done = proc.stream(cmd, env=full_env, sink=sink, check=False)
            elif stdin is not None:
                with stdin.open("rb") as src:
                    done = proc.stream(cmd, env=full_env,
                                       source=iter(lambda: src.read(1 << 20), b""),
                                       check=False)
            else:
                done = proc.run(cmd, env=full_env, check=False)
        except proc.ProcessError as exc:
            return ExecResult(exc.returncode if exc.returncode is not None else -1, exc.output)
        return ExecResult(done.returncode, done.stdout + done.stderr if stdout is None
                          and stdin is None else done.stderr)


def _under(path: str, base: Path) -> bool:
    return path == str(base) or path.startswith(str(base) + os.sep)


def holders(base: Path) -> list[str]:
    """What keeps ``base`` from being deleted: file systems mounted inside it, and the
    processes working in it or holding files in it open (like fuser: see
    :func:`devenv.pids.using`)."""
    found: list[str] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            # mount points escape blanks as octal (\040)
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)),
                           fields[4]) if len(fields) > 4 else ""
            if point != str(base) and _under(point, base):
                found.append(f"a file system is mounted on {point} (umount it)")
    for pid, name in pids.using(lambda path: _under(path, base)):
        found.append(f"process {pid} ({name}) has files or its working directory in it")
    return found


def _undeletable(service: ServiceSpec, base: Path, exc: OSError) -> str:
    """Why ``down --volumes`` could not delete ``base``, what holds it, and the fix."""
    where = exc.filename or base
    held = holders(base)
    because = "; ".join(held) if held else (
        "nothing devenv can see holds it: check its permissions and attributes (lsattr)")
    return (f"service {service.name}: could not delete its data folder {base}: "
            f"{exc.strerror or exc} ({where}); {because}. Part of it may be deleted already; "
            "free it, then run `devenv down --volumes` again")


def _trust_host_logins(datadir: Path) -> None:
    """POSTGRES_HOST_AUTH_METHOD=trust: TCP logins need no password (as the image does)."""
    hba = datadir / "pg_hba.conf"
    lines = []
    for line in hba.read_text().splitlines():
        if line.startswith("host") and line.rstrip().endswith("scram-sha-256"):
            line = line.rstrip()[: -len("scram-sha-256")] + "trust"
        lines.append(line)
    hba.write_text("\n".join(lines) + "\n")
