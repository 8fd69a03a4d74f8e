"""The store, the same suite on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, text

from continuo.store.base import ExpiredRun, StoredEvent
from continuo.store.sql import SQLStore
from tests.support.records import response, texts, user


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request, tmp_path) -> AsyncIterator[SQLStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    instance = SQLStore(url)
    await instance.open()

    def empty(conn) -> None:
        for table in ("events", "items", "responses"):
            conn.execute(text(f"DELETE FROM {table}"))

    await instance._write(empty)
    yield instance
    await instance.close()


async def test_save_get_delete(store):
    await store.save_response("p", response("resp_a"), [user("msg_a", "hi")])
    got = await store.get_response("p", "resp_a")
    assert got == response("resp_a") | {"created_at": got["created_at"]}
    assert await store.get_response("other", "resp_a") is None
    assert await store.delete_response("other", "resp_a") is False
    assert await store.delete_response("p", "resp_a") is True
    assert await store.get_response("p", "resp_a") is None
    assert await store.input_items("p", "resp_a", limit=20, ascending=True, after=None) is None


async def test_chain_branches_and_input_items(store):
    await store.save_response("p", response("resp_1", text_="o1"), [user("msg_1", "i1")])
    await store.save_response("p", response("resp_2", "resp_1", text_="o2"), [user("msg_2", "i2")])
    await store.save_response("p", response("resp_3", "resp_1", text_="o3"), [user("msg_3", "i3")])
    assert texts(await store.chain_items("p", "resp_2")) == ["i1", "o1", "i2", "o2"]
    assert texts(await store.chain_items("p", "resp_3")) == ["i1", "o1", "i3", "o3"]
    page = await store.input_items("p", "resp_3", limit=20, ascending=True, after=None)
    assert texts(page.data) == ["i1", "o1", "i3"]
    assert await store.chain_items("other", "resp_3") is None
    found = await store.find_items("p", ["msg_out_resp_1", "msg_2", "missing"])
    assert set(found) == {"msg_out_resp_1", "msg_2"}
    assert await store.find_items("other", ["msg_2"]) == {}


async def test_deep_chain_is_one_query(store):
    previous = None
    for i in range(1000):
        await store.save_response("p", response(f"resp_{i}", previous, text_=f"o{i}"), [user(f"msg_{i}", f"i{i}")])
        previous = f"resp_{i}"
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(store.sync_engine, "before_cursor_execute", count)
    try:
        chain = await store.chain_items("p", "resp_999")
    finally:
        event.remove(store.sync_engine, "before_cursor_execute", count)
    assert len(chain) == 2000
    assert texts(chain)[:3] == ["i0", "o0", "i1"] and texts(chain)[-1] == "o999"
    assert len([s for s in statements if "RECURSIVE" in s.upper()]) == 1
    assert len(statements) == 1


async def background(store, response_id: str, project: str = "p") -> None:
    queued = response(response_id, status="queued", background=True) | {"output": []}
    events = [
        StoredEvent(0, "response.created", b'{"type":"response.created"}'),
        StoredEvent(1, "response.queued", b"{}"),
    ]
    await store.create_background(
        project, queued, [user(f"msg_{response_id}", "go")], {"model": "m", "input": "go"}, events
    )


def begin(response: dict, first: int) -> list[StoredEvent]:
    """What core's claim does: the status change and its event."""
    response["status"] = "in_progress"
    return [StoredEvent(first, "response.in_progress", b"{}")]


async def test_queue_is_claimed_in_order_and_once(store):
    for i in range(12):
        await background(store, f"resp_q{i}")
    claims = await asyncio.gather(*(store.claim_queued(f"owner{i % 3}", 10**15, begin) for i in range(20)))
    claimed = [c.response["id"] for c in claims if c is not None]
    assert sorted(claimed) == sorted(f"resp_q{i}" for i in range(12))
    assert len(claimed) == len(set(claimed))
    first = next(c for c in claims if c is not None)
    assert first.request == {"model": "m", "input": "go"}
    assert texts(first.context) == ["go"]
    assert first.next_sequence == 3


