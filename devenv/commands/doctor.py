"""``devenv doctor [--json] [--fix]``: every check, its finding and its fix."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from devenv.commands import up
from devenv.console import Output, make_reporter
from devenv.doctor import Check, Context, fixes, run_checks
from devenv.errors import EXIT_FAILED, EXIT_OK
from devenv.session import Session

LABEL = {"ok": "ok", "warn": "warn", "fail": "FAIL"}
STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}
MAX_ROUNDS = 3


def run(file: Path | None, out: Output, *, as_json: bool = False, fix: bool = False,
        plain: bool = False, profile: str = "local", database_url: str | None = None) -> int:
    """Check everything; with ``fix``, name and apply the safe repairs, then check again.

    Returns 0 when no check fails (warnings allowed), 1 otherwise.
    """
    t0 = time.monotonic()
    ctx = Context(file, profile, database_url)
    checks = run_checks(ctx)
    if fix:
        checks = _fix(ctx, checks, out, as_json=as_json, plain=plain)
    elapsed = time.monotonic() - t0
    if as_json:
        out.json([c.as_json() for c in checks])
    else:
        render(out, checks, elapsed, fixing=fix)
    return EXIT_FAILED if any(c.status == "fail" for c in checks) else EXIT_OK


def _fix(ctx: Context, checks: list[Check], out: Output, *, as_json: bool, plain: bool,
         ) -> list[Check]:
    """Apply the safe repairs the checks ask for, then run every check again."""
    if ctx.config_error() is not None:
        return checks
    # With --json, stdout is the JSON document alone: progress goes to stderr.
    stream = sys.stderr if as_json else out.stream
    done: set[tuple[str, tuple[str, ...]]] = set()
    # A repair can uncover the next problem (a started service lets the database be
    # checked, and it turns out empty): check again and repair what is new, a few times.
    for _round in range(MAX_ROUNDS):
        planned = [p for p in fixes.plan(ctx, checks)
                   if (p.remedy.action, p.remedy.args) not in done]
        if not planned:
            if not done:
                stream.write("doctor --fix: nothing it can repair safely\n")
            break
        stream.write("doctor --fix will:\n" + "".join(f"  - {p.text}\n" for p in planned))
        stream.flush()
        reporter = make_reporter(plain=plain or as_json, stream=stream)
        try:
            fixes.apply(ctx, planned, reporter, _up(ctx))
        finally:
            reporter.close()
        done.update((p.remedy.action, p.remedy.args) for p in planned)
        ctx = Context(ctx.file, ctx.profile, ctx.database_url)
        checks = run_checks(ctx)
    return checks


def _listed(c: Check) -> Sequence[str]:
    """The problems of a check that found several, when its one-line finding cannot hold
    them all (or they need different fixes)."""
    if c.status == "ok" or not c.listed:
        return ()
    return c.details


def _finding(c: Check) -> str:
    return f"{len(c.details)} problems:" if _listed(c) else c.finding


def render(out: Output, checks: Sequence[Check], elapsed: float, fixing: bool = False) -> None:
    """A table on a terminal; plain lines (``STATUS ID FINDING`` / ``fix: ...``) elsewhere."""
    bad = [c for c in checks if c.status != "ok"]
    if out.plain:
        width = max((len(c.id) for c in checks), default=10)
        pad = " " * (width + 8)
        for c in checks:
            out.text(f"{LABEL[c.status]:<4}  {c.id:<{width}}  {_finding(c)}")
            if c.status != "ok":
                for item in _listed(c):
                    out.text(f"{pad}- {item}")
                if c.fix:
                    out.text(f"{pad}fix: {c.fix}")
    else:
        out.table(["", "check", "finding"],
                  [[LABEL[c.status], c.id, "\n".join([_finding(c), *(f"- {i}" for i in
                                                                     _listed(c))])]
                   for c in checks],
                  [STYLE[c.status] for c in checks])
        if bad:
            out.text("")
            out.table(["", "check", "fix"], [[LABEL[c.status], c.id, c.fix] for c in bad],
                      [STYLE[c.status] for c in bad], title="To fix:")
    n_fail = sum(1 for c in checks if c.status == "fail")
    n_warn = sum(1 for c in checks if c.status == "warn")
    n_ok = len(checks) - n_fail - n_warn
    line = (f"{n_ok} ok, {n_warn} warning{'s' if n_warn != 1 else ''}, {n_fail} "
            f"failing ({elapsed:.1f}s)")
    fixable = [c for c in bad if c.fixable]
    if fixable and not fixing:
        line += f"; devenv doctor --fix repairs {len(fixable)} of them " \
                f"({', '.join(c.id for c in fixable)})"
    out.text(line)


def _up(ctx: Context) -> fixes.UpCommand:
    """``devenv up --no-processes`` for doctor's ``up`` repair, with this run's options."""

    def run(session: Session) -> int:
        return up.run(session, no_processes=True)

    return run
