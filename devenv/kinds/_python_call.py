"""devenv's python step: call ``package.module:function(conn, fake, **args)``.

``conn`` is a psycopg connection in a transaction (committed when the function returns,
rolled back when it raises); ``fake`` a Faker seeded with the step's ``seed``.

Standalone: run by path with the app's interpreter, which may not have devenv installed,
so it imports nothing from devenv (it needs psycopg and Faker). Output is the step's log.
"""

from __future__ import annotations

import difflib
import importlib
import json
import os
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devenv.kinds import _script_common as shared
else:
    # Run by path in the app's interpreter, which may lack devenv: this folder is
    # sys.path[0] until main() gives it to the app.
    import _script_common as shared

PROG = "python"


class Fail(Exception):
    pass


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        # Only the module itself (or a parent package) missing is the step's mistake; a
        # missing import inside it is the module's, and its traceback helps.
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
            raise Fail(f"cannot import {module} (from {os.getcwd()}): no module named "
                       f"'{exc.name}'; check call: and cwd:") from None
        traceback.print_exc()
        raise Fail(f"importing {module} failed: {type(exc).__name__}: {exc}") from None
    except Exception as exc:
        traceback.print_exc()
        raise Fail(f"importing {module} failed: {type(exc).__name__}: {exc}") from None


def call(opts: dict[str, Any]) -> None:
    target = opts["call"]
    module_name, func_name = target.split(":", 1)
    try:
        import psycopg
        from faker import Faker
    except ImportError as exc:
        raise Fail(f"{exc.name} is not installed for {sys.executable}; kind python needs "
                   "psycopg and Faker in the interpreter set by python:") from None
    module = _import(module_name)
    fn = getattr(module, func_name, None)
    if not callable(fn):
        names = [n for n in dir(module) if not n.startswith("_")
                 and callable(getattr(module, n))]
        close = difflib.get_close_matches(func_name, names, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise Fail(f"{module_name} has no function '{func_name}'{hint}")
    fake = Faker(opts.get("locale") or "en_US")
    fake.seed_instance(opts.get("seed", 0))
    try:
        conn = psycopg.connect(os.environ.get("DATABASE_URL", ""),
                               application_name="devenv-python")
    except psycopg.OperationalError as exc:
        text = str(exc).strip()
        raise Fail(f"cannot connect to the database: "
                   f"{text.splitlines()[-1] if text else type(exc).__name__}") from None
    t0 = time.monotonic()
    args = opts.get("args") or {}
    with conn:
        try:
            with conn.transaction():
                fn(conn, fake, **args)
        except Exception as exc:
            traceback.print_exc()
            raise Fail(f"{target} raised {type(exc).__name__}: {exc}; its changes were "
                       "rolled back") from None
    print(f"{PROG}: {target} done in {time.monotonic() - t0:.1f}s (seed "
          f"{opts.get('seed', 0)})", flush=True)


def main(argv: list[str]) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if len(argv) != 2:
        print(f"usage: {argv[0]} JSON (devenv runs this script for kind python)",
              file=sys.stderr)
        return 2
    shared.use_app_folder(os.getcwd())  # where its packages are found
    try:
        call(json.loads(argv[1]))
    except Fail as exc:
        print(f"{PROG}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
