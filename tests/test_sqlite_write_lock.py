"""On SQLite, a write that finds the write lock held by a worker thread (a checkpoint, or
a write waiting on another process) waits for it on the loop and then runs there, not in
a thread of its own (which held the lock long enough for the next writes to queue behind
it in threads too)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from continuo.store.sql import SQLStore


async def test_a_write_waits_for_a_threads_lock_and_runs_on_the_loop(tmp_path: Path) -> None:
    store = SQLStore(f"sqlite:///{tmp_path / 's.db'}")
    await store.open()
    try:
        holding, let_go = threading.Event(), threading.Event()

        def hold() -> None:
            with store._thread_holds_write_lock():
                holding.set()
                let_go.wait(10)

        holder = asyncio.get_running_loop().run_in_executor(None, hold)
        assert await asyncio.to_thread(holding.wait, 10)
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
        await holder
        assert ran_in == [threading.current_thread()]
        assert store._lock_waiters == set()
    finally:
        let_go.set()
        await store.close()
