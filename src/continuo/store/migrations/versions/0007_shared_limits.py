"""shared limits: token buckets and stream slots, counted by every worker and replica

Revision ID: 0007
Revises: 0004
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.String(80), primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "stream_slots",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(80), nullable=False),
        sa.Column("expires_at_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_stream_slots_key", "stream_slots", ["key"])


def downgrade() -> None:
    op.drop_index("ix_stream_slots_key", table_name="stream_slots")
    op.drop_table("stream_slots")
    op.drop_table("rate_buckets")
