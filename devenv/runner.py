"""Runs the planned steps: dependency order, in parallel, logs per step, Ctrl-C safe.

Every step is one command in its own process group, its output streamed straight to
``.devenv/logs/STEP/<time>.log`` (``.devenv/logs/STEP.log`` links the latest), so memory
stays flat however much a step prints, and stopping a step stops all it started.

Warm start: a step whose kind can wait (``warm_start = True``: the Django and Flask kinds)
is started early, while the steps it depends on still run and a CPU is idle. Its
process imports the app and sets up everything that does not touch the database, tells
the runner so by writing one byte to the file descriptor named in ``DEVENV_WARM_FD``,
then waits on its stdin: ``go`` when its turn comes, end-of-file if it is not needed
after all (a dependency failed, the run stopped). Interpreter start-up and imports
(0.3-0.6 s for a small Flask or Django app) then overlap other steps' work instead of
lengthening the critical path. ``DEVENV_WARM_START=0`` turns it off.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import concurrent.futures as cf

from devenv import graph, proc, watchdog
from devenv.envvars import expand, mask
from devenv.errors import ConfigError
from devenv.events import (
    Action,
    Decision,
    Reporter,
    RunFinished,
    RunResult,
    RunStarted,
    Status,
    StepFinished,
    StepResult,
    StepStarted,
)
from devenv.kinds import KINDS, StepContext
from devenv.schema import Command, Project, StepSpec

KEEP_LOGS = 10
_GUARDS: list[subprocess.Popen[bytes]] = []  # watchdogs of ended runs, still exiting


@dataclass(frozen=True)
class Prepared:
    """A step ready to start: its command, folder and environment, all expanded."""

    step: StepSpec
    command: Command
    cwd: Path
    env: Mapping[str, str]
    warm: bool = False  # the kind can start early and wait for its turn
    tag: str = ""  # the step's run tag (DEVENV_RUN, see devenv.watchdog), set by run()

    @property
    def display(self) -> str:
        """What the user reads on the "started" line: the command for ``run:``, the kind
        and its options for a typed kind (the log keeps the full command). Passwords and
        secret values are masked."""
        if KINDS[self.step.kind].uses_run:
            return self.shown
        opts = ", ".join(f"{k}: {_brief(v)}" for k, v in self.step.options.items())
        return mask(f"{self.step.kind} ({opts})" if opts else self.step.kind, self.env)

    @property
    def shown(self) -> str:
        """The full command as the log and a report show it: passwords masked."""
        return mask(proc.format_command(self.command), self.env)


def _brief(value: Any) -> str:
    """An option's value on one short line: a mapping by its keys (faker's ``tables:``
    would otherwise print every column's generator), a list by its items."""
    if isinstance(value, Mapping):
        return ", ".join(str(k) for k in value)
    if isinstance(value, list | tuple):
        if all(not isinstance(v, Mapping | list | tuple) for v in value):
            return " ".join(str(v) for v in value)
        return f"{len(value)} item{'s' if len(value) != 1 else ''}"
    return str(value)


def _warm_default() -> bool:
    return os.environ.get("DEVENV_WARM_START", "1").strip().lower() not in ("0", "no", "false",
                                                                             "off")


@dataclass(frozen=True)
class RunOptions:
    jobs: int = os.cpu_count() or 2
    keep_going: bool = False
    log_dir: Path = Path(".devenv/logs")
    warm_start: bool = field(default_factory=_warm_default)
    # Tags every step process (see devenv.watchdog); refresh-db names its build after it.
    run_id: str = field(default_factory=watchdog.new_run_id)


def find_python(cwd: Path, raw: str, search_path: str | None) -> str | None:
    """Where ``python: RAW`` points for a step working in ``cwd``, or None if nothing is there.

    The rule (README, "Step kinds"): a relative value is relative to the step's ``cwd:``
    (the steps.yaml folder when there is none), like ``run:``; a folder means its
    ``bin/python`` (a virtualenv); a bare name (no ``/``) that is not in ``cwd`` is looked
    up on PATH, as a shell would (``python: python3.12``).
    """
    p = Path(raw)
    if not p.is_absolute():
        if "/" not in raw and not (cwd / raw).exists():
            found = shutil.which(raw, path=search_path)
            return found
        p = cwd / p
    if p.is_dir():
        p = p / "bin" / "python"
    return str(p) if p.is_file() and os.access(p, os.X_OK) else None


