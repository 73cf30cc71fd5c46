"""Load the Stripe-like sample (sample_billing.json) into the billing schema.

    DATABASE_URL=postgresql://... python load_billing.py [--file sample_billing.json]
    PAYMENTS_URL=http://...      python load_billing.py --to-payments

With --to-payments the same sample goes to the payment provider's stand-in
(../payments/) instead: one PUT of every customer and invoice, which replaces what it
held, so a re-run leaves the same data there too.

The billing schema belongs to this script alone: it drops and recreates its three tables
and COPYs the sample in, in one transaction, so a re-run leaves the same rows. It needs
only the database and the schema -- neither app's tables. Without DATABASE_URL, libpq's
PG* environment variables are used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

HERE = Path(__file__).resolve().parent
SCHEMA = "billing"

DDL = f"""
DROP TABLE IF EXISTS {SCHEMA}.invoice_lines, {SCHEMA}.invoices, {SCHEMA}.customers;

CREATE TABLE {SCHEMA}.customers (
    id            text PRIMARY KEY,
    created       timestamptz NOT NULL,
    email         text,
    currency      char(3) NOT NULL,
    delinquent    boolean NOT NULL,
    member_number text,
    metadata      jsonb NOT NULL DEFAULT '{{}}'
);
CREATE INDEX customers_member_number_idx ON {SCHEMA}.customers (member_number);

CREATE TABLE {SCHEMA}.invoices (
    id           text PRIMARY KEY,
    customer_id  text NOT NULL REFERENCES {SCHEMA}.customers (id),
    number       text NOT NULL UNIQUE,
    status       text NOT NULL CHECK (status IN ('draft', 'open', 'paid', 'uncollectible', 'void')),
    currency     char(3) NOT NULL,
    created      timestamptz NOT NULL,
    period_start timestamptz NOT NULL,
    period_end   timestamptz NOT NULL,
    due_date     timestamptz,
    amount_due   bigint NOT NULL,
    amount_paid  bigint NOT NULL
);
CREATE INDEX invoices_customer_id_idx ON {SCHEMA}.invoices (customer_id);

CREATE TABLE {SCHEMA}.invoice_lines (
    invoice_id  text NOT NULL REFERENCES {SCHEMA}.invoices (id) ON DELETE CASCADE,
    line_no     integer NOT NULL,
    description text NOT NULL,
    amount      bigint NOT NULL,
    quantity    integer NOT NULL,
    PRIMARY KEY (invoice_id, line_no)
);
"""


def _ts(value: int | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(value, tz=dt.UTC)


def load(conn: psycopg.Connection, data: dict) -> dict[str, int]:
    counts = {"customers": 0, "invoices": 0, "invoice_lines": 0}
    with conn.cursor() as cur:
        cur.execute(DDL)
        with cur.copy(
            f"COPY {SCHEMA}.customers (id, created, email, currency, delinquent, member_number,"
            " metadata) FROM STDIN"
        ) as copy:
            for c in data["customers"]:
                meta = c.get("metadata") or {}
                copy.write_row((c["id"], _ts(c["created"]), c.get("email"), c["currency"],
                                c.get("delinquent", False), meta.get("member_number"),
                                Jsonb(meta)))
                counts["customers"] += 1
        with cur.copy(
            f"COPY {SCHEMA}.invoices (id, customer_id, number, status, currency, created,"
            " period_start, period_end, due_date, amount_due, amount_paid) FROM STDIN"
        ) as copy:
            for i in data["invoices"]:
                copy.write_row((i["id"], i["customer"], i["number"], i["status"], i["currency"],
                                _ts(i["created"]), _ts(i["period_start"]), _ts(i["period_end"]),
                                _ts(i.get("due_date")), i["amount_due"], i["amount_paid"]))
                counts["invoices"] += 1
        with cur.copy(
            f"COPY {SCHEMA}.invoice_lines (invoice_id, line_no, description, amount, quantity)"
            " FROM STDIN"
        ) as copy:
            for i in data["invoices"]:
                for n, line in enumerate(i["lines"]["data"], start=1):
                    copy.write_row((i["id"], n, line["description"], line["amount"],
                                    line.get("quantity", 1)))
                    counts["invoice_lines"] += 1
    return counts


def to_payments(url: str, data: dict) -> dict:
    """PUT the sample to the stand-in at ``url``; its summary (counts, totals due)."""
    import urllib.request

    body = json.dumps({"customers": data["customers"], "invoices": data["invoices"]}).encode()
    request = urllib.request.Request(url.rstrip("/") + "/v1/dataset", data=body, method="PUT",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=HERE / "sample_billing.json")
    parser.add_argument("--url", default=os.environ.get("DATABASE_URL", ""),
                        help="default: $DATABASE_URL, else the PG* variables")
    parser.add_argument("--to-payments", action="store_true",
                        help="load the payment provider's stand-in at $PAYMENTS_URL instead")
    args = parser.parse_args(argv)

    started = time.monotonic()
    data = json.loads(args.file.read_text())
    if args.to_payments:
        url = os.environ.get("PAYMENTS_URL", "")
        if not url:
            print("PAYMENTS_URL is not set: where does the payments stand-in answer?",
                  file=sys.stderr)
            return 1
        got = to_payments(url, data)
        print(f"payments stand-in loaded in {time.monotonic() - started:.2f}s: "
              f"customers={got['customers']}, invoices={got['invoices']}")
        return 0
    with psycopg.connect(args.url) as conn:  # one transaction, committed on success
        exists = conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (SCHEMA,)
        ).fetchone()
        if not exists:
            print(f"schema {SCHEMA} does not exist: create it first", file=sys.stderr)
            return 1
        counts = load(conn, data)
    summary = ", ".join(f"{k}={v}" for k, v in counts.items())
    print(f"billing loaded in {time.monotonic() - started:.2f}s: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
