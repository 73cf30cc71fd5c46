"""The ``devenv`` console script, and the preloaded server it hands commands to.

Most of a daily ``devenv up`` that finds everything up is the interpreter importing
devenv, typer, PyYAML and the standard library (about 0.2 s on a slow laptop core, more
than the checks themselves). Like Gradle's daemon or Rails' Spring, the first command
starts a small server in the background that has imported all of that once; the next
commands connect to it, hand over their standard streams, arguments, working directory,
environment and umask, and the server forks a child that runs *the same* ``cli.main``
a cold start would, in a process that is already warm. Nothing about the project is kept
between commands: the child reads steps.yaml, asks Docker and PostgreSQL and fingerprints
the steps exactly as a fresh process does. Only imported code is shared, and the server
steps down as soon as any module file it imported changes (an upgrade, an edit of devenv,
a ``pip install``), so a command never runs stale code.

Safety and scope:
  * Linux only, off under CI (``CI`` set) and with ``DEVENV_PRELOAD=0``; ``psql`` and
    ``init`` (a terminal handed to another program, prompts) always start cold.
  * The socket lives in a folder only this user can open (``$XDG_RUNTIME_DIR/devenv``,
    else ``/tmp/devenv-UID``, refused when someone else owns it or can write to it), and the
    server checks the peer's uid (``SO_PEERCRED``) on every connection.
  * One server per interpreter, ``sys.path``, uid and start-up settings (``PYTHON*``,
    locale): a command with different ones gets its own.
  * Signals the command receives (Ctrl-C, ``SIGTERM``, ``SIGHUP``) are passed to the
    child; when the command dies without a word (``kill -9``) the child gets ``SIGTERM``.
    The exit status (a code, or the signal that ended the child) becomes the command's.
  * Any problem on the way (no server, a refused or dropped hand-over, a stale server)
    means a cold start, never an error: the server is a cache of imports, nothing more.
  * The server stops after 20 minutes without a command (``preload.log`` beside the
    socket says what it served and why it stopped).

This module is imported by every command before anything else: its client side imports
only ``_socket`` and ``signal`` (``subprocess`` when it starts a server), and the
server's imports happen in the server.
"""

import os
import sys

MAGIC = b"devenv-preload 1"
IDLE_S = 20 * 60
# Commands that give the terminal to another program (psql) or may ask questions while
# running other tools (init) keep the terminal's own process group: they start cold.
COLD_COMMANDS = frozenset({"psql", "init"})
_OFF = ("0", "false", "no", "off")


def main() -> None:
    """Entry point of the ``devenv`` console script: a warm server's child when one
    answers, otherwise the command in this process (and a server started for next time)."""
    if enabled(sys.argv[1:]):
        key = _key()
        path = socket_path(key)
        if path is not None:
            code = _handed_over(path, key)
            if code is not None:
                _exit_like(code)
            _start_server(path, key)
    from devenv.cli import main as cli_main

    cli_main()


def enabled(argv: list[str]) -> bool:
    """Whether this command may go through the preloaded server."""
    env = os.environ
    if not sys.platform.startswith("linux"):
        return False  # fork after imports is what the server relies on
    if env.get("DEVENV_PRELOAD", "1").strip().lower() in _OFF:
        return False
    if env.get("CI", "").strip().lower() not in ("", *_OFF):
        return False  # one command per machine: nothing to gain, a process left behind
    if any(k.startswith("_DEVENV_COMPLETE") or k == "_TYPER_COMPLETE_ARGS" for k in env):
        return False
    return _command(argv) not in COLD_COMMANDS


def _command(argv: list[str]) -> str | None:
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in ("--file", "-f") else 1
    return argv[i] if i < len(argv) else None


def _key() -> bytes:
    """What a server must share with the command: interpreter, import path, user and the
    settings Python reads once at start-up (its own PYTHON* variables, the locale that
    picks the standard streams' encoding)."""
    env = os.environ
    # typer reads TYPER_USE_RICH and TERMINAL_WIDTH once, when it is imported
    startup = sorted(f"{k}={v}" for k, v in env.items()
                     if k.startswith(("PYTHON", "LC_", "TYPER_", "_TYPER_"))
                     or k in ("LANG", "TERMINAL_WIDTH"))
    parts = [sys.executable, sys.prefix, str(os.getuid()), repr(sys.flags),
             "\x1e".join(sys.path), "\x1e".join(startup)]
    return os.fsencode("\n".join(parts))


