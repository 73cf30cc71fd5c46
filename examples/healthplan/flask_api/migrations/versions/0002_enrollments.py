"""enrollments: which member is on which plan, when

Revision ID: 0002_enrollments
Revises: 0001_plans_members
Create Date: 2023-02-20 16:40:00
"""

from alembic import op
import sqlalchemy as sa

revision = "0002_enrollments"
down_revision = "0001_plans_members"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "enrollments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "member_id",
            sa.Integer(),
            sa.ForeignKey("members.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("plan_id", sa.Integer(), sa.ForeignKey("plans.id"), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column(
            "status", sa.String(length=20), server_default=sa.text("'active'"), nullable=False
        ),
    )
    op.create_index("ix_enrollments_member_id", "enrollments", ["member_id"])


def downgrade():
    op.drop_index("ix_enrollments_member_id", table_name="enrollments")
    op.drop_table("enrollments")
