"""The queue's index is partial (background runs only, migration 0011): foreground
responses do not write it, and the queue's two queries still use it, on SQLite and on
PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Select, text

from continuo.store.ops.runs import OLDEST_QUEUED, expired_query
from continuo.store.sql import SQLStore
from tests.support.stores import own_store

QUERIES: list[Select] = [OLDEST_QUEUED, expired_query(1_000)]  # type: ignore[type-arg]


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[SQLStore]:  # type: ignore[no-untyped-def]
    async with own_store(request.param, tmp_path) as instance:
        yield instance


def plans(store: SQLStore) -> list[str]:
    engine = store.sync_engine
    found = []
    for query in QUERIES:
        sql = str(query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
        if store.is_sqlite:
            with engine.connect() as conn:
                rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}").all()
            found.append(" / ".join(str(row[-1]) for row in rows))
        else:
            found.append(sql)
    return found


async def test_queue_queries_use_the_partial_index(store: SQLStore) -> None:
    if store.is_sqlite:
        for plan in plans(store):
            assert "ix_responses_queue" in plan, plan
        return
    assert store.engine is not None
    async with store.engine.connect() as conn:
        await conn.execute(text("SET enable_seqscan = off"))
        for sql in plans(store):
            rows = (await conn.execute(text(f"EXPLAIN {sql}"))).all()
            plan = " / ".join(row[0] for row in rows)
            assert "ix_responses_queue" in plan, plan


async def test_the_queue_index_is_partial(store: SQLStore) -> None:
    if store.is_sqlite:
        with store.sync_engine.connect() as conn:
            definition = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'ix_responses_queue'"
            ).scalar_one()
        assert definition.endswith("WHERE background IS 1")
    else:
        assert store.engine is not None
        async with store.engine.connect() as conn:
            definition = (
                await conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_responses_queue'"))
            ).scalar_one()
        assert definition.endswith("WHERE (background IS TRUE)")
    # Nothing else indexes the queue's columns (the full index it replaced is gone).
    for plan in plans(store):
        assert "status_queued" not in plan
