"""The listing columns of a stored response: its searchable words, a preview, its metadata.

A response's text is the text of the messages among its own new input items and among its
output items (not its ancestors': each turn is found by what it added). It is kept as
*words*: runs of letters and digits, lower-cased, one space apart, so that SQLite's FTS5
tokenizer and PostgreSQL's ``simple`` configuration split it the same way and a search
means the same on both. They are columns of the response's own row, written by the
INSERT that stores it, so search costs a stored create no statement of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, select, update

from continuo.store.schema import INPUT, items, responses

# Each side's text is indexed up to this many characters: PostgreSQL refuses a tsvector
# over 1 MB, and a search is for finding a response, not for reading a book.
SIDE_MAX_CHARS = 50_000
PREVIEW_CHARS = 120
# A query's words: at most this many are used.
QUERY_MAX_WORDS = 32

_WORD = re.compile(r"[^\W_]+")
# ASCII text (most of it) is split without the regex: every byte but a letter or a digit
# becomes a space, which ``split`` then drops (the same words: for ASCII, ``[^\W_]`` is
# ``[A-Za-z0-9]``). The regex took a tenth of a stored create's instructions.
_ASCII_GAPS = bytes(c if chr(c).isalnum() and c < 128 else 32 for c in range(256))

INPUT_BODIES = (
    select(items.c.body)
    .where(items.c.response_id == bindparam("response_id"), items.c.kind == INPUT)
    .order_by(items.c.position)
)


def message_text(values: Iterable[dict[str, Any]]) -> str:
    """The text of the messages among ``values``, parts joined by a space."""
    texts: list[str] = []
    for item in values:
        if not isinstance(item, dict) or item.get("type", "message") != "message":
            continue
        content = item.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict):
                    value = part.get("text", part.get("refusal"))
                    if isinstance(value, str):
                        texts.append(value)
    return " ".join(texts)


def words(text: str) -> str:
    text = text[:SIDE_MAX_CHARS].lower()
    if text.isascii():
        return " ".join(text.encode().translate(_ASCII_GAPS).decode().split())
    return " ".join(_WORD.findall(text))


def query_words(q: str) -> list[str]:
    """The words of a search query, as ``words`` splits a text."""
    return _WORD.findall(q.lower())[:QUERY_MAX_WORDS]


def preview(text: str) -> str:
    # Without NUL, which PostgreSQL refuses in text; each run of white space one space
    # (``split`` and the regex ``\s`` know the same white space).
    return " ".join(text[: PREVIEW_CHARS * 4].replace("\x00", "").split())[:PREVIEW_CHARS]


def search_columns(input_items: list[dict[str, Any]], output: list[dict[str, Any]]) -> dict[str, str | None]:
    """``search_words`` and ``preview`` of a response (None where it has no text)."""
    given, answered = message_text(input_items), message_text(output)
    if not given and not answered:
        return {"search_words": None, "preview": None}
    indexed = " ".join(w for w in (words(given), words(answered)) if w)
    return {"search_words": indexed or None, "preview": preview(answered or given)}


def metadata_column(response: dict[str, Any]) -> str | None:
    metadata = response.get("metadata")
    return orjson.dumps(metadata).decode() if metadata else None


def rewrite(conn: Connection, response_id: str, output: list[dict[str, Any]]) -> None:
    """Set a response's search columns once its output is final (a background run that ended)."""
    given = [orjson.loads(body) for body in conn.execute(INPUT_BODIES, {"response_id": response_id}).scalars()]
    conn.execute(update(responses).where(responses.c.id == response_id).values(**search_columns(given, output)))
