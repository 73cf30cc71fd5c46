"""devenv's alembic step: refuse several heads (saying how to merge them), then run
``python -m alembic -c CONFIG upgrade TARGET`` or, for Flask-Migrate,
``python -m flask --app APP db upgrade --directory DIR TARGET``.

Standalone: run by path with the app's interpreter, which may not have devenv installed,
so it imports nothing from devenv. Output is the step's log; problems go to stderr.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

PROG = "alembic"
# The line of a Python traceback naming the exception, or alembic's own "FAILED: ...".
_ERROR_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*(?:Error|Exception)\w*: .+|FAILED: .+)$")


class Fail(Exception):
    pass


def say(text: str) -> None:
    print(f"{PROG}: {text}", flush=True)


def check_heads(opts: dict[str, Any]) -> tuple[list[str], str]:
    """The script directory's heads and its versions folder; refuses several heads when
    the target is ``head``."""
    try:
        from alembic.config import Config
        from alembic.script import ScriptDirectory
        from alembic.util import CommandError
    except ImportError:
        raise Fail(f"alembic is not installed for {sys.executable}; set python: to the "
                   "app's virtualenv (or its interpreter)") from None
    config = opts["config"]
    if not Path(config).is_file():
        raise Fail(f"config file not found: {config} (in {Path.cwd()})")
    cfg = Config(config)
    flask_app = opts.get("flask_app")
    directory = os.path.dirname(config) or "."
    if flask_app:
        # Flask-Migrate's alembic.ini has no script_location: the folder is the one
        # holding it (flask db ... --directory).
        cfg.set_main_option("script_location", directory)
    elif not cfg.get_main_option("script_location"):
        raise Fail(f"{config} has no script_location in its [alembic] section; for a "
                   "Flask-Migrate folder, set flask_app: to the Flask app")
    try:
        script = ScriptDirectory.from_config(cfg)
        heads = sorted(script.get_heads())
    except CommandError as exc:
        raise Fail(f"{config}: {exc}") from None
    versions = os.path.relpath(script.versions)
    if opts["target"] == "head" and len(heads) > 1:
        if flask_app:
            merge = ["flask", "--app", flask_app, "db", "merge", "--directory", directory]
        else:
            merge = ["alembic", "-c", config, "merge"]
        merge += ["-m", "merge heads", *heads]
        raise Fail(f"{versions} has {len(heads)} heads ({', '.join(heads)}), so 'upgrade "
                   f"head' is ambiguous; merge them first:\n  {shlex.join(merge)}")
    return heads, versions


def upgrade(opts: dict[str, Any]) -> int:
    heads, versions = check_heads(opts)
    target = opts["target"]
    config = opts["config"]
    flask_app = opts.get("flask_app")
    if flask_app:
        argv = [sys.executable, "-m", "flask", "--app", flask_app, "db", "upgrade",
                "--directory", os.path.dirname(config) or ".", target]
    else:
        argv = [sys.executable, "-m", "alembic", "-c", config, "upgrade", target]
    head = heads[0] if len(heads) == 1 else ", ".join(heads) or "none"
    say(f"{versions}: head {head}; upgrading to {target}")
    print(f"$ {shlex.join(argv)}", flush=True)
    last = error = ""
    # The tool's own output is the log; the line naming the migration that ran last and
    # the exception's line are kept to say where and why a failure happened.
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL) as p:
        assert p.stdout is not None
        for raw in p.stdout:
            line = raw.decode(errors="replace")
            sys.stdout.write(line)
            sys.stdout.flush()
            if "Running upgrade" in line:
                last = line.split("Running ", 1)[1].strip()
            elif _ERROR_LINE.match(line.strip()):
                error = line.strip()
        rc = p.wait()
    if rc != 0:
        where = f" while running {last}" if last else ""
        why = f": {error}" if error else "; the error is above"
        raise Fail(f"upgrade to {target} failed{where} (exit code {rc}){why}")
    say(f"upgraded to {target}")
    return 0


def main(argv: list[str]) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if len(argv) != 2:
        print(f"usage: {argv[0]} JSON (devenv runs this script for kind alembic)",
              file=sys.stderr)
        return 2
    # The scripts' folder must not shadow the app's packages (sys.path[0]); the app's
    # own folder goes there instead, as when its tools run from it.
    sys.path[0] = os.getcwd()
    opts = json.loads(argv[1])
    try:
        return upgrade(opts)
    except Fail as exc:
        print(f"{PROG}: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
