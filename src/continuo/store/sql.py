"""The store on SQLAlchemy Core: SQLite (embedded, WAL) or PostgreSQL, one schema.

``Database`` (engine.py) runs each operation whole; the operations themselves are plain
functions over a ``Connection`` in ``ops/``. This class is the ``Store`` interface core sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from continuo.ids import ITEM_ID_MAX, well_formed
from continuo.store.base import (
    ClaimedRun,
    ExpiredRun,
    ItemPage,
    ResponseGraph,
    ResponsePage,
    ResponseQuery,
    StoredEvent,
    StoredKey,
)
from continuo.store.engine import Database
from continuo.store.ops import (
    conversations,
    keys,
    limits,
    listing,
    responses,
    retention,
    runs,
    search_index,
    secrets,
)

log = logging.getLogger("continuo.store")

# How often stored responses that wait for SQLite's full-text index are put into it.
SEARCH_INDEX_SECONDS = 1.0


class SQLStore(Database):
    _indexer: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await super().open()
        if self.is_sqlite:
            self._indexer = asyncio.get_running_loop().create_task(self._index_search_periodically())

    async def close(self) -> None:
        if self._indexer is not None:
            self._indexer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._indexer
        await super().close()

    async def _index_search_periodically(self) -> None:
        while True:
            await asyncio.sleep(SEARCH_INDEX_SECONDS)
            try:
                await self.index_search()
            except Exception:  # the next round tries again; searching indexes first anyway
                log.warning("could not update the full-text index", exc_info=True)

    # -- responses --------------------------------------------------------------------

    async def save_response(self, project: str, response: dict[str, Any], input_items: list[dict[str, Any]]) -> None:
        await self._write_grouped(responses.save, project, response, input_items)

    async def get_response(self, project: str, response_id: str) -> dict[str, Any] | None:
        if not well_formed(response_id):
            return None
        return await self._read(responses.get, project, response_id)

    async def delete_response(self, project: str, response_id: str) -> bool:
        if not well_formed(response_id):
            return False
        return await self._write(responses.delete_response, project, response_id)

    async def chain_items(self, project: str, response_id: str) -> list[dict[str, Any]] | None:
        if not well_formed(response_id):
            return None
        return await self._read(responses.chain, project, response_id, True)

    async def input_items(
        self, project: str, response_id: str, *, limit: int, ascending: bool, after: str | None
    ) -> ItemPage | None:
        if not well_formed(response_id):
            return None
        return await self._read(responses.input_items_page, project, response_id, limit, ascending, after)

    async def find_items(self, project: str, item_ids: list[str]) -> dict[str, dict[str, Any]]:
        # Ids that cannot exist are not looked up: on PostgreSQL a NUL or an over-long
        # value would be an error instead of "not found".
        item_ids = [i for i in item_ids if well_formed(i, ITEM_ID_MAX)]
        if not item_ids:
            return {}
        return await self._read(responses.find, project, item_ids)

    async def list_responses(self, project: str, query: ResponseQuery) -> ResponsePage:
        for cursor in (query.after, query.before):
            if cursor is not None and not well_formed(cursor):
                return ResponsePage([], False, anchor_found=False)
        strings = [query.model or "", *(part for pair in query.metadata for part in pair)]
        if any("\x00" in value for value in strings):
            return ResponsePage([], False)  # nothing stored holds a NUL (PostgreSQL refuses one)
        if query.q and self.is_sqlite:
            await self.index_search()  # so that the search finds every stored response
        return await self._read(listing.list_page, project, query)

    async def index_search(self) -> None:
        """Put the stored responses that wait for SQLite's full-text index into it, in
        batches, off the event loop (store/ops/search_index.py)."""
        while self.is_sqlite and await self._write_aside(search_index.index_waiting) >= search_index.BATCH:
            pass

    async def response_graph(self, project: str, response_id: str, max_nodes: int) -> ResponseGraph | None:
        if not well_formed(response_id):
            return None
        return await self._read(listing.graph, project, response_id, max_nodes)

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
        if not well_formed(response_id):
            return []
        return await self._read(runs.events_after, project, response_id, after)

    async def next_sequence(self, response_id: str) -> int:
        return await self._read(runs.next_sequence, response_id)

    async def renew_leases(self, owner: str, response_ids: list[str], lease_until_us: int) -> None:
        if response_ids:
            await self._write(runs.renew, owner, response_ids, lease_until_us)

    async def cancel_requests(self, owner: str) -> list[str]:
        return await self._read(runs.cancel_requests, owner)

    async def request_cancel(self, project: str, response_id: str) -> None:
        if not well_formed(response_id):
            return
        await self._write(runs.request_cancel, project, response_id)

    async def expired_runs(self, now_us: int) -> list[ExpiredRun]:
        return await self._read(runs.expired, now_us)

    # -- conversations ----------------------------------------------------------------

    async def create_conversation(
        self, project: str, conversation_id: str, metadata: dict[str, str], items: list[dict[str, Any]]
    ) -> dict[str, Any]:
        return await self._write(conversations.create, project, conversation_id, metadata, items)

    async def get_conversation(self, project: str, conversation_id: str) -> dict[str, Any] | None:
        if not well_formed(conversation_id):
            return None
        return await self._read(conversations.get, project, conversation_id)

    async def update_conversation(
        self, project: str, conversation_id: str, metadata: dict[str, str]
    ) -> dict[str, Any] | None:
        if not well_formed(conversation_id):
            return None
        return await self._write(conversations.update_metadata, project, conversation_id, metadata)

    async def delete_conversation(self, project: str, conversation_id: str) -> bool:
        if not well_formed(conversation_id):
            return False
        return await self._write(conversations.delete_conversation, project, conversation_id)

    async def add_conversation_items(
        self, project: str, conversation_id: str, items: list[dict[str, Any]], *, release: str | None = None
    ) -> bool:
        if not well_formed(conversation_id):
            return False
        return await self._write(conversations.add_items, project, conversation_id, items, release)

    async def conversation_history(self, project: str, conversation_id: str) -> list[dict[str, Any]] | None:
        if not well_formed(conversation_id):
            return None
        return await self._read(conversations.history, project, conversation_id)

    async def conversation_items(
        self, project: str, conversation_id: str, *, limit: int, order: str, after: str | None
    ) -> ItemPage | None:
        if not well_formed(conversation_id):
            return None
        return await self._read(conversations.page, project, conversation_id, limit, order, after)

    async def conversation_item(
        self, project: str, conversation_id: str, item_id: str
    ) -> tuple[bool, dict[str, Any] | None]:
        if not well_formed(conversation_id):
            return False, None
        return await self._read(conversations.get_item, project, conversation_id, item_id)

    async def delete_conversation_item(
        self, project: str, conversation_id: str, item_id: str
    ) -> tuple[dict[str, Any] | None, bool]:
        if not well_formed(conversation_id):
            return None, False
        return await self._write(conversations.delete_item, project, conversation_id, item_id)

    async def acquire_conversation(
        self, project: str, conversation_id: str, response_id: str, until_us: int | None
    ) -> str:
        return await self._write(conversations.acquire, project, conversation_id, response_id, until_us)

    async def release_conversation(self, response_id: str) -> None:
        await self._write(conversations.release, response_id)

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
        return await self._read(keys.has_keys, False)

    async def ever_had_keys(self) -> bool:
        return await self._read(keys.has_keys, True)

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

    # -- server secrets ---------------------------------------------------------------

    async def get_secret(self, name: str) -> str | None:
        return await self._read(secrets.get_secret, name)

    async def ensure_secret(self, name: str, value: str) -> str:
        return await self._write(secrets.ensure_secret, name, value)

    # -- retention --------------------------------------------------------------------

    async def take_lease(self, name: str, owner: str, until_us: int) -> bool:
        return await self._write(retention.take_lease, name, owner, until_us)

    async def release_lease(self, name: str, owner: str) -> None:
        await self._write(retention.release_lease, name, owner)

    async def retention_projects(self) -> list[str]:
        return await self._read(retention.projects)

    async def expire_responses(
        self, lease: tuple[str, str, int], project: str, before_us: int, batch: int
    ) -> tuple[int, int] | None:
        return await self._write_aside(retention.expire_responses, *lease, project, before_us, batch)

    async def expire_conversations(
        self, lease: tuple[str, str, int], project: str, before_us: int, batch: int
    ) -> tuple[int, int] | None:
        return await self._write_aside(retention.expire_conversations, *lease, project, before_us, batch)
