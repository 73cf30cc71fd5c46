"""Machine-readable reports of a run: JUnit XML (one test case per step) and JSON."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from devenv import logtail
from devenv.events import Decision, RunResult, Status, StepResult

TAIL_LINES = 50


def _clean(text: str) -> str:
    """XML 1.0 cannot carry most control characters; step logs can."""
    return "".join(ch if ch in "\t\n\r" or ord(ch) >= 0x20 else "?" for ch in text)


def junit(path: Path, suite: str, results: Sequence[StepResult], duration: float,
          error: str | None = None) -> None:
    """Write JUnit XML: one ``testcase`` per step; a failure carries the log's tail.

    ``error`` (a configuration error or a service that never became healthy) becomes a
    failing test case of its own, so CI shows it where it shows failed tests.
    """
    failures = sum(1 for r in results if r.status in (Status.FAILED, Status.INTERRUPTED))
    failures += 1 if error else 0
    skipped = sum(1 for r in results if r.status is not Status.OK
                  and r.status not in (Status.FAILED, Status.INTERRUPTED))
    tests = len(results) + (1 if error else 0)
    root = ET.Element("testsuites", name=suite, tests=str(tests), failures=str(failures),
                      errors="0", time=f"{duration:.3f}")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(tests), failures=str(failures),
                       errors="0", skipped=str(skipped), time=f"{duration:.3f}",
                       timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"),
                       hostname=socket.gethostname())
    if error:
        case = ET.SubElement(ts, "testcase", name="setup", classname=f"{suite}.setup",
                             time="0.000")
        fail = ET.SubElement(case, "failure", message=_clean(error.splitlines()[0]),
                             type="setup")
        fail.text = _clean(error)
    for r in results:
        case = ET.SubElement(ts, "testcase", name=r.name, classname=f"{suite}.steps",
                             time=f"{r.duration:.3f}")
        if r.status in (Status.FAILED, Status.INTERRUPTED):
            fail = ET.SubElement(case, "failure", message=_clean(r.reason), type=r.status.value)
            fail.text = _clean(logtail.tail(r.log, TAIL_LINES))
        elif r.status is not Status.OK:
            ET.SubElement(case, "skipped", message=_clean(f"{r.status.value}: {r.reason}"))
        if r.log is not None:
            out = ET.SubElement(case, "system-out")
            out.text = f"log: {r.log}"
    with _private(path) as fh:
        ET.ElementTree(root).write(fh, encoding="utf-8", xml_declaration=True)


def as_json(result: RunResult | None, decisions: Sequence[Decision], *, project: str,
            profile: str, exit_code: int, outcome: str, extra: Mapping[str, Any] | None = None,
            ) -> dict[str, Any]:
    """The run as a JSON-able dict: every step with status, duration, reason, fingerprint."""
    by_name = {r.name: r for r in (result.results if result else [])}
    steps = []
    for d in decisions:
        r = by_name.get(d.step)
        steps.append({
            "name": d.step,
            "status": r.status.value if r else "skipped",
            "duration": round(r.duration, 3) if r else 0.0,
            "reason": (r.reason if r else d.reason) or None,
            "planned": d.action.value,
            "plan_reason": d.reason,
            "fingerprint": d.fingerprint,
            "log": str(r.log) if r and r.log else None,
        })
    return {"project": project, "profile": profile, "exit_code": exit_code, "outcome": outcome,
            "duration": round(result.duration, 3) if result else 0.0, "steps": steps,
            **(extra or {})}


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    with _private(path) as fh:
        fh.write((json.dumps(data, indent=2, default=str) + "\n").encode())


@contextlib.contextmanager
def _private(path: Path) -> Iterator[IO[bytes]]:
    """``path`` written whole, readable by its owner only (0600): a report carries the
    tails of step logs, and a step may print what it should not. A file written before
    (perhaps 0644) is replaced, not reused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o600)  # a leftover temporary file keeps its mode
                yield fh
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:  # name the report, not the temporary file
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
