"""A PostgreSQL cluster run from local server binaries (no container).

Used by the ``native`` service backend and by the test suite. PostgreSQL refuses to run
as root, so when devenv runs as root the cluster runs as the ``postgres`` system user
(Debian's packages create it).
"""

from __future__ import annotations

import os
import pwd
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devenv import logtail, proc, waiting
from devenv.errors import EXIT_SERVICE, DevenvError
from devenv.postgres import database

SEARCH_DIRS = (
    "/usr/lib/postgresql/*/bin",  # Debian, Ubuntu
    "/usr/pgsql-*/bin",  # RHEL, Fedora (PGDG)
    "/opt/homebrew/opt/postgresql@*/bin",
    "/usr/local/opt/postgresql@*/bin",
    "/Applications/Postgres.app/Contents/Versions/*/bin",
)


class ClusterError(DevenvError):
    """The cluster could not be created, started or stopped: exit code 3, as for a service
    that never became healthy. Not a ServiceError subclass, so the handlers of those do not
    start catching it where it used to pass through (native.py turns it into one)."""

    exit_code = EXIT_SERVICE


def find_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: PATH first, then the usual places.

    Where several versions are installed, the newest wins.
    """
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(os.path.realpath(found)).parent
    import glob

    candidates: list[Path] = []
    for pattern in SEARCH_DIRS:
        for d in glob.glob(pattern):
            p = Path(d)
            if (p / "pg_ctl").exists() and (p / "initdb").exists():
                candidates.append(p)
    if not candidates:
        return None

    def version_key(p: Path) -> tuple[int, ...]:
        digits = "".join(ch if ch.isdigit() else " " for ch in str(p)).split()
        return tuple(int(d) for d in digits)

    return max(candidates, key=version_key)


def _run_as() -> str | None:
    """The user to run the server as: ``postgres`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise ClusterError(
            "PostgreSQL will not run as root and there is no 'postgres' user to run it as; "
            "create one (useradd --system postgres) or run devenv as a normal user"
        ) from exc
    return "postgres"


@dataclass
class Cluster:
    """A data directory plus the binaries to run it, listening on 127.0.0.1:``port``."""

    datadir: Path
    port: int
    user: str = "postgres"
    password: str = "devenv"
    bindir: Path | None = None

    def _bin(self, name: str) -> str:
        bindir = self.bindir or find_bindir()
        if bindir is None:
            raise ClusterError(
                "no PostgreSQL server binaries found (initdb, pg_ctl); install them, e.g. "
                "apt-get install postgresql-15, or brew install postgresql@16"
            )
        self.bindir = bindir
        return str(bindir / name)

    def _as_owner(self, argv: Sequence[str]) -> list[str]:
        owner = _run_as()
        if owner is None:
            return list(argv)
        return ["runuser", "-u", owner, "--", *argv]

    @property
    def sockdir(self) -> Path:
        return self.datadir.parent / (self.datadir.name + ".sock")

    def initialized(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def init(self) -> None:
        """Create the data directory (``initdb``) with a password-protected superuser."""
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.sockdir.mkdir(parents=True, exist_ok=True)
        pwfile = self.datadir.parent / (self.datadir.name + ".pw")
        pwfile.write_text(self.password + "\n")
        os.chmod(pwfile, 0o600)
        owner = _run_as()
        if owner is not None:
            info = pwd.getpwnam(owner)
            for p in (self.datadir, self.sockdir, pwfile):
                os.chown(p, info.pw_uid, info.pw_gid)
        try:
            proc.run(
                self._as_owner(
                    [
                        self._bin("initdb"),
                        "-D", str(self.datadir),
                        "-U", self.user,
                        "--pwfile", str(pwfile),
                        "--auth-host=scram-sha-256",
                        "--auth-local=trust",
                        "-E", "UTF8",
                        "--locale=C",
                    ]
                ),
                timeout=120,
            )
        except proc.ProcessError as exc:
            raise ClusterError(f"initdb failed in {self.datadir}:\n{exc}") from exc
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self, extra_options: str = "", timeout: float = 60) -> None:
        """Start the server (``pg_ctl start -w``) on 127.0.0.1 only."""
        if not self.initialized():
            self.init()
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} "
            f"-c unix_socket_directories={self.sockdir} {extra_options}"
        ).strip()
        logfile = self.datadir.parent / (self.datadir.name + ".log")
        owner = _run_as()
        if owner is not None and not logfile.exists():
            logfile.touch()
            info = pwd.getpwnam(owner)
            os.chown(logfile, info.pw_uid, info.pw_gid)
        try:
            proc.run(
                self._as_owner(
                    [self._bin("pg_ctl"), "-D", str(self.datadir), "-l", str(logfile),
                     "-o", opts, "-w", "-t", str(int(timeout)), "start"]
                ),
                timeout=timeout + 10,
            )
        except proc.ProcessError as exc:
            log_tail = logtail.tail(logfile, proc.TAIL_LINES)
            raise ClusterError(f"PostgreSQL did not start:\n{exc}\n{log_tail}") from exc

    def running(self) -> bool:
        cp = proc.run(
            self._as_owner([self._bin("pg_ctl"), "-D", str(self.datadir), "status"]),
            check=False,
        )
        return cp.returncode == 0

    def stop(self, mode: str = "fast") -> None:
        """Stop the server if it runs."""
        if not self.initialized():
            return
        proc.run(
            self._as_owner([self._bin("pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop"]),
            check=False,
            timeout=60,
        )

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{dbname}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_ready(url: str, timeout: float = 30.0) -> None:
    """Wait for a real TCP connection plus a query to succeed (not ``pg_isready``)."""
    info = database.parse_url(url, env_service=False).conninfo()

    def ready(_left: float) -> tuple[bool, str]:
        answer = database.answers(info)
        return answer.ready, answer.detail

    waited = waiting.until(ready, timeout, pause=0.1)
    if not waited.done:
        raise ClusterError(f"PostgreSQL did not answer within {timeout:.0f}s: {waited.detail}")
