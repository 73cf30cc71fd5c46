"""The values every doctor check returns, and the safe repairs ``--fix`` may apply."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devenv.doctor.context import Context

OK = "ok"
WARN = "warn"
FAIL = "fail"
_RANK = {OK: 0, WARN: 1, FAIL: 2}

# The order ``--fix`` applies repairs in: a service must run before its database can be
# repaired, a database must exist before its schemas, and `up` comes last.
REMEDY_ORDER = ("start-services", "recover", "close-import-role", "create-schemas",
                "run-steps", "up")


@dataclass(frozen=True)
class Remedy:
    """A repair ``--fix`` may apply without asking: nothing it does loses the user's data.

    ``start-services`` (args: service names), ``recover`` (drop what a crashed refresh-db
    left), ``close-import-role`` (the import role an interrupted import left able to log
    in), ``create-schemas`` (args: schema names), ``run-steps`` (args: steps to run
    again, forced), ``up`` (``devenv up --no-processes``: the steps that changed).
    """

    action: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Check:
    """One check's verdict: ``status`` ok/warn/fail, a one-line ``finding`` and a one-line
    ``fix`` (the command or edit that repairs it; empty when ok). ``details`` keeps every
    item when the finding sums up several; ``remedies`` say what ``--fix`` would do."""

    id: str
    status: str
    finding: str
    fix: str = ""
    details: tuple[str, ...] = ()
    remedies: tuple[Remedy, ...] = ()
    # The one-line finding sums up several problems that do not all fit in it (or need
    # different fixes): the output lists ``details`` below it.
    listed: bool = False

    @property
    def fixable(self) -> bool:
        return bool(self.remedies) and self.status != OK

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {"id": self.id, "status": self.status,
                                  "finding": self.finding, "fix": self.fix}
        if self.details:
            out["details"] = list(self.details)
        out["fixable"] = self.fixable
        return out


class NotChecked(Exception):
    """Raised by a check that cannot run because something it needs failed elsewhere."""

    def __init__(self, reason: str, see: str = "") -> None:
        self.reason = reason
        self.see = see
        super().__init__(reason)


@dataclass(frozen=True)
class CheckDef:
    """A registered check: its id, what group it belongs to, the function, a time limit.

    ``needs_project``: run only when steps.yaml loads (every check but the configuration
    ones)."""

    id: str
    group: str
    fn: Callable[[Context], Check]
    timeout: float = 10.0
    needs_project: bool = True


def worst(statuses: Iterable[str]) -> str:
    return max(statuses, key=_RANK.__getitem__, default=OK)


def ok(id: str, finding: str, details: Sequence[str] = ()) -> Check:
    return Check(id, OK, finding, "", tuple(details))


def warn(id: str, finding: str, fix: str, details: Sequence[str] = (),
         remedies: Sequence[Remedy] = ()) -> Check:
    return Check(id, WARN, finding, fix, tuple(details), tuple(remedies))


def fail(id: str, finding: str, fix: str, details: Sequence[str] = (),
         remedies: Sequence[Remedy] = ()) -> Check:
    return Check(id, FAIL, finding, fix, tuple(details), tuple(remedies))


@dataclass
class Problems:
    """Collects several findings of one check and sums them up in one line."""

    id: str
    items: list[tuple[str, str, str]] = field(default_factory=list)  # status, finding, fix
    remedies: list[Remedy] = field(default_factory=list)
    limit: int = 3

    def add(self, status: str, finding: str, fix: str, *remedies: Remedy) -> None:
        self.items.append((status, finding, fix))
        self.remedies.extend(remedies)

    def __bool__(self) -> bool:
        return any(s != OK for s, _, _ in self.items)

    def result(self, ok_finding: str) -> Check:
        bad = [i for i in self.items if i[0] != OK]
        if not bad:
            return ok(self.id, ok_finding, [f for _, f, _ in self.items])
        bad.sort(key=lambda i: -_RANK[i[0]])
        shown = "; ".join(f for _, f, _ in bad[: self.limit])
        if len(bad) > self.limit:
            shown += f" (and {len(bad) - self.limit} more)"
        fixes = list(dict.fromkeys(fx for _, _, fx in bad if fx))
        fix = fixes[0] if len(fixes) == 1 else "; ".join(fixes[:2]) + (
            f" (and {len(fixes) - 2} more: see each problem)" if len(fixes) > 2 else "")
        # Each problem with its own fix, for --json and for the listing under the summary.
        details = tuple(f"{f} (fix: {fx})" if fx and len(fixes) > 1 else f
                        for _, f, fx in bad)
        return Check(self.id, worst(s for s, _, _ in bad), shown, fix, details,
                     tuple(dict.fromkeys(self.remedies)),
                     listed=len(bad) > self.limit or len(fixes) > 1)
