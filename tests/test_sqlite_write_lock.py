"""On SQLite, a write that finds the write lock held by a worker thread (a checkpoint, or
a write waiting on another process) waits for it on the loop and then runs there, not in
a thread of its own (which held the lock long enough for the next writes to queue behind
it in threads too)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from tests.support.stores import own_store, write_lock_held_by_a_thread


async def test_a_write_waits_for_a_threads_lock_and_runs_on_the_loop(tmp_path: Path) -> None:
    async with own_store("sqlite", tmp_path) as store, write_lock_held_by_a_thread(store) as let_go:
        ran_in: list[threading.Thread] = []

        def note_thread(conn: Any) -> str:
            ran_in.append(threading.current_thread())
            return "written"

        write = asyncio.ensure_future(store._write(note_thread))
        for _ in range(20):  # turns of the loop: the write stays parked on the lock
            await asyncio.sleep(0)
        assert not write.done() and ran_in == []
        let_go.set()
        assert await asyncio.wait_for(write, 10) == "written"
        assert ran_in == [threading.current_thread()]
        assert store._lock_waiters == set()
