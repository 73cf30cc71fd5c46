"""Waiting until something is ready: poll a check until it passes or a deadline passes
(:func:`until`), and the TCP and HTTP checks many of them are (:func:`tcp`,
:func:`http_status`).

Below the services, the processes and process stopping alike, so each of them waits the
same way: a check first, then pauses that may grow, never sleeping past the deadline.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Waited:
    """How a wait ended: ``done`` (the check passed), or not, with what the last check saw;
    ``stopped`` when the ``stop`` event ended it before the deadline."""

    done: bool
    detail: str = ""
    stopped: bool = False


def until(check: Callable[[float], bool | tuple[bool, str]], timeout: float, *,
          pause: float = 0.05, factor: float = 1.0, longest: float | None = None,
          stop: threading.Event | None = None, detail: str = "") -> Waited:
    """Call ``check(remaining seconds)`` until it passes (``True``, or ``(True, detail)``)
    or ``timeout`` seconds have passed, pausing ``pause`` seconds between calls, the pause
    multiplied by ``factor`` each time up to ``longest``. The check runs at least once, and
    once more when a pause ends at the deadline. An exception from the check ends the wait
    (a service that exited while starting: waiting more will not help). ``stop`` set ends
    it too (the caller is stopping). ``detail``: what :attr:`Waited.detail` says when
    the check never said anything."""
    deadline = time.monotonic() + timeout
    while True:
        if stop is not None and stop.is_set():
            return Waited(False, detail, stopped=True)
        result = check(max(deadline - time.monotonic(), 0.0))
        ok, detail = result if isinstance(result, tuple) else (result, detail)
        if ok:
            return Waited(True, detail)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Waited(False, detail)
        if stop is not None:
            stop.wait(min(pause, remaining))
        else:
            time.sleep(min(pause, remaining))
        pause = pause * factor if longest is None else min(pause * factor, longest)


def tcp(host: str, port: int, timeout: float = 1.0, settle: float = 0.0) -> tuple[bool, str]:
    """Whether ``host:port`` accepts a TCP connection, and what was seen.

    ``settle``: how long to wait for the peer to close the connection at once, which
    Docker's port proxy does while nothing listens inside the container. A connection that
    stays open that long, or that says something, counts as ready.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            if settle > 0:
                s.settimeout(settle)
                try:
                    data = s.recv(1)
                except TimeoutError:
                    data = b"-"  # open and quiet: something listens
                except ConnectionResetError:
                    return False, "connection reset"
                if not data:
                    return False, "connection closed at once"
            return True, "accepts connections"
    except OSError as exc:
        return False, exc.strerror or str(exc) or type(exc).__name__


def http_status(host: str, port: int, path: str = "/", timeout: float = 2.0,
                ) -> tuple[int | None, str]:
    """The status of ``GET path`` on ``host:port`` (HTTP/1.0, only the status line read),
    or None and why not. Written on a socket: http.client would bring the email and ssl
    modules along (about 10 ms) into every ``up`` that checks an HTTP service."""
    request = (f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n"
               "User-Agent: devenv-ready\r\nConnection: close\r\n\r\n").encode()
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(request)
            head = b""
            while b"\n" not in head and len(head) < 1024:
                chunk = s.recv(1024)
                if not chunk:
                    break
                head += chunk
    except OSError as exc:
        return None, exc.strerror or str(exc) or type(exc).__name__
    line = head.split(b"\n", 1)[0].strip()
    code = status_of(line)
    if code is None:
        shown = line.decode("latin-1")[:60]
        return None, f"not an HTTP answer: {shown!r}" if line else "closed without an answer"
    return code, ""


def status_of(line: bytes) -> int | None:
    """The status of an HTTP/1.x status line (``HTTP/1.0 200 OK``), None if it is not one."""
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return None
    return int(parts[1])
