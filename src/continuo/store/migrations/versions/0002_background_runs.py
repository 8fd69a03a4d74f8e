"""background runs: the queue, leases, cancel requests and persisted stream events

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("responses") as batch:
        batch.add_column(sa.Column("request", sa.Text, nullable=True))
        batch.add_column(sa.Column("queued_at", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("owner", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_index("ix_responses_status_queued_at", "responses", ["status", "queued_at"])
    op.create_table(
        "events",
        sa.Column(
            "response_id",
            sa.String(64),
            sa.ForeignKey("responses.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("sequence_number", sa.Integer, primary_key=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("events")
    op.drop_index("ix_responses_status_queued_at", table_name="responses")
    with op.batch_alter_table("responses") as batch:
        for column in ("cancel_requested", "lease_until", "owner", "queued_at", "request"):
            batch.drop_column(column)
