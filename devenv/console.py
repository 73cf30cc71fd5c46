"""Everything the user sees. The only module that imports rich.

Two reporters: :class:`RichReporter` (a live view for a terminal) and
:class:`PlainReporter` (timestamped lines for CI, pipes, ``--plain`` and ``NO_COLOR``).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from devenv import logtail
from devenv.events import (
    Event,
    Message,
    PhaseFinished,
    PhaseStarted,
    Reporter,
    RunFinished,
    RunResult,
    RunStarted,
    Status,
    StepFinished,
    StepResult,
    StepStarted,
)

TAIL = 20
SYMBOL = {Status.OK: "✓", Status.FAILED: "✗", Status.SKIPPED: "-", Status.BLOCKED: "!",
          Status.CANCELLED: "·", Status.INTERRUPTED: "✗"}
STYLE = {Status.OK: "green", Status.FAILED: "bold red", Status.SKIPPED: "dim",
         Status.BLOCKED: "yellow", Status.CANCELLED: "dim", Status.INTERRUPTED: "bold red"}


def ci_flavour() -> str | None:
    """``github`` or ``gitlab`` when running under their CI, for folded log groups."""
    if os.environ.get("GITHUB_ACTIONS") == "true":
        return "github"
    if os.environ.get("GITLAB_CI"):
        return "gitlab"
    return None


def is_interactive(stream: IO[str] | None = None) -> bool:
    """A terminal a person watches: a TTY, not CI, not a dumb terminal."""
    stream = stream or sys.stdout
    if os.environ.get("CI") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def make_reporter(plain: bool = False, ci_groups: bool = False,
                  stream: IO[str] | None = None) -> Reporter:
    """The reporter that fits: live view on a terminal, plain lines everywhere else."""
    stream = stream or sys.stdout
    if plain or ci_groups or not is_interactive(stream):
        groups = (ci_flavour() or "plain") if ci_groups else None
        return PlainReporter(stream, groups=groups)
    return RichReporter(stream)


def _fmt_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s"


def _rel(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def _link(log: Path | None) -> str:
    """The stable name of a step's log (the ``STEP.log`` link) rather than the dated file."""
    if log is None:
        return ""
    link = log.parent.parent / f"{log.parent.name}.log"
    return _rel(link if link.exists() else log)


def summary_line(result: RunResult) -> str:
    counts: dict[Status, int] = {}
    for r in result.results:
        counts[r.status] = counts.get(r.status, 0) + 1
    parts = [f"{n} {s.value}" for s, n in counts.items()]
    head = "interrupted" if result.interrupted else "done" if result.ok else "failed"
    return f"{head} in {_fmt_duration(result.duration)}: " + (", ".join(parts) or "no steps")