async def test_claim_order(store):
    for name in ("resp_first", "resp_second", "resp_third"):
        await background(store, name)
    order = [(await store.claim_queued("me", 10**15, begin)).response["id"] for _ in range(3)]
    assert order == ["resp_first", "resp_second", "resp_third"]
    assert await store.claim_queued("me", 10**15, begin) is None


async def test_run_progress_events_and_finish(store):
    await background(store, "resp_run")
    claim = await store.claim_queued("me", 10**15, begin)
    # The claim's status change is stored with it: object and status column agree at once.
    claimed = await store.get_response("p", "resp_run")
    assert claimed["status"] == "in_progress"
    assert await store._read(
        lambda c: c.execute(text("SELECT status FROM responses WHERE id = 'resp_run'")).scalar()
    ) == ("in_progress")
    assert [e.type for e in await store.events_after("p", "resp_run", -1)][-1] == "response.in_progress"
    running = claim.response
    running["output"] = [
        {"id": "rs_1", "type": "reasoning", "status": "completed"},
        {"id": "msg_x", "type": "message", "status": "in_progress"},
    ]
    await store.update_run("resp_run", running, [StoredEvent(3, "response.output_item.done", b"{}")])
    await store.append_events("resp_run", [StoredEvent(4, "response.output_text.delta", b"{}")])
    now = await store.get_response("p", "resp_run")
    assert now["status"] == "in_progress" and [i["id"] for i in now["output"]] == ["rs_1"]
    assert [e.sequence_number for e in await store.events_after("p", "resp_run", 0)] == [1, 2, 3, 4]
    assert await store.events_after("other", "resp_run", -1) == []
    assert await store.next_sequence("resp_run") == 5
    done = running | {"status": "completed", "output": [running["output"][0], {"id": "msg_x", "status": "completed"}]}
    assert await store.finish_run("resp_run", done, [StoredEvent(5, "response.completed", b"{}")]) is True
    assert await store.finish_run("resp_run", done, []) is False
    final = await store.get_response("p", "resp_run")
    assert final["status"] == "completed" and len(final["output"]) == 2


async def test_leases_cancel_requests_and_expiry(store):
    await background(store, "resp_lease")
    await store.claim_queued("owner-a", 1000, begin)
    assert await store.expired_runs(999) == []
    assert await store.expired_runs(1001) == [ExpiredRun("p", "resp_lease", False)]
    await store.renew_leases("owner-a", ["resp_other"], 5000)  # only the runs it still holds
    assert await store.expired_runs(1001) == [ExpiredRun("p", "resp_lease", False)]
    await store.renew_leases("owner-b", ["resp_lease"], 5000)  # nor another owner's
    assert await store.expired_runs(1001) == [ExpiredRun("p", "resp_lease", False)]
    await store.renew_leases("owner-a", ["resp_lease"], 5000)
    assert await store.expired_runs(1001) == []
    assert await store.cancel_requests("owner-a") == []
    await store.request_cancel("p", "resp_lease")
    assert await store.cancel_requests("owner-a") == ["resp_lease"]
    assert await store.cancel_requests("owner-b") == []
    assert await store.expired_runs(5001) == [ExpiredRun("p", "resp_lease", True)]


async def test_delete_removes_items_and_events(store):
    await background(store, "resp_del")
    assert await store.delete_response("p", "resp_del") is True

    def count(conn, table: str) -> int:
        return conn.execute(text(f"SELECT count(*) FROM {table} WHERE response_id = 'resp_del'")).scalar()

    for table in ("items", "events"):
        assert await store._read(count, table) == 0