def python_not_found(raw: str, cwd: str) -> str:
    """The message (with its fix) for a ``python:`` that points at nothing."""
    where = "the project folder" if cwd in ("", ".") else f"{cwd}/ (the step's cwd)"
    bare = " nor on PATH" if "/" not in raw else ""
    # python: may name the virtualenv or its interpreter: the venv is made at the folder
    venv = re.sub(r"/(bin|Scripts)/python[\d.]*(\.exe)?$", "", raw) or raw
    return (f"{raw} is not an interpreter or a virtualenv in {where}{bare}; python: is "
            f"relative to the step's cwd: (create the virtualenv, e.g. python3 -m venv "
            f"{venv}, or fix the path)")


def resolve_python(project: Project, step: StepSpec, env: Mapping[str, str]) -> str:
    """The interpreter for a step: ``python:`` (see :func:`find_python`) or devenv's own.
    Raises ``ConfigError`` (at the ``python:`` line) when it points at nothing."""
    if not step.python:
        return sys.executable
    raw = expand(step.python, env, step.loc, f"steps.{step.name}.python")
    cwd = project.root
    if step.cwd:
        raw_cwd = expand(step.cwd, env, step.loc, f"steps.{step.name}.cwd")
        cwd = project.root / raw_cwd  # an absolute cwd replaces the root
    found = find_python(cwd, raw, env.get("PATH"))
    if found is None:
        raise ConfigError(python_not_found(raw, project.rel(cwd)), step.loc.file,
                          step.key_lines.get("python", step.loc.line),
                          f"steps.{step.name}.python")
    return found


def prepare(project: Project, step: StepSpec, env: Mapping[str, str]) -> Prepared:
    """Expand a step's ``cwd`` and command; raises ``ConfigError`` for an undefined ``${X}``."""
    cwd = project.root
    if step.cwd:
        raw = expand(step.cwd, env, step.loc, f"steps.{step.name}.cwd")
        cwd = Path(raw) if Path(raw).is_absolute() else project.root / raw
    ctx = StepContext(root=project.root, cwd=cwd, env=env,
                      python=resolve_python(project, step, env))
    kind = KINDS[step.kind]
    if kind.uses_python and "PYTHONSAFEPATH" in env:
        # devenv's kind scripts import their shared helpers from their own folder, which
        # Python leaves off sys.path under PYTHONSAFEPATH (the user's code is unaffected:
        # the scripts put the app's folder on sys.path themselves)
        env = {k: v for k, v in env.items() if k != "PYTHONSAFEPATH"}
    return Prepared(step, kind.command(step, ctx), cwd, env, kind.warm_start)


def new_log(log_dir: Path, name: str, keep: int = KEEP_LOGS) -> Path:
    """A fresh log file for ``name``; ``log_dir/NAME.log`` links to it; old ones pruned."""
    folder = log_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    path = folder / f"{stamp}.log"
    path.touch()
    link = log_dir / f"{name}.log"
    tmp = log_dir / f".{name}.log.tmp{os.getpid()}-{threading.get_ident()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(path.relative_to(log_dir))
    os.replace(tmp, link)
    old = sorted(folder.glob("*.log"))[:-keep]
    for p in old:
        p.unlink(missing_ok=True)
    return path


class _Running:
    """The processes running now, so an interrupt can stop them all."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def add(self, name: str, p: subprocess.Popen[bytes]) -> bool:
        with self.lock:
            if self.stopping:
                return False
            self.procs[name] = p
            return True

    def remove(self, name: str) -> None:
        with self.lock:
            self.procs.pop(name, None)

    def stop_all(self) -> list[str]:
        with self.lock:
            self.stopping = True
            procs = dict(self.procs)
        threads = [threading.Thread(target=proc.kill_group, args=(p,)) for p in procs.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return list(procs)


def _header(fh: IO[bytes], prep: Prepared) -> str | None:
    """Write the log's first lines; the error if the step cannot start in its folder."""
    fh.write(f"$ {prep.shown}\n# cwd: {prep.cwd}\n".encode())
    fh.flush()
    if not prep.cwd.is_dir():
        step = prep.step
        msg = f"working directory not found: {prep.cwd} ({step.loc}: steps.{step.name}.cwd)"
        fh.write(f"devenv: {msg}\n".encode())
        return msg
    return None


