"""A stand-in for the payment provider (Stripe-like) in development.

The billing step (``load_billing.py --to-payments``) PUTs the sample's customers and
invoices here; the apps would ask it as they ask the provider. Only what the example
needs:

    GET  /health                   200 {"status": "ok"}
    PUT  /v1/dataset               replace every customer and invoice (a JSON body
                                   {"customers": [...], "invoices": [...]}); idempotent
    GET  /v1/customers/<id>        one customer, with its invoice ids
    GET  /v1/invoices/<id>         one invoice
    GET  /v1/summary               counts, and the total due per currency

The data is kept in a JSON file (--data, on the container's volume), so a restarted
container answers as before.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

LOCK = threading.Lock()
STATE: dict[str, Any] = {"customers": {}, "invoices": {}}
DATA: Path | None = None


def _load(path: Path) -> None:
    if path.is_file():
        saved = json.loads(path.read_text())
        STATE["customers"], STATE["invoices"] = saved["customers"], saved["invoices"]


def _save() -> None:
    if DATA is None:
        return
    tmp = DATA.with_suffix(".tmp")
    tmp.write_text(json.dumps(STATE))
    os.replace(tmp, DATA)  # a crash mid-write leaves the previous data whole


def summary() -> dict[str, Any]:
    due: dict[str, int] = {}
    for inv in STATE["invoices"].values():
        due[inv["currency"]] = due.get(inv["currency"], 0) + inv["amount_due"] - inv["amount_paid"]
    return {"customers": len(STATE["customers"]), "invoices": len(STATE["invoices"]),
            "outstanding": dict(sorted(due.items()))}


class Handler(BaseHTTPRequestHandler):
    server_version = "payments-standin/1"

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        parts = self.path.strip("/").split("/")
        with LOCK:
            if parts == ["health"]:
                return self._send(200, {"status": "ok"})
            if parts == ["v1", "summary"]:
                return self._send(200, summary())
            if len(parts) == 3 and parts[:2] == ["v1", "customers"]:
                c = STATE["customers"].get(parts[2])
                if c is not None:
                    invoices = sorted(i["id"] for i in STATE["invoices"].values()
                                      if i["customer"] == parts[2])
                    return self._send(200, {**c, "invoices": invoices})
            if len(parts) == 3 and parts[:2] == ["v1", "invoices"]:
                i = STATE["invoices"].get(parts[2])
                if i is not None:
                    return self._send(200, i)
        return self._send(404, {"error": {"message": f"no such resource: {self.path}"}})

    def do_PUT(self) -> None:  # noqa: N802
        if self.path != "/v1/dataset":
            return self._send(404, {"error": {"message": f"no such resource: {self.path}"}})
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            customers = {c["id"]: c for c in body["customers"]}
            invoices = {i["id"]: i for i in body["invoices"]}
        except (ValueError, KeyError, TypeError) as exc:
            return self._send(400, {"error": {"message": f"bad dataset: {exc!r}"}})
        with LOCK:
            STATE["customers"], STATE["invoices"] = customers, invoices
            _save()
            return self._send(200, summary())


def main() -> None:
    global DATA
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()
    DATA = args.data
    if DATA is not None:
        _load(DATA)
    # PID 1 in its container: without a handler SIGTERM is ignored and `docker stop`
    # waits its whole timeout
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = ThreadingHTTPServer(("0.0.0.0", args.port), Handler)
    print(f"payments stand-in listening on {args.port} "
          f"({len(STATE['customers'])} customers loaded)")
    server.serve_forever()


if __name__ == "__main__":
    main()
