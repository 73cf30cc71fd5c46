"""The preloaded server (devenv/preload.py): a command handed over to it behaves as the
same command started cold, and anything unusual means a cold start, never an error.

Real processes throughout: a launcher script like the console script pip writes, run on a
copy of the devenv package (so a test can edit a module the server imported without
touching the checkout), with a runtime folder of its own; the server a test starts is
stopped at its end.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import devenv

MakeProject = Callable[..., Path]
PACKAGE = Path(devenv.__file__).parent


class Preloaded:
    """Runs ``devenv`` through the launcher with the preloaded server on."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.lib = base / "lib"
        shutil.copytree(PACKAGE, self.lib / "devenv",
                        ignore=shutil.ignore_patterns("__pycache__"))
        self.launcher = base / "bin" / "devenv"
        self.launcher.parent.mkdir()
        # what pip's console script does, with the copy first on the import path
        self.launcher.write_text(
            "import sys\n"
            f"sys.path.insert(1, {str(self.lib)!r})\n"
            "from devenv.preload import main\n"
            "main()\n")
        self.run_dir = base / "run"
        self.run_dir.mkdir(mode=0o700)
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("CI", "DATABASE_URL", "DEVENV_FILE")}
        self.env.update(DEVENV_PRELOAD="1", XDG_RUNTIME_DIR=str(self.run_dir))

    @property
    def folder(self) -> Path:
        return self.run_dir / "devenv"

    @property
    def log(self) -> str:
        path = self.folder / "preload.log"
        return path.read_text() if path.exists() else ""

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, str(self.launcher), *args]

    def run(self, *args: str, cwd: Path, env: dict[str, str] | None = None,
            umask: int = -1) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), cwd=cwd, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=120, umask=umask)

    def servers(self) -> list[int]:
        """Pids of the servers that said they serve and have not said they stopped."""
        serving = {int(p) for p in re.findall(r"\[(\d+)\] serving ", self.log)}
        stopped = {int(p) for p in re.findall(r"\[(\d+)\] stopped: ", self.log)}
        return sorted(serving - stopped)

    def wait_for_server(self, count: int = 1, timeout: float = 30) -> int:
        """The pid of the newest server once ``count`` have said they serve."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = re.findall(r"\[(\d+)\] serving ", self.log)
            if len(pids) >= count and list(self.folder.glob("preload-*.sock")):
                return int(pids[-1])
            time.sleep(0.05)
        raise AssertionError(f"no server started; log:\n{self.log}")

    def served(self) -> list[str]:
        """The commands servers handed to a child, as their log names them."""
        return re.findall(r"\] \d+: devenv (.*)", self.log)

    def stop(self) -> None:
        for pid in re.findall(r"\[(\d+)\] serving ", self.log):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)


@pytest.fixture
def preloaded() -> Iterator[Preloaded]:
    # short: a unix socket's path has room for about 100 bytes
    base = Path(tempfile.mkdtemp(prefix="dp", dir="/tmp"))
    p = Preloaded(base)
    try:
        yield p
    finally:
        p.stop()
        shutil.rmtree(base, ignore_errors=True)


def _project(make_project: MakeProject) -> Path:
    return make_project({
        "version": 1, "name": "preloadtest",
        "steps": {
            "greet": {"run": "echo \"hello $GREETING from $(pwd)\" > greeting.txt; "
                             "touch made.txt",
                      "inputs": ["input.txt"]},
            "after": {"run": "true", "needs": ["greet"]},
        }}, files={"input.txt": "one", "sub/deeper/.keep": ""})


def _gone(pattern: str, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode != 0:
            return True
        time.sleep(0.1)
    return False


def test_the_second_command_is_served_warm_and_says_the_same(
        preloaded: Preloaded, make_project: MakeProject) -> None:
    root = _project(make_project)
    cold = preloaded.run("graph", "--format", "json", cwd=root)
    assert cold.returncode == 0, cold.stderr
    assert preloaded.served() == []  # no server answered the first one: it started one
    preloaded.wait_for_server()
    warm = preloaded.run("graph", "--format", "json", cwd=root)
    assert preloaded.served() == ["graph --format json"]
    assert (warm.returncode, warm.stdout, warm.stderr) == (0, cold.stdout, cold.stderr)
    helps = [preloaded.run("up", "--help", cwd=root, env={"COLUMNS": "100"})
             for _ in range(2)]
    assert helps[0].stdout == helps[1].stdout and "Usage: devenv up" in helps[0].stdout
    assert preloaded.served()[-1] == "up --help"


def test_the_command_gets_its_own_directory_environment_and_umask(
        preloaded: Preloaded, make_project: MakeProject) -> None:
    root = _project(make_project)
    preloaded.run("--version", cwd=root)
    preloaded.wait_for_server()
    deeper = root / "sub" / "deeper"  # steps.yaml is found upwards from here
    r = preloaded.run("--plain", "run", cwd=deeper, env={"GREETING": "first"}, umask=0o077)
    assert r.returncode == 0, r.stderr
    assert preloaded.served()[-1] == "--plain run"
    assert (root / "greeting.txt").read_text() == f"hello first from {root}\n"
    assert (root / "made.txt").stat().st_mode & 0o777 == 0o600
    (root / "made.txt").unlink()
    r = preloaded.run("--plain", "run", "greet", "--force", cwd=root,
                      env={"GREETING": "second"}, umask=0o022)
    assert r.returncode == 0, r.stderr
    assert (root / "greeting.txt").read_text() == f"hello second from {root}\n"
    assert (root / "made.txt").stat().st_mode & 0o777 == 0o644
    # the time zone too (the server's was read when it imported time): --plain lines
    # carry the local time
    for zone, hours in (("XYZ-9", 9), ("XYZ+5", -5)):
        r = preloaded.run("--plain", "run", "greet", "--force", cwd=root, env={"TZ": zone})
        assert r.returncode == 0, r.stderr
        shown = r.stdout.split()[0]  # HH:MM:SS
        expected = time.gmtime(time.time() + hours * 3600)
        assert abs((int(shown[:2]) * 60 + int(shown[3:5]))
                   - (expected.tm_hour * 60 + expected.tm_min)) % (24 * 60) in (0, 1, 1439), \
            (zone, r.stdout)
    assert preloaded.served() == ["--plain run"] + ["--plain run greet --force"] * 3


def test_exit_codes_and_error_messages_are_the_commands(
        preloaded: Preloaded, make_project: MakeProject) -> None:
    root = make_project("version: 1\nname: bad\nsteps:\n  a:\n    run: true\n    needz: [b]\n")
    cold = preloaded.run("plan", cwd=root)
    preloaded.wait_for_server()
    warm = preloaded.run("plan", cwd=root)
    assert preloaded.served() == ["plan"]
    assert cold.returncode == warm.returncode == 2
    assert warm.stderr == cold.stderr
    assert "steps.yaml:6: steps.a.needz" in warm.stderr and "Traceback" not in warm.stderr
    failing = make_project({"version": 1, "name": "fails",
                            "steps": {"boom": {"run": "exit 3"}}})
    r = preloaded.run("--plain", "run", cwd=failing)
    assert r.returncode == 1 and "boom" in r.stdout + r.stderr
    usage = preloaded.run("no-such-command", cwd=root)
    assert usage.returncode == 2 and "No such command" in usage.stderr


def _running_step(preloaded: Preloaded, make_project: MakeProject, marker: str,
                  **popen: object) -> subprocess.Popen[str]:
    """`devenv run` served warm, once its one step (the command ``marker``) runs."""
    root = make_project({"version": 1, "name": "slow", "steps": {"wait": {"run": marker}}})
    preloaded.run("--version", cwd=root)
    preloaded.wait_for_server()
    proc: subprocess.Popen[str] = subprocess.Popen(  # type: ignore[call-overload]
        preloaded.argv("--plain", "run"), cwd=root, env=preloaded.env, text=True, **popen)
    deadline = time.monotonic() + 30
    while subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode:
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    assert preloaded.served() == ["--plain run"]
    return proc


def test_ctrl_c_reaches_the_command_and_stops_its_step(
        preloaded: Preloaded, make_project: MakeProject) -> None:
    marker = "sleep 41.5"
    proc = _running_step(preloaded, make_project, marker, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        proc.send_signal(signal.SIGINT)  # what the terminal sends the client on Ctrl-C
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, out
    assert _gone(marker), "the step outlived Ctrl-C"


def test_a_client_killed_outright_stops_its_command(
        preloaded: Preloaded, make_project: MakeProject) -> None:
    marker = "sleep 42.5"
    proc = _running_step(preloaded, make_project, marker, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    proc.kill()  # no signal to forward: the server's child sees the socket close
    proc.wait()
    assert _gone(marker), "the step outlived its command"


def test_ctrl_z_stops_the_command_with_the_client_and_fg_resumes_it(
        preloaded: Preloaded, make_project: MakeProject) -> None:
    """The child is in no terminal's process group: Ctrl-Z (SIGTSTP to the client) must
    stop it too, and SIGCONT (fg, bg) start it again."""
    marker = "sleep 43.5"
    # A group of its own, whose parent (this test) is in the same session, as a shell
    # puts a job: the kernel discards a stop signal for a group with no such parent (an
    # orphaned one, as a CI job's may be), and a terminal's Ctrl-Z never reaches those.
    proc = _running_step(preloaded, make_project, marker, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, process_group=0)
    child = int(re.findall(r"\] (\d+): devenv --plain run", preloaded.log)[-1])

    def state(pid: int) -> str:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]

    def becomes(pid: int, want: str) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if state(pid) == want:
                return True
            time.sleep(0.05)
        return False

    try:
        proc.send_signal(signal.SIGTSTP)
        assert becomes(proc.pid, "T") and becomes(child, "T")
        proc.send_signal(signal.SIGCONT)
        assert becomes(child, "S") or state(child) == "R"
        assert state(proc.pid) != "T"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert _gone(marker)


def test_a_command_that_leaves_before_go_runs_nothing(
        preloaded: Preloaded, make_project: MakeProject) -> None:
    """A command that gave up waiting for the server's answer (or died) has started cold
    or not at all: the child forked for it must not run the command as well. A probe
    beside the launcher (same import path: same server) hands over a `devenv run`, waits
    3 s without saying "go" (nothing runs), then closes its socket (the child leaves)."""
    root = make_project({"version": 1, "name": "nogo",
                         "steps": {"mark": {"run": "touch ran.txt"}}})
    preloaded.run("--version", cwd=root)
    preloaded.wait_for_server()
    probe = preloaded.launcher.parent / "probe"
    probe.write_text(preloaded.launcher.read_text().replace(
        "from devenv.preload import main\nmain()\n", """\
