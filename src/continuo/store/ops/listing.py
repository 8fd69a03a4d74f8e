"""The listing of stored responses (filters, search, keyset pages) and the chain graph.

A page is a keyset range on ``(created_at_us, id)`` in the project, read in that order
from ``ix_responses_project_created`` and cut at the page size; filters narrow the range
as it is read. Search matches ``responses.search_words`` (texts.py) through an FTS5 index
on SQLite and a GIN index on its tsvector on PostgreSQL; metadata is matched on
``responses.metadata`` (GIN-indexed as jsonb on PostgreSQL).
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, and_, bindparam, select, text, tuple_
from sqlalchemy.sql.elements import ColumnElement

from continuo.store.base import GraphNode, ResponseGraph, ResponsePage, ResponseQuery
from continuo.store.ops.texts import query_words
from continuo.store.schema import OUTPUT, items, responses

ANCHOR = select(responses.c.created_at_us, responses.c.id).where(
    responses.c.id == bindparam("anchor"), responses.c.project == bindparam("project")
)
OUTPUTS = (
    select(items.c.response_id, items.c.body)
    .where(items.c.response_id.in_(bindparam("ids", expanding=True)), items.c.kind == OUTPUT)
    .order_by(items.c.response_id, items.c.position)
)
_KEY = tuple_(responses.c.created_at_us, responses.c.id)


def _metadata_match(dialect: str, n: int, key: str, value: str) -> ColumnElement[bool]:
    if dialect == "sqlite":
        clause = (
            f"EXISTS (SELECT 1 FROM json_each(responses.metadata) AS m{n} "
            f"WHERE m{n}.key = :mk{n} AND m{n}.type = 'text' AND m{n}.value = :mv{n})"
        )
        return text(clause).bindparams(**{f"mk{n}": key, f"mv{n}": value})  # type: ignore[return-value]
    clause = f"CAST(responses.metadata AS jsonb) @> CAST(:m{n} AS jsonb)"
    return text(clause).bindparams(**{f"m{n}": orjson.dumps({key: value}).decode()})  # type: ignore[return-value]


def _search(dialect: str, words: list[str]) -> ColumnElement[bool]:
    # Every word of the query must begin a word of the response's text.
    if dialect == "sqlite":
        match = " ".join(f'"{word}"*' for word in words)
        clause = (
            "responses.id IN (SELECT k.response_id FROM response_search_keys AS k "
            "WHERE k.id IN (SELECT rowid FROM response_fts WHERE response_fts MATCH :search))"
        )
    else:
        match = " & ".join(f"{word}:*" for word in words)
        clause = "responses.search_words IS NOT NULL AND responses.search_tsv @@ to_tsquery('simple', :search)"
    return text(clause).bindparams(search=match)  # type: ignore[return-value]


def _filters(dialect: str, project: str, query: ResponseQuery) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = [responses.c.project == project]
    if query.model is not None:
        found.append(responses.c.model == query.model)
    if query.status is not None:
        found.append(responses.c.status == query.status)
    if query.background is not None:
        found.append(responses.c.background.is_(query.background))
    if query.created_after is not None:
        found.append(responses.c.created_at_us >= query.created_after * 1_000_000)
    if query.created_before is not None:
        found.append(responses.c.created_at_us < query.created_before * 1_000_000)
    for n, (key, value) in enumerate(query.metadata):
        found.append(_metadata_match(dialect, n, key, value))
    words = query_words(query.q or "")
    if words:
        found.append(_search(dialect, words))
    return found


def _with_outputs(conn: Connection, rows: list[Any]) -> list[dict[str, Any]]:
    """The responses of ``rows`` (id, body) as ``get`` returns them: the body with its output."""
    outputs: dict[str, list[dict[str, Any]]] = {row[0]: [] for row in rows}
    if rows:
        for response_id, body in conn.execute(OUTPUTS, {"ids": list(outputs)}):
            outputs[response_id].append(orjson.loads(body))
    found = []
    for response_id, body in rows:
        response: dict[str, Any] = orjson.loads(body)
        response["output"] = outputs[response_id]
        found.append(response)
    return found


def list_page(conn: Connection, project: str, query: ResponseQuery) -> ResponsePage:
    conditions = _filters(conn.dialect.name, project, query)
    cursor = query.before if query.before is not None else query.after
    # A ``before`` page is read backwards from its cursor, then turned round.
    ascending = query.ascending != (query.before is not None)
    if cursor is not None:
        anchor = conn.execute(ANCHOR, {"anchor": cursor, "project": project}).first()
        if anchor is None:
            return ResponsePage([], False, anchor_found=False)
        bound = tuple_(bindparam("k0", anchor[0]), bindparam("k1", anchor[1]))
        conditions.append(_KEY > bound if ascending else _KEY < bound)
    order = (
        (responses.c.created_at_us.asc(), responses.c.id.asc())
        if ascending
        else (responses.c.created_at_us.desc(), responses.c.id.desc())
    )
    statement = (
        select(responses.c.id, responses.c.body).where(and_(*conditions)).order_by(*order).limit(query.limit + 1)
    )
    rows = conn.execute(statement).all()
    page = list(rows[: query.limit])
    if query.before is not None:
        page.reverse()
    return ResponsePage(_with_outputs(conn, page), len(rows) > query.limit)


# -- the chain graph --------------------------------------------------------------------------


_COLUMNS = "id, previous_response_id, created_at_us, status, model, background, preview"
# The response and its ancestors, nearest first; the recursion carries the node's columns,
# so no second pass over ``responses`` is needed.
ANCESTORS = text(
    f"WITH RECURSIVE up({_COLUMNS}, depth) AS ("
    f"SELECT {_COLUMNS}, 0 FROM responses WHERE id = :response_id AND project = :project "
    "UNION ALL SELECT r.id, r.previous_response_id, r.created_at_us, r.status, r.model, r.background, r.preview, "
    "up.depth + 1 FROM responses AS r JOIN up ON r.id = up.previous_response_id WHERE r.project = :project) "
    f"SELECT {_COLUMNS} FROM up ORDER BY depth"
)
_NODE_COLUMNS = (
    "r.id, r.previous_response_id, r.created_at_us, r.status, r.model, r.background, r.preview "
    "FROM tree JOIN responses r ON r.id = tree.id"
)
# The tree under the root, breadth first, at most :n responses (the recursion stops there:
# SQLite stops at a LIMIT on the recursive part; PostgreSQL computes only the rows read).
DESCENDANTS = {
    "sqlite": text(
        "WITH RECURSIVE tree(id) AS (SELECT :root UNION SELECT r.id FROM responses r "
        "JOIN tree ON r.previous_response_id = tree.id WHERE r.project = :project LIMIT :n) "
        f"SELECT {_NODE_COLUMNS}"
    ),
    "postgresql": text(
        "WITH RECURSIVE tree(id) AS (SELECT CAST(:root AS VARCHAR(64)) UNION SELECT r.id FROM responses r "
        "JOIN tree ON r.previous_response_id = tree.id WHERE r.project = :project), "
        "first AS (SELECT id FROM tree LIMIT :n) "
        f"SELECT {_NODE_COLUMNS.replace('FROM tree JOIN', 'FROM first AS tree JOIN')}"
    ),
}


def _node(row: Any) -> GraphNode:
    response_id, previous, created_at_us, status, model, background, preview = row
    return GraphNode(response_id, previous, created_at_us // 1_000_000, status, model, bool(background), preview or "")


def graph(conn: Connection, project: str, response_id: str, max_nodes: int) -> ResponseGraph | None:
    up = [_node(row) for row in conn.execute(ANCESTORS, {"response_id": response_id, "project": project})]
    if not up:
        return None
    root = up[-1].id
    params = {"root": root, "project": project, "n": max_nodes + 1}
    down = [_node(row) for row in conn.execute(DESCENDANTS[conn.dialect.name], params)]
    chosen = {node.id: node for node in up}  # the response and its ancestors, always
    reached = set(chosen) | {node.id for node in down}
    for node in down:
        if len(chosen) >= max_nodes:
            break
        chosen.setdefault(node.id, node)
    nodes = sorted(chosen.values(), key=lambda node: (node.created_at, node.id))
    return ResponseGraph(root, nodes, truncated=len(reached) > max_nodes)
