"""App processes: started after the steps, each waited on until ready, then supervised.

Two ways to run them. In the foreground (``devenv up``) their output is multiplexed, one
prefixed line each, and Ctrl-C / SIGTERM stops them all (whole process groups). Detached
(``devenv up --detach``) each runs in a session of its own with its output in
``.devenv/logs/NAME.log``; ``.devenv/processes.json`` records them, so a later ``up``
keeps them, ``devenv status`` shows them (:func:`status`) and ``devenv down`` stops them
(:func:`stop_all`). Foreground processes are recorded too while they run.

A recorded pid counts as the same process only if its start time (from ``/proc``) still
matches: a pid reused by something else is never signalled.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import queue
import re
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from devenv import database, environment, graph, jsonfile, logtail, proc
from devenv.console import ProcessLines
from devenv.envvars import expand, expand_command, layered, mask, shell_command
from devenv.envvars import names as referenced
from devenv.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    BusyError,
    ConfigError,
)
from devenv.events import Message, Reporter
from devenv.schema import Command, Location, ProcessSpec, Project

RECORD = "processes.json"
GRACE = 5.0  # seconds between SIGTERM and SIGKILL
POLL = 0.1
PROBE_TIMEOUT = 2.0
# The line _spawn writes at the top of a process's log (not the process's output).
_LOG_HEADER = re.compile(r"^# \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \$ ")


# --------------------------------------------------------------------------- ready checks


@dataclass(frozen=True)
class ReadyCheck:
    """How to tell that a process is ready: ``http`` (an answer: by default any status
    below 500, else one of ``statuses``), ``tcp`` (a port accepts connections) or ``cmd``
    (a command exits 0).

    Why below 500 by default: a server that answers is up, whatever it thinks of the
    request. An app whose root wants a login answers 401 or 403, a missing route 404, and
    waiting longer changes none of that; a 5xx is the app (or a proxy in front of it)
    saying it cannot serve yet. Kubernetes' httpGet probe counts only 200-399; that is
    stricter than a dev server's first answer needs, and ``status:`` restores it.
    """

    kind: str
    target: str  # the URL, HOST:PORT, or the command
    host: str = ""
    port: int = 0
    statuses: tuple[int, ...] = ()  # http: the statuses that count; (): any below 500

    def accepts(self, code: int) -> bool:
        """Whether HTTP status ``code`` means ready."""
        return code in self.statuses if self.statuses else 100 <= code < 500

    @property
    def path(self) -> str:
        """The path (and query) an http check asks for: how its requests show up in the
        app's own access log."""
        import urllib.parse

        parts = urllib.parse.urlsplit(self.target)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def __str__(self) -> str:
        if self.kind == "http" and self.statuses:
            return f"{self.target} (status {', '.join(map(str, self.statuses))})"
        return f"cmd: {self.target}" if self.kind == "cmd" else self.target

    def spec(self) -> str:
        """The check written as a ``ready:`` value (:func:`parse_ready` reads it back)."""
        if self.kind == "tcp":
            return f"tcp://{self.host}:{self.port}"
        return f"cmd: {self.target}" if self.kind == "cmd" else self.target


def parse_ready(spec: str, statuses: Sequence[int] = ()) -> ReadyCheck:
    """A ``ready:`` value as a check (``statuses``: the HTTP statuses that count, from
    ``ready: {http: URL, status: [...]}``); ``ValueError`` says what is wrong with it."""
    import urllib.parse

    s = spec.strip()
    if s.startswith(("http://", "https://")):
        if not urllib.parse.urlsplit(s).hostname:
            raise ValueError(f"no host in ready URL '{s}'")
        return ReadyCheck("http", s, statuses=tuple(statuses))
    if s.startswith("tcp://"):
        parts = urllib.parse.urlsplit(s)
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise ValueError(f"invalid ready check '{s}': write tcp://HOST:PORT")
        return ReadyCheck("tcp", f"tcp://{parts.hostname}:{port}", parts.hostname, port)
    if s.isdigit():
        port = int(s)
        if not 0 < port < 65536:
            raise ValueError(f"invalid port {port} in ready check")
        return ReadyCheck("tcp", f"port {port}", "localhost", port)
    if s.startswith("cmd:"):
        command = s[4:].strip()
        if not command:
            raise ValueError("empty command in ready check: write cmd: COMMAND")
        return ReadyCheck("cmd", command)
    raise ValueError(f"invalid ready check '{s}': an http(s):// URL, tcp://HOST:PORT, a port "
                     "number, or cmd: COMMAND")


