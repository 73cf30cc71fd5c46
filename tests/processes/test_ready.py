"""Ready checks (devenv.processes.ready): the forms a ``ready:`` takes, and one try of each
kind against a real server, port and command."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from devenv import processes
from devenv.postgres.pgcluster import free_port


def test_parse_ready_forms() -> None:
    assert processes.parse_ready("http://127.0.0.1:5000/health").kind == "http"
    tcp = processes.parse_ready("tcp://db.local:5432")
    assert (tcp.kind, tcp.host, tcp.port) == ("tcp", "db.local", 5432)
    port = processes.parse_ready("8000")
    assert (port.kind, port.host, port.port) == ("tcp", "localhost", 8000)
    assert processes.parse_ready(port.spec()) == replace(port, target="tcp://localhost:8000")
    cmd = processes.parse_ready("cmd:  test -f ready.flag")
    assert (cmd.kind, cmd.target) == ("cmd", "test -f ready.flag")
    for bad, msg in (("tcp://host", "write tcp://HOST:PORT"), ("70000", "invalid port 70000"),
                     ("cmd:", "empty command"), ("ftp://x", "invalid ready check 'ftp://x'")):
        with pytest.raises(ValueError, match=msg):
            processes.parse_ready(bad)


@pytest.fixture(scope="module")
def http_server() -> Iterator[int]:
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = {"/ok": 204, "/moved": 302, "/login": 401, "/missing": 404,
                    "/broken": 503}[self.path]
            self.send_response(code)
            if code == 302:
                self.send_header("Location", "/missing")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.HTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_http_ready_is_any_answer_below_500_without_following_redirects(
        http_server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy in the environment must not catch local checks.
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    base = f"http://127.0.0.1:{http_server}"
    check = processes.parse_ready
    assert processes.probe(check(f"{base}/ok")) == (True, "HTTP 204")
    assert processes.probe(check(f"{base}/moved")) == (True, "HTTP 302")
    # A server that answers is up, whatever it thinks of the request...
    assert processes.probe(check(f"{base}/login")) == (True, "HTTP 401")
    assert processes.probe(check(f"{base}/missing")) == (True, "HTTP 404")
    # ...unless it says it cannot serve (yet).
    assert processes.probe(check(f"{base}/broken")) == (False, "HTTP 503")
    # status: names the statuses that count, nothing else does.
    strict = check(f"{base}/login", [200])
    assert str(strict) == f"{base}/login (status 200)" and strict.spec() == f"{base}/login"
    assert processes.probe(strict) == (False, "HTTP 401")
    assert processes.probe(check(f"{base}/broken", [503])) == (True, "HTTP 503")
    ok, why = processes.probe(check(f"http://127.0.0.1:{free_port()}/"))
    assert not ok and "refused" in why.lower()


def test_tcp_port_and_cmd_checks(http_server: int, tmp_path: Path) -> None:
    assert processes.probe(processes.parse_ready(str(http_server)))[0]
    assert processes.probe(processes.parse_ready(f"tcp://127.0.0.1:{http_server}"))[0]
    closed = free_port()
    assert not processes.probe(processes.parse_ready(f"tcp://127.0.0.1:{closed}"))[0]
    flag = processes.parse_ready("cmd: test -f ready.flag && test \"$MODE\" = dev")
    env = {"PATH": os.environ["PATH"], "MODE": "dev"}
    assert processes.probe(flag, env, tmp_path) == (False, "exit code 1")
    (tmp_path / "ready.flag").touch()
    assert processes.probe(flag, env, tmp_path) == (True, "exit code 0")
