"""The store on SQLAlchemy Core: SQLite (embedded, WAL) or PostgreSQL, one schema.

Every operation is one plain function over a SQLAlchemy ``Connection``, run as a whole.
On PostgreSQL it runs through asyncpg (``run_sync``). On SQLite it runs right on the event
loop over the standard sqlite3 driver: a stored turn takes about 0.14 ms there, while one
hop to a worker thread and back costs 0.1 ms of CPU on its own (docs/performance.md). The
loop never waits on a lock for it: that connection does not wait when the database is
busy (another process writing), and such an operation is retried in a worker thread that
may wait; WAL checkpoints, which write the database file, run in a worker thread too.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, bindparam, create_engine, delete, event, func, literal, select, text, update
from sqlalchemy import insert as sql_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from continuo.observability import timed_store
from continuo.store.base import ClaimedRun, StoredEvent, StoredKey
from continuo.store.schema import INPUT, OUTPUT, api_keys, items, responses
from continuo.store.schema import events as events_table

MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T")


class _Busy(Exception):
    """The SQLite write lock is held by a worker thread."""


def _url(url: str) -> tuple[str, bool]:
    """The URL with the driver Continuo uses, and whether it is SQLite."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        return parsed.set(drivername="sqlite").render_as_string(hide_password=False), True
    if parsed.drivername in ("postgresql", "postgres", "postgresql+asyncpg"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False), False
    raise ValueError(f"unsupported database URL scheme: {parsed.drivername}")


def _run_migrations(connection: Connection) -> None:
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


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _body(response: dict[str, Any]) -> str:
    return _dumps({k: v for k, v in response.items() if k != "output"})


