"""Small JSON files under ``.devenv/`` (state, ports, processes, backends), read and
rewritten under a file lock, replaced atomically, created 0600."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def read(path: Path) -> dict[str, Any]:
    """The file's object, or an empty one if it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def update(path: Path, *, indent: int | None = None, sort_keys: bool = True,
           keep: Callable[[dict[str, Any]], bool] | None = None) -> Iterator[dict[str, Any]]:
    """Yield the file's object under an exclusive lock (``NAME.lock`` beside it) and write
    it back atomically, unless the body raises; ``keep`` false: remove the file instead."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = read(path)
        yield data
        if keep is not None and not keep(data):
            path.unlink(missing_ok=True)
            return
        separators = (",", ":") if indent is None else None
        text = json.dumps(data, indent=indent, separators=separators, sort_keys=sort_keys)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.")  # 0600
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)


def ensure_state_dir(state_dir: Path) -> Path:
    """Create ``.devenv/`` (0700: it holds ports and, for native servers, credentials) with a
    ``.gitignore`` of its own, so it never lands in a commit whatever the project ignores."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ignore = state_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# written by devenv: nothing in here belongs in git\n*\n")
    return state_dir
