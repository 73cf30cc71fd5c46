"""Deterministic bulk fake data: members, their enrollments and claims.

Same ``seed`` and ``members`` => the same rows, byte for byte (Faker and ``random`` are
both seeded, and no value depends on today's date). Fake rows take ids in a reserved band
above FAKE_ID_BASE that the tables' id sequences never reach in a dev database, so rows
created through the app never collide with them, and a re-run deletes exactly the fake
rows (claims and enrollments go with their members: ON DELETE CASCADE) before inserting.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

from faker import Faker

DEFAULT_MEMBERS = 20_000
DEFAULT_SEED = 20240601
FAKE_ID_BASE = 1_000_000
MAX_MEMBERS = 999_999

UTC = dt.UTC
DOB_START = dt.date(1940, 1, 1)
DOB_DAYS = (dt.date(2006, 12, 31) - DOB_START).days
ENROLL_START = dt.date(2021, 1, 1)
ENROLL_DAYS = (dt.date(2024, 6, 30) - ENROLL_START).days
DATA_END = dt.date(2024, 12, 31)
CREATED_START = dt.datetime(2020, 6, 1, tzinfo=UTC)

PROCEDURES = ("99213", "99214", "99395", "80053", "85025", "71046", "93000", "36415", "90471",
              "97110", "J1100", "99283")
CLAIM_STATUS_WEIGHTS = (("paid", 70), ("approved", 10), ("denied", 8), ("submitted", 12))


def _delete_fake_rows(conn: Any) -> None:
    # Children first, so the cascades from members find nothing left to do.
    conn.execute("DELETE FROM claims WHERE id > %s OR member_id > %s", (FAKE_ID_BASE,) * 2)
    conn.execute("DELETE FROM enrollments WHERE id > %s OR member_id > %s", (FAKE_ID_BASE,) * 2)
    conn.execute("DELETE FROM members WHERE id > %s", (FAKE_ID_BASE,))


def generate(members: int, seed: int, plans: list[tuple[int, bool]]) -> dict[str, list[tuple]]:
    """The rows, as tuples in COPY column order. ``plans``: (id, active) from the database."""
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    active_plans = [pid for pid, active in plans if active]
    all_plans = [pid for pid, _ in plans]
    providers = sorted({f"{fake.last_name()} {kind}" for kind in
                        ("Family Clinic", "Medical Group", "Imaging", "Health Partners",
                         "Urgent Care", "Pediatrics") for _ in range(20)})
    statuses = [s for s, _ in CLAIM_STATUS_WEIGHTS]
    weights = [w for _, w in CLAIM_STATUS_WEIGHTS]

    member_rows: list[tuple] = []
    enrollment_rows: list[tuple] = []
    claim_rows: list[tuple] = []
    enrollment_id = FAKE_ID_BASE
    claim_id = FAKE_ID_BASE
    for n in range(1, members + 1):
        member_id = FAKE_ID_BASE + n
        first, last = fake.first_name(), fake.last_name()
        email = f"{first}.{last}.{n}@example.org".lower().replace("'", "")
        phone = f"({rng.randint(201, 989)}) 555-{rng.randint(0, 9999):04d}"
        dob = DOB_START + dt.timedelta(days=rng.randrange(DOB_DAYS))
        created = CREATED_START + dt.timedelta(seconds=rng.randrange(3 * 365 * 86400))
        member_rows.append(
            (member_id, f"HP9{n:07d}", first, last, dob, email, phone, created)
        )

        # Most members have one open enrollment; some switched plans once.
        spans: list[tuple[dt.date, dt.date | None, int, str]] = []
        start = ENROLL_START + dt.timedelta(days=rng.randrange(ENROLL_DAYS))
        if rng.random() < 0.2 and len(all_plans) > 1:
            switch = start + dt.timedelta(days=rng.randint(90, 400))
            spans.append((start, switch - dt.timedelta(days=1), rng.choice(all_plans), "ended"))
            start = switch
        spans.append((start, None, rng.choice(active_plans), "active"))

        for span_start, span_end, plan_id, status in spans:
            enrollment_id += 1
            enrollment_rows.append(
                (enrollment_id, member_id, plan_id, span_start, span_end, status)
            )
            last_day = min(span_end or DATA_END, DATA_END)
            days = (last_day - span_start).days
            if days <= 0:
                continue
            for _ in range(min(int(rng.expovariate(1 / 2.5)), 12)):
                claim_id += 1
                billed = Decimal(rng.randint(4_000, 250_000)) / 100
                claim_status = rng.choices(statuses, weights)[0]
                paid = (
                    (billed * Decimal(rng.randint(55, 95)) / 100).quantize(Decimal("0.01"))
                    if claim_status == "paid" else Decimal("0.00")
                )
                claim_rows.append((
                    claim_id, member_id, enrollment_id,
                    span_start + dt.timedelta(days=rng.randrange(days)),
                    rng.choice(providers), rng.choice(PROCEDURES), billed, paid, claim_status,
                ))
    return {"members": member_rows, "enrollments": enrollment_rows, "claims": claim_rows}


COLUMNS = {
    "members": ("id", "member_number", "first_name", "last_name", "date_of_birth", "email",
                "phone", "created_at"),
    "enrollments": ("id", "member_id", "plan_id", "start_date", "end_date", "status"),
    "claims": ("id", "member_id", "enrollment_id", "service_date", "provider_name",
               "procedure_code", "amount_billed", "amount_paid", "status"),
}


def build(conn: Any, members: int, seed: int) -> dict[str, int]:
    """Delete the previous fake rows and COPY in new ones, in the caller's transaction."""
    plans = conn.execute("SELECT id, active FROM plans ORDER BY id").fetchall()
    if not any(active for _, active in plans):
        raise SystemExit("no active plans: load the fixtures first (flask load-fixtures)")
    rows = generate(members, seed, plans)
    _delete_fake_rows(conn)
    with conn.cursor() as cur:
        for table in ("members", "enrollments", "claims"):  # parents first
            cols = ", ".join(COLUMNS[table])
            with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                for row in rows[table]:
                    copy.write_row(row)
    return {table: len(r) for table, r in rows.items()}
