"""one time unit across the schema: microseconds, with the unit in the column name

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# (table, old name, new name, factor from the old unit to microseconds; negative divides)
RENAMES = [
    ("responses", "created_at", "created_at_us", 1_000_000),  # seconds
    ("responses", "updated_at", "updated_at_us", 1_000_000),  # seconds
    ("responses", "queued_at", "queued_at_us", -1_000),  # nanoseconds
    ("responses", "lease_until", "lease_until_us", 1_000),  # milliseconds
    ("api_keys", "created_at", "created_at_us", 1_000_000),
    ("api_keys", "revoked_at", "revoked_at_us", 1_000_000),
]


def _convert(forward: bool) -> None:
    # Runs while the columns carry their new names (after the rename up, before the rename down).
    for table, _old, column, factor in RENAMES:
        multiply = (factor > 0) == forward
        operator = "*" if multiply else "/"
        op.execute(sa.text(f"UPDATE {table} SET {column} = {column} {operator} {abs(factor)}"))


def upgrade() -> None:
    op.drop_index("ix_responses_status_queued_at", table_name="responses")
    for table in ("responses", "api_keys"):
        with op.batch_alter_table(table) as batch:
            for name, old, new, _ in RENAMES:
                if name == table:
                    batch.alter_column(old, new_column_name=new, existing_type=sa.BigInteger)
    _convert(forward=True)
    op.create_index("ix_responses_status_queued_at_us", "responses", ["status", "queued_at_us"])


def downgrade() -> None:
    op.drop_index("ix_responses_status_queued_at_us", table_name="responses")
    _convert(forward=False)
    for table in ("responses", "api_keys"):
        with op.batch_alter_table(table) as batch:
            for name, old, new, _ in RENAMES:
                if name == table:
                    batch.alter_column(new, new_column_name=old, existing_type=sa.BigInteger)
    op.create_index("ix_responses_status_queued_at", "responses", ["status", "queued_at"])
