"""The SQL schema, one for SQLite and PostgreSQL.

A response row holds the Response object without its output; its own new input items and
its output items are rows of ``items``, stored once. A chain is never copied: it is rebuilt
by following ``previous_response_id`` in one recursive query.
"""

import time

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    false,
    text,
)

metadata = MetaData()


def now_us() -> int:
    """Every time in the schema is in microseconds since the epoch, in a column named ``*_us``."""
    return time.time_ns() // 1000


INPUT = 0
OUTPUT = 1

responses = Table(
    "responses",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("project", String(128), nullable=False, server_default=""),
    Column("previous_response_id", String(64), nullable=True),
    Column("status", String(16), nullable=False),
    Column("background", Boolean, nullable=False, server_default="0"),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    # The Response object as JSON, without "output" (that lives in items).
    Column("body", Text, nullable=False),
    # Background runs: the create request, queue order, the replica running it and
    # until when its lease holds, and whether someone asked to cancel it.
    Column("request", Text, nullable=True),
    Column("queued_at_us", BigInteger, nullable=True),
    Column("owner", String(64), nullable=True),
    Column("lease_until_us", BigInteger, nullable=True),
    Column("cancel_requested", Boolean, nullable=False, server_default=false()),
    # For the listing (all are in ``body`` too): the requested model; the metadata as JSON
    # (NULL when empty); the words of the response's own input and output text, for search,
    # and a preview of that text (store/ops/texts.py). On SQLite triggers keep an FTS5
    # index of ``search_words``; on PostgreSQL GIN indexes cover ``search_words`` and
    # ``metadata`` (migration 0008). None of this costs a statement of its own.
    Column("model", Text, nullable=True),
    Column("metadata", Text, nullable=True),
    Column("search_words", Text, nullable=True),
    Column("preview", Text, nullable=True),
    # The queue (core/background.py): background runs only, on the term its queries use,
    # so that foreground responses do not write it (migration 0011).
    Index(
        "ix_responses_queue",
        "status",
        "queued_at_us",
        sqlite_where=text("background IS 1"),
        postgresql_where=text("background IS true"),
    ),
    # The listing (GET /v1/responses): a keyset range on (created_at_us, id) in a project;
    # retention walks a project's responses oldest first on it too.
    Index("ix_responses_project_created", "project", "created_at_us", "id"),
    # Children of a response (the chain graph); only chained responses pay for it.
    Index(
        "ix_responses_previous_response_id",
        "previous_response_id",
        sqlite_where=text("previous_response_id IS NOT NULL"),
        postgresql_where=text("previous_response_id IS NOT NULL"),
    ),
)

items = Table(
    "items",
    metadata,
    Column(
        "response_id",
        String(64),
        ForeignKey("responses.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # INPUT (the response's own new input) or OUTPUT.
    Column("kind", SmallInteger, primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("item_id", String(128), nullable=False),
    Column("body", Text, nullable=False),
    Index("ix_items_item_id", "item_id"),
)

# The stream events of background responses, so any reader can replay them.
events = Table(
    "events",
    metadata,
    Column("response_id", String(64), ForeignKey("responses.id", ondelete="CASCADE"), primary_key=True),
    Column("sequence_number", Integer, primary_key=True),
    Column("type", String(64), nullable=False),
    Column("data", Text, nullable=False),
)

# API keys: only a hash of each key is kept.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("project", String(128), nullable=False),
    Column("hash", String(128), nullable=False, unique=True),
    Column("created_at_us", BigInteger, nullable=False),
    Column("revoked_at_us", BigInteger, nullable=True),
)

# Shared limits (counted by every worker and replica in one place): a token bucket per key
# and one row per open stream, under a hash of the key, never the key.
rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("key", String(80), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
)

stream_slots = Table(
    "stream_slots",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("key", String(80), nullable=False),
    Column("expires_at_us", BigInteger, nullable=False),
    Index("ix_stream_slots_key", "key"),
)

# Conversations: a list of item references. ``next_position`` hands out positions, so an
# append touches one row and what it adds; ``active_response_id`` is the in-progress lock
# (free when NULL, when ``active_until_us`` passed, or, with no time limit, when that
# response is no longer queued or in progress).
conversations = Table(
    "conversations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("project", String(128), nullable=False, server_default=""),
    Column("created_at_us", BigInteger, nullable=False),
    Column("metadata", Text, nullable=False),
    Column("next_position", BigInteger, nullable=False, server_default="0"),
    Column("active_response_id", String(64), nullable=True),
    Column("active_until_us", BigInteger, nullable=True),
    # The last time it was created, added to or changed: retention deletes a conversation
    # idle for its project's retain_days.
    Column("updated_at_us", BigInteger, nullable=False, server_default="0"),
    Index("ix_conversations_active_response_id", "active_response_id"),
    Index("ix_conversations_project_updated_at_us", "project", "updated_at_us"),
)

# One row per item of a conversation. It either points at an item of a stored response
# (``response_id``, ``kind``, ``item_position``: the ``items`` row, stored once) or holds
# the item itself (``body``: added to the conversation directly, or left by a deleted
# response).
conversation_items = Table(
    "conversation_items",
    metadata,
    Column(
        "conversation_id",
        String(64),
        ForeignKey("conversations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("position", BigInteger, primary_key=True),
    Column("item_id", String(128), nullable=False),
    Column("response_id", String(64), nullable=True),
    Column("kind", SmallInteger, nullable=True),
    Column("item_position", Integer, nullable=True),
    Column("body", Text, nullable=True),
    Index("ix_conversation_items_item_id", "conversation_id", "item_id", "position"),
    Index("ix_conversation_items_response_id", "response_id"),
)

# Secrets the server makes for itself (the key that seals compaction items when none is
# configured), by name. Written once; read at start.
server_secrets = Table(
    "server_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
)

# Named leases shared by every worker and replica: the one retention sweeper holds
# "retention" while it sweeps (and renews it in each batch's transaction).
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("until_us", BigInteger, nullable=False),
)