async def chain_of(store, turns: int, prefix: str = "resp_p") -> str:
    previous = None
    for i in range(turns):
        await store.save_response(
            "p", response(f"{prefix}{i}", previous, text_=f"o{i}"), [user(f"msg_{prefix}{i}", f"i{i}")]
        )
        previous = f"{prefix}{i}"
    assert previous is not None
    return previous


async def test_input_items_pages_in_sql(store):
    last = await chain_of(store, 60)
    whole = texts(await store.chain_items("p", last))[:-1]  # the context: not its own output
    for ascending in (True, False):
        expected = whole if ascending else whole[::-1]
        seen: list[str] = []
        after = None
        while True:
            page = await store.input_items("p", last, limit=7, ascending=ascending, after=after)
            assert page is not None and page.anchor_found and len(page.data) <= 7
            seen += texts(page.data)
            if not page.has_more:
                break
            after = page.data[-1]["id"]
        assert seen == expected
    statements: list[str] = []
    event.listen(store.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    page = await store.input_items("p", last, limit=5, ascending=True, after="msg_out_resp_p29")
    assert texts(page.data) == ["i30", "o30", "i31", "o31", "i32"] and page.has_more
    # Paged by the database: every statement is limited, none reads the whole chain.
    assert statements and all("LIMIT" in s.upper() for s in statements if "RECURSIVE" in s.upper())
    missing = await store.input_items("p", last, limit=5, ascending=True, after="msg_nowhere")
    assert missing is not None and not missing.anchor_found
    assert await store.input_items("other", last, limit=5, ascending=True, after=None) is None


async def test_a_large_read_leaves_the_event_loop(store):
    if not store.is_sqlite:
        pytest.skip("only SQLite reads run on the event loop")
    import threading

    def count(conn, upto: int) -> tuple[int, str]:
        query = f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {upto}) "
        query += "SELECT count(*) FROM c"
        return conn.execute(text(query)).scalar(), threading.current_thread().name

    small = await store._read(count, 10)
    large = await store._read(count, 200_000)
    assert small == (10, threading.current_thread().name)  # on the loop's own thread
    assert large[0] == 200_000 and large[1].startswith("continuo-sqlite")  # moved to a worker


async def test_the_sqlite_form_of_save_writes_what_sqlalchemy_writes(tmp_path):
    """``save`` on SQLite runs a hand-written sqlite3 form (store/ops/responses.py): the
    rows it writes are those SQLAlchemy's ``save`` writes, column for column."""
    from continuo.store import engine
    from continuo.store.ops import responses as ops

    saved = response(
        "resp_1", previous=None, background=True, metadata={"k": "v"}, usage={"input_tokens": 3}
    )
    items = [user("msg_in_1", "hello"), {"type": "function_call_output", "call_id": "c", "output": "x"}]
    tables: list[dict[str, list[tuple[Any, ...]]]] = []
    for raw in (True, False):
        store = SQLStore(f"sqlite:///{tmp_path / f'{raw}.db'}")
        await store.open()
        form = engine._SQLITE_FORMS.pop(ops.save) if not raw else None
        try:
            await store.save_response("p", saved, items)
        finally:
            if form is not None:
                engine._SQLITE_FORMS[ops.save] = form

        def rows(conn) -> dict[str, list[tuple[Any, ...]]]:
            return {
                table: [tuple(row) for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY 1, 2"))]
                for table in ("responses", "items")
            }

        found = await store._read(rows)
        # updated_at_us is the time of the write itself.
        found["responses"] = [row[:6] + row[7:] for row in found["responses"]]
        tables.append(found)
        await store.close()
    assert tables[0] == tables[1]
    assert len(tables[0]["items"]) == 3 and len(tables[0]["responses"]) == 1


def test_ids_begin_with_the_time():
    from continuo.ids import new_id

    first = new_id("resp")
    ids = [new_id("resp") for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert [i[5:19] for i in ids] == sorted(i[5:19] for i in ids)  # in the order made
    assert len(first) == len("resp_") + 48 and int(first[5:19], 16) <= time.time_ns() // 1000
