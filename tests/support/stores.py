"""A store of a test's own: a fresh SQLite file, or a fresh PostgreSQL database dropped after."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from continuo.store.sql import SQLStore
from tests.support.postgres import create_database, drop_database


@contextlib.asynccontextmanager
async def own_store(kind: str, tmp_path: Path) -> AsyncIterator[SQLStore]:
    """``kind``: "sqlite" or "postgresql"."""
    url = f"sqlite:///{tmp_path / 'store.db'}" if kind == "sqlite" else create_database()
    instance = SQLStore(url)
    await instance.open()
    try:
        yield instance
    finally:
        await instance.close()
        if kind == "postgresql":
            drop_database(url)


@contextlib.asynccontextmanager
async def write_lock_held_by_a_thread(store: SQLStore) -> AsyncIterator[threading.Event]:
    """SQLite's write lock held by a worker thread (as by a checkpoint) until the event
    yielded is set, and at the latest on leaving."""
    holding, let_go = threading.Event(), threading.Event()

    def hold() -> None:
        with store._thread_holds_write_lock():
            holding.set()
            let_go.wait(10)

    holder = asyncio.get_running_loop().run_in_executor(None, hold)
    try:
        assert await asyncio.to_thread(holding.wait, 10)
        yield let_go
    finally:
        let_go.set()
        await holder
