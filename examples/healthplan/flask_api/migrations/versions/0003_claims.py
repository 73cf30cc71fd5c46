"""claims

Revision ID: 0003_claims
Revises: 0002_enrollments
Create Date: 2023-04-11 11:02:00
"""

from alembic import op
import sqlalchemy as sa

revision = "0003_claims"
down_revision = "0002_enrollments"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "claims",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "member_id",
            sa.Integer(),
            sa.ForeignKey("members.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "enrollment_id",
            sa.Integer(),
            sa.ForeignKey("enrollments.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("service_date", sa.Date(), nullable=False),
        sa.Column("provider_name", sa.String(length=120), nullable=False),
        sa.Column("procedure_code", sa.String(length=10), nullable=False),
        sa.Column("amount_billed", sa.Numeric(10, 2), nullable=False),
        sa.Column("amount_paid", sa.Numeric(10, 2), server_default=sa.text("0"), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.CheckConstraint(
            "status IN ('submitted', 'approved', 'denied', 'paid')", name="ck_claims_status"
        ),
    )
    op.create_index(
        "ix_claims_member_id_service_date", "claims", ["member_id", "service_date"]
    )


def downgrade():
    op.drop_index("ix_claims_member_id_service_date", table_name="claims")
    op.drop_table("claims")