def _execute(prep: Prepared, log: Path, running: _Running) -> tuple[Status, str, int | None]:
    step = prep.step
    with log.open("ab") as fh:
        missing = _header(fh, prep)
        if missing is not None:
            return Status.FAILED, missing, None
        try:
            p = proc.spawn(prep.command, cwd=prep.cwd, env=prep.env, stdout=fh,
                           shell=isinstance(prep.command, str))
        except proc.ProcessError as exc:
            shown = mask(str(exc), prep.env)  # it names the command
            fh.write(f"devenv: {shown}\n".encode())
            return Status.FAILED, shown.splitlines()[-1].strip(" |"), 127
        if not running.add(step.name, p):
            proc.kill_group(p)
            return Status.INTERRUPTED, "interrupted before it started", None
        return _wait(prep, p, fh, running)


def _stop_step(prep: Prepared, p: subprocess.Popen[bytes], grace: float,
               escaped: bool = False) -> None:
    """Stop a step's process group; with ``escaped``, also whatever it started outside the
    group (a ``setsid`` or daemonised child still carries the step's tag). Looking for
    those reads every process's environment (a few ms, tens on a busy machine), so a step
    that ends normally leaves that to the end of the run (one look for all steps)."""
    proc.kill_group(p, grace=grace)
    if escaped and prep.tag:
        watchdog.kill_tagged(prep.tag, step=prep.tag, grace=grace)


def _wait(prep: Prepared, p: subprocess.Popen[bytes], fh: IO[bytes],
          running: _Running) -> tuple[Status, str, int | None]:
    step = prep.step
    try:
        try:
            rc = p.wait(timeout=step.timeout)
        except subprocess.TimeoutExpired:
            _stop_step(prep, p, 3.0, escaped=True)
            fh.write(f"\ndevenv: timed out after {step.timeout:g}s; stopped\n".encode())
            return Status.FAILED, f"timed out after {step.timeout:g}s", None
        # A step may leave children behind (a server started with &): stop them too.
        _stop_step(prep, p, 0.5)
    finally:
        running.remove(step.name)
    if running.stopping:
        return Status.INTERRUPTED, "interrupted", rc
    if rc == 0:
        return Status.OK, "", 0
    if rc < 0:
        return Status.FAILED, f"killed by {signal.Signals(-rc).name}", rc
    return Status.FAILED, f"exit code {rc}", rc


