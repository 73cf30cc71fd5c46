"""``devenv psql [ARGS]...``: an interactive psql on the project database.

The local ``psql`` when there is one (connected through the published port, credentials
in the environment, never on the command line), else ``docker exec -it`` into the
database's container. ARGS go to psql unchanged (``devenv psql -c 'select 1'``).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence

from devenv import proc
from devenv.errors import ServiceError
from devenv.postgres import pgcluster
from devenv.services.docker import container_name
from devenv.session import Session


def local_psql() -> str | None:
    """A psql on this machine: PATH first, then beside the server binaries."""
    found = shutil.which("psql")
    if found:
        return found
    bindir = pgcluster.find_bindir()
    if bindir is not None and (bindir / "psql").exists():
        return str(bindir / "psql")
    return None


def command(session: Session, args: Sequence[str], psql: str | None = None,
            tty: bool | None = None) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run psql on the project database."""
    project = session.project
    if project.database is None:
        raise ServiceError("this project declares no database (database: in "
                           f"{project.file.name}), so there is nothing for psql to open")
    target, note = session.current_target()
    if target is None:
        raise ServiceError(f"the database is not reachable: {note}; start it with `devenv up`")
    env = dict(os.environ)
    env.update(target.env())
    psql = psql if psql is not None else local_psql()
    if psql:
        return [psql, *args], env
    service = project.services[project.database.service]
    backend, _why = session.backend(service.name)
    docker = shutil.which("docker")
    if backend.name != "docker" or docker is None:
        raise ServiceError("no psql on this machine: install the PostgreSQL client "
                           "(e.g. apt-get install postgresql-client, brew install libpq)")

    if tty is None:
        tty = sys.stdin.isatty() and sys.stdout.isatty()
    # Inside the container psql uses the local socket (trusted by the image); the values
    # travel in the environment (-e NAME copies it), not on a command line.
    return ([docker, "exec", "-i", *(["-t"] if tty else []), "-e", "PGUSER", "-e",
             "PGPASSWORD", "-e", "PGDATABASE", container_name(project, service), "psql",
             *args], env)


def exec_(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Become psql (an interactive tool owns the terminal and its signals)."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        proc.replace_process(argv, env)
    except proc.ProcessError as exc:
        raise ServiceError(f"cannot run {argv[0]}: {exc.output}") from None
    return 1  # not reached


def run(session: Session, args: Sequence[str]) -> int:
    argv, env = command(session, args)
    return exec_(argv, env)
