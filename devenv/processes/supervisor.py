"""App processes: started after the steps, each waited on until ready, then supervised.

Two ways to run them. In the foreground (``devenv up``) their output is multiplexed, one
prefixed line each, and Ctrl-C / SIGTERM stops them all (whole process groups). Detached
(``devenv up --detach``) each runs in a session of its own with its output in
``.devenv/logs/NAME.log``. Both are recorded in ``.devenv/processes.json``
(:mod:`devenv.processes.record`), so a later ``up`` keeps detached ones and
``devenv down`` stops them.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import re
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from devenv import graph, logtail, pids, proc, waiting
from devenv.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    BusyError,
    ServiceError,
    first_line,
)
from devenv.events import Message, Reporter
from devenv.postgres import database
from devenv.processes import identity
from devenv.processes.identity import GRACE
from devenv.processes.prepare import Prepared, build_images, prepare, start_order
from devenv.processes.ready import PROBE_TIMEOUT, probe
from devenv.processes.record import read_records, records
from devenv.schema import Project
from devenv.session import Session

POLL = 0.1
# The line _spawn writes at the top of a process's log (not the process's output).
_LOG_HEADER = re.compile(r"^# \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \$ ")


class _Exited(Exception):
    """A process exited while its ready check waited (not a failure of the wait)."""


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
        frontier = graph.Frontier(self.order, lambda n: self.prepared[n].needs)
        for name in keep:
            frontier.done(name)
        pending = {n for n in self.order if n not in keep}
        while pending or any(not c.ready for c in self.children.values()):
            for name in frontier.ready(pending):
                pending.discard(name)
                self._spawn(self.prepared[name])
            try:
                kind, name, detail = self.events.get(timeout=POLL)
            except queue.Empty:
                kind = ""
            if kind == "ready":
                child = self.children[name]
                child.ready = True
                frontier.done(name)
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
        self._record(prep.name, pid=popen.pid, start_id=pids.start_id(popen.pid) or "",
                     started_at=time.time(), command=prep.shown, cwd=str(prep.cwd),
                     env=prep.env_digests,
                     ready=prep.ready.spec() if prep.ready and prep.ready.kind != "cmd" else "",
                     ready_status=list(prep.ready.statuses) if prep.ready else [],
                     log=self.project.rel(log), detached=self.detached,
                     owner=None if self.detached else os.getpid(),
                     owner_start=None if self.detached else pids.start_id(os.getpid()))
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
        check = prep.ready
        assert check is not None
        longest = PROBE_TIMEOUT if check.kind != "cmd" else 10.0

        def attempt(remaining: float) -> tuple[bool, str]:
            if child.popen is not None and child.popen.poll() is not None:
                raise _Exited  # check_exits reports it
            return probe(check, prep.env, prep.cwd, timeout=min(longest, max(remaining, 0.1)))

        try:
            waited = waiting.until(attempt, child.started + prep.ready_timeout - time.monotonic(),
                                   pause=0.05, factor=2, longest=0.5, stop=self.stopping,
                                   detail="not checked yet")
        except _Exited:
            return
        except Exception as exc:  # a check that cannot run (a folder gone): never ready
            self.events.put(("timeout", prep.name, first_line(exc)))
            return
        if not waited.stopped:
            self.events.put(("ready" if waited.done else "timeout", prep.name, waited.detail))

    def _record(self, name: str, **values: Any) -> None:
        with records(self.project) as recs:
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
        with records(self.project) as recs:
            for n in started:
                recs.pop(n, None)
        return live


def run_foreground(project: Project, prepared: Sequence[Prepared], out: Lines,
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


def run_detached(project: Project, prepared: Sequence[Prepared], out: Lines) -> int:
    """Start the processes in the background and return once all are ready.

    Processes still running from an earlier ``up --detach`` with the same command and
    folder are left running; one whose command changed is restarted.
    """
    refuse_running(project, detached=True)
    recs = read_records(project)
    keep: dict[str, dict[str, Any]] = {}
    for p in prepared:
        rec = recs.get(p.name)
        if rec is None or not identity.alive(rec):
            continue
        changed = _what_changed(rec, p)
        if not changed:
            since = time.strftime("%H:%M:%S", time.localtime(float(rec.get("started_at", 0))))
            out.system(f"{p.name} is already running (pid {rec['pid']}, since {since}); "
                       "left as it is")
            keep[p.name] = rec
        else:
            out.system(f"{p.name}: {changed} changed since it started; restarting it")
            identity.stop(rec)
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


def _stop(sup: Supervisor, out: Lines) -> None:
    stopped = sup.stop()
    if stopped:
        out.system(f"stopped {', '.join(stopped)}")



def follow_swap(session: Session, target: database.Target) -> list[str]:
    """After the working database was swapped (refresh-db, --undo, snapshot restore, a
    branch swap): restart the running processes that use it, so none keeps a pooled
    connection to the database that is gone. A process that declares ``reconnects: true``
    is left alone. Returns the names restarted (or asked to restart)."""
    project, reporter = session.project, session.reporter
    recs = read_records(project)
    alive = {n: r for n, r in recs.items() if n in project.processes and identity.alive(r)}
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
                     and (o := identity.live_owner(alive[n])) is not None})
    for owner in owners:
        names = [n for n in restart if alive[n].get("owner") == owner]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(owner, signal.SIGUSR1)
            reporter.emit(Message(f"asked the foreground `devenv up` (pid {owner}) to restart "
                                  f"{', '.join(names)}: their database was swapped", "ok"))
    if detached:
        for n in detached:
            identity.stop(alive[n])
        try:  # an edited build context since they started: its new image
            build_images(project, detached, reporter)
        except ServiceError as exc:
            reporter.emit(Message(str(exc), "error"))
            return detached
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
    alive = [(n, r) for n, r in recs.items() if identity.alive(r)]
    owners = sorted({o for _, r in alive
                     if not r.get("detached") and (o := identity.live_owner(r)) is not None})
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
