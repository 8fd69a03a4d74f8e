"""The listing and graph in the store, on SQLite and PostgreSQL: a graph beyond its node
limit, the number of statements each takes, and migration 0008 filling in what responses
stored before it need (their model and their searchable text)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event, text

from continuo.store.base import ResponseQuery
from continuo.store.engine import MIGRATIONS
from continuo.store.sql import SQLStore
from tests.support.postgres import create_database, drop_database
from tests.support.records import response, user
from tests.support.stores import own_store


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request, tmp_path) -> AsyncIterator[SQLStore]:
    async with own_store(request.param, tmp_path) as instance:
        yield instance


class Statements:
    def __init__(self, store: SQLStore) -> None:
        self.store = store
        self.seen: list[str] = []

    def __enter__(self) -> list[str]:
        event.listen(self.store.sync_engine, "before_cursor_execute", self._count)
        return self.seen

    def __exit__(self, *_exc: Any) -> None:
        event.remove(self.store.sync_engine, "before_cursor_execute", self._count)

    def _count(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            self.seen.append(statement)


async def test_a_graph_past_its_limit_keeps_the_response_and_its_ancestors(store):
    # root -> a -> b -> c, and ten more children of the root
    await store.save_response("p", response("resp_root"), [user("msg_r", "root")])
    previous = "resp_root"
    for name in ("a", "b", "c"):
        await store.save_response("p", response(f"resp_{name}", previous), [user(f"msg_{name}", name)])
        previous = f"resp_{name}"
    for i in range(10):
        await store.save_response("p", response(f"resp_leaf{i}", "resp_root"), [user(f"msg_l{i}", "leaf")])
    await store.save_response("other", response("resp_foreign", "resp_root"), [user("msg_f", "foreign")])

    whole = await store.response_graph("p", "resp_c", 1000)
    assert whole is not None and whole.root_id == "resp_root" and not whole.truncated
    assert len(whole.nodes) == 14 and "resp_foreign" not in {n.id for n in whole.nodes}
    assert {n.id: n.preview for n in whole.nodes}["resp_a"] == "out"

    with Statements(store) as statements:
        cut = await store.response_graph("p", "resp_c", 6)
    assert len(statements) == 2 and all("RECURSIVE" in s.upper() for s in statements)
    assert cut is not None and cut.truncated and len(cut.nodes) == 6
    assert {"resp_root", "resp_a", "resp_b", "resp_c"} <= {n.id for n in cut.nodes}
    assert await store.response_graph("other", "resp_c", 1000) is None


async def test_a_page_is_three_statements_whatever_its_filters(store):
    for i in range(30):
        metadata = {"n": str(i % 3)}
        await store.save_response("p", response(f"resp_{i:02}", metadata=metadata), [user(f"msg_{i}", f"word{i}")])
    query = ResponseQuery(limit=5, after="resp_20", metadata=[("n", "1")], q="out", model=None)
    with Statements(store) as statements:
        page = await store.list_responses("p", query)
    # the cursor, the page (limit + 1 rows), the page's output items
    assert len(statements) == 3
    assert [r["id"] for r in page.data] == ["resp_19", "resp_16", "resp_13", "resp_10", "resp_07"]
    assert page.has_more and all(r["output"][0]["content"][0]["text"] == "out" for r in page.data)


def _alembic(connection: Any, revision: str) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


OLD_ROWS = [
    "INSERT INTO responses (id, project, previous_response_id, status, background, created_at_us, updated_at_us, "
    "body, cancel_requested) VALUES ('resp_old', 'p', NULL, 'completed', false, 1000000, 1000000, "
    '\'{"id": "resp_old", "object": "response", "model": "old-model", "status": "completed"}\', false)',
    "INSERT INTO responses (id, project, previous_response_id, status, background, created_at_us, updated_at_us, "
    "body, cancel_requested) VALUES ('resp_nul', 'p', NULL, 'completed', false, 2000000, 2000000, "
    '\'{"id": "resp_nul", "model": "n\\u0000l", "status": "completed"}\', false)',
    "INSERT INTO items (response_id, kind, position, item_id, body) VALUES ('resp_old', 0, 0, 'msg_in', "
    '\'{"type": "message", "role": "user", "content": "Stored before the search existed"}\')',
    "INSERT INTO items (response_id, kind, position, item_id, body) VALUES ('resp_old', 1, 0, 'msg_out', "
    '\'{"type": "message", "role": "assistant", '
    '"content": [{"type": "output_text", "text": "Yes."}]}\')',
]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_migration_fills_in_responses_stored_before_it(database, tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}" if database == "sqlite" else create_database()
    old = SQLStore(url, migrate=False)
    try:

        def at_0007(conn: Any) -> None:
            _alembic(conn, "0007")
            for statement in OLD_ROWS:
                conn.execute(text(statement))

        await old._write(at_0007)
        await old.run_migrations()
        found = await old.list_responses("p", ResponseQuery(q="search existed"))
        assert [r["id"] for r in found.data] == ["resp_old"]
        assert found.data[0]["output"][0]["content"][0]["text"] == "Yes."
        by_model = await old.list_responses("p", ResponseQuery(model="old-model"))
        assert [r["id"] for r in by_model.data] == ["resp_old"]
        assert [r["id"] for r in (await old.list_responses("p", ResponseQuery(model="nl"))).data] == ["resp_nul"]
        graph = await old.response_graph("p", "resp_old", 10)
        assert graph is not None and graph.nodes[0].preview == "Yes." and graph.nodes[0].model == "old-model"
    finally:
        await old.close()
        if database == "postgresql":
            drop_database(url)


async def _waiting(store: SQLStore) -> int:
    def count(conn: Any) -> int:
        return int(conn.execute(text("SELECT count(*) FROM response_search_pending")).scalar())

    return await store._read(count)


async def test_sqlite_indexes_what_it_stores_in_batches_and_a_search_never_misses_it(tmp_path, monkeypatch):
    """A stored response waits for SQLite's full-text index (store/ops/search_index.py):
    the periodic batch indexes it, and a search made before the batch indexes it first."""
    from continuo.store import sql
    from tests.support.waits import wait_until_async

    monkeypatch.setattr(sql, "SEARCH_INDEX_SECONDS", 3600.0)  # no batch during this part
    store = SQLStore(f"sqlite:///{tmp_path / 'store.db'}")
    await store.open()
    try:
        await store.save_response("p", response("resp_1", text_="violet harbour"), [user("msg_1", "hello")])
        await store.save_response("p", response("resp_2", text_="amber field"), [user("msg_2", "hello")])
        assert await _waiting(store) == 2
        found = await store.list_responses("p", ResponseQuery(q="harbour"))
        assert [r["id"] for r in found.data] == ["resp_1"] and await _waiting(store) == 0
        await store.delete_response("p", "resp_1")
        assert (await store.list_responses("p", ResponseQuery(q="harbour"))).data == []
    finally:
        await store.close()

    monkeypatch.setattr(sql, "SEARCH_INDEX_SECONDS", 0.05)
    store = SQLStore(f"sqlite:///{tmp_path / 'store.db'}")
    await store.open()
    try:
        for i in range(3, 3 + 2 * sql.search_index.BATCH + 7):  # more than two batches
            await store.save_response("p", response(f"resp_{i}", text_=f"word{i}"), [])
        async def indexed() -> bool:
            return await _waiting(store) == 0

        await wait_until_async(indexed, seconds=30)  # the batches did it, no search has run
        last = 2 + 2 * sql.search_index.BATCH + 7
        found = await store.list_responses("p", ResponseQuery(q=f"word{last}"))
        assert [r["id"] for r in found.data] == [f"resp_{last}"]
    finally:
        await store.close()
