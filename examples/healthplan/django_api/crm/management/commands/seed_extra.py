"""Add a deterministic history of automated outreach to the sample members.

Owned rows: interactions logged by the automated agents in SEED_AGENTS and member
attributes with a key in SEED_KEYS, both with ids above SEED_ID_BASE. A run deletes the
rows it owns and writes them again with the same ids, so running it twice changes
nothing, and rows people create through the app (lower agents/keys, ids from the
sequence) are left alone. The id sequences end at max(id), as after `loaddata`.
"""

from __future__ import annotations

import datetime as dt
import random

from django.core.management.base import BaseCommand
from django.core.management.color import no_style
from django.db import connection, transaction

from core.models import Member
from crm.models import Interaction, MemberAttribute

SEED_ID_BASE = 100_000
SEED_AGENTS = ("ivr-bot", "outreach-campaign", "nurse-line")
SEED_KEYS = ("risk_score", "outreach_opt_in", "last_outreach_channel")
# Sample members only: fake members (ids above 1,000,000) come and go with `flask fake-data`.
SAMPLE_MEMBER_MAX_ID = 1_000_000
START = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)
SPAN_SECONDS = 2 * 365 * 86400

SUMMARIES = {
    "ivr-bot": ("IVR: claim status lookup", "IVR: ID card request", "IVR: balance inquiry"),
    "outreach-campaign": ("Annual wellness visit reminder", "Flu shot reminder",
                          "Open enrollment reminder", "Preventive screening reminder"),
    "nurse-line": ("Nurse line: triage, advised urgent care", "Nurse line: medication question",
                   "Nurse line: follow-up after ER visit"),
}
CHANNELS = {"ivr-bot": "phone", "outreach-campaign": "email", "nurse-line": "phone"}


class Command(BaseCommand):
    help = "Add seeded, repeatable interaction history and attributes for the sample members."

    def add_arguments(self, parser):
        parser.add_argument("--per-member", type=int, default=60,
                            help="interactions per sample member (default 60)")
        parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")

    def handle(self, *args, per_member: int, seed: int, **options):
        rng = random.Random(seed)
        member_ids = list(
            Member.objects.filter(id__lt=SAMPLE_MEMBER_MAX_ID).order_by("id").values_list("id", flat=True)
        )
        if not member_ids:
            self.stderr.write("no sample members: load the Flask fixtures first")
            raise SystemExit(1)

        interactions = []
        attributes = []
        next_interaction = SEED_ID_BASE
        next_attribute = SEED_ID_BASE
        for member_id in member_ids:
            for _ in range(per_member):
                agent = rng.choice(SEED_AGENTS)
                next_interaction += 1
                interactions.append(Interaction(
                    id=next_interaction,
                    member_id=member_id,
                    channel=CHANNELS[agent],
                    direction="in" if agent != "outreach-campaign" else "out",
                    agent=agent,
                    summary=rng.choice(SUMMARIES[agent]),
                    occurred_at=START + dt.timedelta(seconds=rng.randrange(SPAN_SECONDS)),
                ))
            values = {
                "risk_score": f"{rng.uniform(0, 1):.3f}",
                "outreach_opt_in": rng.choice(("yes", "yes", "yes", "no")),
                "last_outreach_channel": rng.choice(("email", "phone", "mail")),
            }
            for key in SEED_KEYS:
                next_attribute += 1
                attributes.append(MemberAttribute(
                    id=next_attribute, member_id=member_id, key=key, value=values[key],
                    updated_at=START + dt.timedelta(days=700),
                ))

        with transaction.atomic():
            gone_i, _ = Interaction.objects.filter(
                id__gt=SEED_ID_BASE, agent__in=SEED_AGENTS).delete()
            gone_a, _ = MemberAttribute.objects.filter(
                id__gt=SEED_ID_BASE, key__in=SEED_KEYS).delete()
            Interaction.objects.bulk_create(interactions, batch_size=2000)
            MemberAttribute.objects.bulk_create(attributes, batch_size=2000)
            with connection.cursor() as cur:
                for sql in connection.ops.sequence_reset_sql(no_style(), [Interaction, MemberAttribute]):
                    cur.execute(sql)
        self.stdout.write(
            f"seed_extra: {len(interactions)} interactions, {len(attributes)} attributes "
            f"for {len(member_ids)} sample members (replaced {gone_i} + {gone_a})"
        )
