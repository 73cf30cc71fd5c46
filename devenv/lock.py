"""One devenv at a time per project: an advisory lock on ``.devenv/lock``.

The kernel releases an ``flock`` when its holder dies, so a lock left by a killed devenv
is taken over without any clean-up. The file records who holds it, so a second devenv
can say whom it waits for.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from devenv.errors import LockedError
from devenv.events import Message, Reporter


def ensure_state_dir(state_dir: Path) -> Path:
    """Create ``.devenv/`` (0700: it holds ports and, for native servers, credentials) with a
    ``.gitignore`` of its own, so it never lands in a commit whatever the project ignores."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ignore = state_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# written by devenv: nothing in here belongs in git\n*\n")
    return state_dir


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another devenv"
    since = time.strftime("%H:%M:%S", time.localtime(info.get("since", 0)))
    return f"pid {info.get('pid', '?')} ({info.get('command', '?')}, since {since})"


@contextlib.contextmanager
def project_lock(state_dir: Path, command: str, reporter: Reporter | None = None,
                 wait: bool = True) -> Iterator[None]:
    """Hold the project's lock; wait for it (saying for whom) or fail fast with ``wait=False``."""
    ensure_state_dir(state_dir)
    path = state_dir / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            if not wait:
                raise LockedError(f"another devenv is working on this project: {holder}; "
                                  "wait for it to finish, or run without --no-wait to "
                                  "queue") from None
            if reporter is not None:
                reporter.emit(Message(f"waiting for the project lock held by {holder}", "warn"))
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": command,
                                  "since": time.time(), "argv": sys.argv[1:]}).encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)
