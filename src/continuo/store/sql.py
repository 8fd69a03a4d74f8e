"""The store on SQLAlchemy Core: SQLite (embedded, WAL) or PostgreSQL, one schema."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, delete, event, func, insert, literal, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from continuo.store.base import ClaimedRun, StoredEvent, StoredKey
from continuo.store.schema import INPUT, OUTPUT, api_keys, items, responses
from continuo.store.schema import events as events_table

MIGRATIONS = Path(__file__).parent / "migrations"

# aiosqlite logs every statement with its parameters at DEBUG: stored prompts and outputs
# would reach the log. Prompts stay out of logs unless someone turns this back on.
logging.getLogger("aiosqlite").setLevel(logging.INFO)


def async_url(url: str) -> str:
    """``sqlite:///x.db`` and ``postgresql://…`` as the async drivers spell them."""
    parsed = make_url(url)
    driver = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}
    name = driver.get(parsed.drivername, parsed.drivername)
    return parsed.set(drivername=name).render_as_string(hide_password=False)


def _run_migrations(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Replicas starting together take turns; the lock ends with the transaction.
        connection.execute(text("SELECT pg_advisory_xact_lock(727274)"))
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


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


class SQLStore:
    def __init__(self, url: str, *, migrate: bool = True, pool_size: int = 10) -> None:
        self.url = async_url(url)
        self.migrate = migrate
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if not self.is_sqlite:
            kwargs["pool_size"] = pool_size
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    async def open(self) -> None:
        if self.migrate:
            await self.run_migrations()

    async def run_migrations(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(_run_migrations)

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> bool:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    async def save_response(self, project: str, response: dict[str, Any], input_items: list[dict[str, Any]]) -> None:
        rows = _item_rows(response["id"], INPUT, input_items)
        rows += _item_rows(response["id"], OUTPUT, response["output"])
        async with self.engine.begin() as conn:
            await conn.execute(insert(responses).values(_response_row(project, response)))
            if rows:
                await conn.execute(insert(items), rows)

    async def get_response(self, project: str, response_id: str) -> dict[str, Any] | None:
        query = (
            select(responses.c.body, items.c.body)
            .select_from(responses.outerjoin(items, (items.c.response_id == responses.c.id) & (items.c.kind == OUTPUT)))
            .where(responses.c.id == response_id, responses.c.project == project)
            .order_by(items.c.position)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return None
        response: dict[str, Any] = orjson.loads(rows[0][0])
        response["output"] = [orjson.loads(row[1]) for row in rows if row[1] is not None]
        return response

    async def delete_response(self, project: str, response_id: str) -> bool:
        async with self.engine.begin() as conn:
            # Items go with their response (ON DELETE CASCADE where the database honours
            # it; explicitly as well, so the outcome never depends on a pragma).
            owned = select(responses.c.id).where(responses.c.id == response_id, responses.c.project == project)
            await conn.execute(delete(items).where(items.c.response_id.in_(owned.scalar_subquery())))
            await conn.execute(delete(events_table).where(events_table.c.response_id.in_(owned.scalar_subquery())))
            result = await conn.execute(
                delete(responses).where(responses.c.id == response_id, responses.c.project == project)
            )
        return bool(result.rowcount)

    async def _chain(self, project: str, response_id: str, *, own_output: bool) -> list[dict[str, Any]] | None:
        chain = (
            select(responses.c.id, responses.c.previous_response_id, literal(0).label("depth"))
            .where(responses.c.id == response_id, responses.c.project == project)
            .cte("chain", recursive=True)
        )
        parent = responses.alias("parent")
        chain = chain.union_all(
            select(parent.c.id, parent.c.previous_response_id, chain.c.depth + 1).where(
                parent.c.id == chain.c.previous_response_id, parent.c.project == project
            )
        )
        query = (
            select(chain.c.depth, items.c.kind, items.c.body)
            .select_from(chain.outerjoin(items, items.c.response_id == chain.c.id))
            .order_by(chain.c.depth.desc(), items.c.kind, items.c.position)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return None
        return [
            orjson.loads(body)
            for depth, kind, body in rows
            if body is not None and (own_output or depth > 0 or kind == INPUT)
        ]

    async def chain_items(self, project: str, response_id: str) -> list[dict[str, Any]] | None:
        return await self._chain(project, response_id, own_output=True)

    async def input_items(self, project: str, response_id: str) -> list[dict[str, Any]] | None:
        return await self._chain(project, response_id, own_output=False)

    async def find_items(self, project: str, item_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not item_ids:
            return {}
        query = (
            select(items.c.item_id, items.c.body)
            .select_from(items.join(responses, responses.c.id == items.c.response_id))
            .where(items.c.item_id.in_(item_ids), responses.c.project == project)
            .order_by(responses.c.created_at, items.c.kind, items.c.position)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {item_id: orjson.loads(body) for item_id, body in rows}

    # -- background runs ------------------------------------------------------------------

    @staticmethod
    def _event_rows(response_id: str, stored: list[StoredEvent]) -> list[dict[str, Any]]:
        return [
            {"response_id": response_id, "sequence_number": e.sequence_number, "type": e.type, "data": e.data.decode()}
            for e in stored
        ]

    async def create_background(
        self,
        project: str,
        response: dict[str, Any],
        input_items: list[dict[str, Any]],
        request: dict[str, Any],
        events: list[StoredEvent],
    ) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(responses).values(
                    _response_row(project, response, request=_dumps(request), queued_at=time.time_ns())
                )
            )
            if input_items:
                await conn.execute(insert(items), _item_rows(response["id"], INPUT, input_items))
            if events:
                await conn.execute(insert(events_table), self._event_rows(response["id"], events))

    async def claim_queued(self, owner: str, lease_until: int) -> ClaimedRun | None:
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
        async with self.engine.begin() as conn:
            row = (await conn.execute(claim)).first()
        if row is None:
            return None
        response_id, project, body, request = row
        context = await self.input_items(project, response_id) or []
        response = orjson.loads(body)
        response["output"] = []
        return ClaimedRun(
            project=project,
            response=response,
            request=orjson.loads(request) if request else {},
            context=context,
            next_sequence=await self.next_sequence(response_id),
        )

    async def _write_run(
        self, conn: Any, response_id: str, response: dict[str, Any], stored: list[StoredEvent]
    ) -> None:
        output = [item for item in response["output"] if item.get("status") != "in_progress"]
        await conn.execute(
            update(responses)
            .where(responses.c.id == response_id)
            .values(status=response["status"], body=_body(response), updated_at=int(time.time()))
        )
        await conn.execute(delete(items).where(items.c.response_id == response_id, items.c.kind == OUTPUT))
        if output:
            await conn.execute(insert(items), _item_rows(response_id, OUTPUT, output))
        if stored:
            await conn.execute(insert(events_table), self._event_rows(response_id, stored))

    async def update_run(self, response_id: str, response: dict[str, Any], events: list[StoredEvent]) -> None:
        async with self.engine.begin() as conn:
            await self._write_run(conn, response_id, response, events)

    async def finish_run(
        self,
        response_id: str,
        response: dict[str, Any],
        events: list[StoredEvent],
        *,
        from_statuses: tuple[str, ...] = ("in_progress",),
    ) -> bool:
        async with self.engine.begin() as conn:
            # Taking the row first makes two replicas finishing the same run take turns.
            taken = await conn.execute(
                update(responses)
                .where(responses.c.id == response_id, responses.c.status.in_(from_statuses))
                .values(owner=None, lease_until=None)
            )
            if not taken.rowcount:
                return False
            await self._write_run(conn, response_id, response, events)
        return True

    async def append_events(self, response_id: str, stored: list[StoredEvent]) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(insert(events_table), self._event_rows(response_id, stored))

    async def events_after(self, project: str, response_id: str, after: int) -> list[StoredEvent]:
        query = (
            select(events_table.c.sequence_number, events_table.c.type, events_table.c.data)
            .select_from(events_table.join(responses, responses.c.id == events_table.c.response_id))
            .where(
                events_table.c.response_id == response_id,
                responses.c.project == project,
                events_table.c.sequence_number > after,
            )
            .order_by(events_table.c.sequence_number)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [StoredEvent(seq, kind, data.encode()) for seq, kind, data in rows]

    async def next_sequence(self, response_id: str) -> int:
        query = select(func.max(events_table.c.sequence_number)).where(events_table.c.response_id == response_id)
        async with self.engine.connect() as conn:
            last = (await conn.execute(query)).scalar()
        return 0 if last is None else int(last) + 1

    async def renew_leases(self, owner: str, lease_until: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(responses)
                .where(responses.c.owner == owner, responses.c.status == "in_progress")
                .values(lease_until=lease_until)
            )

    async def cancel_requests(self, owner: str) -> list[str]:
        query = select(responses.c.id).where(
            responses.c.owner == owner, responses.c.status == "in_progress", responses.c.cancel_requested.is_(True)
        )
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).scalars())

    async def request_cancel(self, project: str, response_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(responses)
                .where(responses.c.id == response_id, responses.c.project == project)
                .values(cancel_requested=True)
            )

    async def expired_runs(self, now: int) -> list[tuple[str, str]]:
        query = select(responses.c.project, responses.c.id).where(
            responses.c.status == "in_progress", responses.c.background.is_(True), responses.c.lease_until < now
        )
        async with self.engine.connect() as conn:
            return [(project, response_id) for project, response_id in (await conn.execute(query)).all()]

    # -- API keys -------------------------------------------------------------------------

    async def create_key(self, key_id: str, project: str, key_hash: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(api_keys).values(id=key_id, project=project, hash=key_hash, created_at=int(time.time()))
            )

    async def list_keys(self) -> list[StoredKey]:
        query = select(api_keys.c.id, api_keys.c.project, api_keys.c.created_at, api_keys.c.revoked_at).order_by(
            api_keys.c.created_at, api_keys.c.id
        )
        async with self.engine.connect() as conn:
            return [StoredKey(*row) for row in (await conn.execute(query)).all()]

    async def revoke_key(self, key_id: str) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=int(time.time()))
            )
        return bool(result.rowcount)

    async def key_project(self, key_hash: str) -> str | None:
        query = select(api_keys.c.project).where(api_keys.c.hash == key_hash, api_keys.c.revoked_at.is_(None))
        async with self.engine.connect() as conn:
            project: str | None = (await conn.execute(query)).scalar()
        return project

    async def has_active_keys(self) -> bool:
        query = select(api_keys.c.id).where(api_keys.c.revoked_at.is_(None)).limit(1)
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).first() is not None
