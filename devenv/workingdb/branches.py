"""Branch-aware databases: each git branch keeps its own working database.

The working database's comment records the branch it was built for. When ``up`` finds
another branch checked out, it parks the working database under ``db__br_<branch>`` (a
rename: the data made by hand on that branch stays there) and swaps in the checked-out
branch's parked database if there is one (a rename again: well under a second), or builds
it beside from the deepest matching snapshot (refresh-db's machinery) and swaps it in.
Whatever that database then lacks of the code (new commits on the branch) ``up`` applies
as usual (see :mod:`devenv.workingdb.working`).

The branch is read from ``.git/HEAD`` itself (no ``git`` process on ``up``'s path); a
linked worktree's ``.git`` file is followed. Not a git checkout, or a detached HEAD (a
rebase, a bisect): nothing is switched.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from devenv import proc
from devenv.errors import DevenvError
from devenv.events import Message, Reporter
from devenv.postgres import siblings
from devenv.postgres.database import Target

HOOK_MARK = "# devenv: branch-aware databases"


def git_dir(root: Path) -> Path | None:
    """The git directory of the checkout holding ``root`` (a worktree's own one)."""
    for folder in (root, *root.parents):
        dot = folder / ".git"
        if dot.is_dir():
            return dot
        if dot.is_file():
            text = dot.read_text(errors="replace").strip()
            if text.startswith("gitdir:"):
                path = Path(text.split(":", 1)[1].strip())
                return path if path.is_absolute() else (folder / path).resolve()
            return None
    return None


def current(root: Path) -> str | None:
    """The checked-out branch, or None (not a git checkout; detached HEAD)."""
    gd = git_dir(root)
    if gd is None:
        return None
    try:
        head = (gd / "HEAD").read_text(errors="replace").strip()
    except OSError:
        return None
    if head.startswith("ref: refs/heads/"):
        return head.removeprefix("ref: refs/heads/")
    return None


@dataclass(frozen=True)
class Parked:
    branch: str
    datname: str
    size: int
    parked_at: float  # last used: when it stopped being the working database
    created: float = 0.0  # when it was built (0: not recorded)


def parked(target: Target, project: str, sizes: bool = False) -> list[Parked]:
    """The parked branch databases of this project's working database."""
    out = []
    db = target.dbname
    for info in siblings.related(target, db, sizes=sizes):
        # By name, not by the comment: a switch killed between its rename and its comment
        # leaves a parked database still saying "working" (and the working one "branch").
        if (info.datname != db and siblings.is_branch(db, info.datname)
                and info.meta.get("project", project) == project):
            out.append(Parked(str(info.meta.get("branch", "?")), info.datname, info.size,
                              float(info.meta.get("parked_at", info.created)),
                              info.created))
    return sorted(out, key=lambda p: p.parked_at, reverse=True)


def leaving(target: Target, root: Path) -> str | None:
    """The branch the working database was built for, when another one is checked out: a
    refresh then parks it (:func:`park_name`) instead of making it ``__prev`` (which the
    next refresh drops)."""
    branch = current(root)
    old = recorded(target) if branch is not None else None
    if old is None or old == branch:
        return None
    return old


def park_name(db: str, branch: str, taken: Iterable[str]) -> str:
    """A free name to park a database of ``branch`` under: the branch's own, or, when a
    database parked earlier for that branch holds it (a ``refresh-db --undo`` or a
    snapshot restore brought back a database of the branch while one was parked), the
    next copy's: both are kept, rows and all, and ``devenv branches`` lists both."""
    used = set(taken)
    copy = 0
    while (name := siblings.branch_name(db, branch, copy)) in used:
        copy += 1
    return name


def own_database(target: Target, project: str, branch: str,
                 have: Mapping[str, siblings.DbInfo]) -> str | None:
    """The parked database to swap in for ``branch``: the most recently parked of its
    own (its name, or a copy's, by the branch recorded on it)."""
    mine = [p.datname for p in parked(target, project) if p.branch == branch]
    if mine:
        return mine[0]
    name = siblings.branch_name(target.dbname, branch)
    return name if name in have else None


def recorded(target: Target) -> str | None:
    """The branch the working database was built for (None: not recorded yet)."""
    info = siblings.find(target, target.dbname, target.dbname)
    value = info.meta.get("branch") if info is not None else None
    return str(value) if isinstance(value, str) else None


def record(target: Target, project: str, branch: str, root: Path,
           info: siblings.DbInfo | None = None) -> None:
    """Write on the working database which branch, in which checkout, it is for."""
    if info is None:
        info = siblings.find(target, target.dbname, target.dbname)
    meta = dict(info.meta) if info is not None else {}
    meta.update({"devenv": 1, "kind": "working", "project": project, "branch": branch,
                 "root": str(root)})
    meta.setdefault("created", time.time())
    siblings.set_meta(target, target.dbname, meta)


def note(project: str, root: Path, target: Target) -> None:
    """Record the checked-out branch on a working database that has none recorded (one
    ``up`` just created), so the next switch knows what to park."""
    branch = current(root)
    if branch is None:
        return
    info = siblings.find(target, target.dbname, target.dbname)
    if info is not None and not isinstance(info.meta.get("branch"), str):
        record(target, project, branch, root, info)


def follow(project_name: str, root: Path, target: Target, reporter: Reporter,
           build: Callable[[str], str]) -> bool:
    """On a branch switch, park the working database and bring in the checked-out branch's
    (see the module). ``build(park_as)`` builds the branch's database beside and swaps it
    in, parking the working one under ``park_as``; returns its source, or raises. Whether
    another database is the working one now."""
    branch = current(root)
    if branch is None:
        return False
    db = target.dbname
    info = siblings.find(target, db, db)
    if info is None:
        return False  # no working database yet: up creates it for this branch
    old = info.meta.get("branch")
    if not isinstance(old, str):
        record(target, project_name, branch, root, info)
        return False
    if old == branch:
        return False
    other = info.meta.get("root")
    if isinstance(other, str) and other != str(root) and Path(other).is_dir():
        # Another worktree of the repository uses this server and this database name:
        # parking its database changes what its running app sees. Say so.
        reporter.emit(Message(
            f"{db} was the working database of the checkout at {other} (branch {old!r}); "
            f"its app processes now see branch {branch!r}'s database until `devenv up` "
            "runs there again", "warn"))
    have = {d.datname: d for d in siblings.related(target, db)}
    mine = own_database(target, project_name, branch, have)
    park_as = park_name(db, old, have)
    if park_as != siblings.branch_name(db, old):
        reporter.emit(Message(
            f"{siblings.branch_name(db, old)} already holds a database parked earlier for "
            f"{old!r}: parking this one beside it as {park_as}; both are kept (`devenv "
            "branches` lists them, `devenv branches drop` removes the newest)", "warn"))
    t0 = time.monotonic()
    if mine is not None:
        siblings.swap(target, db, mine, park_as=park_as)
        when = have[mine].meta.get("parked_at", have[mine].created)
        age = _age(time.time() - float(when))
        what = f"swapped in its own database (parked {age} ago)"
    else:
        source = build(park_as)
        what = f"built its database (starting from {source})"
    mark_parked(target, park_as, project_name, old)
    record(target, project_name, branch, root)
    reporter.emit(Message(
        f"branch {branch!r} is checked out (the database was built for {old!r}): parked "
        f"the database of {old!r}, with the rows made on it, as {park_as}; {what} in "
        f"{time.monotonic() - t0:.2f}s", "ok"))
    return True


def mark_parked(target: Target, datname: str, project: str, branch: str) -> None:
    info = siblings.find(target, target.dbname, datname)
    meta = dict(info.meta) if info is not None else {}
    meta.update({"devenv": 1, "kind": "branch", "project": project, "branch": branch,
                 "parked_at": time.time()})
    meta.setdefault("created", time.time())
    siblings.set_meta(target, datname, meta)


def drop(target: Target, project: str, branch: str) -> str:
    """Drop the parked database of ``branch``; returns its name."""
    for p in parked(target, project):
        if p.branch == branch:
            siblings.drop(target, p.datname)
            return p.datname
    known = ", ".join(p.branch for p in parked(target, project)) or "none"
    raise DevenvError(f"no parked database for branch {branch!r} (parked: {known})")


def prune(target: Target, project: str, keep: int) -> list[Parked]:
    """Drop the parked databases beyond the ``keep`` most recently parked."""
    gone = parked(target, project)[keep:]
    for p in gone:
        siblings.drop(target, p.datname)
    return gone


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


# --------------------------------------------------------------------------- git hook


def hook_path(root: Path) -> Path:
    """Where git looks for the post-checkout hook (core.hooksPath honoured)."""
    out = proc.run(["git", "rev-parse", "--git-path", "hooks/post-checkout"], cwd=root,
                   check=False)
    if out.returncode != 0:
        raise DevenvError(f"{root} is not a git checkout: there is no branch to follow")
    path = Path(out.stdout.strip())
    return path if path.is_absolute() else root / path


def hook_text() -> str:
    cmd = shlex.join([sys.executable, "-m", "devenv", "up", "--no-processes"])
    return (f"#!/bin/sh\n{HOOK_MARK} (installed by `devenv branches hook install`; "
            "`devenv branches hook uninstall` removes it)\n"
            "# $3 = 1: a branch checkout (not a file checkout); same commit: nothing to do\n"
            '[ "$3" = 1 ] || exit 0\n'
            f"{cmd} || echo 'devenv: the database did not follow the branch; run devenv up' >&2\n")


def install_hook(root: Path) -> Path:
    path = hook_path(root)
    if path.exists() and HOOK_MARK not in path.read_text(errors="replace"):
        raise DevenvError(f"{path} exists and is not devenv's: add `devenv up --no-processes` "
                          "to it yourself, or move it away first")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(hook_text())
    path.chmod(0o755)
    return path


def uninstall_hook(root: Path) -> Path | None:
    path = hook_path(root)
    if not path.exists():
        return None
    if HOOK_MARK not in path.read_text(errors="replace"):
        raise DevenvError(f"{path} is not devenv's hook; left as it is")
    path.unlink()
    return path
