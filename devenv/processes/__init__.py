"""App processes: started after the steps, each waited on until ready, then supervised.

One module per concern: :mod:`~devenv.processes.ready` (ready checks),
:mod:`~devenv.processes.prepare` (which processes, in which order, with which command and
environment), :mod:`~devenv.processes.record` (``.devenv/processes.json``: status, stop),
:mod:`~devenv.processes.identity` (whether a recorded pid is still ours) and
:mod:`~devenv.processes.supervisor` (starting, waiting, supervising, restarting). The names
callers use are here, so ``from devenv import processes; processes.prepare(...)`` works.
"""

from devenv.processes.identity import GRACE
from devenv.processes.prepare import (
    Prepared,
    build_images,
    image_of,
    in_container,
    prepare,
    selected,
    start_order,
)
from devenv.processes.ready import PROBE_TIMEOUT, ReadyCheck, parse_ready, probe
from devenv.processes.record import RECORD, ProcessStatus, read_records, status, stop_all
from devenv.processes.supervisor import (
    POLL,
    Failed,
    Lines,
    Supervisor,
    follow_swap,
    refuse_running,
    run_detached,
    run_foreground,
)

__all__ = [
    "GRACE",
    "POLL",
    "PROBE_TIMEOUT",
    "RECORD",
    "Failed",
    "Lines",
    "Prepared",
    "ProcessStatus",
    "ReadyCheck",
    "Supervisor",
    "build_images",
    "follow_swap",
    "image_of",
    "in_container",
    "parse_ready",
    "prepare",
    "probe",
    "read_records",
    "refuse_running",
    "run_detached",
    "run_foreground",
    "selected",
    "start_order",
    "status",
    "stop_all",
]
