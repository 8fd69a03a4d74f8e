"""retention: a lease row for the one sweeper, conversations' last activity, and the
the index a sweep walks for conversations (by project and idleness; responses are walked
on the listing index of 0008)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("until_us", sa.BigInteger, nullable=False),
    )
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("updated_at_us", sa.BigInteger, nullable=False, server_default="0"))
    op.execute("UPDATE conversations SET updated_at_us = created_at_us")
    op.create_index("ix_conversations_project_updated_at_us", "conversations", ["project", "updated_at_us"])


def downgrade() -> None:
    op.drop_index("ix_conversations_project_updated_at_us", table_name="conversations")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("updated_at_us")
    op.drop_table("leases")
