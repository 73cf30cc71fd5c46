"""A small client of the Docker Engine API over a local unix socket, for the questions
`up` asks most (is the engine there, what is this container now, which host ports are
taken): one short HTTP request each, without importing the docker SDK (about 60 ms with
requests and urllib3) or negotiating its API version (a request per client). The requests
are HTTP/1.0 written by hand: the engine then answers with the whole body and closes, and
http.client (which pulls in email and ssl) stays unloaded.

:func:`local` finds the socket the docker CLI would use: ``DOCKER_HOST=unix://...``, else
the current docker context when it names a unix socket without TLS, else the default
socket. Anything else (tcp, ssh, TLS, a context it cannot read) answers ``None``: the
caller then uses the docker SDK, which handles all of those.

Paths carry no API version: the engine then answers in its own (newest) version, whose
container and ping formats are the ones the SDK's low-level calls return too.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from devenv import waiting

DEFAULT_SOCKET = "/var/run/docker.sock"


class EngineError(Exception):
    """The engine answered with an error status (``status``) or not at all (0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _config_dir() -> Path:
    # where the docker CLI keeps config.json and contexts (DOCKER_CONFIG moves it)
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def _context_socket(name: str) -> str | None:
    """The unix socket of docker context ``name``, or None when it is not a plain local
    socket (tcp, ssh, TLS material) or its metadata cannot be read."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    contexts = _config_dir() / "contexts"
    try:
        meta = json.loads((contexts / "meta" / digest / "meta.json").read_text())
        endpoint = meta["Endpoints"]["docker"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    host = endpoint.get("Host") if isinstance(endpoint, dict) else None
    if not isinstance(host, str) or not host.startswith("unix://"):
        return None
    if endpoint.get("SkipTLSVerify") or (contexts / "tls" / digest).exists():
        return None
    return host.removeprefix("unix://")


def local() -> Engine | None:
    """The engine on the unix socket the docker CLI would use, or None when it would use
    something else (the SDK handles that)."""
    host = os.environ.get("DOCKER_HOST")
    if host:
        if host.startswith("unix://") and not os.environ.get("DOCKER_TLS_VERIFY"):
            return Engine(host.removeprefix("unix://"), host)
        return None
    name = os.environ.get("DOCKER_CONTEXT")
    if not name:
        try:
            config = json.loads((_config_dir() / "config.json").read_text())
        except FileNotFoundError:
            config = {}
        except (OSError, ValueError):
            return None  # unreadable: let the SDK decide (it falls back to the default)
        name = config.get("currentContext") if isinstance(config, dict) else None
    if not name or name == "default":
        return Engine(DEFAULT_SOCKET, f"unix://{DEFAULT_SOCKET}")
    path = _context_socket(str(name))
    return Engine(path, f"unix://{path}") if path is not None else None


class Engine:
    """The engine at unix socket ``path`` (``where``: its address as a user writes it).
    A connection per request: threads share an Engine freely."""

    def __init__(self, path: str, where: str, timeout: float = 120) -> None:
        self.path = path
        self.where = where
        self.timeout = timeout

    def request(self, method: str, path: str, query: dict[str, str] | None = None,
                body: Any = None, timeout: float | None = None) -> tuple[int, bytes]:
        """Status and body (``body``: sent as JSON); OSError when the socket does not
        answer within ``timeout`` (default: the engine's), EngineError when what comes
        back is not HTTP."""
        url = path + ("?" + urlencode(query) if query else "")
        data = b"" if body is None else json.dumps(body).encode()
        head = [f"{method} {url} HTTP/1.0", "Host: docker", f"Content-Length: {len(data)}"]
        if body is not None:
            head.append("Content-Type: application/json")
        chunks: list[bytes] = []
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout if timeout is None else timeout)
            sock.connect(self.path)
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)
            while chunk := sock.recv(1 << 16):  # an HTTP/1.0 answer ends when it closes
                chunks.append(chunk)
        return _parse(b"".join(chunks), f"{method} {path}")

    def call(self, method: str, path: str, query: dict[str, str] | None = None,
             body: Any = None) -> Any:
        """The decoded JSON answer (None when there is none); EngineError for an error
        status, with the engine's message."""
        status, answer = self.request(method, path, query, body)
        if status >= 400:
            try:
                message = str(json.loads(answer).get("message", ""))
            except (ValueError, AttributeError):
                message = answer.decode(errors="replace").strip()
            raise EngineError(status, message or f"{method} {path} answered {status}")
        return json.loads(answer) if answer.strip() else None

    def get(self, path: str, query: dict[str, str] | None = None) -> Any:
        return self.call("GET", path, query)

    def ping(self) -> bool:
        try:
            # as the SDK's ping in available(): a hung engine is not one that answers
            status, body = self.request("GET", "/_ping", timeout=5)
        except (OSError, EngineError):
            return False
        return status == 200 and body.strip() == b"OK"

    def inspect(self, name: str) -> dict[str, Any] | None:
        """The container's full description (as ``docker inspect``), None when there is no
        container of that name or id."""
        try:
            found = self.get(f"/containers/{quote(name, safe='/:')}/json")
        except EngineError as exc:
            if exc.status == 404:
                return None
            raise
        return found if isinstance(found, dict) else None

    def containers(self, stopped: bool = True) -> list[dict[str, Any]]:
        """``docker ps`` (``-a`` with ``stopped``): the engine's short form of each
        container, one request for all of them."""
        found = self.get("/containers/json", {"all": "1" if stopped else "0"})
        return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []

    def exec(self, container: str, argv: list[str], timeout: float | None = None,
             ) -> tuple[int | None, bytes]:
        """Run ``argv`` in the running ``container`` as ``docker exec`` does without a
        terminal or stdin: its exit code (None when the engine gives none) and what it
        wrote, stdout and stderr in the order they came. A ``ready: {cmd: ...}`` check
        runs this on every `up`, where the SDK would cost its import (0.3 s here)."""
        made = self.call("POST", f"/containers/{quote(container, safe='')}/exec",
                         body={"Cmd": argv, "AttachStdout": True, "AttachStderr": True})
        exec_id = quote(str(made["Id"]), safe="")
        # without an Upgrade header the engine streams the output as the answer's body
        # and closes the connection when the command ends
        status, raw = self.request("POST", f"/exec/{exec_id}/start",
                                   body={"Detach": False, "Tty": False}, timeout=timeout)
        if status >= 400:
            raise EngineError(status, raw.decode(errors="replace").strip()
                              or f"exec start answered {status}")
        info = self.get(f"/exec/{exec_id}/json")
        code = info.get("ExitCode") if isinstance(info, dict) else None
        return (int(code) if code is not None else None), _demux(raw)

    def image_exists(self, name: str) -> bool:
        try:
            self.get(f"/images/{quote(name, safe='/:')}/json")
        except EngineError as exc:
            if exc.status == 404:
                return False
            raise
        return True


def _parse(reply: bytes, what: str) -> tuple[int, bytes]:
    """Status and body of a whole HTTP/1.x answer."""
    head, sep, body = reply.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = waiting.status_of(lines[0])
    if not sep or status is None:
        raise EngineError(0, f"{what}: not an HTTP answer from the engine")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = _unchunk(body)
    elif headers.get(b"content-length", b"").isdigit():
        body = body[:int(headers[b"content-length"])]
    return status, body


def _unchunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return bytes(out)


def _demux(raw: bytes) -> bytes:
    """The output of a command run without a terminal: frames of an 8-byte header (stream
    1 or 2, three zero bytes, the length as 4 bytes big-endian) and that many bytes."""
    out = bytearray()
    at = 0
    while at + 8 <= len(raw) and raw[at] in (0, 1, 2) and raw[at + 1:at + 4] == b"\0\0\0":
        size = int.from_bytes(raw[at + 4:at + 8], "big")
        out += raw[at + 8:at + 8 + size]
        at += 8 + size
    return bytes(out) if at else raw  # no frames: a terminal's raw stream
