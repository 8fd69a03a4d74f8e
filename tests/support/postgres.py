"""A PostgreSQL database of the tests' own on the local server, dropped afterwards."""

from __future__ import annotations

import asyncio
import os
import secrets
from concurrent.futures import ThreadPoolExecutor

import asyncpg

ADMIN_DSN = os.environ.get("CONTINUO_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def _server_dsn(database: str) -> str:
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{database}"


async def _execute(statement: str) -> None:
    connection = await asyncpg.connect(ADMIN_DSN)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _admin(statement: str) -> None:
    # In a thread of its own: callers may already be inside an event loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _execute(statement)).result()


def create_database() -> str:
    """Create a fresh database and return its SQLAlchemy-style URL."""
    name = f"continuo_test_{secrets.token_hex(6)}"
    _admin(f'CREATE DATABASE "{name}"')
    return _server_dsn(name)


def drop_database(url: str) -> None:
    name = url.rpartition("/")[2]
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
