"""The store on SQLAlchemy Core: SQLite (embedded, WAL) or PostgreSQL, one schema.

Every operation is one plain function over a SQLAlchemy ``Connection``, run as a whole.
On PostgreSQL it runs through asyncpg (``run_sync``). On SQLite it runs right on the event
loop over the standard sqlite3 driver: a stored turn takes about 0.14 ms there, while one
hop to a worker thread and back costs 0.1 ms of CPU on its own (docs/performance.md). The
loop never waits on a lock for it: that connection does not wait when the database is
busy (another process writing), and such an operation is retried in a worker thread that
may wait; WAL checkpoints, which write the database file, run in a worker thread too.
Stored responses saved in the same turn of the loop share one transaction
(``_write_grouped``, store/commit_group.py).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from continuo.observability import timed_store
from continuo.store.commit_group import RETRY, CommitGroup
from continuo.store.ops.keys import ping

MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T")


class _Busy(Exception):
    """The SQLite write lock is held by a worker thread."""


# Hand-written sqlite3 forms of the hottest operations, by the SQLAlchemy operation they
# stand for, with when each applies: on SQLite, SQLAlchemy's work per statement (compiling
# the parameters, the connection's events, result objects) cost more than SQLite's own
# (docs/performance.md).
_SQLITE_FORMS: dict[Callable[..., Any], tuple[Callable[..., Any], Callable[..., bool]]] = {}


def sqlite_form(
    operation: Callable[..., Any], applies: Callable[..., bool]
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Register the decorated function (``raw_sqlite3_connection, *args``) as what SQLite
    runs for ``operation`` when ``applies(*args)``; otherwise, and on PostgreSQL,
    ``operation`` itself runs."""

    def register(raw: Callable[..., T]) -> Callable[..., T]:
        _SQLITE_FORMS[operation] = (raw, applies)
        return raw

    return register


def _raw_form(operation: Callable[..., Any], args: tuple[Any, ...]) -> Callable[..., Any] | None:
    form = _SQLITE_FORMS.get(operation)
    return form[0] if form is not None and form[1](*args) else None


