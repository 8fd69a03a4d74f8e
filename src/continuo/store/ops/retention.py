"""Retention: the sweeper's lease and its batches.

Each batch is one short transaction that first renews the sweeper's lease (and does
nothing when another process holds it now), then deletes a few whole responses, or whole
conversations, the oldest first. A batch deletes at most ``batch`` rows in all; a
response or conversation larger than that on its own is taken apart over several batches
(a response's stream events, a conversation's items), so no transaction is ever larger
than ``batch`` rows plus one response's items, which its own create wrote in one go.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from continuo.store.ops.responses import delete_responses
from continuo.store.schema import conversation_items, conversations, events, items, leases, now_us, responses

LIVE_STATUSES = ("queued", "in_progress")
# The conversation lock a sweeper takes on a conversation it deletes over several batches:
# a response started on it meanwhile is told the conversation is busy.
DELETING = "retention"
DELETING_HOLD_US = 10 * 60 * 1_000_000

# -- the lease ----------------------------------------------------------------------------


def take_lease(conn: Connection, name: str, owner: str, until_us: int) -> bool:
    """Hold the lease ``name`` until ``until_us`` when it is free, expired, or ours."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(insert(leases).values(name=name, owner="", until_us=0).on_conflict_do_nothing(index_elements=["name"]))
    taken = conn.execute(
        update(leases)
        .where(leases.c.name == name, or_(leases.c.owner == owner, leases.c.until_us < now_us()))
        .values(owner=owner, until_us=until_us)
    )
    return bool(taken.rowcount)


def release_lease(conn: Connection, name: str, owner: str) -> None:
    conn.execute(update(leases).where(leases.c.name == name, leases.c.owner == owner).values(until_us=0))


# By owner alone: a lease that ran out but that nobody took is still ours.
RENEW = (
    update(leases)
    .where(leases.c.name == bindparam("lease"), leases.c.owner == bindparam("holder"))
    .values(until_us=bindparam("until"))
)


def _renew(conn: Connection, name: str, owner: str, until_us: int) -> bool:
    return bool(conn.execute(RENEW, {"lease": name, "holder": owner, "until": until_us}).rowcount)


# -- what there is to sweep ---------------------------------------------------------------


def projects(conn: Connection) -> list[str]:
    """Every project that owns responses or conversations, found by hopping along the
    ``(project, …)`` indexes (one short look-up per project, not a scan)."""
    found: set[str] = set()
    for column in (responses.c.project, conversations.c.project):
        after: str | None = None
        while True:
            query = select(func.min(column))
            if after is not None:
                query = query.where(column > after)
            project = conn.execute(query).scalar()
            if project is None:
                break
            found.add(project)
            after = project
    return sorted(found)


def _counts(column: Any) -> Any:
    return select(column, func.count()).where(column.in_(bindparam("ids", expanding=True))).group_by(column)


RESPONSE_ROWS = [_counts(c) for c in (items.c.response_id, events.c.response_id, conversation_items.c.response_id)]
CONVERSATION_ROWS = [_counts(conversation_items.c.conversation_id)]


def _sizes(conn: Connection, ids: list[str], counts: list[Any]) -> dict[str, int]:
    """Rows each of ``ids`` stands for: itself and its rows that ``counts`` count."""
    sizes = dict.fromkeys(ids, 1)
    for statement in counts:
        for key, count in conn.execute(statement, {"ids": ids}):
            sizes[key] += int(count)
    return sizes


def _fitting(ids: list[str], sizes: dict[str, int], batch: int) -> list[str]:
    """The oldest of ``ids`` whose rows fit in a batch (at least one)."""
    chosen: list[str] = []
    total = 0
    for key in ids:
        if chosen and total + sizes[key] > batch:
            break
        chosen.append(key)
        total += sizes[key]
    return chosen


# -- responses ----------------------------------------------------------------------------

EXPIRED_RESPONSES = (
    select(responses.c.id)
    .where(
        responses.c.project == bindparam("project"),
        responses.c.created_at_us < bindparam("before"),
        responses.c.status.notin_(LIVE_STATUSES),
    )
    .order_by(responses.c.created_at_us)
    .limit(bindparam("batch"))
)
_first_events = (
    select(events.c.sequence_number)
    .where(events.c.response_id == bindparam("response_id"))
    .order_by(events.c.sequence_number)
    .limit(bindparam("batch"))
)
DELETE_FIRST_EVENTS = delete(events).where(
    events.c.response_id == bindparam("response_id"), events.c.sequence_number.in_(_first_events.scalar_subquery())
)