class _Warm:
    """A step's process started early: setting up, then parked until ``go``."""

    def __init__(self, prep: Prepared, log: Path, p: subprocess.Popen[bytes],
                 ready_fd: int) -> None:
        self.prep = prep
        self.log = log
        self.p = p
        self.ready_fd = ready_fd
        self.spawned = time.monotonic()
        self.setup: float | None = None  # seconds until it was parked (or exited)

    @classmethod
    def spawn(cls, prep: Prepared, log: Path, running: _Running) -> _Warm | None:
        with log.open("ab") as fh:
            if _header(fh, prep) is not None:
                return None  # the normal start reports it
            fh.write(b"# warm start: set up ahead of its turn, waiting for its dependencies\n")
            fh.flush()
            ready_r, ready_w = os.pipe()
            env = {**prep.env, "DEVENV_WARM_FD": str(ready_w)}
            try:
                p = proc.spawn(prep.command, cwd=prep.cwd, env=env, stdout=fh,
                               shell=isinstance(prep.command, str), stdin=subprocess.PIPE,
                               pass_fds=(ready_w,))
            except proc.ProcessError:
                os.close(ready_r)
                return None  # the normal start reports it
            finally:
                os.close(ready_w)
        if not running.add(prep.step.name, p):
            proc.kill_group(p)
            os.close(ready_r)
            return None
        return cls(prep, log, p, ready_fd=ready_r)

    def watch(self) -> None:
        """Block until the process is parked (its ``r``) or has exited during set-up (its
        exit code tells why when its turn comes)."""
        try:
            os.read(self.ready_fd, 1)
        finally:
            os.close(self.ready_fd)
        self.setup = time.monotonic() - self.spawned

    def go(self, running: _Running) -> tuple[Status, str, int | None]:
        """Its turn: let it touch the database, then wait for it like any step."""
        assert self.p.stdin is not None
        with contextlib.suppress(OSError):  # it may have died during set-up
            self.p.stdin.write(b"go\n")
            self.p.stdin.close()
        with self.log.open("ab") as fh:
            return _wait(self.prep, self.p, fh, running)

    def cancel(self, running: _Running, why: str) -> None:
        """Not needed after all: end-of-file on stdin makes it exit; then stop its group."""
        if self.p.stdin is not None:
            with contextlib.suppress(OSError):
                self.p.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.p.wait(timeout=2)  # it exits on its own once it reads end-of-file
        _stop_step(self.prep, self.p, 0.5)
        running.remove(self.prep.step.name)
        with contextlib.suppress(OSError), self.log.open("ab") as fh:
            fh.write(f"devenv: not run: {why}\n".encode())


_Outcome = tuple[Status, str, int | None]


