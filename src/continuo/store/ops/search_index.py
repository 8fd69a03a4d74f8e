"""SQLite's full-text index, filled in batches.

A stored response with text waits in ``response_search_pending`` (a trigger puts it there,
migration 0010) until a batch moves it into ``response_fts``: FTS5 writes a segment at
every commit, which cost each stored response about 80 µs when every response was its own
commit, and a few µs a response in batches of hundreds (docs/performance.md). A search
first indexes whatever waits, so it always finds every stored response.
"""

from __future__ import annotations

from sqlalchemy import Connection

BATCH = 500

# One batch: the oldest waiting responses, moved by three set-wise statements over a
# temporary list of their ids (a statement per response cost three times as much).
_TAKE = (
    "INSERT INTO temp.search_batch (response_id) SELECT response_id FROM response_search_pending "
    "ORDER BY response_id LIMIT ?"
)
_KEYS = (
    "INSERT INTO response_search_keys (response_id) SELECT r.id FROM temp.search_batch AS b "
    "JOIN responses AS r ON r.id = b.response_id WHERE r.search_words IS NOT NULL"
)
_INDEX = (
    "INSERT INTO response_fts (rowid, words) SELECT k.id, r.search_words FROM temp.search_batch AS b "
    "JOIN response_search_keys AS k ON k.response_id = b.response_id JOIN responses AS r ON r.id = b.response_id"
)
_DONE = "DELETE FROM response_search_pending WHERE response_id IN (SELECT response_id FROM temp.search_batch)"


def index_waiting(conn: Connection, limit: int = BATCH) -> int:
    """Move up to ``limit`` waiting responses into the index; how many were waiting. Only
    on SQLite (PostgreSQL's GIN index gathers its own pending entries)."""
    conn.exec_driver_sql("CREATE TEMP TABLE IF NOT EXISTS search_batch (response_id TEXT PRIMARY KEY) WITHOUT ROWID")
    conn.exec_driver_sql("DELETE FROM temp.search_batch")
    taken = int(conn.exec_driver_sql(_TAKE, (limit,)).rowcount)
    if taken:
        for statement in (_KEYS, _INDEX, _DONE):
            conn.exec_driver_sql(statement)
    return taken
