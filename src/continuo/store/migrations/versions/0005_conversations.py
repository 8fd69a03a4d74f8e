"""conversations: item references, positions handed out by the conversation row, a lock

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project", sa.String(128), nullable=False, server_default=""),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("next_position", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("active_response_id", sa.String(64), nullable=True),
        sa.Column("active_until_us", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_conversations_active_response_id", "conversations", ["active_response_id"])
    op.create_table(
        "conversation_items",
        sa.Column(
            "conversation_id",
            sa.String(64),
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.BigInteger, primary_key=True),
        sa.Column("item_id", sa.String(128), nullable=False),
        sa.Column("response_id", sa.String(64), nullable=True),
        sa.Column("kind", sa.SmallInteger, nullable=True),
        sa.Column("item_position", sa.Integer, nullable=True),
        sa.Column("body", sa.Text, nullable=True),
    )
    op.create_index("ix_conversation_items_item_id", "conversation_items", ["conversation_id", "item_id", "position"])
    op.create_index("ix_conversation_items_response_id", "conversation_items", ["response_id"])


def downgrade() -> None:
    op.drop_table("conversation_items")
    op.drop_table("conversations")
