"""Conversations: their rows, their item references, their in-progress lock.

A conversation item row points at an ``items`` row of a stored response (stored once) or
holds its own body (items added directly, and those a deleted response left behind).
Positions come from the conversation row (``next_position``), so an append is one
``UPDATE … RETURNING`` plus the rows it adds, whatever the conversation's length; a page
of items is a keyset range on ``(conversation_id, position)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, and_, bindparam, case, delete, exists, func, or_, select, update
from sqlalchemy import insert as sql_insert

from continuo.ids import ITEM_ID_MAX, well_formed
from continuo.store.base import ItemPage
from continuo.store.schema import INPUT, OUTPUT, conversation_items, conversations, items, now_us, responses

# A response appends its items to its conversation when it ends with one of these.
APPENDED_STATUSES = ("completed", "incomplete")
LIVE_STATUSES = ("queued", "in_progress")
LAST = 2**62

INSERT_CONVERSATION = sql_insert(conversations)
INSERT_ITEMS = sql_insert(conversation_items)
GET = select(conversations.c.id, conversations.c.created_at_us, conversations.c.metadata).where(
    conversations.c.id == bindparam("cid"), conversations.c.project == bindparam("proj")
)
# Hand out ``n`` positions and, in the same statement, release the lock when ``release``
# holds it. Returns the new ``next_position``: the positions are the ``n`` before it.
RESERVE = (
    update(conversations)
    .where(conversations.c.id == bindparam("cid"), conversations.c.project == bindparam("proj"))
    .values(
        next_position=conversations.c.next_position + bindparam("n"),
        updated_at_us=bindparam("now"),
        active_response_id=case(
            (conversations.c.active_response_id == bindparam("release"), None),
            else_=conversations.c.active_response_id,
        ),
        active_until_us=case(
            (conversations.c.active_response_id == bindparam("release"), None),
            else_=conversations.c.active_until_us,
        ),
    )
    .returning(conversations.c.next_position)
)
_holder_live = exists().where(
    responses.c.id == conversations.c.active_response_id, responses.c.status.in_(LIVE_STATUSES)
)
ACQUIRE = (
    update(conversations)
    .where(
        conversations.c.id == bindparam("cid"),
        conversations.c.project == bindparam("proj"),
        or_(
            conversations.c.active_response_id.is_(None),
            conversations.c.active_until_us < bindparam("now"),
            and_(conversations.c.active_until_us.is_(None), ~_holder_live),
        ),
    )
    .values(active_response_id=bindparam("response_id"), active_until_us=bindparam("until"))
)
RELEASE = (
    update(conversations)
    .where(conversations.c.active_response_id == bindparam("response_id"))
    .values(active_response_id=None, active_until_us=None)
)
_joined = conversation_items.outerjoin(
    items,
    and_(
        items.c.response_id == conversation_items.c.response_id,
        items.c.kind == conversation_items.c.kind,
        items.c.position == conversation_items.c.item_position,
    ),
)
_body = func.coalesce(conversation_items.c.body, items.c.body)
HISTORY = (
    select(_body)
    .select_from(_joined)
    .where(conversation_items.c.conversation_id == bindparam("cid"))
    .order_by(conversation_items.c.position)
)
PAGE_ASC = (
    select(_body)
    .select_from(_joined)
    .where(conversation_items.c.conversation_id == bindparam("cid"), conversation_items.c.position > bindparam("bound"))
    .order_by(conversation_items.c.position)
    .limit(bindparam("n"))
)
PAGE_DESC = (
    select(_body)
    .select_from(_joined)
    .where(conversation_items.c.conversation_id == bindparam("cid"), conversation_items.c.position < bindparam("bound"))
    .order_by(conversation_items.c.position.desc())
    .limit(bindparam("n"))
)
POSITION_OF = select(func.min(conversation_items.c.position)).where(
    conversation_items.c.conversation_id == bindparam("cid"), conversation_items.c.item_id == bindparam("item_id")
)
ITEM = (
    select(_body)
    .select_from(_joined)
    .where(
        conversation_items.c.conversation_id == bindparam("cid"), conversation_items.c.item_id == bindparam("item_id")
    )
    .order_by(conversation_items.c.position.desc())
    .limit(1)
)
INPUT_REFS = (
    select(items.c.position, items.c.item_id)
    .where(items.c.response_id == bindparam("response_id"), items.c.kind == INPUT)
    .order_by(items.c.position)
)


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def conversation_object(cid: str, created_at_us: int, metadata: str) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "conversation",
        "created_at": created_at_us // 1_000_000,
        "metadata": orjson.loads(metadata),
    }


def _exists(conn: Connection, project: str, cid: str) -> bool:
    return conn.execute(GET, {"cid": cid, "proj": project}).first() is not None


def _reserve(conn: Connection, project: str, cid: str, n: int, release: str | None) -> int | None:
    """The first of ``n`` new positions (None: no such conversation)."""
    params = {"cid": cid, "proj": project, "n": n, "release": release, "now": now_us()}
    end = conn.execute(RESERVE, params).scalar()
    return None if end is None else int(end) - n


def _owned_rows(cid: str, first: int, values: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "conversation_id": cid,
            "position": first + i,
            "item_id": item.get("id", ""),
            "response_id": None,
            "kind": None,
            "item_position": None,
            "body": dumps(item),
        }
        for i, item in enumerate(values)
    ]


# -- the conversation object ----------------------------------------------------------------


def create(
    conn: Connection, project: str, cid: str, metadata: dict[str, str], values: list[dict[str, Any]]
) -> dict[str, Any]:
    created, stored = now_us(), dumps(metadata)
    row = {
        "id": cid,
        "project": project,
        "created_at_us": created,
        "updated_at_us": created,
        "metadata": stored,
        "next_position": len(values),
    }
    conn.execute(INSERT_CONVERSATION, row)
    if values:
        conn.execute(INSERT_ITEMS, _owned_rows(cid, 0, values))
    return conversation_object(cid, created, stored)


def get(conn: Connection, project: str, cid: str) -> dict[str, Any] | None:
    row = conn.execute(GET, {"cid": cid, "proj": project}).first()
    return None if row is None else conversation_object(*row)


def update_metadata(conn: Connection, project: str, cid: str, metadata: dict[str, str]) -> dict[str, Any] | None:
    conn.execute(
        update(conversations)
        .where(conversations.c.id == cid, conversations.c.project == project)
        .values(metadata=dumps(metadata), updated_at_us=now_us())
    )
    return get(conn, project, cid)


def delete_conversation(conn: Connection, project: str, cid: str) -> bool:
    # Its item rows go with it; the items of stored responses stay with their responses.
    if not _exists(conn, project, cid):
        return False
    conn.execute(delete(conversation_items).where(conversation_items.c.conversation_id == cid))
    conn.execute(delete(conversations).where(conversations.c.id == cid))
    return True


# -- items ----------------------------------------------------------------------------------


def add_items(
    conn: Connection, project: str, cid: str, values: list[dict[str, Any]], release: str | None = None
) -> bool:
    """Append items the conversation owns (and release ``release``'s lock). False: no such
    conversation."""
    first = _reserve(conn, project, cid, len(values), release)
    if first is None:
        return False
    if values:
        conn.execute(INSERT_ITEMS, _owned_rows(cid, first, values))
    return True


def history(conn: Connection, project: str, cid: str) -> list[dict[str, Any]] | None:
    """Every item, oldest first (None: no such conversation)."""
    if not _exists(conn, project, cid):
        return None
    return [orjson.loads(body) for (body,) in conn.execute(HISTORY, {"cid": cid}) if body is not None]


def page(conn: Connection, project: str, cid: str, limit: int, order: str, after: str | None) -> ItemPage | None:
    if not _exists(conn, project, cid):
        return None
    if after is None:
        bound = -1 if order == "asc" else LAST
    elif not well_formed(after, ITEM_ID_MAX):  # cannot exist; PostgreSQL refuses NUL in text
        return ItemPage([], False, anchor_found=False)
    else:
        found = conn.execute(POSITION_OF, {"cid": cid, "item_id": after}).scalar()
        if found is None:
            return ItemPage([], False, anchor_found=False)
        bound = int(found)
    statement = PAGE_ASC if order == "asc" else PAGE_DESC
    bodies = [body for (body,) in conn.execute(statement, {"cid": cid, "bound": bound, "n": limit + 1})]
    data = [orjson.loads(body) for body in bodies[:limit] if body is not None]
    return ItemPage(data, len(bodies) > limit)


def get_item(conn: Connection, project: str, cid: str, item_id: str) -> tuple[bool, dict[str, Any] | None]:
    """(whether the conversation exists, the item)."""
    if not _exists(conn, project, cid):
        return False, None
    if not well_formed(item_id, ITEM_ID_MAX):
        return True, None
    body = conn.execute(ITEM, {"cid": cid, "item_id": item_id}).scalar()
    return True, None if body is None else orjson.loads(body)


def delete_item(conn: Connection, project: str, cid: str, item_id: str) -> tuple[dict[str, Any] | None, bool]:
    """(the conversation, whether an item was removed from it)."""
    conversation = get(conn, project, cid)
    if conversation is None or not well_formed(item_id, ITEM_ID_MAX):
        return conversation, False
    result = conn.execute(
        delete(conversation_items).where(
            conversation_items.c.conversation_id == cid, conversation_items.c.item_id == item_id
        )
    )
    return conversation, bool(result.rowcount)


# -- the in-progress lock ---------------------------------------------------------------------


def acquire(conn: Connection, project: str, cid: str, response_id: str, until_us: int | None) -> str:
    """Take the conversation for ``response_id``: "ok", "locked" or "missing". With
    ``until_us`` None the lock lasts while that response is queued or in progress. An id
    that cannot exist (``ids.well_formed``: PostgreSQL refuses NUL in text) is missing."""
    if not well_formed(cid):
        return "missing"
    params = {"cid": cid, "proj": project, "now": now_us(), "response_id": response_id, "until": until_us}
    if conn.execute(ACQUIRE, params).rowcount:
        return "ok"
    return "locked" if _exists(conn, project, cid) else "missing"


def release(conn: Connection, response_id: str) -> None:
    conn.execute(RELEASE, {"response_id": response_id})


# -- a response's items, on the response's own save paths --------------------------------------


def conversation_of(response: dict[str, Any]) -> str | None:
    conversation = response.get("conversation")
    return conversation.get("id") if isinstance(conversation, dict) else None


def append_response(
    conn: Connection,
    project: str,
    response: dict[str, Any],
    input_refs: list[tuple[int, str]],
    output: list[dict[str, Any]],
) -> None:
    """Reference the response's input and output items from its conversation (when it
    ended as one that appends) and release the conversation's lock, in the caller's
    transaction. ``input_refs``: (position, item id) of its stored input rows."""
    cid = conversation_of(response)
    if cid is None:
        return
    response_id = response["id"]
    refs = [(INPUT, position, item_id) for position, item_id in input_refs]
    if response["status"] in APPENDED_STATUSES:
        refs += [(OUTPUT, position, item.get("id", "")) for position, item in enumerate(output)]
    else:
        refs = []
    first = _reserve(conn, project, cid, len(refs), response_id)
    if first is None or not refs:
        return
    rows = [
        {
            "conversation_id": cid,
            "position": first + i,
            "item_id": item_id,
            "response_id": response_id,
            "kind": kind,
            "item_position": position,
            "body": None,
        }
        for i, (kind, position, item_id) in enumerate(refs)
    ]
    conn.execute(INSERT_ITEMS, rows)


def stored_input_refs(conn: Connection, response_id: str) -> list[tuple[int, str]]:
    return [(int(position), item_id) for position, item_id in conn.execute(INPUT_REFS, {"response_id": response_id})]


_COPY = (
    select(items.c.body)
    .where(
        items.c.response_id == conversation_items.c.response_id,
        items.c.kind == conversation_items.c.kind,
        items.c.position == conversation_items.c.item_position,
    )
    .scalar_subquery()
)
DETACH = (
    update(conversation_items)
    .where(conversation_items.c.response_id.in_(bindparam("ids", expanding=True)))
    .values(body=_COPY, response_id=None, kind=None, item_position=None)
)
RELEASE_ALL = (
    update(conversations)
    .where(conversations.c.active_response_id.in_(bindparam("ids", expanding=True)))
    .values(active_response_id=None, active_until_us=None)
)


def detach_responses(conn: Connection, response_ids: list[str]) -> None:
    """Before responses' items are deleted: the conversation rows that point at them take
    a copy, so the conversations keep their items; a conversation lock one of them still
    holds is released."""
    conn.execute(DETACH, {"ids": response_ids})
    conn.execute(RELEASE_ALL, {"ids": response_ids})