def runtime_dir() -> str | None:
    """The folder for the sockets, made when missing; None when it is not this user's
    alone (someone else could answer in the server's place)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    uid = os.getuid()
    path = os.path.join(base, "devenv") if base else f"/tmp/devenv-{uid}"
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    import stat

    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077:
        return None
    return path


def socket_path(key: bytes) -> str | None:
    folder = runtime_dir()
    if folder is None:
        return None
    # FNV-1a: the server compares the whole key, the name only has to spread them (and
    # zlib or hashlib would be one more library to load on every command)
    h = 0xCBF29CE484222325
    for byte in key:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return os.path.join(folder, f"preload-{h:016x}.sock")


def _handed_over(path: str, key: bytes) -> int | None:
    """Run the command in the server's child; its exit status (negative: the signal that
    ended it), or None when no server took it."""
    import _socket
    import signal

    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    # a server that does not answer at once is stuck: start cold (its child, if it makes
    # one, waits for our "go" below and leaves without running anything)
    s.settimeout(5.0)
    try:
        s.connect(path)
        mask = os.umask(0)
        os.umask(mask)
        fields = [MAGIC, key, os.fsencode(os.getcwd()), str(mask).encode(),
                  str(len(sys.argv)).encode(), *map(os.fsencode, sys.argv),
                  *(os.fsencode(k) + b"=" + os.fsencode(v) for k, v in os.environ.items())]
        body = b"\0".join(fields)
        s.sendmsg([str(len(body)).encode() + b"\n" + body],
                   [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                     b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2)))])
        reply = _line(s)
        if not reply.startswith(b"ok "):
            s.close()
            return None
        child = int(reply[3:])
        s.settimeout(None)

        def forward(signum: int, _frame: object) -> None:
            try:  # noqa: SIM105 - contextlib is one more import on every command's path
                os.kill(child, signum)
            except OSError:
                pass

        def suspend(_signum: int, _frame: object) -> None:
            # Ctrl-Z: the child is in no terminal's process group, so stop it with us
            forward(signal.SIGSTOP, None)
            signal.signal(signal.SIGTSTP, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTSTP)
            signal.signal(signal.SIGTSTP, suspend)  # running again (fg or bg)
            forward(signal.SIGCONT, None)

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, forward)
        signal.signal(signal.SIGTSTP, suspend)
        s.sendall(b"g")  # the child runs the command only now
    except OSError:
        s.close()
        return None
    except KeyboardInterrupt:  # Ctrl-C before the child ran anything
        os._exit(130)
    try:
        end = _line(s)
    except OSError:
        end = b""
    s.close()
    if end.startswith(b"exit "):
        return int(end[5:])
    if end.startswith(b"signal "):
        return -int(end[7:])
    # the server went away without the child's status: say so rather than guess
    os.write(2, b"devenv: the preloaded server stopped before the command ended "
                b"(DEVENV_PRELOAD=0 starts commands without it)\n")
    return 1


def _line(s: object) -> bytes:
    got = b""
    while not got.endswith(b"\n"):
        part = s.recv(64)  # type: ignore[attr-defined]
        if not part:
            return got
        got += part
    return got[:-1]


def _exit_like(code: int) -> None:
    """Leave the way the child did: its code, or killed by the same signal (a shell then
    prints what it prints for a cold command)."""
    if code < 0:
        import signal

        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        code = 128 - code
    sys.stdout.flush()
    os._exit(code)


KEY_VARIABLE = "DEVENV_PRELOAD_KEY"


def _start_server(path: str, key: bytes) -> None:
    """Start the server in the background for the next command (it checks for a rival
    itself). Its ``sys.path`` is this command's, passed as arguments, never as code; the
    key goes in its environment, not its argv, which any user's ``ps`` shows (it holds
    the values of PYTHON* variables)."""
    import subprocess

    try:  # noqa: SIM105
        subprocess.Popen(
            [sys.executable, "-c",
             "import sys; sys.path[:] = sys.argv[2:]; "
             "from devenv._preload_server import serve; serve(sys.argv[1])",
             path, *sys.path],
            env={**os.environ, KEY_VARIABLE: os.fsdecode(key)},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd="/", start_new_session=True, close_fds=True)
    except OSError:
        pass
