"""plans and members

Revision ID: 0001_plans_members
Revises:
Create Date: 2023-02-06 09:14:00
"""

from alembic import op
import sqlalchemy as sa

revision = "0001_plans_members"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "plans",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("code", sa.String(length=20), nullable=False, unique=True),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("tier", sa.String(length=20), nullable=False),
        sa.Column("monthly_premium", sa.Numeric(10, 2), nullable=False),
        sa.Column("deductible", sa.Numeric(10, 2), nullable=False),
    )
    op.create_table(
        "members",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("member_number", sa.String(length=20), nullable=False, unique=True),
        sa.Column("first_name", sa.String(length=80), nullable=False),
        sa.Column("last_name", sa.String(length=80), nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.create_index("ix_members_last_name_first_name", "members", ["last_name", "first_name"])


def downgrade():
    op.drop_index("ix_members_last_name_first_name", table_name="members")
    op.drop_table("members")
    op.drop_table("plans")
