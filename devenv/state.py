"""What devenv recorded about each database: the fingerprints of the steps that built it.

Records are keyed by the database's identity, not its name: the PostgreSQL cluster's
system identifier plus the database's OID. A recreated volume (new cluster) or a dropped
and recreated database (new OID) therefore starts with no records, while a rename (how
refresh-db swaps databases in) keeps them.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from devenv import jsonfile
from devenv.fingerprint import Fingerprint

NO_DATABASE = "no-database"


class StateStore:
    """``.devenv/state.json``, read and written under a file lock."""

    FLUSH_EVERY = 0.5  # seconds between writes while a run records many steps

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.path = state_dir / "state.json"
        self._pending: list[tuple[str, str, str, dict[str, Any]]] = []
        self._batching = 0
        self._last_flush = 0.0

    @contextlib.contextmanager
    def batched(self) -> Iterator[None]:
        """Buffer records and write them at most every FLUSH_EVERY seconds, and at the end.

        A run of hundreds of quick steps would otherwise rewrite the file per step. If the
        process is killed, at most the last FLUSH_EVERY seconds of records are lost, which
        only makes those steps run again.
        """
        self._batching += 1
        try:
            yield
        finally:
            self._batching -= 1
            if not self._batching:
                self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        with self._locked() as data:
            for key, label, step, record in pending:
                db = data["databases"].setdefault(key, {"steps": {}})
                db["label"] = label
                db.setdefault("steps", {})[step] = record
        self._last_flush = time.monotonic()

    def _record(self, key: str, label: str, step: str, record: dict[str, Any]) -> None:
        self._pending.append((key, label, step, record))
        if not self._batching or time.monotonic() - self._last_flush >= self.FLUSH_EVERY:
            self.flush()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        with jsonfile.update(self.path) as data:
            if not isinstance(data.get("databases"), dict):
                data.clear()
                data["databases"] = {}
            yield data

    def _read(self) -> dict[str, Any]:
        data = jsonfile.read(self.path)
        return data if isinstance(data.get("databases"), dict) else {"databases": {}}

    def steps(self, key: str) -> dict[str, dict[str, Any]]:
        """The records of database ``key``: step name -> record."""
        self.flush()
        db = self._read()["databases"].get(key, {})
        steps = db.get("steps", {}) if isinstance(db, dict) else {}
        return steps if isinstance(steps, dict) else {}

    def record_success(self, key: str, label: str, step: str, fp: Fingerprint,
                       duration: float) -> None:
        self._record(key, label, step, {
            "fingerprint": fp.value,
            "definition": dict(fp.definition),
            "inputs": dict(fp.inputs),
            "upstream": dict(fp.upstream),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "duration": round(duration, 3),
        })

    def record_failure(self, key: str, label: str, step: str) -> None:
        self._record(key, label, step, {
            "failed": True, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})

    def copy(self, src: str, dst: str, label: str, skip: Collection[str] = ()) -> None:
        """Give database ``dst`` the records of ``src`` (a clone of it), but those of the
        steps in ``skip`` (whose work the clone does not hold)."""
        self.flush()
        with self._locked() as data:
            steps = {k: v for k, v in data["databases"].get(src, {}).get("steps", {}).items()
                     if k not in skip}
            data["databases"][dst] = {"label": label, "steps": json.loads(json.dumps(steps))}

    def put(self, key: str, label: str, records: dict[str, dict[str, Any]]) -> None:
        """Set the records of database ``key`` (a snapshot holding some of the steps)."""
        self.flush()
        with self._locked() as data:
            data["databases"][key] = {"label": label, "steps": json.loads(json.dumps(records))}

    def prune(self, prefix: str, live: set[str]) -> list[str]:
        """Forget the databases under ``prefix`` (one cluster, ``pg:<system id>:``) that are
        not in ``live``: a refresh drops backups and snapshots, and their records would
        otherwise stay in the file for ever. Returns the keys it forgot."""
        self.flush()
        with self._locked() as data:
            gone = [k for k in data["databases"] if k.startswith(prefix) and k not in live]
            for k in gone:
                del data["databases"][k]
        return gone

    def forget(self, key: str) -> None:
        self.flush()
        with self._locked() as data:
            data["databases"].pop(key, None)
