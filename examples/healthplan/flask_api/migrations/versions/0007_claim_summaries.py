"""claim_summaries: per-member claim totals, written by the worker (RQ)

The Flask API enqueues a job (POST /api/members/<id>/claims-summary); the worker
(../../worker/healthplan_jobs.py) computes the totals and replaces the member's row.

Revision ID: 0007_claim_summaries
Revises: 0006_claims_enrollment_index
Create Date: 2026-12-03 08:00:00
"""

from alembic import op
import sqlalchemy as sa

revision = "0007_claim_summaries"
down_revision = "0006_claims_enrollment_index"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "claim_summaries",
        sa.Column(
            "member_id",
            sa.Integer(),
            sa.ForeignKey("members.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("claim_count", sa.Integer(), nullable=False),
        sa.Column("amount_billed", sa.Numeric(12, 2), nullable=False),
        sa.Column("amount_paid", sa.Numeric(12, 2), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade():
    op.drop_table("claim_summaries")
