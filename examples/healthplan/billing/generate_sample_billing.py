"""Regenerate sample_billing.json: Stripe-like customers and invoices, seeded.

The JSON file is committed; this script only documents where it came from. Customers carry
the member number in metadata (as the real Stripe account does), so billing rows can be
matched to members, but nothing in the database enforces it: billing lives in its own
schema and is loaded independently of both apps.

    python generate_sample_billing.py > sample_billing.json
"""

from __future__ import annotations

import datetime as dt
import json
import random
import sys

SEED = 4242
CUSTOMERS = 400
PREMIUMS = {  # plan code -> monthly premium in cents (matches flask_api/fixtures/plans.yaml)
    "BRZ-HMO-2024": 28900, "SLV-HMO-2024": 37250, "SLV-PPO-2024": 41800,
    "GLD-PPO-2024": 51275, "PLT-PPO-2024": 66400,
}
EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def _id(rng: random.Random, prefix: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return prefix + "".join(rng.choice(alphabet) for _ in range(14))


def _ts(d: dt.datetime) -> int:
    return int(d.timestamp())


def generate() -> dict:
    rng = random.Random(SEED)
    customers, invoices = [], []
    for n in range(1, CUSTOMERS + 1):
        # The first 30 are the sample members; the rest are among the fake members.
        number = f"HP{n:08d}" if n <= 30 else f"HP9{rng.randint(1, 20000):07d}"
        plan = rng.choice(sorted(PREMIUMS))
        created = EPOCH - dt.timedelta(days=rng.randint(30, 900))
        cus = {
            "id": _id(rng, "cus_"),
            "object": "customer",
            "created": _ts(created),
            "email": f"billing+{number.lower()}@example.com",
            "currency": "usd",
            "delinquent": False,
            "metadata": {"member_number": number, "plan_code": plan},
        }
        months = rng.randint(3, 12)
        for m in range(months):
            start = EPOCH + dt.timedelta(days=30 * m)
            end = start + dt.timedelta(days=30)
            amount = PREMIUMS[plan]
            r = rng.random()
            status = "paid" if r < 0.88 else ("open" if r < 0.96 else "uncollectible")
            if m == months - 1 and rng.random() < 0.3:
                status = "open"
            lines = [{"description": f"{plan} monthly premium", "amount": amount, "quantity": 1}]
            if rng.random() < 0.1:
                lines.append({"description": "Late payment fee", "amount": 2500, "quantity": 1})
            total = sum(li["amount"] * li["quantity"] for li in lines)
            invoices.append({
                "id": _id(rng, "in_"),
                "object": "invoice",
                "customer": cus["id"],
                "number": f"{cus['id'][4:12].upper()}-{m + 1:04d}",
                "status": status,
                "currency": "usd",
                "created": _ts(start),
                "period_start": _ts(start),
                "period_end": _ts(end),
                "due_date": _ts(start + dt.timedelta(days=14)),
                "amount_due": total,
                "amount_paid": total if status == "paid" else 0,
                "lines": {"object": "list", "data": lines},
            })
            if status == "uncollectible":
                cus["delinquent"] = True
        customers.append(cus)
    return {"customers": customers, "invoices": invoices}


def main() -> None:
    data = generate()
    # One record per line: small diffs, still valid JSON.
    out = sys.stdout
    out.write("{\n")
    for i, key in enumerate(("customers", "invoices")):
        out.write(f' "{key}": [\n')
        rows = data[key]
        for j, row in enumerate(rows):
            out.write("  " + json.dumps(row, separators=(",", ":")) + ("," if j < len(rows) - 1 else "") + "\n")
        out.write(" ]" + ("," if i == 0 else "") + "\n")
    out.write("}\n")


if __name__ == "__main__":
    main()
