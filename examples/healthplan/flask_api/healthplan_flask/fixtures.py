"""Loading <table>.yaml / <table>.json fixture files into the Flask tables.

Rows are upserted by primary key, so loading twice changes nothing; tables are loaded in
foreign-key order. Each id sequence is moved past the highest fixture id (never back).
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Connection, Date, DateTime, MetaData, Numeric, Table, text
from sqlalchemy.dialects.postgresql import insert

SUFFIXES = (".yaml", ".yml", ".json")


def read_rows(path: Path) -> list[dict[str, Any]]:
    raw = path.read_text()
    data = json.loads(raw) if path.suffix == ".json" else yaml.safe_load(raw)
    if data is None:
        return []
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ValueError(f"{path}: expected a list of rows (mappings)")
    return data


def _coerce(table: Table, row: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key not in table.c:
            raise ValueError(f"{where}: unknown column '{key}' for table {table.name}")
        col_type = table.c[key].type
        if isinstance(value, str):
            if isinstance(col_type, DateTime):
                value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            elif isinstance(col_type, Date):
                value = dt.date.fromisoformat(value)
        if isinstance(col_type, Numeric) and isinstance(value, (int, float, str)):
            value = Decimal(str(value))
        out[key] = value
    return out


def load_dir(conn: Connection, metadata: MetaData, directory: Path) -> dict[str, int]:
    files: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix not in SUFFIXES:
            continue
        if path.stem not in metadata.tables:
            raise ValueError(f"{path}: no table named '{path.stem}'")
        if path.stem in files:
            raise ValueError(f"two fixture files for table {path.stem}: {files[path.stem]}, {path}")
        files[path.stem] = path

    counts: dict[str, int] = {}
    for table in metadata.sorted_tables:  # parents before children
        path = files.get(table.name)
        if path is None:
            continue
        rows = [
            _coerce(table, row, f"{path.name} row {i + 1}")
            for i, row in enumerate(read_rows(path))
        ]
        counts[table.name] = len(rows)
        if not rows:
            continue
        pk = [c.name for c in table.primary_key.columns]
        for row in rows:
            missing = [c for c in pk if c not in row]
            if missing:
                raise ValueError(f"{path.name}: every row needs its primary key {missing}")
        columns = sorted({k for row in rows for k in row})
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=pk,
            set_={c: stmt.excluded[c] for c in columns if c not in pk},
        )
        conn.execute(stmt, rows)
        if len(pk) == 1 and table.c[pk[0]].autoincrement in (True, "auto"):
            _advance_sequence(conn, table.name, pk[0], max(row[pk[0]] for row in rows))
    return counts


def _advance_sequence(conn: Connection, table: str, column: str, max_id: int) -> None:
    seq = conn.execute(
        text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table, "c": column}
    ).scalar()
    if seq is None:
        return
    conn.execute(
        text(
            f"SELECT setval(:seq, GREATEST(:max_id, (SELECT CASE WHEN is_called "
            f"THEN last_value ELSE 0 END FROM {seq})))"
        ),
        {"seq": seq, "max_id": max_id},
    )