class PlainReporter:
    """Timestamped lines, no colour, no cursor movement."""

    def __init__(self, stream: IO[str], groups: str | None = None) -> None:
        self.stream = stream
        self.groups = groups
        self.lock = threading.Lock()

    def _line(self, text: str) -> None:
        with self.lock:
            self.stream.write(f"{time.strftime('%H:%M:%S')} {text}\n")
            self.stream.flush()

    def emit(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            n = sum(1 for d in event.decisions if d.action.value == "run")
            if n == 0:
                return  # "everything is up to date" already said it
            where = f" on {event.database}" if event.database else ""
            self._line(f"running {n} of {len(event.decisions)} steps{where} "
                       f"(up to {event.jobs} at once)")
        elif isinstance(event, StepStarted):
            self._line(f"[{event.name}] started: {event.command}")
        elif isinstance(event, StepFinished):
            self._finished(event.result)
        elif isinstance(event, RunFinished):
            self._line(summary_line(event.result))
        elif isinstance(event, Message):
            prefix = {"warn": "warning: ", "error": "error: "}.get(event.level, "")
            self._line(prefix + event.text)
            if event.detail:
                with self.lock:
                    for line in event.detail.splitlines():
                        self.stream.write(f"  {line}\n")
        elif isinstance(event, PhaseStarted):
            self._line(event.text)
        elif isinstance(event, PhaseFinished):
            self._line(event.text + (f" ({_fmt_duration(event.duration)})"
                                     if event.duration >= 0.05 else ""))

    def _finished(self, r: StepResult) -> None:
        if r.status is Status.SKIPPED:
            self._line(f"[{r.name}] skipped: {r.reason}")
            return
        if r.status is Status.OK:
            self._line(f"[{r.name}] ok in {_fmt_duration(r.duration)}")
        elif r.status in (Status.BLOCKED, Status.CANCELLED):
            self._line(f"[{r.name}] {r.status.value}: {r.reason}")
        elif r.status is Status.INTERRUPTED:
            self._line(f"[{r.name}] interrupted after {_fmt_duration(r.duration)}; "
                       f"log: {_link(r.log)}")
        else:
            self._line(f"[{r.name}] {r.status.value.upper()} ({r.reason}) after "
                       f"{_fmt_duration(r.duration)}; log: {_link(r.log)}")
        if self.groups and r.log is not None:
            self._group(r)
        elif r.status in (Status.FAILED, Status.INTERRUPTED):
            tail = logtail.tail(r.log, TAIL)
            if tail:
                with self.lock:
                    for line in tail.splitlines():
                        self.stream.write(f"  | {line}\n")
                    self.stream.flush()

    def _group(self, r: StepResult) -> None:
        assert r.log is not None
        title = f"{r.name}: {r.status.value} in {_fmt_duration(r.duration)}"
        body = r.log.read_text(errors="replace") if r.log.exists() else ""
        with self.lock:
            if self.groups == "github":
                self.stream.write(f"::group::{title}\n{body}::endgroup::\n")
                if r.status is Status.FAILED:
                    self.stream.write(f"::error title=step {r.name} failed::{r.reason}\n")
            elif self.groups == "plain":
                self.stream.write(f"----- {title}: {_link(r.log)} -----\n{body}"
                                  f"----- end of {r.name} -----\n")
            else:
                sid = "".join(ch if ch.isalnum() else "_" for ch in r.name)
                now = int(time.time())
                collapsed = "[collapsed=true]" if r.status is Status.OK else ""
                self.stream.write(f"\x1b[0Ksection_start:{now}:{sid}{collapsed}\r\x1b[0K{title}\n"
                                  f"{body}\x1b[0Ksection_end:{now}:{sid}\r\x1b[0K\n")
            self.stream.flush()

    def close(self) -> None:
        return None


class RichReporter:
    """A live view: spinners with elapsed time for running steps; a line per finished one."""

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=stream, highlight=False)
        self.running: dict[str, float] = {}
        self.phases: dict[str, tuple[str, float]] = {}
        self.lock = threading.Lock()
        self.live = Live(self._render(), console=self.console, refresh_per_second=8,
                         transient=True, get_renderable=self._render)
        self.started = False

    def _render(self) -> Any:
        from rich.console import Group
        from rich.spinner import Spinner
        from rich.text import Text

        rows: list[Any] = []
        now = time.monotonic()
        for text, t0 in list(self.phases.values()):
            rows.append(Spinner("dots", Text(f"{text}  {_fmt_duration(now - t0)}", style="cyan")))
        for name, t0 in list(self.running.items()):
            rows.append(Spinner("dots", Text.assemble((name, "bold"),
                                                      f"  {_fmt_duration(now - t0)}")))
        return Group(*rows)

    def _ensure(self) -> None:
        if not self.started:
            self.live.start()
            self.started = True

    def emit(self, event: Event) -> None:
        from rich.text import Text

        with self.lock:
            if isinstance(event, RunStarted):
                n = sum(1 for d in event.decisions if d.action.value == "run")
                if n == 0:
                    return  # "everything is up to date" already said it
                where = f" on {event.database}" if event.database else ""
                self.console.print(Text(f"Running {n} of {len(event.decisions)} steps{where}",
                                        style="bold"))
                self._ensure()
            elif isinstance(event, StepStarted):
                self._ensure()
                self.running[event.name] = time.monotonic()
            elif isinstance(event, StepFinished):
                self.running.pop(event.result.name, None)
                self._finished(event.result)
            elif isinstance(event, RunFinished):
                r = event.result
                style = "bold green" if r.ok else "bold red"
                self.console.print(Text(summary_line(r), style=style))
            elif isinstance(event, Message):
                mstyle = {"warn": "yellow", "error": "bold red", "ok": "green"}.get(event.level, "")
                prefix = {"warn": "warning: ", "error": "error: "}.get(event.level, "")
                self.console.print(Text(prefix + event.text, style=mstyle))
                if event.detail:
                    self.console.print(Text(event.detail, style="dim"))
            elif isinstance(event, PhaseStarted):
                self._ensure()
                self.phases[event.name] = (event.text, time.monotonic())
            elif isinstance(event, PhaseFinished):
                self.phases.pop(event.name, None)
                mark = "✓" if event.ok else "✗"
                style = "green" if event.ok else "bold red"
                dur = f" ({_fmt_duration(event.duration)})" if event.duration >= 0.05 else ""
                self.console.print(Text.assemble((mark + " ", style), event.text + dur))

    def _finished(self, r: StepResult) -> None:
        from rich.text import Text

        mark = SYMBOL[r.status]
        style = STYLE[r.status]
        if r.status is Status.OK:
            self.console.print(Text.assemble((f"{mark} ", style), (r.name, "bold"),
                                             f"  {_fmt_duration(r.duration)}"))
        elif r.status is Status.SKIPPED:
            self.console.print(Text.assemble((f"{mark} {r.name}", style),
                                             (f"  skipped: {r.reason}", "dim")))
        else:
            self.console.print(Text.assemble((f"{mark} {r.name}", style),
                                             f"  {r.status.value}: {r.reason}"))
            if r.status in (Status.FAILED, Status.INTERRUPTED):
                tail = logtail.tail(r.log, TAIL)
                if tail:
                    self.console.print(Text(tail, style="dim"))
                if r.log is not None:
                    self.console.print(Text(f"  full log: {_link(r.log)}", style="yellow"))

    def close(self) -> None:
        with self.lock:
            if self.started:
                self.live.stop()
                self.started = False