def probe(check: ReadyCheck, env: Mapping[str, str] | None = None, cwd: Path | None = None,
          timeout: float = PROBE_TIMEOUT) -> tuple[bool, str]:
    """Try ``check`` once: whether it passed, and what was seen (``HTTP 503``...)."""
    if check.kind == "http":
        return _probe_http(check, timeout)
    if check.kind == "tcp":
        import socket

        try:
            with socket.create_connection((check.host, check.port), timeout=timeout):
                return True, "accepts connections"
        except OSError as exc:
            return False, exc.strerror or type(exc).__name__
    try:
        done = proc.run(["/bin/sh", "-c", check.target], cwd=cwd,
                        env=dict(env) if env is not None else None, check=False,
                        timeout=max(timeout, 1.0))
    except proc.ProcessError as exc:
        return False, "timed out" if exc.returncode is None else f"exit code {exc.returncode}"
    return done.returncode == 0, f"exit code {done.returncode}"


def _probe_http(check: ReadyCheck, timeout: float) -> tuple[bool, str]:
    import http.client
    import ssl
    import urllib.error
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        # A redirect (to a login page, say) already means the app answers.
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    # No proxy (http_proxy must not catch localhost) and no certificate check: a local
    # dev server's self-signed certificate is still a server that is up.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), NoRedirect(),
        urllib.request.HTTPSHandler(context=ssl._create_unverified_context()))
    try:
        with opener.open(check.target, timeout=timeout) as resp:
            code = int(resp.status)
    except urllib.error.HTTPError as exc:
        code = exc.code
    except urllib.error.URLError as exc:
        reason = exc.reason
        return False, getattr(reason, "strerror", None) or str(reason)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return False, str(exc) or type(exc).__name__
    return check.accepts(code), f"HTTP {code}"


# --------------------------------------------------------------------------- preparing


@dataclass(frozen=True)
class Prepared:
    """A process ready to start: command, folder, environment and ready check, expanded."""

    name: str
    command: Command
    cwd: Path
    env: Mapping[str, str]
    ready: ReadyCheck | None
    ready_timeout: float
    needs: tuple[str, ...]  # the other processes it waits for
    loc: Location
    declared: frozenset[str] = frozenset()  # env names devenv and steps.yaml set

    @property
    def env_digests(self) -> dict[str, str]:
        """A short hash of each variable devenv or steps.yaml sets for it (not the whole
        inherited environment, which differs from one shell to the next): a detached
        process whose values changed (a new database port, an edited ``env:``) is
        restarted, and the message names them. Hashes, not values: no password is
        written down."""
        return {k: hashlib.sha256(self.env.get(k, "").encode()).hexdigest()[:16]
                for k in sorted(self.declared)}

    @property
    def shown(self) -> str:
        """The command as the user sees it (passwords and secret values masked)."""
        return mask(proc.format_command(self.command), self.env)


def in_profile(spec: ProcessSpec, profile: str) -> bool:
    return not spec.profiles or profile in spec.profiles


def selected(project: Project, profile: str) -> list[str]:
    """The processes of ``profile``, in start order (a process after those it needs)."""
    names = [n for n, p in project.processes.items() if in_profile(p, profile)]
    return start_order(project, names)


def start_order(project: Project, names: Sequence[str]) -> list[str]:
    """``names`` with each process after the processes it needs; ties in declaration order."""
    wanted = set(names)
    try:
        return graph.walk([n for n in project.processes if n in wanted],
                          lambda n: project.processes[n].needs)
    except graph.Cycle as exc:
        first = project.processes[exc.names[0]]
        raise ConfigError(f"dependency cycle between processes: {exc}", first.loc.file,
                          first.loc.line, f"processes.{first.name}.needs") from None


