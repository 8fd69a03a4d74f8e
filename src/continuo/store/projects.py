"""Moving stored responses between projects.

While no key exists the server is open and everything it stores belongs to the project
"". Once keys exist, each caller sees only its key's project, so that data is reached by
moving it: ``continuo projects move --from "" --to team-a``. Items and events hang off
their response, and a conversation's items off their conversation, so moving the response
and conversation rows moves everything.
"""

from __future__ import annotations

from sqlalchemy import Connection, func, select, update

from continuo.store.schema import conversations, responses
from continuo.store.sql import SQLStore


def _move(conn: Connection, source: str, target: str) -> int:
    result = conn.execute(update(responses).where(responses.c.project == source).values(project=target))
    conn.execute(update(conversations).where(conversations.c.project == source).values(project=target))
    return int(result.rowcount)


def _counts(conn: Connection) -> list[tuple[str, int]]:
    query = select(responses.c.project, func.count()).group_by(responses.c.project).order_by(responses.c.project)
    return [(str(project), int(count)) for project, count in conn.execute(query)]


async def move_responses(store: SQLStore, source: str, target: str) -> int:
    """Give every response of project ``source`` to ``target``; how many moved."""
    return await store._write(_move, source, target)


async def project_counts(store: SQLStore) -> list[tuple[str, int]]:
    """Each project that owns stored responses, with how many."""
    return await store._read(_counts)
