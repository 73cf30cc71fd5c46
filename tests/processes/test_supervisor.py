"""App processes on real subprocesses (devenv.processes.supervisor): start order, foreground
supervision, detached runs with their record, status and stop_all. No database is needed
here (``tests/commands/test_up.py`` covers ``devenv up`` against PostgreSQL)."""

from __future__ import annotations

import io
import json
import socket
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from devenv import processes
from devenv.console import ProcessLines
from devenv.errors import DevenvError
from devenv.postgres.pgcluster import free_port
from devenv.schema import Project
from tests.processes.app import pids, web
from tests.procs import gone


def test_process_lines_prefix_and_colour() -> None:
    buf = io.StringIO()
    out = ProcessLines(["web", "worker-long"], stream=buf, colour=False)
    out.line("web", "GET /health")
    out.system("web exited", "line 1\nline 2")
    assert buf.getvalue().splitlines() == [
        "web         | GET /health",
        "devenv      | web exited",
        "devenv      |   | line 1",
        "devenv      |   | line 2",
    ]
    buf = io.StringIO()
    out = ProcessLines(["web", "worker"], stream=buf, colour=True)
    out.line("web", "a")
    out.line("worker", "b")
    first, second = buf.getvalue().splitlines()
    assert first == "\x1b[36mweb    | \x1b[0ma" and second == "\x1b[33mworker | \x1b[0mb"
    # Not a terminal: plain, whatever the caller asked.
    assert not ProcessLines(["web"], stream=io.StringIO()).colour


def test_detached_ready_by_tcp_port_and_cmd_in_needs_order(
        project: Callable[..., Project]) -> None:
    a, b, c = free_port(), free_port(), free_port()
    p = project({
        "api": web(a, f"tcp://127.0.0.1:{a}", BOOT_DELAY="0.6"),
        "admin": web(b, str(b)),
        "worker": web(c, f"cmd: {sys.executable} -c \"import urllib.request as u; "
                         f"u.urlopen('http://127.0.0.1:{c}/health')\""),
    })
    # The loader only lets processes need steps and services; the supervisor also
    # honours needs between processes.
    procs = dict(p.processes)
    procs["admin"] = replace(procs["admin"], needs=("api",))
    procs["worker"] = replace(procs["worker"], needs=("admin",))
    p = replace(p, processes=procs)
    order = processes.selected(p, "local")
    assert order == ["api", "admin", "worker"]
    buf = io.StringIO()
    t0 = time.time()
    code = processes.run_detached(p, processes.prepare(p, order, None),
                                  ProcessLines(order, stream=buf, colour=False))
    text = buf.getvalue()
    assert code == 0, text
    assert f"api is ready (tcp://127.0.0.1:{a}: accepts connections)" in text
    assert f"admin is ready (port {b}: accepts connections)" in text
    assert "worker is ready (cmd: " in text and "exit code 0)" in text
    # admin started only once api answered (api boots in 0.6 s).
    started = {n: float((p.root / f"{n}.pids").read_text().split()[2]) for n in order}
    assert started["admin"] - t0 >= 0.6 and started["worker"] >= started["admin"]
    # Detached: output in the log, the record private, every process alive and ready.
    log = (p.root / ".devenv/logs/admin.log").read_text()
    assert f"admin booting on {b}" in log
    rec = p.root / ".devenv" / "processes.json"
    assert stat.S_IMODE(rec.stat().st_mode) == 0o600
    st = {s.name: s for s in processes.status(p)}
    assert all(s.alive and s.ready and s.detached for s in st.values())
    assert st["api"].log == ".devenv/logs/api.log"
    # A second run keeps them.
    buf = io.StringIO()
    assert processes.run_detached(p, processes.prepare(p, order, None),
                                  ProcessLines(order, stream=buf, colour=False)) == 0
    assert "all processes were already running" in buf.getvalue()
    assert {s.name: s.pid for s in processes.status(p)} == {n: st[n].pid for n in st}
    # A foreground up is refused while they run.
    with pytest.raises(DevenvError, match="already running in the background: api"):
        processes.refuse_running(p, detached=False)
    leaders = {n: pids(p.root, n) for n in order}
    assert sorted(processes.stop_all(p)) == ["admin", "api", "worker"]
    for leader, child in leaders.values():
        assert gone(leader) and gone(child)
    assert not rec.exists()
    assert [s.alive for s in processes.status(p)] == [False, False, False]


