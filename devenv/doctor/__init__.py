"""``devenv doctor``: why is this not working? One command that checks everything devenv
depends on and says, for each thing, what is wrong and what fixes it.

Each group of checks is a module (:mod:`.configuration`, :mod:`.engine`, :mod:`.services`,
:mod:`.db`, :mod:`.uptodate`, :mod:`.drift`, :mod:`.environ`, :mod:`.cache`); each check
is a function ``(Context) -> Check`` listed in its module's ``CHECKS``, and
:data:`REGISTRY` is all of them in the order they are shown. :func:`run_checks` runs them
at once, each in a thread of its own with a time limit, so a hung service costs one check
its answer, not the whole command.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import replace

from devenv.doctor import (
    branches,
    cache,
    configuration,
    db,
    drift,
    engine,
    environ,
    services,
    uptodate,
)
from devenv.doctor.base import (
    FAIL,
    OK,
    WARN,
    Check,
    CheckDef,
    NotChecked,
    Remedy,
)
from devenv.doctor.context import Context
from devenv.errors import DevenvError, first_line

__all__ = ["FAIL", "OK", "REGISTRY", "WARN", "Check", "CheckDef", "Context", "Remedy",
           "registry", "run_checks"]


def registry() -> list[CheckDef]:
    """Every check, grouped as the issue lists them."""
    return [*configuration.CHECKS, *engine.CHECKS, *services.CHECKS, *db.CHECKS,
            *uptodate.CHECKS, *drift.CHECKS, *environ.CHECKS, *cache.CHECKS,
            *branches.CHECKS]


REGISTRY: list[CheckDef] = registry()


def _run_one(definition: CheckDef, ctx: Context, future: Future[Check]) -> None:
    try:
        result = definition.fn(ctx)
    except NotChecked as exc:
        see = f"fix {exc.see} first" if exc.see else ""
        result = Check(definition.id, WARN, f"not checked: {exc.reason}", see)
    except DevenvError as exc:
        result = Check(definition.id, FAIL, first_line(exc), "fix what the message says")
    except Exception as exc:  # a bug in a check must not hide the other checks
        where = traceback.extract_tb(exc.__traceback__)[-1]
        result = Check(definition.id, FAIL,
                       f"the check itself failed: {type(exc).__name__}: {first_line(exc)} "
                       f"({where.filename.rsplit('/', 1)[-1]}:{where.lineno})",
                       "report this as a devenv bug")
    # One line each, whatever a message from below (a driver, a backend) looked like.
    result = replace(result, finding=" ".join(result.finding.split()),
                     fix=" ".join(result.fix.split()))
    future.set_result(result)


def run_checks(ctx: Context, defs: Sequence[CheckDef] | None = None,
               scale: float = 1.0) -> list[Check]:
    """Run ``defs`` (default: every check) concurrently; results in registry order.

    A check whose project does not load is left out (config.load says why). Each check
    gets ``timeout * scale`` seconds; one that has not answered by then is reported as
    failed. Checks run in daemon threads, so one stuck in a call that never returns
    cannot keep the command from exiting.
    """
    defs = list(REGISTRY if defs is None else defs)
    if ctx.config_error() is not None:
        defs = [d for d in defs if not d.needs_project]
    started = time.monotonic()
    futures: list[tuple[CheckDef, Future[Check]]] = []
    for d in defs:
        fut: Future[Check] = Future()
        threading.Thread(target=_run_one, args=(d, ctx, fut), daemon=True,
                         name=f"doctor:{d.id}").start()
        futures.append((d, fut))
    out = []
    for d, fut in futures:
        remaining = started + d.timeout * scale - time.monotonic()
        try:
            out.append(fut.result(timeout=max(remaining, 0.0)))
        except TimeoutError:
            out.append(Check(d.id, FAIL, f"no answer within {d.timeout * scale:g}s: something "
                                         "it talks to hangs (a service, the database, an app)",
                             "look at the services (devenv doctor's other findings), then "
                             "run devenv doctor again"))
    return out