# --------------------------------------------------------------------------- output


class Output:
    """Command output that is not a run: tables, trees, JSON, errors."""

    def __init__(self, plain: bool = False, stream: IO[str] | None = None) -> None:
        self.stream: IO[str] = stream or sys.stdout
        self.plain = plain or not is_interactive(self.stream)

    def _console(self, stderr: bool = False) -> Any:
        from rich.console import Console

        return Console(file=sys.stderr if stderr else self.stream, highlight=False,
                       no_color=self.plain or None, soft_wrap=True)

    def text(self, text: str = "") -> None:
        self.stream.write(text + ("\n" if not text.endswith("\n") else ""))
        self.stream.flush()

    def json(self, value: Any) -> None:
        self.stream.write(json.dumps(value, indent=2, default=str) + "\n")
        self.stream.flush()

    def error(self, message: str) -> None:
        if self.plain:
            sys.stderr.write(f"error: {message}\n")
            return
        from rich.text import Text

        self._console(stderr=True).print(Text.assemble(("error: ", "bold red"), message))

    def warn(self, message: str) -> None:
        if self.plain:
            sys.stderr.write(f"warning: {message}\n")
            return
        from rich.text import Text

        self._console(stderr=True).print(Text.assemble(("warning: ", "yellow"), message))

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[str]],
              styles: Sequence[str | None] | None = None, title: str | None = None) -> None:
        """A table; in plain mode, aligned columns of text."""
        if self.plain:
            if title:
                self.text(title)
            widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c)
                      for i, c in enumerate(columns)]
            self.text("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))
                      .rstrip())
            for r in rows:
                self.text("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
            return
        from rich.table import Table

        t = Table(title=title, title_justify="left", box=None, header_style="bold")
        for c in columns:
            t.add_column(c)
        for i, r in enumerate(rows):
            t.add_row(*r, style=(styles[i] if styles else None))
        self._console().print(t)

    def tree(self, label: str, children: Sequence[tuple[str, Any]]) -> None:
        """A tree from ``(label, children)`` pairs."""
        if self.plain:
            self.text(label)
            self._plain_tree(children, "")
            return
        from rich.tree import Tree

        root = Tree(label)
        self._rich_tree(root, children)
        self._console().print(root)

    def _plain_tree(self, children: Sequence[tuple[str, Any]], prefix: str) -> None:
        for i, (label, sub) in enumerate(children):
            last = i == len(children) - 1
            self.text(f"{prefix}{'└── ' if last else '├── '}{label}")
            self._plain_tree(sub, prefix + ("    " if last else "│   "))

    def _rich_tree(self, node: Any, children: Sequence[tuple[str, Any]]) -> None:
        for label, sub in children:
            self._rich_tree(node.add(label), sub)


# --------------------------------------------------------------------------- process lines


class ProcessLines:
    """The output of app processes, one prefixed line each (``web     | ...``), like docker
    compose: the name in a colour of its own on a terminal, plain text otherwise.

    devenv's own lines about the processes (started, ready, exited) go under ``devenv``.
    """

    SYSTEM = "devenv"
    # ANSI colours rather than rich: a busy server's lines are written as they come, and
    # its own escape codes must pass through untouched.
    PALETTE = ("36", "33", "32", "35", "34", "96", "93", "92", "95", "94")

    def __init__(self, names: Sequence[str], plain: bool = False,
                 stream: IO[str] | None = None, colour: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.colour = (not plain and is_interactive(self.stream)) if colour is None else colour
        self.width = max(len(n) for n in [*names, self.SYSTEM])
        self.colours = {n: self.PALETTE[i % len(self.PALETTE)] for i, n in enumerate(names)}
        self.colours[self.SYSTEM] = "1"
        self.lock = threading.Lock()

    def prefix(self, name: str) -> str:
        """``name`` padded to the widest name, with its separator (coloured on a TTY)."""
        text = f"{name.ljust(self.width)} | "
        if not self.colour:
            return text
        return f"\x1b[{self.colours.get(name, '0')}m{text}\x1b[0m"

    def line(self, name: str, text: str) -> None:
        """One line of ``name``'s output."""
        with self.lock:
            self.stream.write(self.prefix(name) + text + "\n")
            self.stream.flush()

    def system(self, text: str, detail: str = "") -> None:
        """A line from devenv itself, with ``detail`` (an output tail) indented below it."""
        with self.lock:
            self.stream.write(self.prefix(self.SYSTEM) + text + "\n")
            for extra in detail.splitlines():
                self.stream.write(self.prefix(self.SYSTEM) + "  | " + extra + "\n")
            self.stream.flush()
