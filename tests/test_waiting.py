"""Waiting until something is ready (devenv.waiting): the poll loop and the TCP check."""

from __future__ import annotations

import itertools
import socket
import threading
import time

import pytest

from devenv import waiting
from devenv.postgres.pgcluster import free_port


def test_until_returns_once_the_check_passes_with_what_it_said() -> None:
    calls: list[float] = []

    def check(left: float) -> tuple[bool, str]:
        calls.append(left)
        return len(calls) == 3, f"try {len(calls)}"

    waited = waiting.until(check, 5, pause=0.01)
    assert waited == waiting.Waited(True, "try 3")
    assert len(calls) == 3 and all(0 < left <= 5 for left in calls)
    assert waiting.until(lambda _left: True, 5) == waiting.Waited(True, "")


def test_until_times_out_with_the_last_detail_and_never_sleeps_past_the_deadline() -> None:
    t0 = time.monotonic()
    waited = waiting.until(lambda left: (False, f"{left:.1f} left"), 0.3, pause=0.05,
                           factor=2, longest=10)
    took = time.monotonic() - t0
    assert not waited.done and not waited.stopped
    assert waited.detail == "0.0 left"  # one last check when the final pause ends
    assert 0.3 <= took < 0.6
    # a check that says nothing: the caller's default detail
    assert waiting.until(lambda _left: False, 0, detail="not checked yet").detail == \
        "not checked yet"


def test_pauses_grow_up_to_the_longest() -> None:
    stamps: list[float] = []

    def check(_left: float) -> bool:
        stamps.append(time.monotonic())
        return len(stamps) == 5

    assert waiting.until(check, 10, pause=0.02, factor=3, longest=0.1).done
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert gaps[0] < 0.06 and gaps[1] >= 0.06 and all(g < 0.2 for g in gaps)


def test_a_stop_event_ends_the_wait_and_an_exception_from_the_check_too() -> None:
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    t0 = time.monotonic()
    waited = waiting.until(lambda _left: (False, "no"), 30, pause=5, stop=stop)
    assert waited == waiting.Waited(False, "no", stopped=True)
    assert time.monotonic() - t0 < 2

    def boom(_left: float) -> bool:
        raise RuntimeError("the service exited")

    with pytest.raises(RuntimeError, match="exited"):
        waiting.until(boom, 30)


def test_tcp_check() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert waiting.tcp("127.0.0.1", port) == (True, "accepts connections")
        # open and quiet for the settle time: something listens
        assert waiting.tcp("127.0.0.1", port, settle=0.1) == (True, "accepts connections")
    ok, why = waiting.tcp("127.0.0.1", free_port())
    assert not ok and "refused" in why.lower()


def test_tcp_check_with_settle_sees_a_connection_closed_at_once() -> None:
    # what Docker's port proxy does while nothing listens inside the container
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]

        def close_at_once() -> None:
            conn, _ = s.accept()
            conn.close()

        t = threading.Thread(target=close_at_once)
        t.start()
        assert waiting.tcp("127.0.0.1", port, settle=1.0) == (
            False, "connection closed at once")
        t.join()


def test_http_status_reads_real_servers() -> None:
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 503)
            self.end_headers()
            self.wfile.write(b"body\n")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        assert waiting.http_status("127.0.0.1", port, "/health") == (200, "")
        assert waiting.http_status("127.0.0.1", port, "/other") == (503, "")
    finally:
        server.shutdown()
        server.server_close()

    def serve_once(answer: bytes) -> int:
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)

        def run() -> None:
            conn, _ = lsock.accept()
            conn.recv(1024)
            conn.sendall(answer)
            conn.close()
            lsock.close()

        threading.Thread(target=run, daemon=True).start()
        return int(lsock.getsockname()[1])

    assert waiting.http_status("127.0.0.1", serve_once(b"+PONG\r\n")) == (
        None, "not an HTTP answer: '+PONG'")
    assert waiting.http_status("127.0.0.1", serve_once(b"")) == (
        None, "closed without an answer")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    code, why = waiting.http_status("127.0.0.1", free)
    assert code is None and why == "Connection refused"
