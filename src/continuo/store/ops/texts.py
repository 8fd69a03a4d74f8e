"""The searchable text of a stored response, kept in ``response_texts``.

A response's text is the text of the messages among its own new input items and among its
output items (not its ancestors': each turn is found by what it added). It is kept as
*words*: runs of letters and digits, lower-cased, one space apart, so that SQLite's FTS5
tokenizer and PostgreSQL's ``simple`` configuration split it the same way and a search
means the same on both. Stored once per response, in the transaction that stores it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, delete, select
from sqlalchemy import insert as sql_insert

from continuo.store.schema import INPUT, items, response_texts

# Each side's text is indexed up to this many characters: PostgreSQL refuses a tsvector
# over 1 MB, and a search is for finding a response, not for reading a book.
SIDE_MAX_CHARS = 50_000
PREVIEW_CHARS = 120
# A query's words: at most this many are used.
QUERY_MAX_WORDS = 32

_WORD = re.compile(r"[^\W_]+")
_SPACE = re.compile(r"\s+")

INSERT_TEXT = sql_insert(response_texts)
INPUT_BODIES = (
    select(items.c.body)
    .where(items.c.response_id == bindparam("response_id"), items.c.kind == INPUT)
    .order_by(items.c.position)
)


def _parts(item: dict[str, Any]) -> Iterable[str]:
    if item.get("type", "message") != "message":
        return
    content = item.get("content")
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict):
                value = part.get("text", part.get("refusal"))
                if isinstance(value, str):
                    yield value


def message_text(values: Iterable[dict[str, Any]]) -> str:
    """The text of the messages among ``values``, parts joined by a space."""
    return " ".join(text for item in values if isinstance(item, dict) for text in _parts(item))


def words(text: str) -> str:
    return " ".join(_WORD.findall(text[:SIDE_MAX_CHARS].lower()))


def query_words(q: str) -> list[str]:
    """The words of a search query, as ``words`` splits a text."""
    return _WORD.findall(q.lower())[:QUERY_MAX_WORDS]


def preview(text: str) -> str:
    # Without NUL, which PostgreSQL refuses in text.
    return _SPACE.sub(" ", text[: PREVIEW_CHARS * 4].replace("\x00", "")).strip()[:PREVIEW_CHARS]


def text_row(
    response_id: str, input_items: list[dict[str, Any]], output: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """The ``response_texts`` row of a response; None when it has no text at all."""
    given, answered = message_text(input_items), message_text(output)
    if not given and not answered:
        return None
    indexed = " ".join(w for w in (words(given), words(answered)) if w)
    return {"response_id": response_id, "words": indexed, "preview": preview(answered or given)}


def write(conn: Connection, response_id: str, input_items: list[dict[str, Any]], output: list[dict[str, Any]]) -> None:
    row = text_row(response_id, input_items, output)
    if row is not None:
        conn.execute(INSERT_TEXT, row)


def rewrite(conn: Connection, response_id: str, output: list[dict[str, Any]]) -> None:
    """Replace a response's text once its output is final (a background run that ended)."""
    given = [orjson.loads(body) for body in conn.execute(INPUT_BODIES, {"response_id": response_id}).scalars()]
    conn.execute(delete(response_texts).where(response_texts.c.response_id == response_id))
    write(conn, response_id, given, output)


def delete_for(conn: Connection, response_ids: Any) -> None:
    """Remove the texts of responses about to be deleted (``response_ids``: ids or a subquery)."""
    conn.execute(delete(response_texts).where(response_texts.c.response_id.in_(response_ids)))