def prepare(project: Project, names: Sequence[str], target: database.Target | None,
            dbname: str | None = None, *, stand_in: bool = False) -> list[Prepared]:
    """Expand each process's command, folder and ready check in the environment steps get
    (plus the project's and the process's ``env:``); an undefined ``${X}`` is a ConfigError.
    """
    # stand_in: a check before the services start (their addresses are not known yet)
    base = environment.step_environment(project, target, dbname, stand_in=stand_in)
    # Python buffers output into a pipe or file: without this, a Flask app's prints
    # would show up minutes late, or not before it crashes.
    base.setdefault("PYTHONUNBUFFERED", "1")
    def project_line(key: str) -> Location:
        return Location(project.file.name, project.env_lines.get(key, 1))

    wanted = set(names)
    service_names = set(environment.service_variables(project, target))
    out = []
    for name in names:
        spec = project.processes[name]
        where = f"processes.{name}"
        # Like a step's: an app whose tables live in its own schema finds them.
        env = layered(environment.with_search_path(base, spec.search_path),
                      (project.env, project_line, "env"),
                      (spec.env, _at(spec.loc), f"{where}.env"))
        env["DEVENV_PROCESS"] = name
        cwd = project.root
        if spec.cwd:
            raw = expand(spec.cwd, env, spec.loc, f"{where}.cwd")
            cwd = Path(raw) if Path(raw).is_absolute() else project.root / raw
        check = None
        if spec.ready:
            text = _expand_ready(spec.ready, env, spec.loc, f"{where}.ready")
            try:
                check = parse_ready(text, spec.ready_status)
            except ValueError as exc:
                raise ConfigError(str(exc), spec.loc.file, spec.loc.line,
                                  f"{where}.ready") from None
        # The command names its variables instead of holding their values: a changed
        # value of one (a branch from the shell) restarts the process as a changed
        # command did.
        declared = set(project.env) | set(spec.env) | {"DEVENV_PROCESS"}
        if spec.search_path:
            declared.add("PGOPTIONS")
        declared |= {n for n in referenced(spec.run) | referenced(spec.ready or "")
                     if n in env}
        if target is not None:
            declared |= set(target.env(dbname))
        # a service that moved to another port restarts the processes that talk to it
        declared |= service_names
        command = expand_command(spec.run, env, spec.loc, f"{where}.run")
        if spec.image:
            command = in_container(project, name, spec.image, command, cwd, declared | {
                "DEVENV_PROJECT", "DEVENV_ROOT", "PYTHONUNBUFFERED"})
        out.append(Prepared(
            name=name,
            command=command,
            cwd=cwd,
            env=env,
            ready=check,
            ready_timeout=spec.ready_timeout,
            needs=tuple(n for n in spec.needs if n in wanted),
            loc=spec.loc,
            declared=frozenset(declared),
        ))
    return out


def in_container(project: Project, name: str, image: str, command: Command, cwd: Path,
                 names: set[str]) -> tuple[str, ...]:
    """``command`` run in a container of ``image``: the project folder mounted at its own
    path (so cwd and file paths mean the same inside), the host's network (services and
    the database answer on 127.0.0.1 as for a host process), the user's uid (files it
    writes stay theirs). Variables pass by name (``-e NAME``: docker reads the value from
    its own environment), never pasted into the command line. A container left by an
    earlier run of the process is removed first; --init forwards the stop signal."""
    container = f"{project.name}-process-{name}"
    inner: list[str] = ["sh", "-c", command] if isinstance(command, str) else list(command)
    argv = ["docker", "run", "--rm", "--init", "--name", container,
            "--label", f"devenv.project={project.name}", "--label", f"devenv.process={name}",
            "--network", "host", "--user", f"{os.getuid()}:{os.getgid()}",
            "-v", f"{project.root}:{project.root}", "-w", str(cwd), "-e", "HOME=/tmp"]
    for var in sorted(names):
        argv += ["-e", var]
    return ("sh", "-c", 'docker rm -f "$0" >/dev/null 2>&1; exec "$@"', container, *argv,
            image, *inner)


def _at(loc: Location) -> Callable[[str], Location]:
    return lambda _key: loc


def _expand_ready(text: str, env: Mapping[str, str], loc: Location, path: str) -> str:
    """A ``ready:`` check expanded: ``cmd: COMMAND`` is shell text like ``run:`` (its
    values stay in the environment the check runs in); a URL or port is pasted."""
    head, sep, command = text.strip().partition("cmd:")
    if sep and not head:
        return f"cmd: {shell_command(command.strip(), env, loc, path)}"
    return expand(text, env, loc, path)


# --------------------------------------------------------------------------- the record


def _record_path(project: Project) -> Path:
    return project.state_dir / RECORD


@contextlib.contextmanager
def _records(project: Project) -> Iterator[dict[str, dict[str, Any]]]:
    """The records of ``.devenv/processes.json`` under a lock, written back (0600) after;
    the file is removed when no process is left."""
    # not sorted: records stay in start order, which messages list them in
    with jsonfile.update(_record_path(project), indent=1, sort_keys=False,
                         keep=lambda doc: bool(doc["processes"])) as doc:
        data = _valid(doc)
        yield data
        doc.clear()
        doc.update({"version": 1, "processes": data})


