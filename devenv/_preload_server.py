"""The preloaded server behind :mod:`devenv.preload`: imports devenv once, then forks a
child per command that becomes that command (its streams, arguments, directory,
environment, umask) and runs ``cli.main`` as a cold process would.

The server itself runs no command code and keeps no state about projects: a child reads
everything afresh. It is single-threaded (``fork`` copies only the calling thread, so a
lock held by another thread would stay held in the child forever) and stops when any
module file it imported changes, when its socket is removed or replaced, or when idle.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import io
import os
import pkgutil
import select
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Iterator

from devenv import cli, commands, envvars, preload

LOG_LIMIT = 64 * 1024


class _Log:
    """``preload.log`` beside the socket: a line per command served and why the server
    stopped; cut back when it grows past LOG_LIMIT."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, text: str) -> None:
        try:
            if os.path.getsize(self.path) > LOG_LIMIT:
                os.replace(self.path, self.path + ".1")
        except OSError:
            pass
        with contextlib.suppress(OSError), open(self.path, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} [{os.getpid()}] {text}\n")


def _warm() -> None:
    """Import what commands import: devenv's command modules and what they pull in at
    their top. Heavy libraries a command imports where it uses them (docker, Faker) stay
    out: a child imports them from disk like any process."""
    for info in pkgutil.iter_modules(commands.__path__, commands.__name__ + "."):
        importlib.import_module(info.name)
    importlib.import_module("devenv.console")
    cli.prebuild()


def _module_files() -> dict[str, tuple[int, int]]:
    files: dict[str, tuple[int, int]] = {}
    for mod in list(sys.modules.values()):
        name = getattr(mod, "__file__", None)
        if not isinstance(name, str):
            continue
        with contextlib.suppress(OSError):
            st = os.stat(name)
            files[name] = (st.st_mtime_ns, st.st_size)
    return files


def _changed(files: dict[str, tuple[int, int]]) -> str | None:
    """The first imported file that is not as it was at start-up, if any."""
    for name, was in files.items():
        try:
            st = os.stat(name)
        except OSError:
            return name
        if (st.st_mtime_ns, st.st_size) != was:
            return name
    return None


def serve(path: str) -> None:
    """Import everything a command needs, then fork a child per command until idle
    (started by :func:`devenv.preload._start_server`, with the key in its environment)."""
    key = os.environ.pop(preload.KEY_VARIABLE, "")
    log = _Log(os.path.join(os.path.dirname(path), "preload.log"))
    lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    for _ in range(30):
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            # another server for the same key: running (we give up), or stepping down
            # after a stale hand-over (it lets go in a moment)
            time.sleep(0.1)
    else:
        os.close(lock_fd)
        return
    _warm()
    files = _module_files()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a server killed without cleaning up; we hold the lock
    listener.bind(path)
    listener.listen(64)
    ident = os.stat(path).st_ino
    log(f"serving {path} ({len(files)} modules imported, {sys.executable})")
    # children end asynchronously: SIGCHLD wakes the select through a pipe
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    import gc

    gc.freeze()  # children share the imported objects' pages instead of copying them
    pending: dict[int, socket.socket] = {}
    last = time.monotonic()
    why = ""
    try:
        while True:
            timeout = max(1.0, preload.IDLE_S - (time.monotonic() - last))
            try:
                ready, _, _ = select.select([listener.fileno(), wake_r], [], [],
                                            min(timeout, 2.0))
            except InterruptedError:
                ready = []
            if wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 512)
            _reap(pending, log)
            if listener.fileno() in ready:
                last = time.monotonic()
                why = _accept(listener, os.fsencode(key), files, pending, log,
                              (wake_r, wake_w, lock_fd))
                if why:
                    break
            elif not pending and time.monotonic() - last >= preload.IDLE_S:
                why = f"idle for {preload.IDLE_S // 60} minutes"
                break
            try:
                if os.stat(path).st_ino != ident:
                    why = "its socket was replaced"
                    break
            except FileNotFoundError:
                why = "its socket was removed"
                break
    finally:
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == ident:
                os.unlink(path)
        listener.close()
        os.close(lock_fd)  # a new server may start while our commands finish
        log(f"stopped: {why or 'error'}")
    # the commands already forked still get their status
    while pending:
        with contextlib.suppress(InterruptedError):
            select.select([wake_r], [], [], 1.0)
        with contextlib.suppress(BlockingIOError):
            os.read(wake_r, 512)
        _reap(pending, log)


def _reap(pending: dict[int, socket.socket], log: _Log) -> None:
    while pending:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = pending.pop(pid, None)
        if conn is None:
            continue
        if os.WIFSIGNALED(status):
            end = f"signal {os.WTERMSIG(status)}"
        else:
            end = f"exit {os.waitstatus_to_exitcode(status)}"
        with contextlib.suppress(OSError):
            conn.sendall(end.encode() + b"\n")
        conn.close()


def _receive(conn: socket.socket) -> tuple[bytes, list[int]]:
    """The command's fields and its three standard streams."""
    conn.settimeout(5.0)
    fds: list[int] = []
    data = b""
    size = -1
    while size < 0 or len(data) < size:
        msg, anc, _flags, _addr = conn.recvmsg(1 << 16, socket.CMSG_SPACE(3 * 4))
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                got = array("i")
                got.frombytes(payload[: len(payload) - len(payload) % got.itemsize])
                fds.extend(got)
        if not msg:
            raise ConnectionError("the command went away")
        data += msg
        if size < 0 and b"\n" in data:
            head, data = data.split(b"\n", 1)
            size = int(head)
    conn.settimeout(None)
    return data, fds


