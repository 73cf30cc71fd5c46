"""What the reporters print for a run (no database: events are fed in directly)."""

from __future__ import annotations

import io

from devenv.console import PlainReporter, RichReporter
from devenv.events import Action, Decision, Message, RunStarted


def decisions(run: int, skip: int) -> list[Decision]:
    return ([Decision(f"r{i}", Action.RUN, "never ran") for i in range(run)]
            + [Decision(f"s{i}", Action.SKIP, "up to date") for i in range(skip)])


def test_nothing_to_run_is_said_once_not_followed_by_running_0_of_n() -> None:
    for make in (PlainReporter, RichReporter):
        buf = io.StringIO()
        rep = make(buf)
        rep.emit(Message("everything is up to date: no step needs to run", "ok"))
        rep.emit(RunStarted(decisions(0, 6), 2, "demo_dev"))
        rep.close()
        text = buf.getvalue()
        assert "everything is up to date: no step needs to run" in text
        assert "unning 0 of 6" not in text, (make, text)
        # with something to run, the line is there
        buf = io.StringIO()
        rep = make(buf)
        rep.emit(RunStarted(decisions(2, 4), 2, "demo_dev"))
        rep.close()
        assert "unning 2 of 6 steps on demo_dev" in buf.getvalue()
