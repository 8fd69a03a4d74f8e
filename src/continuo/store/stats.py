"""Counts for ``GET /metrics``, read from the store at each scrape (so they cover every
replica that shares the database)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from continuo.store.schema import responses


def _background(conn: Connection) -> dict[str, int]:
    query = (
        select(responses.c.status, func.count()).where(responses.c.background.is_(True)).group_by(responses.c.status)
    )
    return {str(status): int(count) for status, count in conn.execute(query)}


async def background_counts(store: Any) -> dict[str, int]:
    """Background responses by status; {} for a store that is not SQL."""
    from continuo.store.sql import SQLStore

    if not isinstance(store, SQLStore):
        return {}
    return await store._read(_background)
