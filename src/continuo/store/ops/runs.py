"""Background runs: the queue, claims, leases, cancel requests and stream events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import Connection, Select, bindparam, delete, func, select, update
from sqlalchemy import insert as sql_insert

from continuo.errors import conversation_unavailable
from continuo.store.base import ClaimedRun, ExpiredRun, StoredEvent
from continuo.store.ops import conversations, texts
from continuo.store.ops.responses import (
    INSERT_ITEMS,
    INSERT_RESPONSE,
    body_json,
    chain,
    dumps,
    event_rows,
    item_rows,
    response_row,
)
from continuo.store.schema import INPUT, OUTPUT, items, now_us, responses
from continuo.store.schema import events as events_table

INSERT_EVENTS = sql_insert(events_table)
EVENTS_AFTER = (
    select(events_table.c.sequence_number, events_table.c.type, events_table.c.data)
    .select_from(events_table.join(responses, responses.c.id == events_table.c.response_id))
    .where(
        events_table.c.response_id == bindparam("response_id"),
        responses.c.project == bindparam("project"),
        events_table.c.sequence_number > bindparam("after"),
    )
    .order_by(events_table.c.sequence_number)
)
NEXT_SEQUENCE = select(func.max(events_table.c.sequence_number)).where(
    events_table.c.response_id == bindparam("response_id")
)


def create_background(
    conn: Connection,
    project: str,
    response: dict[str, Any],
    input_items: list[dict[str, Any]],
    request: dict[str, Any],
    stored: list[StoredEvent],
) -> None:
    if (cid := conversations.conversation_of(response)) is not None:
        # Held from now until the run ends (tied to its status, not to a time limit).
        outcome = conversations.acquire(conn, project, cid, response["id"], None)
        if outcome != "ok":
            raise conversation_unavailable(cid, outcome)
    row = response_row(project, response, input_items, [], request=dumps(request), queued_at_us=now_us())
    conn.execute(INSERT_RESPONSE, row)
    if input_items:
        conn.execute(INSERT_ITEMS, item_rows(response["id"], INPUT, input_items))
    if stored:
        conn.execute(INSERT_EVENTS, event_rows(response["id"], stored))


def next_sequence(conn: Connection, response_id: str) -> int:
    last = conn.execute(NEXT_SEQUENCE, {"response_id": response_id}).scalar()
    return 0 if last is None else int(last) + 1


# The oldest queued run (``ix_responses_queue`` serves it: its terms imply the index's).
OLDEST_QUEUED = (
    select(responses.c.id)
    .where(responses.c.status == "queued", responses.c.background.is_(True))
    .order_by(responses.c.queued_at_us)
    .limit(1)
)


def claim(
    conn: Connection, owner: str, lease_until_us: int, begin: Callable[[dict[str, Any], int], list[StoredEvent]]
) -> ClaimedRun | None:
    """Take the oldest queued run, and in the same transaction apply ``begin`` (core's
    status change, returning its events) to it, so the stored object and the status
    column never disagree."""
    oldest = OLDEST_QUEUED.with_for_update(skip_locked=True).scalar_subquery()
    taken = (
        update(responses)
        .where(responses.c.id == oldest, responses.c.status == "queued")
        .values(owner=owner, lease_until_us=lease_until_us)
        .returning(responses.c.id, responses.c.project, responses.c.body, responses.c.request)
    )
    row = conn.execute(taken).first()
    if row is None:
        return None
    response_id, project, body, request = row
    response = orjson.loads(body)
    response["output"] = []
    first = next_sequence(conn, response_id)
    began = begin(response, first)
    write_run(conn, response_id, response, began)
    context = chain(conn, project, response_id, False) or []
    if (cid := conversations.conversation_of(response)) is not None:
        # The conversation as it is now: it has been held for this run since it was queued.
        context = (conversations.history(conn, project, cid) or []) + context
    return ClaimedRun(
        project=project,
        response=response,
        request=orjson.loads(request) if request else {},
        context=context,
        next_sequence=first + len(began),
    )


def write_run(conn: Connection, response_id: str, response: dict[str, Any], stored: list[StoredEvent]) -> None:
    output = [item for item in response["output"] if item.get("status") != "in_progress"]
    conn.execute(
        update(responses)
        .where(responses.c.id == response_id)
        .values(status=response["status"], body=body_json(response), updated_at_us=now_us())
    )
    conn.execute(delete(items).where(items.c.response_id == response_id, items.c.kind == OUTPUT))
    if output:
        conn.execute(INSERT_ITEMS, item_rows(response_id, OUTPUT, output))
    if stored:
        conn.execute(INSERT_EVENTS, event_rows(response_id, stored))


def finish(
    conn: Connection, response_id: str, response: dict[str, Any], stored: list[StoredEvent], from_statuses: Any
) -> bool:
    # Taking the row first makes two replicas finishing the same run take turns.
    taken = conn.execute(
        update(responses)
        .where(responses.c.id == response_id, responses.c.status.in_(from_statuses))
        .values(owner=None, lease_until_us=None)
    )
    if not taken.rowcount:
        return False
    write_run(conn, response_id, response, stored)
    texts.rewrite(conn, response_id, [item for item in response["output"] if item.get("status") != "in_progress"])
    if conversations.conversation_of(response) is not None:
        project = conn.execute(select(responses.c.project).where(responses.c.id == response_id)).scalar_one()
        output = [item for item in response["output"] if item.get("status") != "in_progress"]
        refs = conversations.stored_input_refs(conn, response_id)
        conversations.append_response(conn, project, response, refs, output)
    return True


def append_events(conn: Connection, response_id: str, stored: list[StoredEvent]) -> None:
    conn.execute(INSERT_EVENTS, event_rows(response_id, stored))


def events_after(conn: Connection, project: str, response_id: str, after: int) -> list[StoredEvent]:
    params = {"response_id": response_id, "project": project, "after": after}
    rows = conn.execute(EVENTS_AFTER, params).all()
    return [StoredEvent(seq, kind, data.encode()) for seq, kind, data in rows]


def renew(conn: Connection, owner: str, response_ids: list[str], lease_until_us: int) -> None:
    conn.execute(
        update(responses)
        .where(responses.c.owner == owner, responses.c.status == "in_progress", responses.c.id.in_(response_ids))
        .values(lease_until_us=lease_until_us)
    )


def cancel_requests(conn: Connection, owner: str) -> list[str]:
    query = select(responses.c.id).where(
        responses.c.owner == owner, responses.c.status == "in_progress", responses.c.cancel_requested.is_(True)
    )
    return list(conn.execute(query).scalars())


def request_cancel(conn: Connection, project: str, response_id: str) -> None:
    conn.execute(
        update(responses)
        .where(responses.c.id == response_id, responses.c.project == project)
        .values(cancel_requested=True)
    )


def expired_query(now_us: int) -> Select[Any]:
    """Background runs whose lease ran out (``ix_responses_queue`` serves it)."""
    return select(responses.c.project, responses.c.id, responses.c.cancel_requested).where(
        responses.c.status == "in_progress", responses.c.background.is_(True), responses.c.lease_until_us < now_us
    )


def expired(conn: Connection, now_us: int) -> list[ExpiredRun]:
    rows = conn.execute(expired_query(now_us)).all()
    return [ExpiredRun(project, response_id, bool(cancel)) for project, response_id, cancel in rows]