import os, socket
from devenv import preload
key = preload._key()
s = socket.socket(socket.AF_UNIX)
s.connect(preload.socket_path(key))
argv = [b"devenv", b"--plain", b"run"]
body = b"\\0".join([preload.MAGIC, key, os.fsencode(os.getcwd()), b"18", b"3", *argv,
                     *(os.fsencode(k) + b"=" + os.fsencode(v) for k, v in os.environ.items())])
s.sendmsg([str(len(body)).encode() + b"\\n" + body],
          [(socket.SOL_SOCKET, socket.SCM_RIGHTS, bytes(4) + (1).to_bytes(4, "little")
            + (2).to_bytes(4, "little"))])
print(s.recv(64).decode().strip(), flush=True)
import time
time.sleep(3)  # still here, but no "go": the child waits
print("ran" if os.path.exists("ran.txt") else "waited", flush=True)
s.close()
"""))
    r = subprocess.run([sys.executable, str(probe)], cwd=root, env=preloaded.env,
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.startswith("ok "), r.stdout + r.stderr
    child = int(r.stdout.split()[1])
    assert r.stdout.split()[2] == "waited"
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists()
    time.sleep(0.5)
    assert not (root / "ran.txt").exists()
    assert not (root / ".devenv" / "logs").exists()  # not even started


def test_a_changed_module_retires_the_server_and_the_command_runs_cold(
        preloaded: Preloaded, make_project: MakeProject) -> None:
    root = _project(make_project)
    preloaded.run("--version", cwd=root)
    first = preloaded.wait_for_server()
    module = preloaded.lib / "devenv" / "fields.py"  # imported by every command
    module.write_text(module.read_text() + "\n# an upgrade\n")
    r = preloaded.run("graph", cwd=root)
    assert r.returncode == 0 and "greet" in r.stdout
    assert preloaded.served() == []  # turned away: it ran cold
    assert f"[{first}] stopped: {module} changed since it was imported" in preloaded.log
    second = preloaded.wait_for_server(count=2)
    assert second != first
    r = preloaded.run("graph", cwd=root)
    assert r.returncode == 0 and preloaded.served() == ["graph"]


def test_a_folder_others_may_write_to_is_not_used(
        preloaded: Preloaded, make_project: MakeProject) -> None:
    root = _project(make_project)
    preloaded.folder.mkdir(mode=0o700)
    preloaded.folder.chmod(0o777)  # anyone could put a socket there and answer
    for _ in range(2):
        r = preloaded.run("graph", cwd=root)
        assert r.returncode == 0 and "greet" in r.stdout
    time.sleep(1)
    assert list(preloaded.folder.iterdir()) == []


@pytest.mark.parametrize("env", [{"CI": "true"}, {"DEVENV_PRELOAD": "0"}])
def test_off_under_ci_and_when_turned_off(preloaded: Preloaded, make_project: MakeProject,
                                          env: dict[str, str]) -> None:
    root = _project(make_project)
    for _ in range(2):
        r = preloaded.run("graph", cwd=root, env=env)
        assert r.returncode == 0 and "greet" in r.stdout
    time.sleep(1)
    assert not preloaded.folder.exists() or list(preloaded.folder.glob("*.sock")) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the server is Linux's")
def test_psql_and_init_start_cold(monkeypatch: pytest.MonkeyPatch) -> None:
    from devenv import preload

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("DEVENV_PRELOAD", "1")
    assert not preload.enabled(["psql", "-c", "select 1"])
    assert not preload.enabled(["--plain", "-f", "x.yaml", "psql"])
    assert not preload.enabled(["init"])
    assert preload.enabled(["-f", "psql", "up"])  # a file named psql: the command is up
    monkeypatch.setenv("_DEVENV_COMPLETE", "bash_complete")
    assert not preload.enabled(["up"])  # shell completion


def test_a_terminal_is_a_terminal_to_the_command(preloaded: Preloaded,
                                                  make_project: MakeProject) -> None:
    """The child's standard streams are the client's own descriptors: a terminal there
    is seen as one (the live view, colours), exactly as by a cold start."""
    import pty

    root = _project(make_project)
    preloaded.run("--version", cwd=root)
    preloaded.wait_for_server()
    outputs = []
    for mode in ("0", "1"):
        main, child = pty.openpty()
        proc = subprocess.Popen(
            preloaded.argv("run", "greet", "--force"),
            cwd=root, env={**preloaded.env, "DEVENV_PRELOAD": mode, "TERM": "xterm",
                           "NO_COLOR": ""},
            stdin=child, stdout=child, stderr=child)
        os.close(child)
        chunks = []
        while True:
            try:
                data = os.read(main, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=60)
        os.close(main)
        assert proc.returncode == 0
        outputs.append(b"".join(chunks).decode(errors="replace"))
    assert preloaded.served() == ["run greet --force"]
    # the live view draws with escape sequences on a terminal, and only there
    assert "\x1b[" in outputs[0] and "\x1b[" in outputs[1]


def test_standard_streams_are_made_again_for_the_commands_descriptors(tmp_path: Path) -> None:
    """The server's streams were opened on /dev/null: block-buffered. A child whose
    stdout is a terminal gets a line-buffered one, as a cold start does (a print without a
    flush shows at once), and stderr is line-buffered as always."""
    import pty

    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os, sys\n"
        "from devenv import _preload_server\n"
        "null = os.open(os.devnull, os.O_RDWR)\n"
        "before = sys.stdout.line_buffering\n"
        "os.dup2(int(sys.argv[1]), 1)\n"
        "_preload_server._fresh_streams()\n"
        "os.write(2, f'{before} {sys.stdout.line_buffering} {sys.stdout.isatty()} '\n"
        "            f'{sys.stderr.line_buffering}'.encode())\n")
    main, child = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # python -u
    r = subprocess.run([sys.executable, str(probe), str(child)], pass_fds=(child,), env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       timeout=60)
    os.close(main)
    os.close(child)
    assert r.stderr.split() == ["False", "True", "True", "True"]


def test_a_foreground_up_stops_its_processes_on_ctrl_c(
        preloaded: Preloaded, make_project: MakeProject) -> None:
    """`devenv up` in the foreground, served warm: its app process runs until Ctrl-C on
    the command, and then stops with it (exit 130), as a cold `up` does."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = make_project({"version": 1, "name": "fg", "steps": {"noop": {"run": "true"}},
                         "processes": {"web": {
                             "run": f"{sys.executable} -m http.server {port} "
                                    "--bind 127.0.0.1",
                             "ready": f"tcp://127.0.0.1:{port}"}}})
    preloaded.run("--version", cwd=root)
    preloaded.wait_for_server()
    proc = subprocess.Popen(preloaded.argv("--plain", "up"), cwd=root, env=preloaded.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if "all processes are ready" in line:
                break
        assert preloaded.served() == ["--plain up"]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # the app answers while up runs
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert _gone(f"http.server {port}"), "the app process outlived Ctrl-C"


def test_no_password_reaches_the_log_or_the_servers_command_line(
        preloaded: Preloaded, make_project: MakeProject) -> None:
    """preload.log names each command served, masked as devenv's crash logs are (a
    --database-url carries its password); the server's key (the values of PYTHON*
    variables among others) is in its environment, not in the argv any user's ps shows."""
    root = _project(make_project)
    env = {"PYTHON_TOKEN_FOR_TEST": "hush-1234"}
    preloaded.run("--version", cwd=root, env=env)
    server = preloaded.wait_for_server()
    url = "postgresql://someone:s3cret-pw@127.0.0.1:9/nothing"
    preloaded.run("plan", "--database-url", url, cwd=root, env=env)
    assert preloaded.served() == ["plan --database-url postgresql://someone:***@127.0.0.1:9/nothing"]
    assert "s3cret-pw" not in preloaded.log
    cmdline = Path(f"/proc/{server}/cmdline").read_bytes()
    assert b"hush-1234" not in cmdline and b"preload-" in cmdline
