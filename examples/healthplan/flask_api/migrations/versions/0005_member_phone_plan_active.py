"""members.phone; plans.active (retired plans stay for old enrollments)

Revision ID: 0005_member_phone_plan_active
Revises: 0004_member_notes
Create Date: 2024-01-15 10:05:00
"""

from alembic import op
import sqlalchemy as sa

revision = "0005_member_phone_plan_active"
down_revision = "0004_member_notes"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("members", sa.Column("phone", sa.String(length=32), nullable=True))
    op.add_column(
        "plans",
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
    )


def downgrade():
    op.drop_column("plans", "active")
    op.drop_column("members", "phone")
