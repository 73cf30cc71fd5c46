"""Named points where the reliability tests stop devenv for real.

With ``DEVENV_PAUSE_AT=<point>`` in the environment, devenv touches
``$DEVENV_PAUSE_FILE`` (default ``.devenv-paused``) when it reaches that point and sleeps,
so a test can send a real SIGKILL/SIGTERM/SIGINT at exactly that moment. Without the
variable this is a no-op. Nothing is simulated: the signal, the process and the database
are real.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def point(name: str) -> None:
    """Pause here (for a test to kill us) when ``DEVENV_PAUSE_AT`` names this point."""
    if os.environ.get("DEVENV_PAUSE_AT") != name:
        return
    Path(os.environ.get("DEVENV_PAUSE_FILE", ".devenv-paused")).write_text(f"{os.getpid()}\n")
    time.sleep(float(os.environ.get("DEVENV_PAUSE_SECONDS", "60")))
