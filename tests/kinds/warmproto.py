"""Driving a step's script through the warm-start protocol by hand, as the runner does:
``DEVENV_WARM_FD`` names the write end of a pipe, stdin is a pipe; the script writes
``r`` once set up, then waits for ``go`` (anything else: exit 0, database untouched)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from devenv import building, loader
from devenv.postgres import database


class Warm:
    """A step's process started early; ``ready()`` reads what it said on the fd."""

    def __init__(self, root: Path, db: database.Target, step: str,
                 warm: bool = True) -> None:
        project = loader.load(root / "steps.yaml")
        prep = building.prepare_steps(project, [step], building.step_environment(
            project, db, db.dbname))[step]
        assert prep.warm  # the kind says it speaks the protocol
        env = dict(prep.env)
        self.ready_fd = -1
        pass_fds: tuple[int, ...] = ()
        if warm:
            self.ready_fd, ready_w = os.pipe()
            env["DEVENV_WARM_FD"] = str(ready_w)
            pass_fds = (ready_w,)
        self.p = subprocess.Popen(list(prep.command), cwd=prep.cwd, env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, pass_fds=pass_fds)
        for fd in pass_fds:
            os.close(fd)

    def ready(self) -> bytes:
        """``b"r"`` once set up; ``b""`` if the fd was closed without it (set-up failed)."""
        try:
            return os.read(self.ready_fd, 1)
        finally:
            os.close(self.ready_fd)

    def finish(self, stdin: bytes) -> tuple[int, str, str]:
        """Send ``stdin`` (``b"go\\n"``, or nothing: end-of-file), wait; (rc, out, err)."""
        out, err = self.p.communicate(stdin, timeout=120)
        return self.p.returncode, out.decode(), err.decode()


def run_script(root: Path, db: database.Target, step: str) -> tuple[int, str, str]:
    """The step's command without warm start, as devenv runs it today: (rc, out, err)."""
    return Warm(root, db, step, warm=False).finish(b"")
