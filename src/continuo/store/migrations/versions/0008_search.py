"""the console's list and search: a model column, listing and children indexes, response texts

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

import orjson
import sqlalchemy as sa
from alembic import op

from continuo.store.ops.responses import column_text
from continuo.store.ops.texts import text_row

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# SQLite: an FTS5 index over response_texts.words (external content, so the words are
# stored once), kept in step by triggers; a deleted response takes its text along however
# it is deleted.
SQLITE_SEARCH = [
    "CREATE VIRTUAL TABLE response_fts USING fts5("
    "words, content='response_texts', content_rowid='id', tokenize='unicode61 remove_diacritics 0')",
    "CREATE TRIGGER response_texts_insert AFTER INSERT ON response_texts BEGIN "
    "INSERT INTO response_fts(rowid, words) VALUES (new.id, new.words); END",
    "CREATE TRIGGER response_texts_delete AFTER DELETE ON response_texts BEGIN "
    "INSERT INTO response_fts(response_fts, rowid, words) VALUES ('delete', old.id, old.words); END",
    "CREATE TRIGGER response_texts_update AFTER UPDATE ON response_texts BEGIN "
    "INSERT INTO response_fts(response_fts, rowid, words) VALUES ('delete', old.id, old.words); "
    "INSERT INTO response_fts(rowid, words) VALUES (new.id, new.words); END",
    "CREATE TRIGGER responses_delete_texts AFTER DELETE ON responses BEGIN "
    "DELETE FROM response_texts WHERE response_id = old.id; END",
]
SQLITE_SEARCH_DOWN = [
    "DROP TRIGGER IF EXISTS responses_delete_texts",
    "DROP TRIGGER IF EXISTS response_texts_update",
    "DROP TRIGGER IF EXISTS response_texts_delete",
    "DROP TRIGGER IF EXISTS response_texts_insert",
    "DROP TABLE IF EXISTS response_fts",
]
BATCH = 500
TEXTS = sa.table("response_texts", sa.column("response_id"), sa.column("words"), sa.column("preview"))


def _backfill_texts(bind: sa.Connection) -> None:
    """The texts of the responses stored before this revision, a batch at a time."""
    after = ""
    while True:
        ids = list(
            bind.execute(
                sa.text("SELECT id FROM responses WHERE id > :after ORDER BY id LIMIT :n"), {"after": after, "n": BATCH}
            ).scalars()
        )
        if not ids:
            return
        after = ids[-1]
        found: dict[str, tuple[list[object], list[object]]] = {i: ([], []) for i in ids}
        rows = bind.execute(
            sa.text("SELECT response_id, kind, body FROM items WHERE response_id IN :ids ORDER BY position").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": ids},
        )
        for response_id, kind, body in rows:
            found[response_id][kind].append(orjson.loads(body))
        values = [text_row(i, given, answered) for i, (given, answered) in found.items()]  # type: ignore[arg-type]
        texts = [row for row in values if row is not None]
        if texts:
            bind.execute(sa.insert(TEXTS), texts)


def _backfill_models(bind: sa.Connection, sqlite: bool) -> None:
    # JSON functions stop at (SQLite) or refuse (PostgreSQL) an escaped NUL: the few rows
    # that have one anywhere are done in Python, the way the write path does them.
    find = "instr" if sqlite else "strpos"
    extract = "json_extract(body, '$.model')" if sqlite else "body::json ->> 'model'"
    op.execute(f"UPDATE responses SET model = {extract} WHERE {find}(body, '\\u0000') = 0")
    rows = bind.execute(sa.text(f"SELECT id, body FROM responses WHERE {find}(body, '\\u0000') > 0")).all()
    for response_id, body in rows:
        model = orjson.loads(body).get("model")
        bind.execute(
            sa.text("UPDATE responses SET model = :model WHERE id = :id"),
            {"model": column_text(model), "id": response_id},
        )


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    op.add_column("responses", sa.Column("model", sa.Text, nullable=True))
    _backfill_models(bind, sqlite)
    op.create_index("ix_responses_project_created", "responses", ["project", "created_at_us", "id"])
    op.create_index(
        "ix_responses_previous_response_id",
        "responses",
        ["previous_response_id"],
        sqlite_where=sa.text("previous_response_id IS NOT NULL"),
        postgresql_where=sa.text("previous_response_id IS NOT NULL"),
    )
    op.create_table(
        "response_texts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column(
            "response_id",
            sa.String(64),
            sa.ForeignKey("responses.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("words", sa.Text, nullable=False),
        sa.Column("preview", sa.Text, nullable=False),
    )
    if sqlite:
        for statement in SQLITE_SEARCH:
            op.execute(statement)
    else:
        op.execute("CREATE INDEX ix_response_texts_words ON response_texts USING gin (to_tsvector('simple', words))")
    _backfill_texts(bind)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_SEARCH_DOWN:
            op.execute(statement)
    op.drop_table("response_texts")
    op.drop_index("ix_responses_previous_response_id", table_name="responses")
    op.drop_index("ix_responses_project_created", table_name="responses")
    with op.batch_alter_table("responses") as batch:
        batch.drop_column("model")
