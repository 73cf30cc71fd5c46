"""A test-only step kind that speaks the warm-start protocol (see devenv.runner).

Its script records what it does, with timestamps, in an events file: when set-up starts,
whether it was told ``go`` or was not needed, when it worked. Options travel as JSON.
Registered with :func:`register` (in the test process, or in a devenv subprocess through
``python -m tests.warmkind ...``, which then runs devenv's CLI).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from devenv.fields import Field
from devenv.kinds import KINDS, StepContext
from devenv.schema import Command, StepSpec

SCRIPT = r'''
import json, os, sys, time
opts = json.loads(sys.argv[1])
def event(what):
    with open(opts["events"], "a") as fh:
        fh.write(f"{opts['name']} {what} {time.time():.6f} {os.getpid()}\n")
event("setup")
time.sleep(opts.get("setup", 0))
if opts.get("fail_setup"):
    print("setup exploded", flush=True)
    sys.exit(4)
if opts.get("connect"):  # an app that connects while it is imported
    import psycopg
    held = psycopg.connect(os.environ["DATABASE_URL"])
fd = os.environ.get("DEVENV_WARM_FD")
if fd:
    os.write(int(fd), b"r")
    os.close(int(fd))
    event("parked")
    if sys.stdin.readline().strip() != "go":
        event("not-needed")
        sys.exit(0)
event("work")
time.sleep(opts.get("work", 0))
sys.exit(opts.get("rc", 0))
'''


class WarmTestKind:
    name = "warmtest"
    options: tuple[Field, ...] = (Field("setup", float), Field("work", float), Field("rc", int),
                                  Field("fail_setup", bool), Field("connect", bool))
    uses_run = False
    uses_python = False
    warm_start = True
    incremental = False

    def validate(self, options: Mapping[str, Any]) -> None:
        pass

    def default_inputs(self, step: StepSpec) -> tuple[str, ...]:
        return ()

    def command(self, step: StepSpec, ctx: StepContext) -> Command:
        opts = {"name": step.name, "events": str(ctx.root / "events.txt"),
                **dict(step.options)}
        return (sys.executable, "-c", SCRIPT, json.dumps(opts))


def register() -> None:
    KINDS["warmtest"] = WarmTestKind()


if __name__ == "__main__":
    register()
    from devenv.cli import main

    sys.argv = ["devenv", *sys.argv[1:]]
    main()