class _Scheduler:
    """One run of the steps: what is pending, running, parked and done, and one method per
    event (start what is ready, a step finished, cancel downstream of a failure, an
    interrupt). :func:`run` builds one and calls :meth:`run`."""

    def __init__(self, project: Project, decisions: Sequence[Decision],
                 prepared: Mapping[str, Prepared], reporter: Reporter, options: RunOptions,
                 on_success: Callable[[str, float], None] | None,
                 on_failure: Callable[[str], None] | None,
                 after_step: Callable[[str], None] | None,
                 extra_waits: Mapping[str, set[str]] | None) -> None:
        self.project = project
        self.decisions = decisions
        self.reporter = reporter
        self.options = options
        self.on_success = on_success
        self.on_failure = on_failure
        self.after_step = after_step
        self.results: dict[str, StepResult] = {}
        self.to_run = [d.step for d in decisions if d.action is Action.RUN]
        # Each step's processes carry the tag RUN-N; the watchdog stops them all if this
        # process dies before it can (SIGKILL, a closed terminal).
        run_id = options.run_id
        self.prepared = {n: replace(prepared[n], tag=f"{run_id}-{i}",
                                    env=watchdog.tag_env(prepared[n].env, f"{run_id}-{i}"))
                         for i, n in enumerate(self.to_run, 1)}
        self.fps = {d.step: d.fingerprint for d in decisions}
        # A step waits for every running step upstream of it, also through skipped ones.
        self.walk = graph.Frontier(
            self.to_run, lambda n: graph.upstream(project, n) | (extra_waits or {}).get(n, set()))
        self.pending = set(self.to_run)
        self.failed: set[str] = set()
        self.running = _Running()
        self.interrupted = False
        self.stop_new = False
        self.futures: dict[cf.Future[_Outcome], tuple[str, float, Path]] = {}
        # Warm starts: at most `jobs` processes setting up at once, and only on idle CPUs;
        # parked ones cost memory only, so a few more may wait.
        self.warm: dict[str, _Warm] = {}
        self.watchers: dict[cf.Future[None], str] = {}
        self.max_parked = 2 * max(1, options.jobs)

    def run(self, database: str | None) -> RunResult:
        started = time.monotonic()
        self.reporter.emit(RunStarted(self.decisions, self.options.jobs, database))
        guard = proc.start_watchdog(self.options.run_id) if self.to_run else None
        for d in self.decisions:
            if d.action is Action.SKIP:
                self.finish(d.step, Status.SKIPPED, d.reason)
        if self.to_run:
            jobs = max(1, self.options.jobs)
            # Imported here: most `up`s run no step, and the import (logging with it) is
            # a few ms of every start.
            import concurrent.futures as cf

            self.pool = cf.ThreadPoolExecutor(max_workers=jobs,
                                              thread_name_prefix="devenv-step")
            self.watch_pool = cf.ThreadPoolExecutor(max_workers=self.max_parked + jobs,
                                                    thread_name_prefix="devenv-warm")
            try:
                self.loop()
            except KeyboardInterrupt:
                self.interrupt()
            finally:
                self.shut_down(guard)
        self.cancel_pending()
        order = {d.step: i for i, d in enumerate(self.decisions)}
        result = RunResult(sorted(self.results.values(), key=lambda r: order.get(r.name, 0)),
                           self.interrupted, time.monotonic() - started)
        self.reporter.emit(RunFinished(result))
        return result

    def finish(self, name: str, status: Status, reason: str, duration: float = 0.0,
               log: Path | None = None, rc: int | None = None) -> None:
        res = StepResult(name, status, reason, duration, log, rc, self.fps.get(name))
        self.results[name] = res
        self.reporter.emit(StepFinished(res))

    def loop(self) -> None:
        """Start what is ready, wait for something to finish, until nothing is left."""
        import concurrent.futures as cf  # imported by run() already

        while self.pending or self.futures:
            if not self.stop_new:
                self.start_ready()
                self.start_warm()
            if not self.futures:
                break
            waitables: list[cf.Future[Any]] = [*self.futures, *self.watchers]
            finished, _ = cf.wait(waitables, timeout=0.25, return_when=cf.FIRST_COMPLETED)
            for done_watch in [f for f in finished if f in self.watchers]:
                # a warm process is parked (or gone): maybe another can start
                self.watchers.pop(done_watch)
            for fut in [f for f in finished if f in self.futures]:
                name, t0, log = self.futures.pop(fut)
                status, reason, rc = fut.result()
                self.step_finished(name, status, reason, time.monotonic() - t0, log, rc)

    def start_ready(self) -> None:
        """Start the steps whose waits are over, up to ``jobs`` at once; a parked warm
        process gets its ``go``."""
        for name in self.walk.ready(self.pending):
            if len(self.futures) >= self.options.jobs:
                break
            self.pending.discard(name)
            prep = self.prepared[name]
            w = self.warm.pop(name, None)
            if w is not None:
                self.reporter.emit(StepStarted(name, prep.display, w.log))
                fut = self.pool.submit(w.go, self.running)
                self.futures[fut] = (name, time.monotonic(), w.log)
                continue
            log = new_log(self.options.log_dir, name)
            self.reporter.emit(StepStarted(name, prep.display, log))
            fut = self.pool.submit(_execute, prep, log, self.running)
            self.futures[fut] = (name, time.monotonic(), log)

    def start_warm(self) -> None:
        """Start steps that can wait early, on idle CPUs, once all they wait for has at
        least started."""
        if not self.options.warm_start or self.stop_new:
            return
        started = {n for n, _, _ in self.futures.values()}
        done = self.walk.finished
        ahead = done | started | set(self.warm)
        for name in self.to_run:
            setting_up = sum(1 for w in self.warm.values() if w.setup is None)
            if (len(self.futures) + setting_up >= self.options.jobs
                    or len(self.warm) >= self.max_parked):
                return
            waits = self.walk.waits[name]
            if (name not in self.pending or name in self.warm or not self.prepared[name].warm
                    or waits <= done or not waits <= ahead):
                continue
            log = new_log(self.options.log_dir, name)
            w = _Warm.spawn(self.prepared[name], log, self.running)
            if w is None:
                continue
            self.warm[name] = w
            ahead.add(name)
            self.watchers[self.watch_pool.submit(w.watch)] = name

    def cancel_warm(self, name: str, why: str) -> None:
        w = self.warm.pop(name, None)
        if w is not None:
            w.cancel(self.running, why)

    def step_finished(self, name: str, status: Status, reason: str, duration: float,
                      log: Path, rc: int | None) -> None:
        """Record a step's end and run the hooks; a failure blocks what depends on it."""
        if status is Status.OK:
            if self.on_success is not None:
                self.on_success(name, duration)
            if self.after_step is not None:
                self.after_step(name)
            self.walk.done(name)
        else:
            self.failed.add(name)
            if self.on_failure is not None and status is Status.FAILED:
                self.on_failure(name)
            if not self.options.keep_going:
                self.stop_new = True
        self.finish(name, status, reason, duration, log, rc)
        if status is not Status.OK:
            self.cancel_downstream(name)

    def cancel_downstream(self, name: str) -> None:
        """Dependants of a failed step can never run; without --keep-going, no parked warm
        process will get its turn either."""
        for dep in graph.downstream(self.project, [name]):
            if dep in self.pending:
                self.pending.discard(dep)
                self.cancel_warm(dep, f"needs {name}, which failed")
                self.finish(dep, Status.BLOCKED, f"needs {name}, which failed")
        if self.stop_new:
            for other in list(self.warm):
                self.cancel_warm(other, f"the run stopped after {name} failed")

    def interrupt(self) -> None:
        """Ctrl-C: stop every running step and record how each ended."""
        import concurrent.futures as cf  # imported by run() already

        self.interrupted = True
        stopped = self.running.stop_all()
        for fut, (name, t0, log) in list(self.futures.items()):
            try:
                status, reason, rc = fut.result(timeout=30)
            except (cf.TimeoutError, KeyboardInterrupt):
                status, reason, rc = Status.INTERRUPTED, "interrupted", None
            if name in stopped or status is Status.INTERRUPTED:
                status, reason = Status.INTERRUPTED, "interrupted"
            self.finish(name, status, reason, time.monotonic() - t0, log, rc)
        self.futures.clear()

    def shut_down(self, guard: subprocess.Popen[bytes] | None) -> None:
        """Whatever happened: parked processes told to exit, the pools emptied, nothing
        of this run left behind."""
        for name in list(self.warm):
            self.cancel_warm(name, "the run ended before its turn")
        self.pool.shutdown(wait=True)
        self.watch_pool.shutdown(wait=True)
        if guard is not None:
            # Nothing of this run may outlive it; then the watchdog can go (it looks once
            # more on end-of-file and exits).
            watchdog.kill_tagged(self.options.run_id, grace=0.5)
            assert guard.stdin is not None
            with contextlib.suppress(OSError):
                guard.stdin.close()
            # Not waited for: it has nothing left to stop, and a short run must not wait
            # for its interpreter to start. Kept referenced so it is reaped, not warned of.
            _GUARDS[:] = [g for g in _GUARDS if g.poll() is None]
            if guard.poll() is None:
                _GUARDS.append(guard)

    def cancel_pending(self) -> None:
        """The steps that never started: say why."""
        first_failure = next((n for n in self.to_run if n in self.failed), None)
        for name in self.to_run:
            if name in self.pending:
                why = "interrupted before it started" if self.interrupted else \
                    f"not started: the run stopped after {first_failure} failed" \
                    if first_failure else \
                    (f"not started: it waits for "
                     f"{', '.join(sorted(self.walk.missing(name)))}, which could not "
                     "start (a bug in devenv's ordering; please report it)")
                self.finish(name, Status.CANCELLED, why)


def run(
    project: Project,
    decisions: Sequence[Decision],
    prepared: Mapping[str, Prepared],
    reporter: Reporter,
    options: RunOptions,
    on_success: Callable[[str, float], None] | None = None,
    on_failure: Callable[[str], None] | None = None,
    database: str | None = None,
    after_step: Callable[[str], None] | None = None,
    extra_waits: Mapping[str, set[str]] | None = None,
) -> RunResult:
    """Run the steps ``decisions`` mark RUN; ``prepared`` holds each one's command.

    ``after_step(name)`` runs after a step succeeds and before any other step starts (the
    refresh uses it to snapshot at barriers); ``extra_waits`` adds ordering that is not in
    the graph (steps that must wait for a checkpoint).
    """
    return _Scheduler(project, decisions, prepared, reporter, options, on_success,
                      on_failure, after_step, extra_waits).run(database)
