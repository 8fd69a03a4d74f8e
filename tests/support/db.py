"""Reading and changing a server's database from a test, behind its back: SQLite or
PostgreSQL, by URL, with SQLAlchemy Core (a fresh engine each time, in a thread of its
own, so it works inside and outside an event loop)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from continuo.store.engine import _url

T = TypeVar("T")


async def _postgres(url: str, work: Callable[[Connection], T]) -> T:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(work)
    finally:
        await engine.dispose()


def _run(url: str, work: Callable[[Connection], T]) -> T:
    driver_url, is_sqlite = _url(url)
    if not is_sqlite:
        return asyncio.run(_postgres(driver_url, work))
    engine = create_engine(driver_url)
    try:
        with engine.begin() as conn:
            return work(conn)
    finally:
        engine.dispose()


def run(url: str, work: Callable[[Connection], T]) -> T:
    """``work(connection)`` in one transaction on the database at ``url``."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(_run, url, work).result()


def tables(conn: Connection) -> dict[str, list[str]]:
    """Every table of the database and its columns, found in the database itself (not in
    Continuo's metadata), so a table added later is included. SQLite's FTS tables are left
    out, shadow tables and all: the full-text index is contentless (it cannot be read
    back), and ``response_search_keys``, which maps each of its rows to a response and is
    kept in step with it by the same triggers, stands for it."""
    inspector = inspect(conn)
    names = inspector.get_table_names()
    if conn.dialect.name == "sqlite":
        virtual = [
            name
            for (name,) in conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%'"
            )
        ]
        names = sorted(n for n in names if n not in virtual and not any(n.startswith(f"{v}_") for v in virtual))
    found: dict[str, list[str]] = {}
    for name in names:
        if conn.dialect.name == "sqlite":
            found[name] = [row[1] for row in conn.exec_driver_sql(f'PRAGMA table_info("{name}")')]
        else:
            found[name] = [column["name"] for column in inspector.get_columns(name)]
    return found


def row_counts(url: str) -> dict[str, int]:
    def count(conn: Connection) -> dict[str, int]:
        return {
            name: int(conn.exec_driver_sql(f'SELECT count(*) FROM "{name}"').scalar() or 0) for name in tables(conn)
        }

    return run(url, count)


def mentions(url: str, needles: list[str], allowed: Callable[[str, str], str] | None = None) -> list[str]:
    """Where any of ``needles`` appears in any column of any table, as text: lines
    ``table.column: needle (n rows)``. ``allowed(table, needle)`` may return an SQL
    condition for rows that may mention it (left out of the count)."""

    def scan(conn: Connection) -> list[str]:
        found = []
        for name, columns in tables(conn).items():
            for column in columns:
                for needle in needles:
                    query = f'SELECT count(*) FROM "{name}" WHERE CAST("{column}" AS TEXT) LIKE :needle'
                    if allowed is not None and (condition := allowed(name, needle)):
                        query += f" AND NOT ({condition})"
                    if n := conn.execute(text(query), {"needle": f"%{needle}%"}).scalar():
                        found.append(f"{name}.{column}: {needle} ({n} rows)")
        return found

    return run(url, scan)