def read_records(project: Project) -> dict[str, dict[str, Any]]:
    """What ``.devenv/processes.json`` says is running: name -> record."""
    return _valid(jsonfile.read(_record_path(project)))


def _valid(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    procs = doc.get("processes")
    if not isinstance(procs, dict):
        return {}
    return {k: v for k, v in procs.items()
            if isinstance(v, dict) and isinstance(v.get("pid"), int)}


def _start_id(pid: int) -> str | None:
    """When process ``pid`` started (``None``: no such process, or a zombie).

    Together with the pid this names one process: a recycled pid has another start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        return _ps_start_id(pid)
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]  # field 22, starttime in clock ticks since boot


def _ps_start_id(pid: int) -> str | None:
    # No /proc (macOS): ps gives the state and the start time to the second.
    try:
        done = proc.run(["ps", "-o", "stat=,lstart=", "-p", str(pid)], check=False, timeout=5)
    except proc.ProcessError:
        return None
    line = done.stdout.strip()
    if done.returncode != 0 or not line or line.startswith("Z"):
        return None
    return " ".join(line.split()[1:])


def _group_members(pgid: int, start_id: str) -> list[int]:
    """The live (not zombie) processes of group ``pgid`` started no earlier than its
    leader, whose start was ``start_id``."""
    if not Path("/proc/self/stat").exists():
        return [pgid] if _start_id(pgid) == start_id else []
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] in ("Z", "X") or fields[2] != str(pgid):
            continue
        if start_id.isdigit() and int(fields[19]) < int(start_id):
            continue
        out.append(int(entry.name))
    return out


def _alive(rec: Mapping[str, Any]) -> bool:
    sid = _start_id(int(rec["pid"]))
    return sid is not None and sid == rec.get("start_id")


def _stop_group(pgid: int, start_id: str, grace: float = GRACE) -> bool:
    """SIGTERM the group, SIGKILL what is left after ``grace``; False if nothing ran.

    Zombies do not count: where PID 1 does not reap orphans (many containers), a stopped
    group can keep zombies for a while.
    """
    if not _group_members(pgid, start_id):
        return False
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _group_members(pgid, start_id):
                return True
            time.sleep(0.05)
    return True


# --------------------------------------------------------------------------- status / stop


@dataclass(frozen=True)
class ProcessStatus:
    """What ``devenv status`` shows for a process."""

    name: str
    pid: int | None
    alive: bool
    since: float | None  # when it started (seconds since the epoch)
    ready: bool | None  # None: not running, or no way to tell now
    detached: bool = False
    command: str = ""
    log: str | None = None  # relative to the project root


def status(project: Project) -> list[ProcessStatus]:
    """Every declared process (and any recorded one no longer declared), running or not.

    For a live process with an HTTP or TCP ready check, ``ready`` is checked now; with a
    ``cmd:`` check it says whether the check passed when the process started.
    """
    recs = read_records(project)
    out = []
    for name in [*project.processes, *(n for n in recs if n not in project.processes)]:
        rec = recs.get(name)
        if rec is None:
            spec = project.processes[name]
            out.append(ProcessStatus(name, None, False, None, None,
                                     command=mask(proc.format_command(spec.run))))
            continue
        alive = _alive(rec)
        ready: bool | None = None
        if alive:
            ready = bool(rec.get("ready_at"))
            check = rec.get("ready")
            codes = rec.get("ready_status")
            codes = [c for c in codes if isinstance(c, int)] if isinstance(codes, list) else []
            if isinstance(check, str) and check:
                with contextlib.suppress(ValueError):
                    ready = probe(parse_ready(check, codes), timeout=1.0)[0]
        out.append(ProcessStatus(name, int(rec["pid"]), alive, rec.get("started_at"), ready,
                                 bool(rec.get("detached")), str(rec.get("command", "")),
                                 rec.get("log")))
    return out


def stop_all(project: Project, grace: float = GRACE) -> list[str]:
    """Stop the processes ``up`` recorded (detached ones, and any left behind by an ``up``
    that was killed); returns the names of those that were running. Clears the record."""
    with _records(project) as recs:
        results: dict[str, bool] = {}

        def stop(name: str, rec: Mapping[str, Any]) -> None:
            results[name] = _stop_group(int(rec["pid"]), str(rec.get("start_id", "")), grace)

        threads = [threading.Thread(target=stop, args=(n, r)) for n, r in recs.items()
                   if isinstance(r.get("start_id"), str)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stopped = [n for n in recs if results.get(n)]
        recs.clear()
    return stopped


# --------------------------------------------------------------------------- starting


class Failed(Exception):
    """A process exited or never became ready: what happened and its last lines."""

    def __init__(self, name: str, message: str, tail: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message
        self.tail = tail


@dataclass
class _Child:
    prep: Prepared
    popen: subprocess.Popen[bytes] | None  # None: kept from an earlier `up --detach`
    log: Path
    started: float = field(default_factory=time.monotonic)
    ready: bool = False
    lines: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=proc.TAIL_LINES))
    reader: threading.Thread | None = None
    probes: int = 0  # lines left out of ``lines``: the app logging devenv's ready requests

    def own(self, line: str) -> bool:
        """Whether ``line`` is the process's own output, not its access log line for one
        of devenv's ready requests (``"GET /health HTTP/1.1" 401``: Django, Werkzeug,
        uvicorn and http.server all write the request line so). A timeout's tail made of
        those says nothing about why the app is not ready."""
        check = self.prep.ready
        if check is None or check.kind != "http":
            return True
        return f'"GET {check.path} HTTP/' not in line

    def tail(self) -> str:
        if self.reader is None:
            # Detached: the log file, without the line devenv wrote at its top.
            lines = logtail.tail(self.log, 100_000).splitlines()
            if lines and _LOG_HEADER.match(lines[0]):
                lines = lines[1:]
            own = [line for line in lines if self.own(line)]
            self.probes = len(lines) - len(own)
            return "\n".join(own[-proc.TAIL_LINES:])
        # Let the reader catch up with what the process wrote before it exited. Not a
        # join: a child it left behind may hold the pipe open (no end of file yet).
        stream = self.popen.stdout if self.popen is not None else None
        deadline = time.monotonic() + 2.0
        while stream is not None and self.reader.is_alive() and time.monotonic() < deadline:
            try:
                pending, _, _ = select.select([stream], [], [], 0)
            except (OSError, ValueError):
                break
            time.sleep(0.05)  # the line being read now, or what is still in the pipe
            if not pending:
                break
        return "\n".join(self.lines)

    def last_output(self) -> str:
        """How a failure message introduces the tail (call after :meth:`tail`)."""
        left = (f" (without the {self.probes} line{'s' if self.probes != 1 else ''} logging "
                "devenv's ready requests)") if self.probes else ""
        return f"its last output{left}:"


class Lines(Protocol):
    """Where a supervisor writes: the processes' lines and its own."""

    def line(self, name: str, text: str) -> None: ...

    def system(self, text: str, detail: str = "") -> None: ...