def test_changed_command_restarts_a_detached_process(project: Callable[..., Project]) -> None:
    port = free_port()
    p = project({"web": web(port)})
    assert processes.run_detached(p, processes.prepare(p, ["web"], None),
                                  ProcessLines(["web"], stream=io.StringIO())) == 0
    first = pids(p.root, "web")[0]
    spec = replace(p.processes["web"], run=(*p.processes["web"].run, "--changed"))
    p2 = replace(p, processes={"web": spec})
    buf = io.StringIO()
    assert processes.run_detached(p2, processes.prepare(p2, ["web"], None),
                                  ProcessLines(["web"], stream=buf)) == 0
    assert "web: its command changed since it started; restarting it" in buf.getvalue()
    assert gone(first) and pids(p.root, "web")[0] != first


def test_detached_crash_before_ready_stops_what_this_run_started(
        project: Callable[..., Project]) -> None:
    a, b = free_port(), free_port()
    p = project({"api": web(a), "web": web(b, CRASH="1", WAIT_FOR="api.pids")})
    buf = io.StringIO()
    code = processes.run_detached(p, processes.prepare(p, ["api", "web"], None),
                                  ProcessLines(["api", "web"], stream=buf, colour=False))
    text = buf.getvalue()
    assert code == 1
    assert "devenv | web exited with code 3 before it was ready; its last output:" in text
    assert "devenv |   | boom: SECRET_KEY is not set" in text
    api = pids(p.root, "api")
    assert gone(api[0]) and gone(api[1])
    assert processes.read_records(p) == {}


def run_foreground(p: Project, names: list[str]) -> tuple[int, str, float]:
    buf = io.StringIO()
    t0 = time.monotonic()
    code = processes.run_foreground(p, processes.prepare(p, names, None),
                                    ProcessLines(names, stream=buf, colour=False))
    return code, buf.getvalue(), time.monotonic() - t0


def test_foreground_crash_before_ready_shows_tail_and_stops_the_others(
        project: Callable[..., Project]) -> None:
    a, b = free_port(), free_port()
    p = project({"api": web(a), "web": web(b, ready=str(b), CRASH="1")})
    code, text, took = run_foreground(p, ["api", "web"])
    assert code == 1
    lines = text.splitlines()
    # The output as it came, prefixed, then the failure with the tail.
    assert f"web    | web booting on {b}" in lines
    assert "web    | boom: SECRET_KEY is not set" in lines
    i = lines.index("devenv | web exited with code 3 before it was ready; its last output:")
    assert lines[i + 1:i + 3] == [f"devenv |   | web booting on {b}",
                                  "devenv |   | boom: SECRET_KEY is not set"]
    assert "devenv | stopped api" in lines
    for n in ("api", "web"):
        leader, child = pids(p.root, n)
        assert gone(leader) and gone(child)
    assert processes.read_records(p) == {}
    assert took < 10


def test_foreground_exit_after_ready_and_ready_timeout(project: Callable[..., Project]) -> None:
    a, b = free_port(), free_port()
    p = project({"api": web(a, EXIT_AFTER="0.5"), "web": web(b, ready=None)})
    code, text, _ = run_foreground(p, ["api", "web"])
    assert code == 1
    assert "devenv | api exited with code 4 after it was ready; its last output:" in text
    assert "devenv | all processes are ready (api, web); press Ctrl-C to stop them" in text
    assert gone(pids(p.root, "web")[0])

    never = free_port()
    spec = {**web(a, f"tcp://127.0.0.1:{never}"), "ready_timeout": 0.8}
    p = project({"api": spec})
    code, text, took = run_foreground(p, ["api"])
    assert code == 1 and took < 8
    assert (f"devenv | api was not ready after 0.8s (tcp://127.0.0.1:{never}: Connection "
            "refused); its last output:") in text
    assert f"devenv |   | api booting on {a}" in text
    assert gone(pids(p.root, "api")[1])


