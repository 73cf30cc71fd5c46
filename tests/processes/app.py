"""The app the process tests start (server.py) and how a test declares it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

MakeProject = Callable[..., Path]

# A tiny app: serves /health (200), /moved (302), /broken (503); prints as it goes
# (unflushed: devenv sets PYTHONUNBUFFERED); CRASH=1 makes it die before listening,
# EXIT_AFTER=S makes it exit S seconds after it started listening.
SERVER = """\
import http.server, os, subprocess, sys, threading, time
port = int(sys.argv[1])
time.sleep(float(os.environ.get("BOOT_DELAY", "0")))
while os.environ.get("WAIT_FOR") and not os.path.exists(os.environ["WAIT_FOR"]):
    time.sleep(0.02)  # start only once another process is up (a crash that races nothing)
child = subprocess.Popen(["sleep", "300"])
name = os.environ["DEVENV_PROCESS"]
with open(f"{name}.pids", "w") as fh:
    fh.write(f"{os.getpid()} {child.pid} {time.time()}\\n")
print(f"{name} booting on {port}")
if os.environ.get("CRASH"):
    print("boom: SECRET_KEY is not set")
    sys.exit(3)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = {"/health": 200, "/moved": 302, "/broken": 503}.get(self.path, 404)
        body = os.environ.get("GREETING", "ok").encode()
        self.send_response(code)
        if code == 302:
            self.send_header("Location", "/nowhere")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, fmt, *args):
        print("request", self.path)
server = http.server.HTTPServer(("127.0.0.1", port), H)
if os.environ.get("EXIT_AFTER"):
    threading.Timer(float(os.environ["EXIT_AFTER"]), lambda: os._exit(4)).start()
server.serve_forever()
"""


def pids(root: Path, name: str) -> tuple[int, int]:
    leader, child, _ = (root / f"{name}.pids").read_text().split()
    return int(leader), int(child)


def web(port: int, ready: str | None = "", **env: str) -> dict[str, object]:
    spec: dict[str, object] = {"run": [sys.executable, "server.py", str(port)],
                               "ready_timeout": 15}
    if ready is not None:
        spec["ready"] = ready or f"http://127.0.0.1:{port}/health"
    if env:
        spec["env"] = env
    return spec