def _accept(listener: socket.socket, key: bytes, files: dict[str, tuple[int, int]],
            pending: dict[int, socket.socket], log: _Log,
            server_fds: tuple[int, ...]) -> str:
    """Take one command: fork its child, or turn it away (it then starts cold). Returns
    why the server must stop, or ""."""
    try:
        conn, _ = listener.accept()
    except OSError:
        return ""
    fds: list[int] = []
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid != os.getuid():
            conn.close()
            return ""
        data, fds = _receive(conn)
        fields = data.split(b"\0")
        if len(fds) != 3 or fields[0] != preload.MAGIC or fields[1] != key:
            raise ValueError("not a command for this server")
        stale = _changed(files)
        if stale is not None:
            conn.sendall(b"stale\n")
            return f"{stale} changed since it was imported"
        cwd, umask, argc = fields[2], int(fields[3]), int(fields[4])
        argv = [os.fsdecode(a) for a in fields[5:5 + argc]]
        env = dict(os.fsdecode(e).split("=", 1) for e in fields[5 + argc:] if b"=" in e)
    except (OSError, ValueError, ConnectionError, struct.error) as exc:
        for fd in fds:
            os.close(fd)
        with contextlib.suppress(OSError):
            conn.sendall(b"refused\n")
        conn.close()
        log(f"refused a command: {exc}")
        return ""
    pid = os.fork()
    if pid == 0:
        try:
            # nothing of the server's: above all not the lock, which would keep a
            # new server from starting while this command runs for hours
            listener.close()
            for fd in server_fds:
                os.close(fd)
            for other in pending.values():
                other.close()
            _become(conn, fds, argv, cwd, umask, env)
        finally:
            os._exit(70)  # not reached: _become ends the process
    for fd in fds:
        os.close(fd)
    pending[pid] = conn
    try:
        conn.sendall(f"ok {pid}\n".encode())
    except OSError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    # a --database-url on the command line carries its password: not into the log
    log(f"{pid}: devenv {envvars.mask(' '.join(argv[1:]), env)}")
    return ""


def _become(conn: socket.socket, fds: list[int], argv: list[str], cwd: bytes, umask: int,
            env: dict[str, str]) -> None:
    """In the child: take on the command's process state, run it, end with its code."""
    os.setsid()  # out of the server's session: stopping the server leaves it alone
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    code = 1
    try:
        # the command said "go" once it had our pid and its signals forwarded; without
        # it (it gave up waiting, or died) nothing runs
        if conn.recv(1) != b"g":
            os._exit(0)
        os.chdir(cwd)
        os.umask(umask)
        os.environ.clear()
        os.environ.update(env)
        # what the library read from the server's environment and kept: the time zone
        # (TZ, read when time was imported) and tempfile's folder (TMPDIR, on first use)
        time.tzset()
        tempfile.tempdir = None
        sys.argv = argv
        _fresh_streams()
        _watch(conn)
    except BaseException:
        import traceback

        traceback.print_exc()  # on the command's stderr once the streams are there
        _finish(1)
    try:
        code = _run()
    finally:
        _finish(code)


def _fresh_streams() -> None:
    """Standard streams as the interpreter makes them at start-up for these descriptors:
    the server's were opened on /dev/null (block-buffered, not a terminal); the encoding
    is the server's, which shares the command's locale and PYTHON* settings (the key)."""
    unbuffered = bool(getattr(sys.stdout, "write_through", False))  # python -u
    made = []
    for fd, old in enumerate((sys.stdin, sys.stdout, sys.stderr)):
        raw = open(fd, "rb" if fd == 0 else "wb",  # noqa: SIM115 - they live as long as we do
                   buffering=0 if unbuffered and fd else -1, closefd=False)
        made.append(io.TextIOWrapper(
            raw, encoding=old.encoding, errors="backslashreplace" if fd == 2 else old.errors,
            line_buffering=fd == 2 or (fd == 1 and os.isatty(1) and not unbuffered),
            write_through=unbuffered and fd > 0))
    sys.stdin, sys.stdout, sys.stderr = made
    for name, stream in zip(("__stdin__", "__stdout__", "__stderr__"), made, strict=True):
        setattr(sys, name, stream)


def _watch(conn: socket.socket) -> None:
    """The command that handed us over forwards its signals itself; when it dies without
    a word (kill -9, a closed terminal) its socket closes, and we stop as from SIGTERM."""

    def wait() -> None:
        with contextlib.suppress(OSError):
            while conn.recv(64):
                pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=wait, name="preload-watch", daemon=True).start()


def _run() -> int:
    try:
        cli.main()
    except SystemExit as exc:
        return _exit_code(exc.code)
    except KeyboardInterrupt:
        return 130
    except BaseException:
        import traceback

        traceback.print_exc()
        return 1
    return 0


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _finish(code: int) -> None:
    """What interpreter shutdown does for a cold command: wait for its non-daemon
    threads, run its atexit handlers, flush the streams; then leave without running the
    server's own shutdown."""
    try:
        for t in list(_threads()):
            t.join()
        import atexit

        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
    finally:
        os._exit(code)


def _threads() -> Iterator[threading.Thread]:
    me = threading.current_thread()
    for t in threading.enumerate():
        if t is not me and not t.daemon:
            yield t
