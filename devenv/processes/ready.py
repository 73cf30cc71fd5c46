"""Ready checks: how ``devenv up`` tells that a process is ready (an HTTP answer, a TCP
port that accepts connections, a command that exits 0), and one try of one (:func:`probe`).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devenv import proc, waiting

PROBE_TIMEOUT = 2.0


@dataclass(frozen=True)
class ReadyCheck:
    """How to tell that a process is ready: ``http`` (an answer: by default any status
    below 500, else one of ``statuses``), ``tcp`` (a port accepts connections) or ``cmd``
    (a command exits 0).

    Why below 500 by default: a server that answers is up, whatever it thinks of the
    request. An app whose root wants a login answers 401 or 403, a missing route 404, and
    waiting longer changes none of that; a 5xx is the app (or a proxy in front of it)
    saying it cannot serve yet. Kubernetes' httpGet probe counts only 200-399; that is
    stricter than a dev server's first answer needs, and ``status:`` restores it.
    """

    kind: str
    target: str  # the URL, HOST:PORT, or the command
    host: str = ""
    port: int = 0
    statuses: tuple[int, ...] = ()  # http: the statuses that count; (): any below 500

    def accepts(self, code: int) -> bool:
        """Whether HTTP status ``code`` means ready."""
        return code in self.statuses if self.statuses else 100 <= code < 500

    @property
    def path(self) -> str:
        """The path (and query) an http check asks for: how its requests show up in the
        app's own access log."""
        parts = urllib.parse.urlsplit(self.target)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def __str__(self) -> str:
        if self.kind == "http" and self.statuses:
            return f"{self.target} (status {', '.join(map(str, self.statuses))})"
        return f"cmd: {self.target}" if self.kind == "cmd" else self.target

    def spec(self) -> str:
        """The check written as a ``ready:`` value (:func:`parse_ready` reads it back)."""
        if self.kind == "tcp":
            return f"tcp://{self.host}:{self.port}"
        return f"cmd: {self.target}" if self.kind == "cmd" else self.target


def parse_ready(spec: str, statuses: Sequence[int] = ()) -> ReadyCheck:
    """A ``ready:`` value as a check (``statuses``: the HTTP statuses that count, from
    ``ready: {http: URL, status: [...]}``); ``ValueError`` says what is wrong with it."""
    s = spec.strip()
    if s.startswith(("http://", "https://")):
        if not urllib.parse.urlsplit(s).hostname:
            raise ValueError(f"no host in ready URL '{s}'")
        return ReadyCheck("http", s, statuses=tuple(statuses))
    if s.startswith("tcp://"):
        parts = urllib.parse.urlsplit(s)
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise ValueError(f"invalid ready check '{s}': write tcp://HOST:PORT")
        return ReadyCheck("tcp", f"tcp://{parts.hostname}:{port}", parts.hostname, port)
    if s.isdigit():
        port = int(s)
        if not 0 < port < 65536:
            raise ValueError(f"invalid port {port} in ready check")
        return ReadyCheck("tcp", f"port {port}", "localhost", port)
    if s.startswith("cmd:"):
        command = s[4:].strip()
        if not command:
            raise ValueError("empty command in ready check: write cmd: COMMAND")
        return ReadyCheck("cmd", command)
    raise ValueError(f"invalid ready check '{s}': an http(s):// URL, tcp://HOST:PORT, a port "
                     "number, or cmd: COMMAND")


def probe(check: ReadyCheck, env: Mapping[str, str] | None = None, cwd: Path | None = None,
          timeout: float = PROBE_TIMEOUT) -> tuple[bool, str]:
    """Try ``check`` once: whether it passed, and what was seen (``HTTP 503``...)."""
    if check.kind == "http":
        return _probe_http(check, timeout)
    if check.kind == "tcp":
        return waiting.tcp(check.host, check.port, timeout)
    try:
        done = proc.run(["/bin/sh", "-c", check.target], cwd=cwd,
                        env=dict(env) if env is not None else None, check=False,
                        timeout=max(timeout, 1.0))
    except proc.ProcessError as exc:
        return False, "timed out" if exc.returncode is None else f"exit code {exc.returncode}"
    return done.returncode == 0, f"exit code {done.returncode}"


def _probe_http(check: ReadyCheck, timeout: float) -> tuple[bool, str]:
    import http.client
    import ssl
    import urllib.error
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        # A redirect (to a login page, say) already means the app answers.
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    # No proxy (http_proxy must not catch localhost) and no certificate check: a local
    # dev server's self-signed certificate is still a server that is up.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), NoRedirect(),
        urllib.request.HTTPSHandler(context=ssl._create_unverified_context()))
    try:
        with opener.open(check.target, timeout=timeout) as resp:
            code = int(resp.status)
    except urllib.error.HTTPError as exc:
        code = exc.code
    except urllib.error.URLError as exc:
        reason = exc.reason
        return False, getattr(reason, "strerror", None) or str(reason)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return False, str(exc) or type(exc).__name__
    return check.accepts(code), f"HTTP {code}"
