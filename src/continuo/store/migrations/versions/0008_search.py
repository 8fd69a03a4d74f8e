"""the console's list and search: listing columns on responses, listing and children indexes, search indexes

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

import orjson
import sqlalchemy as sa
from alembic import op

from continuo.store.ops.responses import column_text
from continuo.store.ops.texts import metadata_column, search_columns

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

COLUMNS = ("model", "metadata", "search_words", "preview")

# SQLite: a contentless FTS5 index of responses.search_words. Its rowids come from
# response_search_keys (an INTEGER PRIMARY KEY, which VACUUM keeps, unlike the implicit
# rowid of responses), and triggers on responses keep it in step however a row is
# inserted, updated or deleted. Rebuilding the responses table (a batch migration) drops
# these triggers: such a migration must create them again.
SQLITE_SEARCH = [
    "CREATE TABLE response_search_keys (id INTEGER PRIMARY KEY, response_id VARCHAR(64) NOT NULL UNIQUE)",
    "CREATE VIRTUAL TABLE response_fts USING fts5("
    "words, content='', detail=none, columnsize=0, tokenize='unicode61 remove_diacritics 0')",
]
SQLITE_TRIGGERS = [
    "CREATE TRIGGER responses_search_insert AFTER INSERT ON responses WHEN new.search_words IS NOT NULL BEGIN "
    "INSERT INTO response_search_keys (response_id) VALUES (new.id); "
    "INSERT INTO response_fts (rowid, words) VALUES (last_insert_rowid(), new.search_words); END",
    "CREATE TRIGGER responses_search_delete AFTER DELETE ON responses WHEN old.search_words IS NOT NULL BEGIN "
    "INSERT INTO response_fts (response_fts, rowid, words) "
    "SELECT 'delete', id, old.search_words FROM response_search_keys WHERE response_id = old.id; "
    "DELETE FROM response_search_keys WHERE response_id = old.id; END",
    "CREATE TRIGGER responses_search_update AFTER UPDATE OF search_words ON responses BEGIN "
    "INSERT INTO response_fts (response_fts, rowid, words) "
    "SELECT 'delete', id, old.search_words FROM response_search_keys "
    "WHERE response_id = old.id AND old.search_words IS NOT NULL; "
    "DELETE FROM response_search_keys WHERE response_id = old.id; "
    "INSERT INTO response_search_keys (response_id) SELECT new.id WHERE new.search_words IS NOT NULL; "
    "INSERT INTO response_fts (rowid, words) SELECT last_insert_rowid(), new.search_words "
    "WHERE new.search_words IS NOT NULL; END",
]
SQLITE_INDEX_EXISTING = [
    "INSERT INTO response_search_keys (response_id) SELECT id FROM responses WHERE search_words IS NOT NULL",
    "INSERT INTO response_fts (rowid, words) SELECT k.id, r.search_words FROM response_search_keys AS k "
    "JOIN responses AS r ON r.id = k.response_id",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS responses_search_update",
    "DROP TRIGGER IF EXISTS responses_search_delete",
    "DROP TRIGGER IF EXISTS responses_search_insert",
    "DROP TABLE IF EXISTS response_fts",
    "DROP TABLE IF EXISTS response_search_keys",
]
# PostgreSQL: the tsvector is a generated column (computed by the server once per row, not
# sent by Continuo, not in schema.py), so a search never computes one per row it reads.
POSTGRES_SEARCH = [
    "ALTER TABLE responses ADD COLUMN search_tsv tsvector "
    "GENERATED ALWAYS AS (to_tsvector('simple', coalesce(search_words, ''))) STORED",
    "CREATE INDEX ix_responses_search ON responses USING gin (search_tsv) WHERE search_words IS NOT NULL",
    "CREATE INDEX ix_responses_metadata ON responses USING gin ((CAST(metadata AS jsonb)) jsonb_path_ops) "
    "WHERE metadata IS NOT NULL",
]
BATCH = 500


def _backfill(bind: sa.Connection) -> None:
    """The listing columns of the responses stored before this revision, a batch at a time,
    computed as the write path computes them."""
    after = ""
    while True:
        rows = bind.execute(
            sa.text("SELECT id, body FROM responses WHERE id > :after ORDER BY id LIMIT :n"),
            {"after": after, "n": BATCH},
        ).all()
        if not rows:
            return
        after = rows[-1][0]
        found: dict[str, tuple[list[object], list[object]]] = {row[0]: ([], []) for row in rows}
        stored = bind.execute(
            sa.text("SELECT response_id, kind, body FROM items WHERE response_id IN :ids ORDER BY position").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": list(found)},
        )
        for response_id, kind, body in stored:
            found[response_id][kind].append(orjson.loads(body))
        values = []
        for response_id, body in rows:
            response = orjson.loads(body)
            given, answered = found[response_id]
            values.append(
                {
                    "key": response_id,
                    "model": column_text(response.get("model")),
                    "metadata": metadata_column(response),
                    **search_columns(given, answered),  # type: ignore[arg-type]
                }
            )
        bind.execute(
            sa.text(
                "UPDATE responses SET model = :model, metadata = :metadata, search_words = :search_words, "
                "preview = :preview WHERE id = :key"
            ),
            values,
        )


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    for name in COLUMNS:
        op.add_column("responses", sa.Column(name, sa.Text, nullable=True))
    _backfill(bind)
    op.create_index("ix_responses_project_created", "responses", ["project", "created_at_us", "id"])
    op.create_index(
        "ix_responses_previous_response_id",
        "responses",
        ["previous_response_id"],
        sqlite_where=sa.text("previous_response_id IS NOT NULL"),
        postgresql_where=sa.text("previous_response_id IS NOT NULL"),
    )
    for statement in (SQLITE_SEARCH + SQLITE_TRIGGERS + SQLITE_INDEX_EXISTING) if sqlite else POSTGRES_SEARCH:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_DOWN:
            op.execute(statement)
    else:
        op.drop_index("ix_responses_metadata", table_name="responses")
        op.drop_index("ix_responses_search", table_name="responses")
        op.drop_column("responses", "search_tsv")
    op.drop_index("ix_responses_previous_response_id", table_name="responses")
    op.drop_index("ix_responses_project_created", table_name="responses")
    with op.batch_alter_table("responses") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
