"""Retention in the store, on SQLite and PostgreSQL: the sweeper's lease, batches that stay
small whatever they delete, and what is never swept (live runs, busy conversations)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from continuo.core.retention import DAY_US, RetentionPolicy, RetentionSweeper
from continuo.store.base import StoredEvent
from continuo.store.schema import conversation_items, conversations, events, items, responses
from continuo.store.sql import SQLStore

HOUR_US = 3600 * 1_000_000
LEASE = "retention"


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request, tmp_path) -> AsyncIterator[SQLStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'retention.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    instance = SQLStore(url)
    await instance.open()

    def empty(conn) -> None:
        for table in ("conversation_items", "conversations", "events", "items", "responses", "leases"):
            conn.execute(text(f"DELETE FROM {table}"))

    await instance._write(empty)
    yield instance
    await instance.close()


def now_us() -> int:
    return time.time_ns() // 1000


def response(response_id: str, status: str = "completed", outputs: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "previous_response_id": None,
        "output": [
            {
                "id": f"msg_{response_id}_{i}",
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "out"}],
            }
            for i in range(outputs)
        ],
        **extra,
    }


def user(item_id: str) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}


async def age(store: SQLStore, table: Any, ids: list[str], by_us: int) -> None:
    column = table.c.created_at_us if table is responses else table.c.updated_at_us

    def backdate(conn) -> None:
        conn.execute(update(table).where(table.c.id.in_(ids)).values({column: column - by_us}))

    await store._write(backdate)


async def count(store: SQLStore, table: Any) -> int:
    return await store._read(lambda conn: conn.execute(select(func.count()).select_from(table)).scalar())


def lease(owner: str, seconds: float = 30) -> tuple[str, str, int]:
    return LEASE, owner, now_us() + int(seconds * 1_000_000)


async def test_one_lease_holder_and_every_batch_checks_it(store):
    await store.save_response("p", response("resp_old"), [user("msg_old")])
    await age(store, responses, ["resp_old"], 2 * DAY_US)
    before = now_us() - DAY_US
    assert await store.take_lease(*lease("a"))
    assert not await store.take_lease(*lease("b"))
    # b never took the lease: its batches delete nothing.
    assert await store.expire_responses(lease("b"), "p", before, 10) is None
    assert await store.expire_conversations(lease("b"), "p", before, 10) is None
    assert await count(store, responses) == 1
    # a's lease runs out and b takes it: a's next batch finds it gone and does nothing.
    assert await store.take_lease(*lease("a", seconds=-1))
    assert await store.take_lease(*lease("b"))
    assert await store.expire_responses(lease("a"), "p", before, 10) is None
    assert await count(store, responses) == 1
    assert await store.expire_responses(lease("b"), "p", before, 10) == (1, 3)
    assert await store.expire_responses(lease("b"), "p", before, 10) == (0, 0)
    # Given back, it is free at once.
    await store.release_lease(LEASE, "b")
    assert await store.take_lease(*lease("c"))


async def test_batches_stay_small_and_only_expired_responses_go(store):
    for i in range(40):
        await store.save_response("p", response(f"resp_{i:03}", outputs=2), [user(f"msg_in_{i}")])
    await store.save_response("other", response("resp_other"), [])
    old = [f"resp_{i:03}" for i in range(30)]
    await age(store, responses, [*old, "resp_other"], 2 * DAY_US)
    before = now_us() - DAY_US
    assert await store.take_lease(*lease("a"))
    batches = []
    while (outcome := await store.expire_responses(lease("a"), "p", before, 10)) != (0, 0):
        assert outcome is not None
        batches.append(outcome)
    # Each response is 4 rows (itself, one input, two outputs): two fit in a batch of 10.
    assert batches == [(2, 8)] * 15
    left = await store._read(lambda conn: sorted(conn.execute(select(responses.c.id)).scalars()))
    assert left == sorted([f"resp_{i:03}" for i in range(30, 40)] + ["resp_other"])
    assert await count(store, items) == 10 * 3 + 1


async def test_a_response_larger_than_a_batch_loses_its_events_first(store):
    await store.create_background("p", response("resp_big", status="queued", outputs=0), [user("msg_big")], {}, [])
    await store.append_events("resp_big", [StoredEvent(i, "response.output_text.delta", b"{}") for i in range(95)])
    finished = response("resp_big", status="completed")
    assert await store.finish_run("resp_big", finished, [], from_statuses=("queued",))
    await age(store, responses, ["resp_big"], 2 * DAY_US)
    assert await store.take_lease(*lease("a"))
    before = now_us() - DAY_US
    steps = []
    while (outcome := await store.expire_responses(lease("a"), "p", before, 40)) != (0, 0):
        steps.append(outcome)
    assert steps == [(0, 40), (0, 40), (1, 15 + 3)]
    assert await count(store, events) == 0 and await count(store, items) == 0


async def test_live_runs_are_not_swept(store):
    await store.create_background("p", response("resp_q", status="queued", outputs=0), [user("msg_q")], {}, [])
    await age(store, responses, ["resp_q"], 30 * DAY_US)
    assert await store.take_lease(*lease("a"))
    assert await store.expire_responses(lease("a"), "p", now_us() - DAY_US, 10) == (0, 0)
    assert await store.get_response("p", "resp_q") is not None


async def test_idle_conversations_go_busy_and_recent_ones_stay(store):
    await store.create_conversation("p", "conv_idle", {}, [user("msg_a"), user("msg_b")])
    await store.create_conversation("p", "conv_recent", {}, [])
    await store.create_conversation("p", "conv_busy", {}, [])
    await age(store, conversations, ["conv_idle", "conv_recent", "conv_busy"], 2 * DAY_US)
    # Used since: no longer idle.
    assert await store.add_conversation_items("p", "conv_recent", [user("msg_c")])
    # A response is running on it.
    assert await store.acquire_conversation("p", "conv_busy", "resp_running", now_us() + HOUR_US) == "ok"
    assert await store.take_lease(*lease("a"))
    before = now_us() - DAY_US
    assert await store.expire_conversations(lease("a"), "p", before, 10) == (1, 3)
    assert await store.expire_conversations(lease("a"), "p", before, 10) == (0, 0)
    assert await store.get_conversation("p", "conv_idle") is None
    assert await store.get_conversation("p", "conv_recent") is not None
    assert await store.get_conversation("p", "conv_busy") is not None


async def test_a_large_conversation_is_taken_apart_under_its_lock(store):
    await store.create_conversation("p", "conv_big", {}, [user(f"msg_{i}") for i in range(20)])
    await age(store, conversations, ["conv_big"], 2 * DAY_US)
    assert await store.take_lease(*lease("a"))
    before = now_us() - DAY_US
    assert await store.expire_conversations(lease("a"), "p", before, 8) == (0, 8)
    # Meanwhile no response may start on it.
    assert await store.acquire_conversation("p", "conv_big", "resp_new", None) == "locked"
    assert await store.expire_conversations(lease("a"), "p", before, 8) == (0, 8)
    assert await store.expire_conversations(lease("a"), "p", before, 8) == (0, 4)
    assert await store.expire_conversations(lease("a"), "p", before, 8) == (1, 1)
    assert await store.expire_conversations(lease("a"), "p", before, 8) == (0, 0)
    assert await count(store, conversations) == 0 and await count(store, conversation_items) == 0


async def test_a_sweep_applies_each_projects_retention(store):
    for project in ("short", "forever", "other"):
        for name in ("young", "old"):
            await store.save_response(project, response(f"resp_{project}_{name}"), [])
    await age(store, responses, ["resp_short_young", "resp_forever_young", "resp_other_young"], 2 * HOUR_US)
    await age(store, responses, ["resp_short_old", "resp_forever_old", "resp_other_old"], 3 * DAY_US)
    policy = RetentionPolicy(default=2, projects={"short": 1 / 24, "forever": 0})
    sweeper = RetentionSweeper(store, policy, interval=60, batch=5)
    done = await sweeper.sweep()
    assert done.held and done.responses == 3 and not done.lost
    left = await store._read(lambda conn: sorted(conn.execute(select(responses.c.id)).scalars()))
    assert left == ["resp_forever_old", "resp_forever_young", "resp_other_young"]
    # Another sweeper finds the lease taken and sweeps nothing; once given back, it may.
    other = RetentionSweeper(store, policy, interval=60, batch=5)
    assert not (await other.sweep()).held
    await sweeper.store.release_lease(LEASE, sweeper.owner)
    assert (await other.sweep()).held


async def test_delete_releases_a_conversation_lock_its_response_held(store):
    await store.create_conversation("p", "conv_q", {}, [])
    queued = response("resp_q", status="queued", outputs=0, conversation={"id": "conv_q"})
    await store.create_background("p", queued, [user("msg_q")], {}, [])

    def holder(conn) -> str | None:
        return conn.execute(select(conversations.c.active_response_id)).scalar()

    assert await store._read(holder) == "resp_q"
    assert await store.delete_response("p", "resp_q")
    assert await store._read(holder) is None
