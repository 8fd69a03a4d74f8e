"""Group commit on SQLite (store/commit_group.py): saves of one loop turn share one
transaction; one member's error fails that member alone; a group that cannot take the
write lock hands its members back to be written one by one."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from continuo.store.sql import SQLStore
from tests.support.records import response, user
from tests.support.stores import own_store, write_lock_held_by_a_thread


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLStore]:
    async with own_store("sqlite", tmp_path) as instance:
        yield instance


def commits_of(store: SQLStore) -> list[str]:
    """The write transactions the loop's connection begins from now on (reads begin
    deferred ones)."""
    seen: list[str] = []
    store._raw_inline().set_trace_callback(
        lambda statement: seen.append(statement) if statement.upper() == "BEGIN IMMEDIATE" else None
    )
    return seen


async def test_saves_of_one_turn_share_a_commit(store: SQLStore) -> None:
    commits = commits_of(store)
    ids = [f"resp_{i}" for i in range(8)]
    await asyncio.gather(*(store.save_response("p", response(rid), [user(f"msg_{rid}", rid)]) for rid in ids))
    # The first save of the turn commits at once; the other seven commit together.
    assert len(commits) == 2
    for rid in ids:
        stored = await store.get_response("p", rid)
        assert stored is not None and stored["output"][0]["id"] == f"msg_out_{rid}"
    # A lone save later commits at once.
    await store.save_response("p", response("resp_alone"), [])
    assert len(commits) == 3


async def test_a_members_error_fails_that_member_alone(store: SQLStore) -> None:
    first = response("resp_twice", text_="first")
    again = response("resp_twice", text_="again")
    broken = response("resp_broken")
    broken["output"][0]["content"][0]["annotations"] = {object()}  # fails after its row is written
    saves = [
        store.save_response("p", response("resp_a"), []),
        store.save_response("p", response("resp_b"), []),
        store.save_response("p", first, [user("msg_first", "first")]),
        store.save_response("p", again, [user("msg_again", "again")]),  # the same id: refused
        store.save_response("p", broken, []),
        store.save_response("p", response("resp_c"), []),
    ]
    outcomes = await asyncio.gather(*saves, return_exceptions=True)
    assert [type(o) for o in outcomes] == [
        type(None),
        type(None),
        type(None),
        sqlite3.IntegrityError,
        orjson.JSONEncodeError,
        type(None),
    ]
    for rid in ("resp_a", "resp_b", "resp_c"):
        assert await store.get_response("p", rid) is not None
    stored = await store.get_response("p", "resp_twice")
    assert stored is not None and stored["output"][0]["content"][0]["text"] == "first"
    items = await store.input_items("p", "resp_twice", limit=10, ascending=True, after=None)
    assert items is not None and [item["id"] for item in items.data] == ["msg_first"]
    # The broken member's row, written before it failed, was rolled back with its savepoint.
    assert await store.get_response("p", "resp_broken") is None


async def test_a_group_that_finds_the_lock_held_is_written_one_by_one(store: SQLStore) -> None:
    async with write_lock_held_by_a_thread(store) as let_go:
        commits = commits_of(store)
        ids = [f"resp_{i}" for i in range(5)]
        saves = asyncio.gather(*(store.save_response("p", response(rid), []) for rid in ids))
        for _ in range(20):  # turns of the loop: every save waits for the lock
            await asyncio.sleep(0)
        assert not saves.done() and commits == []
        let_go.set()
        await asyncio.wait_for(saves, 10)
    assert len(commits) == len(ids)  # each alone, on the loop
    for rid in ids:
        assert await store.get_response("p", rid) is not None
