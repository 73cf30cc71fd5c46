"""index claims.enrollment_id

Deleting enrollments has to find their claims (ON DELETE SET NULL); without this index
every deleted enrollment scanned the whole claims table.

Revision ID: 0006_claims_enrollment_index
Revises: 0005_member_phone_plan_active
Create Date: 2024-05-02 17:48:00
"""

from alembic import op

revision = "0006_claims_enrollment_index"
down_revision = "0005_member_phone_plan_active"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_claims_enrollment_id", "claims", ["enrollment_id"])


def downgrade():
    op.drop_index("ix_claims_enrollment_id", table_name="claims")