class _ToReporter:
    """A supervisor's own lines as reporter messages (restarts after a swap, where the
    command reporting is refresh-db or snapshot restore, not ``up``)."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def line(self, name: str, text: str) -> None:
        pass  # detached processes write to their logs

    def system(self, text: str, detail: str = "") -> None:
        self.reporter.emit(Message(text + (f"\n{detail}" if detail else "")))


class Supervisor:
    """Starts prepared processes in order, waits until each is ready, and stops them."""

    def __init__(self, project: Project, prepared: Sequence[Prepared], out: Lines,
                 detached: bool) -> None:
        self.project = project
        self.prepared = {p.name: p for p in prepared}
        self.order = [p.name for p in prepared]
        self.out = out
        self.detached = detached
        self.children: dict[str, _Child] = {}
        self.events: queue.Queue[tuple[str, str, str]] = queue.Queue()
        self.stopping = threading.Event()

    # ----- starting

    def start_all(self, keep: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """Start every process once those it needs are ready; return when all are ready.

        ``keep``: records of processes already running (from an earlier ``up --detach``),
        which count as ready. Raises :class:`Failed` for a process that exits or is not
        ready in time.
        """
        keep = keep or {}
        pending = [n for n in self.order if n not in keep]
        ready = set(keep)
        while pending or any(not c.ready for c in self.children.values()):
            for name in list(pending):
                if all(n in ready for n in self.prepared[name].needs):
                    pending.remove(name)
                    self._spawn(self.prepared[name])
            try:
                kind, name, detail = self.events.get(timeout=POLL)
            except queue.Empty:
                kind = ""
            if kind == "ready":
                child = self.children[name]
                child.ready = True
                ready.add(name)
                self._record(name, ready_at=time.time())
                took = time.monotonic() - child.started
                how = f" ({child.prep.ready}: {detail})" if child.prep.ready else ""
                self.out.system(f"{name} is ready{how} after {took:.1f}s")
            elif kind == "timeout":
                child = self.children[name]
                tail = child.tail()
                raise Failed(name, f"{name} was not ready after {child.prep.ready_timeout:g}s "
                             f"({child.prep.ready}: {detail}); {child.last_output()}", tail)
            self.check_exits()

    def check_exits(self) -> None:
        """Raise :class:`Failed` if a process this supervisor started has exited."""
        for name, child in self.children.items():
            if child.popen is None:
                continue
            rc = child.popen.poll()
            if rc is None:
                continue
            how = f"was killed by {signal.Signals(-rc).name}" if rc < 0 else \
                f"exited with code {rc}"
            when = "after it was ready" if child.ready else "before it was ready"
            tail = child.tail()
            raise Failed(name, f"{name} {how} {when}; {child.last_output()}", tail)

    def _spawn(self, prep: Prepared) -> None:
        log = self.project.state_dir / "logs" / f"{prep.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        if log.is_symlink():
            log.unlink()
        if not prep.cwd.is_dir():
            raise Failed(prep.name, f"{prep.name}: working directory not found: {prep.cwd} "
                         f"({prep.loc}: processes.{prep.name}.cwd)", "")
        fh = log.open("wb")
        try:
            fh.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} $ {prep.shown}\n".encode())
            fh.flush()
            try:
                popen = proc.spawn(prep.command, cwd=prep.cwd, env=prep.env,
                                   stdout=fh if self.detached else subprocess.PIPE,
                                   shell=isinstance(prep.command, str))
            except proc.ProcessError as exc:
                raise Failed(prep.name, f"{prep.name} could not start", str(exc)) from None
        except BaseException:
            fh.close()
            raise
        child = _Child(prep, popen, log)
        self.children[prep.name] = child
        if self.detached:
            fh.close()
        else:
            assert popen.stdout is not None
            child.reader = threading.Thread(target=self._pump, args=(child, popen.stdout, fh),
                                            daemon=True, name=f"devenv-out-{prep.name}")
            child.reader.start()
        self._record(prep.name, pid=popen.pid, start_id=_start_id(popen.pid) or "",
                     started_at=time.time(), command=prep.shown, cwd=str(prep.cwd),
                     env=prep.env_digests,
                     ready=prep.ready.spec() if prep.ready and prep.ready.kind != "cmd" else "",
                     ready_status=list(prep.ready.statuses) if prep.ready else [],
                     log=self.project.rel(log), detached=self.detached,
                     owner=None if self.detached else os.getpid(),
                     owner_start=None if self.detached else _start_id(os.getpid()))
        where = f"; log: {self.project.rel(log)}" if self.detached else ""
        self.out.system(f"{prep.name} started (pid {popen.pid}): {prep.shown}{where}")
        if prep.ready is None:
            self.events.put(("ready", prep.name, ""))
        else:
            threading.Thread(target=self._wait_ready, args=(child,), daemon=True,
                             name=f"devenv-ready-{prep.name}").start()

    def _pump(self, child: _Child, stream: IO[bytes], log: IO[bytes]) -> None:
        try:
            for raw in iter(stream.readline, b""):
                log.write(raw)
                log.flush()
                text = raw.decode(errors="replace").rstrip("\r\n")
                if child.own(text):
                    child.lines.append(text)
                else:
                    child.probes += 1
                self.out.line(child.prep.name, text)
        except (OSError, ValueError):
            pass  # the pipe or log closed while stopping
        finally:
            log.close()

    def _wait_ready(self, child: _Child) -> None:
        prep = child.prep
        assert prep.ready is not None
        deadline = child.started + prep.ready_timeout
        delay = 0.05
        detail = "not checked yet"
        while not self.stopping.is_set():
            if child.popen is not None and child.popen.poll() is not None:
                return  # check_exits reports it
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.events.put(("timeout", prep.name, detail))
                return
            ok, detail = probe(prep.ready, prep.env, prep.cwd,
                               timeout=min(PROBE_TIMEOUT if prep.ready.kind != "cmd" else 10.0,
                                           max(remaining, 0.1)))
            if ok:
                self.events.put(("ready", prep.name, detail))
                return
            self.stopping.wait(min(delay, max(deadline - time.monotonic(), 0)))
            delay = min(delay * 2, 0.5)

    def _record(self, name: str, **values: Any) -> None:
        with _records(self.project) as recs:
            if "pid" in values:
                recs[name] = values
            elif name in recs:
                recs[name].update(values)

    # ----- running in the foreground

    def watch(self, restart: threading.Event | None = None) -> None:
        """Block while every process runs; raise :class:`Failed` when one exits. When
        ``restart`` is set (the database was swapped under them), restart them all."""
        while True:
            self.check_exits()
            if restart is not None and restart.is_set():
                restart.clear()
                self.restart_all()
            time.sleep(POLL)

    def restart_all(self) -> None:
        """Stop every process and start it again, each waited on until ready: after a swap
        their pooled connections point at a database that is gone."""
        self.out.system("the database was swapped: restarting "
                        f"{', '.join(self.order)} so they connect to the new one")
        self.stop()
        self.stopping.clear()
        self.children.clear()
        self.events = queue.Queue()
        self.start_all()
        self.out.system("all processes are ready again")

    # ----- stopping

    def stop(self) -> list[str]:
        """Stop every process this supervisor started (in parallel, whole groups); forget
        their records. A second Ctrl-C while stopping kills them at once."""
        self.stopping.set()
        started = {n: c for n, c in self.children.items() if c.popen is not None}
        live = [n for n, c in started.items() if c.popen is not None and c.popen.poll() is None]

        def kill(child: _Child) -> None:
            assert child.popen is not None
            proc.kill_group(child.popen, grace=GRACE)

        threads = [threading.Thread(target=kill, args=(c,), daemon=True)
                   for c in started.values()]
        for t in threads:
            t.start()
        try:
            for t in threads:
                t.join()
        except KeyboardInterrupt:
            for c in started.values():
                assert c.popen is not None
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(c.popen.pid, signal.SIGKILL)
        for c in started.values():
            if c.reader is not None:
                c.reader.join(timeout=1.0)
        with _records(self.project) as recs:
            for n in started:
                recs.pop(n, None)
        return live


def run_foreground(project: Project, prepared: Sequence[Prepared], out: ProcessLines,
                   on_ready: Callable[[], None] | None = None) -> int:
    """Start the processes, print their output until one exits or Ctrl-C / SIGTERM, then
    stop them all. Returns 1 when a process exited or was not ready, 130 on Ctrl-C.

    ``on_ready`` is called once all are ready (``up`` releases the project lock there).
    """
    refuse_running(project, detached=False)
    sup = Supervisor(project, prepared, out, detached=False)
    restart = threading.Event()
    # refresh-db / undo / snapshot restore / a branch swap in another terminal ask for a
    # restart with SIGUSR1 (see follow_swap).
    with contextlib.suppress(ValueError):  # not the main thread (tests): no restart signal
        signal.signal(signal.SIGUSR1, lambda *_: restart.set())
    try:
        try:
            sup.start_all()
            if on_ready is not None:
                on_ready()
            out.system(f"all processes are ready ({', '.join(p.name for p in prepared)}); "
                       "press Ctrl-C to stop them (services keep running)")
            sup.watch(restart)
        except Failed as exc:
            out.system(exc.message, exc.tail)
            _stop(sup, out)
            return EXIT_FAILED
    except KeyboardInterrupt:
        out.system("interrupted: stopping the processes (services keep running)")
        _stop(sup, out)
        return EXIT_INTERRUPTED
    return EXIT_OK  # pragma: no cover - watch() only ends by raising


def _what_changed(rec: Mapping[str, Any], p: Prepared) -> str:
    """What differs between a running process's record and how it would start now: its
    command, its folder, or the variables named (""; nothing)."""
    if rec.get("command") != p.shown:
        return "its command"
    if rec.get("cwd") != str(p.cwd):
        return "its folder"
    before = rec.get("env")
    now = p.env_digests
    if not isinstance(before, dict):
        return "its environment"  # started by a devenv that did not record it
    names = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    return f"its environment ({', '.join(names)})" if names else ""


def run_detached(project: Project, prepared: Sequence[Prepared], out: ProcessLines) -> int:
    """Start the processes in the background and return once all are ready.

    Processes still running from an earlier ``up --detach`` with the same command and
    folder are left running; one whose command changed is restarted.
    """
    refuse_running(project, detached=True)
    recs = read_records(project)
    keep: dict[str, dict[str, Any]] = {}
    for p in prepared:
        rec = recs.get(p.name)
        if rec is None or not _alive(rec):
            continue
        changed = _what_changed(rec, p)
        if not changed:
            since = time.strftime("%H:%M:%S", time.localtime(float(rec.get("started_at", 0))))
            out.system(f"{p.name} is already running (pid {rec['pid']}, since {since}); "
                       "left as it is")
            keep[p.name] = rec
        else:
            out.system(f"{p.name}: {changed} changed since it started; restarting it")
            _stop_group(int(rec["pid"]), str(rec.get("start_id", "")))
    sup = Supervisor(project, prepared, out, detached=True)
    try:
        try:
            sup.start_all(keep)
        except Failed as exc:
            out.system(exc.message, exc.tail)
            _stop(sup, out)
            return EXIT_FAILED
    except KeyboardInterrupt:
        out.system("interrupted: stopping the processes started by this run")
        _stop(sup, out)
        return EXIT_INTERRUPTED
    if len(keep) == len(prepared):
        out.system("all processes were already running")
    else:
        out.system("all processes are ready, running in the background; "
                   "stop them with `devenv down`")
    return EXIT_OK


def _stop(sup: Supervisor, out: ProcessLines) -> None:
    stopped = sup.stop()
    if stopped:
        out.system(f"stopped {', '.join(stopped)}")


def _live_owner(rec: Mapping[str, Any]) -> int | None:
    """The pid of the foreground ``devenv up`` a record names, if that very process still
    runs (a reused pid is someone else's: never signalled). Records written before the
    owner's start time was kept count when the pid is alive, as before."""
    owner = rec.get("owner")
    if not isinstance(owner, int):
        return None
    started = _start_id(owner)
    if started is None:
        return None
    expected = rec.get("owner_start")
    return owner if expected in (None, started) else None


def follow_swap(project: Project, target: database.Target, reporter: Reporter,
                profile: str = "local") -> list[str]:
    """After the working database was swapped (refresh-db, --undo, snapshot restore, a
    branch swap): restart the running processes that use it, so none keeps a pooled
    connection to the database that is gone. A process that declares ``reconnects: true``
    is left alone. Returns the names restarted (or asked to restart)."""
    recs = read_records(project)
    alive = {n: r for n, r in recs.items() if n in project.processes and _alive(r)}
    if not alive:
        return []
    left = [n for n in alive if project.processes[n].reconnects]
    if left:
        reporter.emit(Message(f"left {', '.join(left)} running: "
                              f"{'it declares' if len(left) == 1 else 'they declare'} "
                              "reconnects: true"))
    restart = [n for n in alive if n not in left]
    detached = [n for n in restart if alive[n].get("detached")]
    owners = sorted({o for n in restart if n not in detached
                     and (o := _live_owner(alive[n])) is not None})
    for owner in owners:
        names = [n for n in restart if alive[n].get("owner") == owner]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(owner, signal.SIGUSR1)
            reporter.emit(Message(f"asked the foreground `devenv up` (pid {owner}) to restart "
                                  f"{', '.join(names)}: their database was swapped", "ok"))
    if detached:
        for n in detached:
            _stop_group(int(alive[n]["pid"]), str(alive[n].get("start_id", "")))
        prepared = prepare(project, start_order(project, detached), target)
        sup = Supervisor(project, prepared, _ToReporter(reporter), detached=True)
        try:
            sup.start_all()
        except Failed as exc:
            reporter.emit(Message(f"{exc.message}\n{exc.tail}", "error"))
            return detached
        reporter.emit(Message(f"restarted {', '.join(detached)}: their database was swapped; "
                              "ready again", "ok"))
    return restart


def refuse_running(project: Project, detached: bool) -> None:
    """Raise a :class:`DevenvError` if recorded processes are in the way: for a foreground
    ``up`` any that run; for ``up --detach`` those of a foreground ``up`` (or left behind
    by one that was killed)."""
    recs = read_records(project)
    alive = [(n, r) for n, r in recs.items() if _alive(r)]
    owners = sorted({o for _, r in alive
                     if not r.get("detached") and (o := _live_owner(r)) is not None})
    # A detached `up` keeps detached processes; anything else is in the way.
    busy = [(n, r) for n, r in alive if not detached or not r.get("detached")]
    if not busy:
        return
    names = ", ".join(f"{n} (pid {r['pid']})" for n, r in busy)
    if owners:
        by = f"another `devenv up` (pid {', '.join(str(o) for o in owners)})"
        raise BusyError(f"processes already running in the foreground of {by}: {names}; "
                          "stop it (Ctrl-C) first")
    raise BusyError(f"processes already running in the background: {names}; stop them "
                      "with `devenv down`, or keep them with `devenv up --detach`")