def _url(url: str) -> tuple[str, bool]:
    """The URL with the driver Continuo uses, and whether it is SQLite."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        return parsed.set(drivername="sqlite").render_as_string(hide_password=False), True
    if parsed.drivername in ("postgresql", "postgres", "postgresql+asyncpg"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False), False
    raise ValueError(f"unsupported database URL scheme: {parsed.drivername}")


def run_migrations_on(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Replicas starting together take turns; the lock ends with the transaction.
        connection.execute(text("SELECT pg_advisory_xact_lock(727274)"))
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


def _sqlite_pragmas(busy_timeout_ms: int, autocheckpoint: bool) -> Callable[[Any, Any], None]:
    def apply(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        if not autocheckpoint:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    return apply


def _checkpoint(conn: Connection) -> None:
    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")


# A read on the loop may run this many SQLite VM steps (about 2 ms; a chain of 100 turns
# takes 6,400); a larger one (a long chain, a page of one) is interrupted and run again in a
# worker thread, so that one big read never stalls every other request.
_BUDGET_STEPS = 20_000
_BUDGET_STEP = 1_000
_RETRY_IN_THREAD = ("locked", "busy", "interrupted")


# How long a worker thread's connection waits for another process's write lock.
_BUSY_TIMEOUT_MS = 30_000


class _RawTransaction:
    """One SQLite transaction on a sqlite3 connection in autocommit mode: BEGIN IMMEDIATE
    for a write (the write lock is taken before anything is read), a deferred BEGIN for a
    read (one consistent snapshot for all its statements). Rolled back on any exception.
    A class: as a generator (``contextmanager``) it cost a save twice the Python steps."""

    __slots__ = ("raw", "write")

    def __init__(self, raw: Any, *, write: bool) -> None:
        self.raw = raw
        self.write = write

    def __enter__(self) -> None:
        self.raw.execute("BEGIN IMMEDIATE" if self.write else "BEGIN")

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.raw.commit()
        else:
            self.raw.rollback()


@contextmanager
def _transaction(engine: Engine, *, write: bool) -> Iterator[Connection]:
    """``_RawTransaction`` on a connection of ``engine``."""
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        with _RawTransaction(raw, write=write):
            yield conn


class _Budget:
    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = _BUDGET_STEPS // _BUDGET_STEP

    def __call__(self) -> int:
        self.left -= 1
        return 1 if self.left < 0 else 0


class Database:
    """Runs store operations: on SQLite inline on the loop (or in a worker thread when busy),
    on PostgreSQL through asyncpg."""

    def __init__(self, url: str, *, migrate: bool = True, pool_size: int = 10) -> None:
        self.url, self.is_sqlite = _url(url)
        self.migrate = migrate
        self.engine: AsyncEngine | None = None
        self.sqlite: Engine | None = None
        self.inline: Engine | None = None
        if self.is_sqlite:
            threads = 2
            # On the event loop: one connection, which never waits for a lock.
            # Transactions are begun by hand (``_transaction``): writes take the write lock up
            # front (BEGIN IMMEDIATE), so a writer never fails halfway on a lock upgrade
            # when other processes write the same file.
            self.inline = create_engine(
                self.url,
                poolclass=StaticPool,
                isolation_level="AUTOCOMMIT",
                connect_args={"check_same_thread": False},
            )
            event.listen(self.inline, "connect", _sqlite_pragmas(0, autocheckpoint=False))
            # In worker threads: what had to wait, and checkpoints.
            self.sqlite = create_engine(
                self.url,
                pool_size=threads,
                max_overflow=0,
                isolation_level="AUTOCOMMIT",
                connect_args={"check_same_thread": False},
            )
            event.listen(self.sqlite, "connect", _sqlite_pragmas(_BUSY_TIMEOUT_MS, autocheckpoint=True))
            self.threads = ThreadPoolExecutor(threads, thread_name_prefix="continuo-sqlite")
            # SQLite has one writer at a time: writers queue here rather than spin on
            # SQLITE_BUSY (which cost hundreds of milliseconds at 16 concurrent requests).
            self.write_lock = threading.Lock()
            self._lock_waiters: set[asyncio.Future[None]] = set()
            self._loop: asyncio.AbstractEventLoop | None = None
            self.writes = 0
            self._raw: sqlite3.Connection | None = None
            self._group = CommitGroup(self._raw_inline, self.write_lock)
        else:
            self.engine = create_async_engine(self.url, pool_size=pool_size)

    @property
    def sqlite_path(self) -> str:
        """The SQLite file (processes sharing it find each other by it)."""
        return make_url(self.url).database or ""

    @property
    def sync_engine(self) -> Engine:
        """The engine whose events fire for every statement (tests count statements)."""
        if self.inline is not None:
            return self.inline
        assert self.engine is not None
        return self.engine.sync_engine

    # -- running operations -----------------------------------------------------------

    def _sqlite_read(self, operation: Callable[..., T], args: tuple[Any, ...]) -> T:
        assert self.sqlite is not None
        with _transaction(self.sqlite, write=False) as conn:
            return operation(conn, *args)

    def _sqlite_write(self, operation: Callable[..., T], args: tuple[Any, ...]) -> T:
        assert self.sqlite is not None
        with self._thread_holds_write_lock(), _transaction(self.sqlite, write=True) as conn:
            form = _raw_form(operation, args)
            if form is not None:
                return form(conn.connection.dbapi_connection, *args)  # type: ignore[no-any-return]
            return operation(conn, *args)

    @contextmanager
    def _thread_holds_write_lock(self) -> Iterator[None]:
        """The write lock, in a worker thread; writes on the loop that found it taken are
        woken once it is let go."""
        try:
            with self.write_lock:
                yield
        finally:
            if self._lock_waiters and self._loop is not None:
                self._loop.call_soon_threadsafe(self._wake_lock_waiters)

    def _wake_lock_waiters(self) -> None:
        for waiter in self._lock_waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _write_lock_let_go(self) -> None:
        """Wait on the loop until no thread holds the write lock. A write that found it
        taken went to a worker thread before, where it held the lock long enough for the
        next writes to find it taken too: at c=16, a fifth to a third of the saves ran in
        threads (docs/performance.md)."""
        self._loop = asyncio.get_running_loop()
        waiter = self._loop.create_future()
        self._lock_waiters.add(waiter)
        try:
            # Registered first, tried second: a thread that lets go in between either is
            # seen here or sees the waiter.
            if self.write_lock.acquire(blocking=False):
                self.write_lock.release()
                return
            await waiter
        finally:
            self._lock_waiters.discard(waiter)

    def _raw_inline(self) -> sqlite3.Connection:
        """The loop's own connection, without SQLAlchemy around it (its pool has just it)."""
        if self._raw is None:
            assert self.inline is not None
            fairy = self.inline.raw_connection()
            self._raw = fairy.dbapi_connection  # type: ignore[assignment]
            fairy.close()  # back to the pool, which keeps it open
        assert self._raw is not None
        return self._raw

    def _inline_raw_write(self, raw_operation: Callable[..., T], args: tuple[Any, ...]) -> T:
        raw = self._raw_inline()
        with _RawTransaction(raw, write=True):
            return raw_operation(raw, *args)

    def _sqlite_checkpoint(self) -> None:
        # Under the write lock: with writes going on meanwhile the WAL would never be
        # fully copied back, so it would never start over, and would grow without end.
        assert self.sqlite is not None
        with self._thread_holds_write_lock(), self.sqlite.connect() as conn:
            _checkpoint(conn)

    def _inline(self, operation: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        assert self.inline is not None
        if write:
            # Taken only when free: the loop must not block on a writer thread.
            if not self.write_lock.acquire(blocking=False):
                raise _Busy
            try:
                form = _raw_form(operation, args)
                if form is not None:
                    return self._inline_raw_write(form, args)  # type: ignore[no-any-return]
                with _transaction(self.inline, write=True) as conn:
                    return operation(conn, *args)
            finally:
                self.write_lock.release()
        with _transaction(self.inline, write=False) as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            budget = _Budget()
            raw.set_progress_handler(budget, _BUDGET_STEP)
            try:
                return operation(conn, *args)
            finally:
                raw.set_progress_handler(None, _BUDGET_STEP)

    async def _sqlite(self, operation: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        while True:
            try:
                result = self._inline(operation, args, write)
                break
            except _Busy:  # a thread holds the write lock: wait for it, then write here
                await self._write_lock_let_go()
            except (OperationalError, sqlite3.OperationalError) as exc:
                if not any(w in str(exc) for w in _RETRY_IN_THREAD):
                    raise
                run = self._sqlite_write if write else self._sqlite_read
                return await asyncio.get_running_loop().run_in_executor(self.threads, run, operation, args)
        if write:
            self._wrote(1)
        return result

    def _wrote(self, count: int) -> None:
        """Count writes on the loop's connection; every 500, a checkpoint in a thread."""
        before, self.writes = self.writes, self.writes + count
        if before // 500 != self.writes // 500:
            asyncio.get_running_loop().run_in_executor(self.threads, self._sqlite_checkpoint)

    @timed_store  # observability: store operation latency and spans
    async def _read(self, operation: Callable[..., T], *args: Any) -> T:
        if self.engine is None:
            return await self._sqlite(operation, args, write=False)
        async with self.engine.connect() as conn:
            return await conn.run_sync(operation, *args)

    @timed_store  # observability: store operation latency and spans
    async def _write(self, operation: Callable[..., T], *args: Any) -> T:
        if self.engine is None:
            return await self._sqlite(operation, args, write=True)
        async with self.engine.begin() as conn:
            return await conn.run_sync(operation, *args)

    @timed_store  # observability: store operation latency and spans
    async def _write_grouped(self, operation: Callable[..., T], *args: Any) -> T:
        """``_write``, except that on SQLite a write with a raw form that comes while
        another of the same loop turn has committed joins a group that commits at the end
        of the turn (store/commit_group.py)."""
        if self.engine is None:
            form = _raw_form(operation, args)
            loop = asyncio.get_running_loop()
            if form is not None and not self._group.first_of_turn(loop):
                result = await self._group.join(loop, form, args)
                if result is not RETRY:
                    self._wrote(1)
                    return result  # type: ignore[no-any-return]
            return await self._sqlite(operation, args, write=True)
        async with self.engine.begin() as conn:
            return await conn.run_sync(operation, *args)

    @timed_store  # observability: store operation latency and spans
    async def _write_aside(self, operation: Callable[..., T], *args: Any) -> T:
        """A write that must never run on the event loop (a retention batch): on SQLite
        always in a worker thread, queued behind the write lock like any waiting writer."""
        if self.engine is None:
            return await asyncio.get_running_loop().run_in_executor(self.threads, self._sqlite_write, operation, args)
        async with self.engine.begin() as conn:
            return await conn.run_sync(operation, *args)

    # -- life cycle -------------------------------------------------------------------

    async def open(self) -> None:
        if self.migrate:
            await self.run_migrations()

    async def run_migrations(self) -> None:
        await self._write(run_migrations_on)

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.dispose()
        if self.sqlite is not None and self.inline is not None:
            self.threads.shutdown(wait=True)
            self.inline.dispose()
            self.sqlite.dispose()

    async def ping(self) -> bool:
        return await self._read(ping)
