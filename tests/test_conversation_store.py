"""The conversation store on SQLite and PostgreSQL: items stored once, keyset pages over a
10,000-item conversation, appends that do not grow with its length, the in-progress lock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, func, select, text

from continuo.errors import NotFound
from continuo.store.ops.conversations import ITEM, PAGE_ASC, POSITION_OF
from continuo.store.schema import conversation_items, items, now_us
from continuo.store.sql import SQLStore
from tests.support.records import response, texts, user


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request, tmp_path) -> AsyncIterator[SQLStore]:
    url = f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    instance = SQLStore(url)
    await instance.open()

    def empty(conn) -> None:
        for table in ("conversation_items", "conversations", "events", "items", "responses"):
            conn.execute(text(f"DELETE FROM {table}"))

    await instance._write(empty)
    yield instance
    await instance.close()


@contextmanager
def counted(store: SQLStore) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(store.sync_engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(store.sync_engine, "before_cursor_execute", count)


def on(conversation_id: str, response_id: str, **extra: Any) -> dict[str, Any]:
    return response(response_id, conversation={"id": conversation_id}, **extra)


async def rows(store: SQLStore, query: Any) -> Any:
    def run(conn) -> Any:
        return conn.execute(query).all()

    return await store._read(run)


async def test_a_response_item_is_stored_once(store):
    await store.create_conversation("p", "conv_1", {}, [user("msg_0", "hello")])
    assert await store.acquire_conversation("p", "conv_1", "resp_1", now_us() + 60_000_000) == "ok"
    await store.save_response("p", on("conv_1", "resp_1"), [user("msg_1", "question")])
    history = await store.conversation_history("p", "conv_1")
    assert texts(history) == ["hello", "question", "out"]
    # The response's items live in ``items``; the conversation only points at them.
    assert (await rows(store, select(func.count()).select_from(items)))[0][0] == 2
    refs = await rows(
        store,
        select(conversation_items.c.item_id, conversation_items.c.response_id, conversation_items.c.body).order_by(
            conversation_items.c.position
        ),
    )
    assert [(item_id, owner, body is None) for item_id, owner, body in refs] == [
        ("msg_0", None, False),
        ("msg_1", "resp_1", True),
        ("msg_out_resp_1", "resp_1", True),
    ]
    # Saving released the lock in the same transaction.
    assert await store.acquire_conversation("p", "conv_1", "resp_2", None) == "ok"
    # Deleting the response hands the conversation a copy of its items.
    assert await store.delete_response("p", "resp_1")
    assert texts(await store.conversation_history("p", "conv_1")) == ["hello", "question", "out"]


async def test_failed_response_appends_nothing(store):
    await store.create_conversation("p", "conv_f", {}, [])
    assert await store.acquire_conversation("p", "conv_f", "resp_f", now_us() + 60_000_000) == "ok"
    await store.save_response("p", on("conv_f", "resp_f", status="failed"), [user("msg_f", "q")])
    assert await store.conversation_history("p", "conv_f") == []
    assert await store.acquire_conversation("p", "conv_f", "resp_g", None) == "ok"


async def test_ten_thousand_items_page_in_sql_and_appends_stay_small(store):
    await store.create_conversation("p", "conv_big", {}, [])
    await store.create_conversation("p", "conv_small", {}, [])
    for start in range(0, 10_000, 1000):
        batch = [user(f"msg_{i}", f"m{i}") for i in range(start, start + 1000)]
        assert await store.add_conversation_items("p", "conv_big", batch)

    with counted(store) as first_page:
        page = await store.conversation_items("p", "conv_big", limit=100, order="asc", after=None)
    assert texts(page.data) == [f"m{i}" for i in range(100)] and page.has_more
    with counted(store) as deep_page:
        page = await store.conversation_items("p", "conv_big", limit=100, order="asc", after="msg_9949")
    assert texts(page.data) == [f"m{i}" for i in range(9950, 10_000)] and not page.has_more
    page = await store.conversation_items("p", "conv_big", limit=3, order="desc", after="msg_5000")
    assert texts(page.data) == ["m4999", "m4998", "m4997"] and page.has_more
    # A page is a bounded query (a LIMIT on a keyset), however deep it starts.
    assert len(first_page) == 2 and len(deep_page) == 3
    assert all("LIMIT" in s.upper() for s in first_page[1:] + deep_page[2:])

    async def append(cid: str) -> list[str]:
        with counted(store) as statements:
            assert await store.add_conversation_items("p", cid, [user(f"msg_new_{cid}", "new")])
        return statements

    # Appending to 10,000 items is the same statements as appending to none.
    assert await append("conv_big") == await append("conv_small")
    assert texts((await store.conversation_items("p", "conv_big", limit=1, order="desc", after=None)).data) == ["new"]


async def test_keyset_page_uses_the_primary_keys(store):
    if not store.is_sqlite:
        pytest.skip("the query plan is checked on SQLite")

    def plan(conn, statement) -> str:
        compiled = statement.compile(conn, compile_kwargs={"render_postcompile": True})
        params = {**compiled.params, "cid": "conv", "bound": 5, "n": 10, "item_id": "msg"}
        positions = compiled.positiontup or []
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), tuple(params[k] for k in positions))
        return " ".join(str(row[-1]) for row in rows)

    found = await store._read(plan, PAGE_ASC)
    # A range search on the primary key, and each referenced item found by its own key.
    assert (
        "SEARCH conversation_items USING INDEX sqlite_autoindex_conversation_items_1 (conversation_id=? AND position>?)"
        in found
    )
    assert "SEARCH items USING INDEX sqlite_autoindex_items_1 (response_id=? AND kind=? AND position=?)" in found
    # An item found by its id, not by walking the conversation.
    for statement in (POSITION_OF, ITEM):
        assert "(conversation_id=? AND item_id=?)" in await store._read(plan, statement)


async def test_lock_refuses_expires_and_follows_the_holder(store):
    await store.create_conversation("p", "conv_l", {}, [])
    assert await store.acquire_conversation("other", "conv_l", "resp_x", None) == "missing"
    assert await store.acquire_conversation("p", "conv_l", "resp_1", now_us() + 60_000_000) == "ok"
    assert await store.acquire_conversation("p", "conv_l", "resp_2", now_us() + 60_000_000) == "locked"
    await store.release_conversation("resp_1")
    # A timed lock whose time has passed is stale (a server died mid-response).
    assert await store.acquire_conversation("p", "conv_l", "resp_2", now_us() - 1) == "ok"
    assert await store.acquire_conversation("p", "conv_l", "resp_3", None) == "ok"
    # A lock with no time limit lasts while its response is queued or in progress; this
    # holder was never stored, so the lock is stale at once.
    assert await store.acquire_conversation("p", "conv_l", "resp_4", None) == "ok"
    queued = response("resp_bg", status="queued", background=True, conversation={"id": "conv_l"}) | {"output": []}
    await store.release_conversation("resp_4")
    await store.create_background("p", queued, [user("msg_bg", "go")], {"model": "m", "input": "go"}, [])
    assert await store.acquire_conversation("p", "conv_l", "resp_5", None) == "locked"
    assert await store.finish_run("resp_bg", queued | {"status": "cancelled"}, [], from_statuses=("queued",))
    assert await store.acquire_conversation("p", "conv_l", "resp_5", None) == "ok"


@pytest.mark.parametrize("bad", ["conv_\x00x", "", "c" * 65])
async def test_an_id_that_cannot_exist_is_not_found_without_asking(store: SQLStore, bad: str) -> None:
    # PostgreSQL refuses NUL in text: such an id must answer "not found", never an error.
    assert await store.get_conversation("p", bad) is None
    assert await store.update_conversation("p", bad, {"k": "v"}) is None
    assert await store.delete_conversation("p", bad) is False
    assert await store.add_conversation_items("p", bad, [user("msg_x", "hi")]) is False
    assert await store.conversation_history("p", bad) is None
    assert await store.conversation_items("p", bad, limit=10, order="asc", after=None) is None
    assert await store.conversation_item("p", bad, "msg_x") == (False, None)
    assert await store.delete_conversation_item("p", bad, "msg_x") == (None, False)
    assert await store.acquire_conversation("p", bad, "resp_1", None) == "missing"
    queued = response("resp_bad", status="queued", background=True, conversation={"id": bad}) | {"output": []}
    with pytest.raises(NotFound):
        await store.create_background("p", queued, [user("msg_bg", "go")], {"model": "m", "input": "go"}, [])


async def test_an_item_id_that_cannot_exist_is_not_found_without_asking(store: SQLStore) -> None:
    await store.create_conversation("p", "conv_i", {}, [user("msg_1", "hi")])
    for bad in ("msg_\x00x", "", "m" * 129):
        assert await store.conversation_item("p", "conv_i", bad) == (True, None)
        conversation, removed = await store.delete_conversation_item("p", "conv_i", bad)
        assert conversation is not None and conversation["id"] == "conv_i" and removed is False
        page = await store.conversation_items("p", "conv_i", limit=10, order="asc", after=bad)
        assert page is not None and page.data == [] and page.anchor_found is False
    assert texts((await store.conversation_items("p", "conv_i", limit=10, order="asc", after=None)).data) == ["hi"]