def expire_responses(
    conn: Connection, name: str, owner: str, until_us: int, project: str, before_us: int, batch: int
) -> tuple[int, int] | None:
    """One batch of ``project``'s responses created before ``before_us`` (never one still
    queued or in progress): (responses deleted, rows deleted); (0, 0) when none is left;
    None when the lease is not ours."""
    if not _renew(conn, name, owner, until_us):
        return None
    params = {"project": project, "before": before_us, "batch": batch}
    ids = list(conn.execute(EXPIRED_RESPONSES, params).scalars())
    if not ids:
        return 0, 0
    sizes = _sizes(conn, ids, RESPONSE_ROWS)
    chosen = _fitting(ids, sizes, batch)
    if sizes[chosen[0]] > batch:
        # One response larger than a batch: its stream events go first, a batch at a time
        # (the response itself stays whole until they are gone).
        removed = conn.execute(DELETE_FIRST_EVENTS, {"response_id": chosen[0], "batch": batch}).rowcount
        if removed:
            return 0, int(removed)
    delete_responses(conn, chosen)
    return len(chosen), sum(sizes[key] for key in chosen)


# -- conversations ------------------------------------------------------------------------


def _free(now: int) -> Any:
    """Conversations whose in-progress lock nobody holds (see ops/conversations.py)."""
    holder_live = exists().where(
        responses.c.id == conversations.c.active_response_id, responses.c.status.in_(LIVE_STATUSES)
    )
    return or_(
        conversations.c.active_response_id.is_(None),
        conversations.c.active_until_us < now,
        and_(conversations.c.active_until_us.is_(None), ~holder_live),
    )


def _take_apart(conn: Connection, cid: str, batch: int) -> tuple[int, int]:
    """One batch of a large conversation's items, under the lock that keeps responses off
    it; the conversation row goes with the last of them."""
    hold = now_us() + DELETING_HOLD_US
    conn.execute(
        update(conversations).where(conversations.c.id == cid).values(active_response_id=DELETING, active_until_us=hold)
    )
    oldest = (
        select(conversation_items.c.position)
        .where(conversation_items.c.conversation_id == cid)
        .order_by(conversation_items.c.position)
        .limit(batch)
    )
    removed = conn.execute(
        delete(conversation_items).where(
            conversation_items.c.conversation_id == cid, conversation_items.c.position.in_(oldest.scalar_subquery())
        )
    ).rowcount
    if removed:
        return 0, int(removed)
    conn.execute(delete(conversations).where(conversations.c.id == cid))
    return 1, 1


def expire_conversations(
    conn: Connection, name: str, owner: str, until_us: int, project: str, before_us: int, batch: int
) -> tuple[int, int] | None:
    """One batch of ``project``'s conversations idle since before ``before_us`` (never
    one a response is running on): (conversations deleted, rows deleted), as
    ``expire_responses``."""
    if not _renew(conn, name, owner, until_us):
        return None
    underway = conn.execute(
        select(conversations.c.id)
        .where(conversations.c.project == project, conversations.c.active_response_id == DELETING)
        .limit(1)
    ).scalar()
    if underway is not None:
        return _take_apart(conn, underway, batch)
    ids = list(
        conn.execute(
            select(conversations.c.id)
            .where(
                conversations.c.project == project,
                conversations.c.updated_at_us < before_us,
                _free(now_us()),
            )
            .order_by(conversations.c.updated_at_us)
            .limit(batch)
        ).scalars()
    )
    if not ids:
        return 0, 0
    sizes = _sizes(conn, ids, CONVERSATION_ROWS)
    chosen = _fitting(ids, sizes, batch)
    if sizes[chosen[0]] > batch:
        return _take_apart(conn, chosen[0], batch)
    conn.execute(delete(conversation_items).where(conversation_items.c.conversation_id.in_(chosen)))
    conn.execute(delete(conversations).where(conversations.c.id.in_(chosen)))
    return len(chosen), sum(sizes[key] for key in chosen)
