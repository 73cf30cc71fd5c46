"""Work a command leaves running after it has returned, in a detached process of its own:

- ``python -m devenv.background push STEPS_YAML FILE``: upload a snapshot file to the
  team's remote cache (``ci-setup --push``, ``snapshot push --no-wait``), then delete it;
- ``python -m devenv.background reclone STEPS_YAML DB SNAPSHOT``: after refresh-db's swap,
  drop the retired backup and make the next ready copy (the server's URL comes in
  ``DEVENV_RECLONE_URL``, never on the command line).

An entry point like :mod:`devenv.cli`, so it sits at the top of the layers: it loads the
project and reports as plain lines into the log the detaching command chose.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from devenv import loader
from devenv.console import PlainReporter
from devenv.errors import DevenvError, LockedError
from devenv.lock import project_lock
from devenv.postgres import database, siblings
from devenv.workingdb import oci, rebuild


def push(argv: Sequence[str]) -> int:
    """``push STEPS_YAML FILE``: the background push."""
    project = loader.load(argv[0])
    path = Path(argv[1])
    remote = oci.configured(project)
    assert remote is not None
    try:
        oci.push_file(project, remote, path, PlainReporter(sys.stdout))
    except (oci.RemoteError, DevenvError) as exc:
        print(f"remote cache: push failed: {exc}")
        return 1
    finally:
        path.unlink(missing_ok=True)
    return 0


def reclone(argv: Sequence[str]) -> int:
    """``reclone STEPS_YAML DB SNAPSHOT``: the background re-clone."""
    project = loader.load(argv[0])
    target = database.parse_url(os.environ["DEVENV_RECLONE_URL"],
                                env_service=False).with_db(argv[1])
    t0 = time.monotonic()
    dropped = siblings.drop_retired(target, argv[1])
    rebuild.reclone(project, target, argv[2])
    forgotten: list[str] = []

    # A devenv working on the project now may be writing records of a database newer
    # than the list read here: leave the pruning to the next re-clone then.
    with contextlib.suppress(LockedError), project_lock(
            project.state_dir, "refresh-db (background: forgetting dropped databases)",
            wait=False):
        forgotten = rebuild.forget_dropped(project, target)
    print(json.dumps({"reclone": argv[2], "dropped": dropped, "forgot": len(forgotten),
                      "seconds": round(time.monotonic() - t0, 3)}))
    return 0


JOBS: dict[str, Callable[[Sequence[str]], int]] = {"push": push, "reclone": reclone}


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] not in JOBS:
        print(f"usage: python -m devenv.background {{{','.join(JOBS)}}} ARGS...",
              file=sys.stderr)
        return 2
    return JOBS[argv[0]](argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
