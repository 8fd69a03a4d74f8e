"""the queue's index covers background runs only

``(status, queued_at_us)`` serves the queue (the oldest queued run, runs whose lease ran
out), and those queries ask for background runs only. Every foreground response paid for
an entry in it all the same: one more B-tree written in each stored response's
transaction. The index is now partial, on the same term the queries use, so the planners
still pick it (a test checks SQLite's plan).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _where() -> str:
    return "background IS 1" if op.get_bind().dialect.name == "sqlite" else "background IS true"


def upgrade() -> None:
    op.drop_index("ix_responses_status_queued_at_us", table_name="responses")
    op.execute(f"CREATE INDEX ix_responses_queue ON responses (status, queued_at_us) WHERE {_where()}")


def downgrade() -> None:
    op.drop_index("ix_responses_queue", table_name="responses")
    op.create_index("ix_responses_status_queued_at_us", "responses", ["status", "queued_at_us"])