def _response_row(project: str, response: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The ``responses`` row of a Response object (its output lives in ``items``)."""
    return {
        "id": response["id"],
        "project": project,
        "previous_response_id": response.get("previous_response_id"),
        "status": response["status"],
        "background": bool(response.get("background")),
        "created_at": response["created_at"],
        "updated_at": int(time.time()),
        "body": _body(response),
        **extra,
    }


def _item_rows(response_id: str, kind: int, values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"response_id": response_id, "kind": kind, "position": i, "item_id": item.get("id", ""), "body": _dumps(item)}
        for i, item in enumerate(values)
    ]


def _event_rows(response_id: str, stored: list[StoredEvent]) -> list[dict[str, Any]]:
    return [
        {"response_id": response_id, "sequence_number": e.sequence_number, "type": e.type, "data": e.data.decode()}
        for e in stored
    ]


# Statements are built once; running one only binds parameters (building the recursive
# CTE on every call cost more than running it).
_GET_RESPONSE = (
    select(responses.c.body, items.c.body)
    .select_from(responses.outerjoin(items, (items.c.response_id == responses.c.id) & (items.c.kind == OUTPUT)))
    .where(responses.c.id == bindparam("response_id"), responses.c.project == bindparam("project"))
    .order_by(items.c.position)
)


def _chain_statement() -> Any:
    chain = (
        select(responses.c.id, responses.c.previous_response_id, literal(0).label("depth"))
        .where(responses.c.id == bindparam("response_id"), responses.c.project == bindparam("project"))
        .cte("chain", recursive=True)
    )
    parent = responses.alias("parent")
    chain = chain.union_all(
        select(parent.c.id, parent.c.previous_response_id, chain.c.depth + 1).where(
            parent.c.id == chain.c.previous_response_id, parent.c.project == bindparam("project")
        )
    )
    return (
        select(chain.c.depth, items.c.kind, items.c.body)
        .select_from(chain.outerjoin(items, items.c.response_id == chain.c.id))
        .order_by(chain.c.depth.desc(), items.c.kind, items.c.position)
    )


_CHAIN = _chain_statement()
_FIND_ITEMS = (
    select(items.c.item_id, items.c.body)
    .select_from(items.join(responses, responses.c.id == items.c.response_id))
    .where(items.c.item_id.in_(bindparam("item_ids", expanding=True)), responses.c.project == bindparam("project"))
    .order_by(responses.c.created_at, items.c.kind, items.c.position)
)
_INSERT_RESPONSE = sql_insert(responses)
_INSERT_ITEMS = sql_insert(items)
_INSERT_EVENTS = sql_insert(events_table)
_EVENTS_AFTER = (
    select(events_table.c.sequence_number, events_table.c.type, events_table.c.data)
    .select_from(events_table.join(responses, responses.c.id == events_table.c.response_id))
    .where(
        events_table.c.response_id == bindparam("response_id"),
        responses.c.project == bindparam("project"),
        events_table.c.sequence_number > bindparam("after"),
    )
    .order_by(events_table.c.sequence_number)
)
_NEXT_SEQUENCE = select(func.max(events_table.c.sequence_number)).where(
    events_table.c.response_id == bindparam("response_id")
)
_KEY_PROJECT = select(api_keys.c.project).where(api_keys.c.hash == bindparam("hash"), api_keys.c.revoked_at.is_(None))
_HAS_KEYS = select(api_keys.c.id).where(api_keys.c.revoked_at.is_(None)).limit(1)


# -- operations: each runs whole, in one transaction (writes) or on one connection (reads) --


def _save(conn: Connection, project: str, response: dict[str, Any], input_items: list[dict[str, Any]]) -> None:
    rows = _item_rows(response["id"], INPUT, input_items) + _item_rows(response["id"], OUTPUT, response["output"])
    conn.execute(_INSERT_RESPONSE, _response_row(project, response))
    if rows:
        conn.execute(_INSERT_ITEMS, rows)


def _get(conn: Connection, project: str, response_id: str) -> dict[str, Any] | None:
    rows = conn.execute(_GET_RESPONSE, {"response_id": response_id, "project": project}).all()
    if not rows:
        return None
    response: dict[str, Any] = orjson.loads(rows[0][0])
    response["output"] = [orjson.loads(row[1]) for row in rows if row[1] is not None]
    return response


def _delete(conn: Connection, project: str, response_id: str) -> bool:
    # Items and events go with their response (ON DELETE CASCADE where the database
    # honours it; explicitly as well, so the outcome never depends on a pragma).
    owned = select(responses.c.id).where(responses.c.id == response_id, responses.c.project == project)
    conn.execute(delete(items).where(items.c.response_id.in_(owned.scalar_subquery())))
    conn.execute(delete(events_table).where(events_table.c.response_id.in_(owned.scalar_subquery())))
    result = conn.execute(delete(responses).where(responses.c.id == response_id, responses.c.project == project))
    return bool(result.rowcount)


def _chain(conn: Connection, project: str, response_id: str, own_output: bool) -> list[dict[str, Any]] | None:
    rows = conn.execute(_CHAIN, {"response_id": response_id, "project": project}).all()
    if not rows:
        return None
    return [
        orjson.loads(body)
        for depth, kind, body in rows
        if body is not None and (own_output or depth > 0 or kind == INPUT)
    ]


def _find(conn: Connection, project: str, item_ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = conn.execute(_FIND_ITEMS, {"item_ids": item_ids, "project": project}).all()
    return {item_id: orjson.loads(body) for item_id, body in rows}


def _create_background(
    conn: Connection,
    project: str,
    response: dict[str, Any],
    input_items: list[dict[str, Any]],
    request: dict[str, Any],
    stored: list[StoredEvent],
) -> None:
    conn.execute(_INSERT_RESPONSE, _response_row(project, response, request=_dumps(request), queued_at=time.time_ns()))
    if input_items:
        conn.execute(_INSERT_ITEMS, _item_rows(response["id"], INPUT, input_items))
    if stored:
        conn.execute(_INSERT_EVENTS, _event_rows(response["id"], stored))


def _next_sequence(conn: Connection, response_id: str) -> int:
    last = conn.execute(_NEXT_SEQUENCE, {"response_id": response_id}).scalar()
    return 0 if last is None else int(last) + 1


def _claim(conn: Connection, owner: str, lease_until: int) -> ClaimedRun | None:
    oldest = (
        select(responses.c.id)
        .where(responses.c.status == "queued", responses.c.background.is_(True))
        .order_by(responses.c.queued_at)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    claim = (
        update(responses)
        .where(responses.c.id == oldest, responses.c.status == "queued")
        .values(status="in_progress", owner=owner, lease_until=lease_until, updated_at=int(time.time()))
        .returning(responses.c.id, responses.c.project, responses.c.body, responses.c.request)
    )
    row = conn.execute(claim).first()
    if row is None:
        return None
    response_id, project, body, request = row
    response = orjson.loads(body)
    response["output"] = []
    return ClaimedRun(
        project=project,
        response=response,
        request=orjson.loads(request) if request else {},
        context=_chain(conn, project, response_id, False) or [],
        next_sequence=_next_sequence(conn, response_id),
    )


def _write_run(conn: Connection, response_id: str, response: dict[str, Any], stored: list[StoredEvent]) -> None:
    output = [item for item in response["output"] if item.get("status") != "in_progress"]
    conn.execute(
        update(responses)
        .where(responses.c.id == response_id)
        .values(status=response["status"], body=_body(response), updated_at=int(time.time()))
    )
    conn.execute(delete(items).where(items.c.response_id == response_id, items.c.kind == OUTPUT))
    if output:
        conn.execute(_INSERT_ITEMS, _item_rows(response_id, OUTPUT, output))
    if stored:
        conn.execute(_INSERT_EVENTS, _event_rows(response_id, stored))


def _finish(
    conn: Connection, response_id: str, response: dict[str, Any], stored: list[StoredEvent], from_statuses: Any
) -> bool:
    # Taking the row first makes two replicas finishing the same run take turns.
    taken = conn.execute(
        update(responses)
        .where(responses.c.id == response_id, responses.c.status.in_(from_statuses))
        .values(owner=None, lease_until=None)
    )
    if not taken.rowcount:
        return False
    _write_run(conn, response_id, response, stored)
    return True


def _append(conn: Connection, response_id: str, stored: list[StoredEvent]) -> None:
    conn.execute(_INSERT_EVENTS, _event_rows(response_id, stored))


def _events_after(conn: Connection, project: str, response_id: str, after: int) -> list[StoredEvent]:
    params = {"response_id": response_id, "project": project, "after": after}
    rows = conn.execute(_EVENTS_AFTER, params).all()
    return [StoredEvent(seq, kind, data.encode()) for seq, kind, data in rows]


def _renew(conn: Connection, owner: str, lease_until: int) -> None:
    conn.execute(
        update(responses)
        .where(responses.c.owner == owner, responses.c.status == "in_progress")
        .values(lease_until=lease_until)
    )


def _cancel_requests(conn: Connection, owner: str) -> list[str]:
    query = select(responses.c.id).where(
        responses.c.owner == owner, responses.c.status == "in_progress", responses.c.cancel_requested.is_(True)
    )
    return list(conn.execute(query).scalars())


def _request_cancel(conn: Connection, project: str, response_id: str) -> None:
    conn.execute(
        update(responses)
        .where(responses.c.id == response_id, responses.c.project == project)
        .values(cancel_requested=True)
    )


def _expired(conn: Connection, now: int) -> list[tuple[str, str]]:
    query = select(responses.c.project, responses.c.id).where(
        responses.c.status == "in_progress", responses.c.background.is_(True), responses.c.lease_until < now
    )
    return [(project, response_id) for project, response_id in conn.execute(query).all()]


def _create_key(conn: Connection, key_id: str, project: str, key_hash: str) -> None:
    conn.execute(
        sql_insert(api_keys), {"id": key_id, "project": project, "hash": key_hash, "created_at": int(time.time())}
    )


def _list_keys(conn: Connection) -> list[StoredKey]:
    query = select(api_keys.c.id, api_keys.c.project, api_keys.c.created_at, api_keys.c.revoked_at).order_by(
        api_keys.c.created_at, api_keys.c.id
    )
    return [StoredKey(*row) for row in conn.execute(query).all()]


def _revoke_key(conn: Connection, key_id: str) -> bool:
    result = conn.execute(
        update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=int(time.time()))
    )
    return bool(result.rowcount)


def _key_project(conn: Connection, key_hash: str) -> str | None:
    project: str | None = conn.execute(_KEY_PROJECT, {"hash": key_hash}).scalar()
    return project


def _has_keys(conn: Connection) -> bool:
    return conn.execute(_HAS_KEYS).first() is not None


def _ping(conn: Connection) -> bool:
    conn.execute(text("SELECT 1"))
    return True


class SQLStore:
    def __init__(self, url: str, *, migrate: bool = True, pool_size: int = 10) -> None:
        self.url, self.is_sqlite = _url(url)
        self.migrate = migrate
        self.engine: AsyncEngine | None = None
        self.sqlite: Engine | None = None
        self.inline: Engine | None = None
        if self.is_sqlite:
            threads = 2
            # On the event loop: one connection, which never waits for a lock.
            self.inline = create_engine(self.url, poolclass=StaticPool, connect_args={"check_same_thread": False})
            event.listen(self.inline, "connect", _sqlite_pragmas(0, autocheckpoint=False))
            # In worker threads: what had to wait, and checkpoints.
            self.sqlite = create_engine(
                self.url, pool_size=threads, max_overflow=0, connect_args={"check_same_thread": False}
            )
            event.listen(self.sqlite, "connect", _sqlite_pragmas(5000, autocheckpoint=True))
            self.threads = ThreadPoolExecutor(threads, thread_name_prefix="continuo-sqlite")
            # SQLite has one writer at a time: writers queue here rather than spin on
            # SQLITE_BUSY (which cost hundreds of milliseconds at 16 concurrent requests).
            self.write_lock = threading.Lock()
            self.writes = 0
        else:
            self.engine = create_async_engine(self.url, pool_size=pool_size)

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
        with self.sqlite.connect() as conn:
            return operation(conn, *args)

    def _sqlite_write(self, operation: Callable[..., T], args: tuple[Any, ...]) -> T:
        assert self.sqlite is not None
        with self.write_lock, self.sqlite.begin() as conn:
            return operation(conn, *args)

    def _sqlite_checkpoint(self) -> None:
        # Under the write lock: with writes going on meanwhile the WAL would never be
        # fully copied back, so it would never start over, and would grow without end.
        assert self.sqlite is not None
        with self.write_lock, self.sqlite.connect() as conn:
            _checkpoint(conn)

    def _inline(self, operation: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        assert self.inline is not None
        if write:
            # Taken only when free: the loop must not block on a writer thread.
            if not self.write_lock.acquire(blocking=False):
                raise _Busy
            try:
                with self.inline.begin() as conn:
                    return operation(conn, *args)
            finally:
                self.write_lock.release()
        with self.inline.connect() as conn:
            return operation(conn, *args)

    async def _sqlite(self, operation: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        try:
            result = self._inline(operation, args, write)
        except (_Busy, OperationalError) as exc:
            if isinstance(exc, OperationalError) and "locked" not in str(exc) and "busy" not in str(exc):
                raise
            run = self._sqlite_write if write else self._sqlite_read
            return await asyncio.get_running_loop().run_in_executor(self.threads, run, operation, args)
        if write:
            self.writes += 1
            if self.writes % 500 == 0:
                asyncio.get_running_loop().run_in_executor(self.threads, self._sqlite_checkpoint)
        return result

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

    # -- life cycle -------------------------------------------------------------------

    async def open(self) -> None:
        if self.migrate:
            await self.run_migrations()

    async def run_migrations(self) -> None:
        await self._write(_run_migrations)

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.dispose()
        if self.sqlite is not None and self.inline is not None:
            self.threads.shutdown(wait=True)
            self.inline.dispose()
            self.sqlite.dispose()

    async def ping(self) -> bool:
        return await self._read(_ping)

    # -- responses --------------------------------------------------------------------

    async def save_response(self, project: str, response: dict[str, Any], input_items: list[dict[str, Any]]) -> None:
        await self._write(_save, project, response, input_items)

    async def get_response(self, project: str, response_id: str) -> dict[str, Any] | None:
        return await self._read(_get, project, response_id)

    async def delete_response(self, project: str, response_id: str) -> bool:
        return await self._write(_delete, project, response_id)

    async def chain_items(self, project: str, response_id: str) -> list[dict[str, Any]] | None:
        return await self._read(_chain, project, response_id, True)

    async def input_items(self, project: str, response_id: str) -> list[dict[str, Any]] | None:
        return await self._read(_chain, project, response_id, False)

    async def find_items(self, project: str, item_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not item_ids:
            return {}
        return await self._read(_find, project, item_ids)

    # -- background runs --------------------------------------------------------------

    async def create_background(
        self,
        project: str,
        response: dict[str, Any],
        input_items: list[dict[str, Any]],
        request: dict[str, Any],
        events: list[StoredEvent],
    ) -> None:
        await self._write(_create_background, project, response, input_items, request, events)

    async def claim_queued(self, owner: str, lease_until: int) -> ClaimedRun | None:
        return await self._write(_claim, owner, lease_until)

    async def update_run(self, response_id: str, response: dict[str, Any], events: list[StoredEvent]) -> None:
        await self._write(_write_run, response_id, response, events)

    async def finish_run(
        self,
        response_id: str,
        response: dict[str, Any],
        events: list[StoredEvent],
        *,
        from_statuses: tuple[str, ...] = ("in_progress",),
    ) -> bool:
        return await self._write(_finish, response_id, response, events, from_statuses)

    async def append_events(self, response_id: str, stored: list[StoredEvent]) -> None:
        await self._write(_append, response_id, stored)

    async def events_after(self, project: str, response_id: str, after: int) -> list[StoredEvent]:
        return await self._read(_events_after, project, response_id, after)

    async def next_sequence(self, response_id: str) -> int:
        return await self._read(_next_sequence, response_id)

    async def renew_leases(self, owner: str, lease_until: int) -> None:
        await self._write(_renew, owner, lease_until)

    async def cancel_requests(self, owner: str) -> list[str]:
        return await self._read(_cancel_requests, owner)

    async def request_cancel(self, project: str, response_id: str) -> None:
        await self._write(_request_cancel, project, response_id)

    async def expired_runs(self, now: int) -> list[tuple[str, str]]:
        return await self._read(_expired, now)

    # -- API keys ---------------------------------------------------------------------

    async def create_key(self, key_id: str, project: str, key_hash: str) -> None:
        await self._write(_create_key, key_id, project, key_hash)

    async def list_keys(self) -> list[StoredKey]:
        return await self._read(_list_keys)

    async def revoke_key(self, key_id: str) -> bool:
        return await self._write(_revoke_key, key_id)

    async def key_project(self, key_hash: str) -> str | None:
        return await self._read(_key_project, key_hash)

    async def has_active_keys(self) -> bool:
        return await self._read(_has_keys)
