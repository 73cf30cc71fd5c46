"""member_notes: free-text notes from support staff

Django maps this table too (shared.MemberNote, a managed model). Its CreateModel migration
finds the table already here, so environments built before Django existed need
`python manage.py migrate shared 0001 --fake`.

Revision ID: 0004_member_notes
Revises: 0003_claims
Create Date: 2023-09-28 14:25:00
"""

from alembic import op
import sqlalchemy as sa

revision = "0004_member_notes"
down_revision = "0003_claims"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "member_notes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "member_id",
            sa.Integer(),
            sa.ForeignKey("members.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("author", sa.String(length=150), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_member_notes_member_id", "member_notes", ["member_id"])


def downgrade():
    op.drop_index("ix_member_notes_member_id", table_name="member_notes")
    op.drop_table("member_notes")
