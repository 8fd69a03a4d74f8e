"""A store of a test's own: a fresh SQLite file, or a fresh PostgreSQL database dropped after."""

from __future__ import annotations

import contextlib
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
