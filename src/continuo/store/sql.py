"""The store on SQLAlchemy Core: SQLite (embedded, WAL) or PostgreSQL, one schema.

``Database`` (engine.py) runs each operation whole; the operations themselves are plain
functions over a ``Connection`` in ``ops/``. This class is the ``Store`` interface core sees.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from continuo.store.base import ClaimedRun, ExpiredRun, ItemPage, StoredEvent, StoredKey
from continuo.store.engine import Database
from continuo.store.ops import keys, limits, responses, runs


class SQLStore(Database):
    # -- responses --------------------------------------------------------------------

    async def save_response(self, project: str, response: dict[str, Any], input_items: list[dict[str, Any]]) -> None:
        await self._write(responses.save, project, response, input_items)

    async def get_response(self, project: str, response_id: str) -> dict[str, Any] | None:
        return await self._read(responses.get, project, response_id)

    async def delete_response(self, project: str, response_id: str) -> bool:
        return await self._write(responses.delete_response, project, response_id)

    async def chain_items(self, project: str, response_id: str) -> list[dict[str, Any]] | None:
        return await self._read(responses.chain, project, response_id, True)

    async def input_items(
        self, project: str, response_id: str, *, limit: int, ascending: bool, after: str | None
    ) -> ItemPage | None:
        return await self._read(responses.input_items_page, project, response_id, limit, ascending, after)

    async def find_items(self, project: str, item_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not item_ids:
            return {}
        return await self._read(responses.find, project, item_ids)

    # -- background runs --------------------------------------------------------------

    async def create_background(
        self,
        project: str,
        response: dict[str, Any],
        input_items: list[dict[str, Any]],
        request: dict[str, Any],
        events: list[StoredEvent],
    ) -> None:
        await self._write(runs.create_background, project, response, input_items, request, events)

    async def claim_queued(
        self, owner: str, lease_until_us: int, begin: Callable[[dict[str, Any], int], list[StoredEvent]]
    ) -> ClaimedRun | None:
        return await self._write(runs.claim, owner, lease_until_us, begin)

    async def update_run(self, response_id: str, response: dict[str, Any], events: list[StoredEvent]) -> None:
        await self._write(runs.write_run, response_id, response, events)

    async def finish_run(
        self,
        response_id: str,
        response: dict[str, Any],
        events: list[StoredEvent],
        *,
        from_statuses: tuple[str, ...] = ("in_progress",),
    ) -> bool:
        return await self._write(runs.finish, response_id, response, events, from_statuses)

    async def append_events(self, response_id: str, stored: list[StoredEvent]) -> None:
        await self._write(runs.append_events, response_id, stored)

    async def events_after(self, project: str, response_id: str, after: int) -> list[StoredEvent]:
        return await self._read(runs.events_after, project, response_id, after)

    async def next_sequence(self, response_id: str) -> int:
        return await self._read(runs.next_sequence, response_id)

    async def renew_leases(self, owner: str, response_ids: list[str], lease_until_us: int) -> None:
        if response_ids:
            await self._write(runs.renew, owner, response_ids, lease_until_us)

    async def cancel_requests(self, owner: str) -> list[str]:
        return await self._read(runs.cancel_requests, owner)

    async def request_cancel(self, project: str, response_id: str) -> None:
        await self._write(runs.request_cancel, project, response_id)

    async def expired_runs(self, now_us: int) -> list[ExpiredRun]:
        return await self._read(runs.expired, now_us)

    # -- API keys ---------------------------------------------------------------------

    async def create_key(self, key_id: str, project: str, key_hash: str) -> None:
        await self._write(keys.create_key, key_id, project, key_hash)

    async def list_keys(self) -> list[StoredKey]:
        return await self._read(keys.list_keys)

    async def revoke_key(self, key_id: str) -> bool:
        return await self._write(keys.revoke_key, key_id)

    async def key_project(self, key_hash: str) -> str | None:
        return await self._read(keys.key_project, key_hash)

    async def has_active_keys(self) -> bool:
        return await self._read(keys.has_keys)

    # -- shared limits ----------------------------------------------------------------

    async def take_token(self, key: str, rate_per_minute: int, now_us: int) -> float | None:
        return await self._write(limits.take_token, key, rate_per_minute, now_us)

    async def open_slot(self, key: str, slot: str, limit: int, now_us: int, expires_us: int) -> bool:
        return await self._write(limits.open_slot, key, slot, limit, now_us, expires_us)

    async def close_slot(self, key: str, slot: str) -> None:
        await self._write(limits.close_slot, key, slot)

    async def renew_slots(self, key_slots: list[tuple[str, str]], expires_us: int) -> None:
        if key_slots:
            await self._write(limits.renew_slots, [slot for _, slot in key_slots], expires_us)
