"""SQLite's full-text index, filled in batches.

A stored response with text waits in ``response_search_pending`` (a trigger puts it there,
migration 0010) until a batch moves it into ``response_fts``: FTS5 writes a segment at
every commit, which cost each stored response about 80 µs when every response was its own
commit, and a few µs a response in batches of hundreds (docs/performance.md). A search
first indexes whatever waits, so it always finds every stored response.
"""

from __future__ import annotations

import sqlite3

from continuo.store.engine import sqlite_form

BATCH = 500

_WAITING = "SELECT response_id FROM response_search_pending LIMIT ?"
_KEYS = (
    "INSERT INTO response_search_keys (response_id) "
    "SELECT id FROM responses WHERE id = ? AND search_words IS NOT NULL"
)
_INDEX = (
    "INSERT INTO response_fts (rowid, words) SELECT k.id, r.search_words FROM response_search_keys AS k "
    "JOIN responses AS r ON r.id = k.response_id WHERE k.response_id = ?"
)
_DONE = "DELETE FROM response_search_pending WHERE response_id = ?"


def index_waiting(conn: object, limit: int = BATCH) -> int:
    """Move up to ``limit`` waiting responses into the index; how many were waiting. Only
    SQLite has anything waiting (PostgreSQL's GIN index gathers its own)."""
    return 0


@sqlite_form(index_waiting, applies=lambda limit=BATCH: True)
def index_waiting_sqlite(raw: sqlite3.Connection, limit: int = BATCH) -> int:
    waiting = raw.execute(_WAITING, (limit,)).fetchall()
    if waiting:
        raw.executemany(_KEYS, waiting)
        raw.executemany(_INDEX, waiting)
        raw.executemany(_DONE, waiting)
    return len(waiting)
