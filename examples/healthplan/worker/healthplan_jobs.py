"""Jobs the worker process runs (RQ): the apps enqueue them by name onto Redis
(``REDIS_URL``), so neither app imports this module.

    cd worker && rq worker --url "$REDIS_URL" healthplan

Each job writes its result back to the shared database (``DATABASE_URL``), where both
apps read it.
"""

from __future__ import annotations

import os

import psycopg

QUEUE = "healthplan"


def summarize_claims(member_id: int) -> dict[str, object]:
    """Count a member's claims and sum what was billed and paid into
    ``public.claim_summaries`` (one row per member, replaced on every run)."""
    with psycopg.connect(os.environ.get("DATABASE_URL", ""),
                         options="-c search_path=public") as conn:
        count, billed, paid = conn.execute(
            "SELECT count(*), coalesce(sum(amount_billed), 0), coalesce(sum(amount_paid), 0)"
            " FROM claims WHERE member_id = %s", (member_id,)).fetchone()
        conn.execute(
            "INSERT INTO claim_summaries (member_id, claim_count, amount_billed, amount_paid,"
            " computed_at) VALUES (%s, %s, %s, %s, now())"
            " ON CONFLICT (member_id) DO UPDATE SET claim_count = EXCLUDED.claim_count,"
            " amount_billed = EXCLUDED.amount_billed, amount_paid = EXCLUDED.amount_paid,"
            " computed_at = EXCLUDED.computed_at",
            (member_id, count, billed, paid))
    return {"member_id": member_id, "claim_count": count, "amount_billed": str(billed),
            "amount_paid": str(paid)}