LOGIN_APP = """\
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(401)
        self.send_header("WWW-Authenticate", "Basic")
        self.send_header("Content-Length", "0")
        self.end_headers()
print("login-app: settings loaded, DEBUG on")
print("login-app: listening on", sys.argv[1])
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def test_a_server_answering_401_is_ready_and_status_can_say_otherwise(
        project: Callable[..., Project]) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    app = {"run": [sys.executable, "login_app.py", str(port)], "ready_timeout": 15,
           "ready": url}
    p = project({"web": app})
    (p.root / "login_app.py").write_text(LOGIN_APP)
    code, text, took = run_foreground_until_ready(p, ["web"])
    assert f"devenv | web is ready ({url}: HTTP 401) after" in text, text
    assert took < 10

    # status: [200]: a 401 no longer counts; on the timeout the tail is the app's own
    # output, not its access log of devenv's ready requests.
    p = project({"web": {**app, "ready": {"http": url, "status": [200]},
                         "ready_timeout": 1.5}})
    code, text, took = run_foreground(p, ["web"])
    assert code == 1 and took < 10
    lines = text.splitlines()
    head = next(line for line in lines if "was not ready" in line)
    assert head.startswith(f"devenv | web was not ready after 1.5s ({url} (status 200): "
                           "HTTP 401); its last output (without the ")
    assert head.endswith((" lines logging devenv's ready requests):",
                          " line logging devenv's ready requests):"))
    i = lines.index(head)
    assert lines[i + 1:i + 3] == ["devenv |   | login-app: settings loaded, DEBUG on",
                                  f"devenv |   | login-app: listening on {port}"]
    assert not any('"GET / HTTP/1.1" 401' in line for line in lines[i:])
    # Detached, from the log file: the same (and not the line devenv wrote at its top).
    buf = io.StringIO()
    code = processes.run_detached(p, processes.prepare(p, ["web"], None),
                                  ProcessLines(["web"], stream=buf, colour=False))
    lines = buf.getvalue().splitlines()
    assert code == 1
    i = next(n for n, line in enumerate(lines) if "was not ready" in line)
    assert "without the" in lines[i]
    assert lines[i + 1:] == ["devenv |   | login-app: settings loaded, DEBUG on",
                             f"devenv |   | login-app: listening on {port}",
                             "devenv | stopped web"]


def run_foreground_until_ready(p: Project, names: list[str]) -> tuple[int, str, float]:
    """``run_foreground`` stopped (as by Ctrl-C) once every process is ready."""
    buf = io.StringIO()
    t0 = time.monotonic()

    def interrupt() -> None:
        raise KeyboardInterrupt

    code = processes.run_foreground(p, processes.prepare(p, names, None),
                                    ProcessLines(names, stream=buf, colour=False),
                                    on_ready=interrupt)
    return code, buf.getvalue(), time.monotonic() - t0


def test_port_of_a_running_process_is_really_served(project: Callable[..., Project]) -> None:
    # Sanity for the fixture app itself: what devenv waits on answers over TCP.
    port = free_port()
    p = project({"web": web(port)})
    assert processes.run_detached(p, processes.prepare(p, ["web"], None),
                                  ProcessLines(["web"], stream=io.StringIO())) == 0
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_changed_environment_restarts_a_detached_process_and_says_which(
        project: Callable[..., Project]) -> None:
    port = free_port()
    p = project({"web": web(port)})
    assert processes.run_detached(p, processes.prepare(p, ["web"], None),
                                  ProcessLines(["web"], stream=io.StringIO())) == 0
    first = pids(p.root, "web")[0]
    record = json.loads((p.root / ".devenv" / "processes.json").read_text())
    assert "FEATURE_FLAG" not in json.dumps(record)  # nothing set yet, nothing recorded
    spec = replace(p.processes["web"], env={**p.processes["web"].env, "FEATURE_FLAG": "on"})
    p2 = replace(p, processes={"web": spec})
    buf = io.StringIO()
    assert processes.run_detached(p2, processes.prepare(p2, ["web"], None),
                                  ProcessLines(["web"], stream=buf)) == 0
    assert ("web: its environment (FEATURE_FLAG) changed since it started; restarting it"
            in buf.getvalue())
    assert gone(first) and pids(p.root, "web")[0] != first
    # the record holds hashes of the values, not the values
    record = json.loads((p.root / ".devenv" / "processes.json").read_text())
    stored = record["processes"]["web"]["env"]
    assert stored and all(len(v) == 16 and int(v, 16) >= 0 for v in stored.values())
    # and the same environment again keeps it
    buf = io.StringIO()
    assert processes.run_detached(p2, processes.prepare(p2, ["web"], None),
                                  ProcessLines(["web"], stream=buf)) == 0
    assert "web is already running" in buf.getvalue()
