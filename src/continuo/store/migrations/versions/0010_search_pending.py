"""search on SQLite indexed in batches: a stored response waits in response_search_pending
until the next batch (or the next search) puts it into the FTS5 index

Adding one row to FTS5 in the transaction that stores a response cost that transaction
about 80 µs (FTS5 writes a segment of its own at every commit); a batch of a few hundred
costs a few µs a row (docs/performance.md).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Rebuilding the responses table (a batch migration) drops these triggers: such a migration
# must create them again (as 0008 says of its own).
UP = [
    "CREATE TABLE response_search_pending (response_id VARCHAR(64) NOT NULL PRIMARY KEY) WITHOUT ROWID",
    "DROP TRIGGER responses_search_insert",
    "DROP TRIGGER responses_search_delete",
    "DROP TRIGGER responses_search_update",
    "CREATE TRIGGER responses_search_insert AFTER INSERT ON responses WHEN new.search_words IS NOT NULL BEGIN "
    "INSERT INTO response_search_pending (response_id) VALUES (new.id); END",
    "CREATE TRIGGER responses_search_delete AFTER DELETE ON responses WHEN old.search_words IS NOT NULL BEGIN "
    "DELETE FROM response_search_pending WHERE response_id = old.id; "
    "INSERT INTO response_fts (response_fts, rowid, words) "
    "SELECT 'delete', id, old.search_words FROM response_search_keys WHERE response_id = old.id; "
    "DELETE FROM response_search_keys WHERE response_id = old.id; END",
    "CREATE TRIGGER responses_search_update AFTER UPDATE OF search_words ON responses BEGIN "
    "INSERT INTO response_fts (response_fts, rowid, words) "
    "SELECT 'delete', id, old.search_words FROM response_search_keys "
    "WHERE response_id = old.id AND old.search_words IS NOT NULL; "
    "DELETE FROM response_search_keys WHERE response_id = old.id; "
    "DELETE FROM response_search_pending WHERE response_id = old.id; "
    "INSERT INTO response_search_pending (response_id) SELECT new.id WHERE new.search_words IS NOT NULL; END",
]
DOWN = [
    # Whatever still waits goes into the index first: 0008's triggers index every row at once.
    "INSERT INTO response_search_keys (response_id) SELECT response_id FROM response_search_pending",
    "INSERT INTO response_fts (rowid, words) SELECT k.id, r.search_words FROM response_search_pending AS p "
    "JOIN response_search_keys AS k ON k.response_id = p.response_id JOIN responses AS r ON r.id = p.response_id",
    "DROP TRIGGER responses_search_insert",
    "DROP TRIGGER responses_search_delete",
    "DROP TRIGGER responses_search_update",
    "DROP TABLE response_search_pending",
]


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return  # PostgreSQL's GIN index gathers its own pending entries
    for statement in UP:
        op.execute(statement)


def _revision_0008() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_continuo_0008", Path(__file__).with_name("0008_search.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for statement in DOWN + _revision_0008().SQLITE_TRIGGERS:
        op.execute(statement)
