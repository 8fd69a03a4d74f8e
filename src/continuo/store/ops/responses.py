"""Responses, their items and chains."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, delete, literal, select, tuple_
from sqlalchemy import insert as sql_insert

from continuo.store.base import ItemPage, StoredEvent
from continuo.store.engine import sqlite_form
from continuo.store.ops import conversations, texts
from continuo.store.schema import INPUT, OUTPUT, items, now_us, responses
from continuo.store.schema import events as events_table


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def body_json(response: dict[str, Any]) -> str:
    body = dict(response)  # a copy in C, less its output (a comprehension cost 400 Python steps)
    body.pop("output", None)
    return dumps(body)


def column_text(value: Any) -> str | None:
    """A string for a text column: PostgreSQL refuses NUL (in ``body`` it is JSON-escaped)."""
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "")
    return value if isinstance(value, str) else None


def response_row(
    project: str,
    response: dict[str, Any],
    input_items: list[dict[str, Any]],
    output: list[dict[str, Any]],
    **extra: Any,
) -> dict[str, Any]:
    """The ``responses`` row of a Response object (its output lives in ``items``), searchable
    by the text of ``input_items`` and ``output``."""
    return {
        "id": response["id"],
        "project": project,
        "previous_response_id": response.get("previous_response_id"),
        "status": response["status"],
        "background": bool(response.get("background")),
        "created_at_us": response["created_at"] * 1_000_000,
        "model": column_text(response.get("model")),
        "metadata": texts.metadata_column(response),
        **texts.search_columns(input_items, output),
        "updated_at_us": now_us(),
        "body": body_json(response),
        **extra,
    }


def item_rows(response_id: str, kind: int, values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"response_id": response_id, "kind": kind, "position": i, "item_id": item.get("id", ""), "body": dumps(item)}
        for i, item in enumerate(values)
    ]


def event_rows(response_id: str, stored: list[StoredEvent]) -> list[dict[str, Any]]:
    return [
        {"response_id": response_id, "sequence_number": e.sequence_number, "type": e.type, "data": e.data.decode()}
        for e in stored
    ]


# Statements are built once; running one only binds parameters (building the recursive
# CTE on every call cost more than running it).
GET_RESPONSE = (
    select(responses.c.body, items.c.body)
    .select_from(responses.outerjoin(items, (items.c.response_id == responses.c.id) & (items.c.kind == OUTPUT)))
    .where(responses.c.id == bindparam("response_id"), responses.c.project == bindparam("project"))
    .order_by(items.c.position)
)


def chain_cte() -> Any:
    """The response and its ancestors, with their depth (0: the response itself)."""
    chain = (
        select(responses.c.id, responses.c.previous_response_id, literal(0).label("depth"))
        .where(responses.c.id == bindparam("response_id"), responses.c.project == bindparam("project"))
        .cte("chain", recursive=True)
    )
    parent = responses.alias("parent")
    return chain.union_all(
        select(parent.c.id, parent.c.previous_response_id, chain.c.depth + 1).where(
            parent.c.id == chain.c.previous_response_id, parent.c.project == bindparam("project")
        )
    )


def chain_statement() -> Any:
    chain = chain_cte()
    return (
        select(chain.c.depth, items.c.kind, items.c.body)
        .select_from(chain.outerjoin(items, items.c.response_id == chain.c.id))
        .order_by(chain.c.depth.desc(), items.c.kind, items.c.position)
    )


CHAIN = chain_statement()
FIND_ITEMS = (
    select(items.c.item_id, items.c.body)
    .select_from(items.join(responses, responses.c.id == items.c.response_id))
    .where(items.c.item_id.in_(bindparam("item_ids", expanding=True)), responses.c.project == bindparam("project"))
    .order_by(responses.c.created_at_us, items.c.kind, items.c.position)
)
INSERT_RESPONSE = sql_insert(responses)
INSERT_ITEMS = sql_insert(items)


def save(conn: Connection, project: str, response: dict[str, Any], input_items: list[dict[str, Any]]) -> None:
    rows = item_rows(response["id"], INPUT, input_items) + item_rows(response["id"], OUTPUT, response["output"])
    conn.execute(INSERT_RESPONSE, response_row(project, response, input_items, response["output"]))
    if rows:
        conn.execute(INSERT_ITEMS, rows)
    input_refs = [(i, item.get("id", "")) for i, item in enumerate(input_items)]
    conversations.append_response(conn, project, response, input_refs, response["output"])


_SQLITE_INSERT_RESPONSE = (
    "INSERT INTO responses (id, project, previous_response_id, status, background, created_at_us,"
    " model, metadata, search_words, preview, updated_at_us, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQLITE_INSERT_ITEMS = "INSERT INTO items (response_id, kind, position, item_id, body) VALUES (?, ?, ?, ?, ?)"


def _outside_conversations(_project: str, response: dict[str, Any], _input_items: list[dict[str, Any]]) -> bool:
    return conversations.conversation_of(response) is None


@sqlite_form(save, applies=_outside_conversations)
def save_sqlite(
    raw: sqlite3.Connection, project: str, response: dict[str, Any], input_items: list[dict[str, Any]]
) -> None:
    """``save`` of a response outside any conversation (the common case) on SQLite's own
    driver: the same rows as ``response_row`` and ``item_rows`` give (a test compares)."""
    rid = response["id"]
    output = response["output"]
    search = texts.search_columns(input_items, output)
    raw.execute(
        _SQLITE_INSERT_RESPONSE,
        (
            rid,
            project,
            response.get("previous_response_id"),
            response["status"],
            # 1 or 0, as SQLite stores a bool: the driver binds an int at once, where a bool
            # goes through its adapter lookup (two failed attribute lookups a value).
            1 if response.get("background") else 0,
            response["created_at"] * 1_000_000,
            column_text(response.get("model")),
            texts.metadata_column(response),
            search["search_words"],
            search["preview"],
            now_us(),
            body_json(response),
        ),
    )
    rows = [(rid, INPUT, i, item.get("id", ""), dumps(item)) for i, item in enumerate(input_items)]
    rows += [(rid, OUTPUT, i, item.get("id", ""), dumps(item)) for i, item in enumerate(output)]
    if rows:
        raw.executemany(_SQLITE_INSERT_ITEMS, rows)


def get(conn: Connection, project: str, response_id: str) -> dict[str, Any] | None:
    rows = conn.execute(GET_RESPONSE, {"response_id": response_id, "project": project}).all()
    if not rows:
        return None
    response: dict[str, Any] = orjson.loads(rows[0][0])
    response["output"] = [orjson.loads(row[1]) for row in rows if row[1] is not None]
    return response


def delete_response(conn: Connection, project: str, response_id: str) -> bool:
    owned = select(responses.c.id).where(responses.c.id == response_id, responses.c.project == project)
    if conn.execute(owned).first() is None:
        return False
    delete_responses(conn, [response_id])
    return True


DELETES = [
    delete(table).where(column.in_(bindparam("ids", expanding=True)))
    for table, column in (
        (items, items.c.response_id),
        (events_table, events_table.c.response_id),
        (responses, responses.c.id),
    )
]


def delete_responses(conn: Connection, response_ids: list[str]) -> None:
    """Delete responses and everything that is theirs alone: items and stream events
    (ON DELETE CASCADE where the database honours it; explicitly as well, so the outcome
    never depends on a pragma). Items a conversation holds become its own copies. Used by
    ``DELETE`` and by retention alike."""
    conversations.detach_responses(conn, response_ids)
    for statement in DELETES:
        conn.execute(statement, {"ids": response_ids})


def chain(conn: Connection, project: str, response_id: str, own_output: bool) -> list[dict[str, Any]] | None:
    rows = conn.execute(CHAIN, {"response_id": response_id, "project": project}).all()
    if not rows:
        return None
    return [
        orjson.loads(body)
        for depth, kind, body in rows
        if body is not None and (own_output or depth > 0 or kind == INPUT)
    ]


def find(conn: Connection, project: str, item_ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = conn.execute(FIND_ITEMS, {"item_ids": item_ids, "project": project}).all()
    return {item_id: orjson.loads(body) for item_id, body in rows}


# -- input_items, paged in SQL: keyset on (-depth, kind, position), the listing order ------


def _order(chain: Any, ascending: bool) -> tuple[Any, ...]:
    if ascending:
        return (chain.c.depth.desc(), items.c.kind.asc(), items.c.position.asc())
    return (chain.c.depth.asc(), items.c.kind.desc(), items.c.position.desc())


def _key(chain: Any) -> Any:
    return tuple_(-chain.c.depth, items.c.kind, items.c.position)


def _page_statement(ascending: bool, after: bool) -> Any:
    chain = chain_cte()
    key = _key(chain)
    query = (
        select(-chain.c.depth, items.c.kind, items.c.position, items.c.body)
        .select_from(chain.join(items, items.c.response_id == chain.c.id))
        .where((chain.c.depth > 0) | (items.c.kind == INPUT))
    )
    if after:
        anchor = tuple_(bindparam("k0"), bindparam("k1"), bindparam("k2"))
        query = query.where(key > anchor if ascending else key < anchor)
    order = _order(chain, ascending)
    return query.order_by(*order).limit(bindparam("limit"))


def _anchor_statement(ascending: bool) -> Any:
    chain = chain_cte()
    query = (
        select(-chain.c.depth, items.c.kind, items.c.position)
        .select_from(chain.join(items, items.c.response_id == chain.c.id))
        .where((chain.c.depth > 0) | (items.c.kind == INPUT), items.c.item_id == bindparam("after"))
    )
    order = _order(chain, ascending)
    return query.order_by(*order).limit(1)


PAGES = {
    (ascending, after): _page_statement(ascending, after) for ascending in (True, False) for after in (True, False)
}
ANCHORS = {ascending: _anchor_statement(ascending) for ascending in (True, False)}
EXISTS = select(responses.c.id).where(
    responses.c.id == bindparam("response_id"), responses.c.project == bindparam("project")
)


def input_items_page(
    conn: Connection, project: str, response_id: str, limit: int, ascending: bool, after: str | None
) -> ItemPage | None:
    """One page of the context a response was made from; ``None`` when it is not stored.
    Only the page's rows (and one more, to tell whether more follow) are read and parsed."""
    params: dict[str, Any] = {"response_id": response_id, "project": project, "limit": limit + 1}
    if conn.execute(EXISTS, params).first() is None:
        return None
    if after is not None:
        anchor = conn.execute(ANCHORS[ascending], params | {"after": after}).first()
        if anchor is None:
            return ItemPage([], False, anchor_found=False)
        params |= {"k0": anchor[0], "k1": anchor[1], "k2": anchor[2]}
    rows = conn.execute(PAGES[(ascending, after is not None)], params).all()
    return ItemPage([orjson.loads(row[3]) for row in rows[:limit]], len(rows) > limit)
