"""Export and import: stored responses and conversations as JSON Lines, from one database
into another (docs/export.md describes the lines).

A response line carries what rebuilds its rows: the Response object as retrieve answers
it (its output included), its own input items, and for background runs the request and
the stored stream events. A conversation line carries the conversation and its items, each
with the stored item it points at. Import writes the rows as they were (it does not run
the create path again, which would append to conversations a second time); a response or
conversation whose id is already stored is left as it is, so importing twice changes
nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from sqlalchemy import Connection, exists, or_, select
from sqlalchemy import insert as sql_insert

from continuo.store.ops.responses import INSERT_ITEMS, dumps, item_rows, response_row
from continuo.store.ops.runs import INSERT_EVENTS
from continuo.store.schema import INPUT, OUTPUT, conversation_items, conversations, events, items, responses
from continuo.store.sql import SQLStore

VERSION = 1
RESPONSE = "continuo.export.response"
CONVERSATION = "continuo.export.conversation"
BATCH = 200
LIVE = ("queued", "in_progress")


class ImportError_(ValueError):
    """A line that cannot be imported; nothing of its batch was written."""


# -- export ---------------------------------------------------------------------------------


def _response_lines(
    conn: Connection, project: str | None, since_us: int | None, after: tuple[int, str] | None
) -> list[dict[str, Any]]:
    query = select(responses).order_by(responses.c.created_at_us, responses.c.id).limit(BATCH)
    if project is not None:
        query = query.where(responses.c.project == project)
    if since_us is not None:
        query = query.where(responses.c.created_at_us >= since_us)
    if after is not None:
        query = query.where(
            (responses.c.created_at_us > after[0])
            | ((responses.c.created_at_us == after[0]) & (responses.c.id > after[1]))
        )
    rows = conn.execute(query).mappings().all()
    ids = [row["id"] for row in rows]
    found: dict[str, dict[int, list[Any]]] = {i: {INPUT: [], OUTPUT: []} for i in ids}
    stream: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    if ids:
        item_query = (
            select(items.c.response_id, items.c.kind, items.c.body)
            .where(items.c.response_id.in_(ids))
            .order_by(items.c.response_id, items.c.kind, items.c.position)
        )
        for response_id, kind, body in conn.execute(item_query):
            found[response_id][kind].append(orjson.loads(body))
        event_query = (
            select(events.c.response_id, events.c.sequence_number, events.c.type, events.c.data)
            .where(events.c.response_id.in_(ids))
            .order_by(events.c.response_id, events.c.sequence_number)
        )
        for response_id, sequence, kind, data in conn.execute(event_query):
            stream[response_id].append({"sequence_number": sequence, "type": kind, "data": data})
    lines = []
    for row in rows:
        response = orjson.loads(row["body"])
        response["output"] = found[row["id"]][OUTPUT]
        lines.append(
            {
                "object": RESPONSE,
                "version": VERSION,
                "id": row["id"],
                "project": row["project"],
                "created_at_us": row["created_at_us"],
                "updated_at_us": row["updated_at_us"],
                "response": response,
                "input_items": found[row["id"]][INPUT],
                "request": None if row["request"] is None else orjson.loads(row["request"]),
                "queued_at_us": row["queued_at_us"],
                "cancel_requested": bool(row["cancel_requested"]),
                "events": stream[row["id"]],
            }
        )
    return lines


def _conversation_lines(
    conn: Connection, project: str | None, since_us: int | None, after: str
) -> list[dict[str, Any]]:
    query = select(conversations).where(conversations.c.id > after).order_by(conversations.c.id).limit(BATCH)
    if project is not None:
        query = query.where(conversations.c.project == project)
    if since_us is not None:
        # Made since then, or added to by a response made since then.
        touched = exists().where(
            conversation_items.c.conversation_id == conversations.c.id,
            responses.c.id == conversation_items.c.response_id,
            responses.c.created_at_us >= since_us,
        )
        query = query.where(or_(conversations.c.created_at_us >= since_us, touched))
    lines = []
    for row in conn.execute(query).mappings().all():
        listed = (
            select(conversation_items, items.c.body.label("stored"))
            .select_from(
                conversation_items.outerjoin(
                    items,
                    (items.c.response_id == conversation_items.c.response_id)
                    & (items.c.kind == conversation_items.c.kind)
                    & (items.c.position == conversation_items.c.item_position),
                )
            )
            .where(conversation_items.c.conversation_id == row["id"])
            .order_by(conversation_items.c.position)
        )
        entries = []
        for entry in conn.execute(listed).mappings():
            body = entry["body"] if entry["body"] is not None else entry["stored"]
            entries.append(
                {
                    "position": entry["position"],
                    "item_id": entry["item_id"],
                    "response_id": entry["response_id"],
                    "kind": entry["kind"],
                    "item_position": entry["item_position"],
                    "owned": entry["body"] is not None,
                    "item": None if body is None else orjson.loads(body),
                }
            )
        lines.append(
            {
                "object": CONVERSATION,
                "version": VERSION,
                "id": row["id"],
                "project": row["project"],
                "created_at_us": row["created_at_us"],
                "metadata": orjson.loads(row["metadata"]),
                "next_position": row["next_position"],
                "active_response_id": row["active_response_id"],
                "active_until_us": row["active_until_us"],
                "items": entries,
            }
        )
    return lines


async def export_lines(store: SQLStore, project: str | None, since_us: int | None) -> AsyncIterator[bytes]:
    """The export, a batch of lines (one read) at a time: responses oldest first, then
    conversations."""
    after: tuple[int, str] | None = None
    while batch := await store._read(_response_lines, project, since_us, after):
        yield b"".join(orjson.dumps(line) + b"\n" for line in batch)
        after = (batch[-1]["created_at_us"], batch[-1]["id"])
    last = ""
    while conv_batch := await store._read(_conversation_lines, project, since_us, last):
        yield b"".join(orjson.dumps(line) + b"\n" for line in conv_batch)
        last = conv_batch[-1]["id"]


# -- import ---------------------------------------------------------------------------------


def _need(line: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = line.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ImportError_(f"'{key}' is missing or not a {getattr(kind, '__name__', kind)}")
    return value


def check_line(line: Any) -> dict[str, Any]:
    """The line, if it is one this version can import."""
    if not isinstance(line, dict):
        raise ImportError_("not a JSON object")
    if line.get("object") not in (RESPONSE, CONVERSATION):
        raise ImportError_(f"unknown 'object': {str(line.get('object'))[:80]!r}")
    if line.get("version") != VERSION:
        raise ImportError_(f"unsupported 'version': {str(line.get('version'))[:20]} (this Continuo reads {VERSION})")
    _need(line, "id", str)
    _need(line, "project", str)
    _need(line, "created_at_us", int)
    if line["object"] == RESPONSE:
        response = _need(line, "response", dict)
        if response.get("id") != line["id"] or not isinstance(response.get("output"), list):
            raise ImportError_("'response' must be the Response object of this id, with its output")
        if not isinstance(response.get("created_at"), int) or not isinstance(response.get("status"), str):
            raise ImportError_("'response' needs an integer created_at and a status")
        _need(line, "updated_at_us", int)
        _need(line, "input_items", list)
        _need(line, "events", list)
    else:
        _need(line, "metadata", dict)
        _need(line, "next_position", int)
        _need(line, "items", list)
    return line


def _import_response(conn: Connection, line: dict[str, Any]) -> None:
    response, response_id = line["response"], line["id"]
    status = response["status"]
    extra: dict[str, Any] = {
        "created_at_us": line["created_at_us"],
        "updated_at_us": line["updated_at_us"],
        "request": None if line.get("request") is None else dumps(line["request"]),
        "queued_at_us": line.get("queued_at_us"),
        "cancel_requested": bool(line.get("cancel_requested")),
    }
    if status == "in_progress":
        # Nothing runs it here: an expired lease lets this server end it as a dead replica's.
        extra |= {"owner": "import", "lease_until_us": 0}
    answered = [] if status in LIVE else response["output"]  # a live run's text is set when it ends
    conn.execute(sql_insert(responses), response_row(line["project"], response, line["input_items"], answered) | extra)
    rows = item_rows(response_id, INPUT, line["input_items"]) + item_rows(response_id, OUTPUT, response["output"])
    if rows:
        conn.execute(INSERT_ITEMS, rows)
    stream = [
        {"response_id": response_id, "sequence_number": e["sequence_number"], "type": e["type"], "data": e["data"]}
        for e in line["events"]
    ]
    if stream:
        conn.execute(INSERT_EVENTS, stream)


def _import_conversation(conn: Connection, line: dict[str, Any]) -> None:
    cid = line["id"]
    referenced = {e["response_id"] for e in line["items"] if e.get("response_id") and not e.get("owned")}
    present = set()
    if referenced:
        present = set(conn.execute(select(responses.c.id).where(responses.c.id.in_(referenced))).scalars())
    conn.execute(
        sql_insert(conversations),
        {
            "id": cid,
            "project": line["project"],
            "created_at_us": line["created_at_us"],
            "metadata": dumps(line["metadata"]),
            "next_position": line["next_position"],
            "active_response_id": line.get("active_response_id"),
            "active_until_us": line.get("active_until_us"),
        },
    )
    rows = []
    for entry in line["items"]:
        by_reference = not entry.get("owned") and entry.get("response_id") in present
        item = entry.get("item")
        rows.append(
            {
                "conversation_id": cid,
                "position": entry["position"],
                "item_id": entry["item_id"],
                # A reference stays one where its response is here; else the item is copied
                # in, as when a response is deleted.
                "response_id": entry["response_id"] if by_reference else None,
                "kind": entry["kind"] if by_reference else None,
                "item_position": entry["item_position"] if by_reference else None,
                "body": None if by_reference or item is None else dumps(item),
            }
        )
    if rows:
        conn.execute(sql_insert(conversation_items), rows)


def _import_batch(conn: Connection, lines: list[dict[str, Any]]) -> tuple[int, int, int, int]:
    """(responses imported, conversations imported, responses skipped, conversations skipped)."""
    wanted = {
        table: [line["id"] for line in lines if line["object"] == kind]
        for kind, table in ((RESPONSE, responses), (CONVERSATION, conversations))
    }
    present = {
        table: set(conn.execute(select(table.c.id).where(table.c.id.in_(ids))).scalars()) if ids else set()
        for table, ids in wanted.items()
    }
    counts = [0, 0, 0, 0]
    for line in lines:
        table, write, slot = (
            (responses, _import_response, 0) if line["object"] == RESPONSE else (conversations, _import_conversation, 1)
        )
        if line["id"] in present[table]:
            counts[slot + 2] += 1
            continue
        present[table].add(line["id"])
        write(conn, line)
        counts[slot] += 1
    return counts[0], counts[1], counts[2], counts[3]


async def import_lines(store: SQLStore, lines: list[dict[str, Any]]) -> tuple[int, int, int, int]:
    """Import checked lines in one transaction."""
    return await store._write(_import_batch, lines)
