"""The store interface core talks to. SQL lives behind it, nowhere else."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class Store(Protocol):
    async def open(self) -> None:
        """Connect and bring the schema up to date (when migrations are enabled)."""

    async def close(self) -> None: ...

    async def ping(self) -> bool: ...

    async def save_response(self, project: str, response: dict[str, Any], input_items: list[dict[str, Any]]) -> None:
        """Persist a finished response: its object, its own new input, its output. With a
        ``conversation`` in the response, its items are appended to that conversation and
        the conversation's lock released, in the same transaction."""

    async def get_response(self, project: str, response_id: str) -> dict[str, Any] | None: ...

    async def delete_response(self, project: str, response_id: str) -> bool: ...

    async def chain_items(self, project: str, response_id: str) -> list[dict[str, Any]] | None:
        """Inputs and outputs of the response and all its ancestors, oldest first.
        ``None`` when the response is not stored (for this project)."""

    async def input_items(
        self, project: str, response_id: str, *, limit: int, ascending: bool, after: str | None
    ) -> ItemPage | None:
        """A page of the context the response was made from (its ancestors' inputs and
        outputs, then its own input, oldest first in ascending order), after the item
        ``after``. ``None`` when the response is not stored."""

    async def find_items(self, project: str, item_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Stored items by id (the newest where an id was stored more than once)."""

    async def list_responses(self, project: str, query: ResponseQuery) -> ResponsePage:
        """A page of the project's stored responses, as ``get_response`` returns them, in
        the order and with the filters ``query`` asks for."""

    async def response_graph(self, project: str, response_id: str, max_nodes: int) -> ResponseGraph | None:
        """The tree of the chain ``response_id`` belongs to: its root and every response
        under it (at most ``max_nodes``, the response and its ancestors always among them).
        ``None`` when the response is not stored."""

    # -- background runs ------------------------------------------------------------------

    async def create_background(
        self,
        project: str,
        response: dict[str, Any],
        input_items: list[dict[str, Any]],
        request: dict[str, Any],
        events: list[StoredEvent],
    ) -> None:
        """Store a queued background response with its request and first events."""

    async def claim_queued(
        self, owner: str, lease_until_us: int, begin: Callable[[dict[str, Any], int], list[StoredEvent]]
    ) -> ClaimedRun | None:
        """Take the oldest queued run for ``owner``, exactly once across replicas, and
        apply ``begin`` (the status change and its events, given the response and its next
        sequence number) in the same transaction."""

    async def update_run(self, response_id: str, response: dict[str, Any], events: list[StoredEvent]) -> None:
        """Save a running response's state (status, finished output) and new events."""

    async def finish_run(
        self,
        response_id: str,
        response: dict[str, Any],
        events: list[StoredEvent],
        *,
        from_statuses: tuple[str, ...] = ("in_progress",),
    ) -> bool:
        """Save the final state and events of a run whose status is one of
        ``from_statuses``; False (and nothing written) when it is not. Appends to the
        response's conversation and releases its lock as ``save_response`` does."""

    async def append_events(self, response_id: str, events: list[StoredEvent]) -> None: ...

    async def events_after(self, project: str, response_id: str, after: int) -> list[StoredEvent]: ...

    async def next_sequence(self, response_id: str) -> int: ...

    async def renew_leases(self, owner: str, response_ids: list[str], lease_until_us: int) -> None:
        """Extend the leases of the runs ``owner`` still holds (only those)."""

    async def cancel_requests(self, owner: str) -> list[str]:
        """Ids of runs held by ``owner`` that someone asked to cancel."""

    async def request_cancel(self, project: str, response_id: str) -> None: ...

    async def expired_runs(self, now_us: int) -> list[ExpiredRun]:
        """In-progress runs whose owner stopped renewing its lease."""

    # -- conversations ----------------------------------------------------------------------

    async def create_conversation(
        self, project: str, conversation_id: str, metadata: dict[str, str], items: list[dict[str, Any]]
    ) -> dict[str, Any]: ...

    async def get_conversation(self, project: str, conversation_id: str) -> dict[str, Any] | None: ...

    async def update_conversation(
        self, project: str, conversation_id: str, metadata: dict[str, str]
    ) -> dict[str, Any] | None: ...

    async def delete_conversation(self, project: str, conversation_id: str) -> bool: ...

    async def add_conversation_items(
        self, project: str, conversation_id: str, items: list[dict[str, Any]], *, release: str | None = None
    ) -> bool:
        """Append items the conversation owns, releasing ``release``'s lock; False when
        there is no such conversation."""

    async def conversation_history(self, project: str, conversation_id: str) -> list[dict[str, Any]] | None:
        """Every item of the conversation, oldest first; None when there is none such."""

    async def conversation_items(
        self, project: str, conversation_id: str, *, limit: int, order: str, after: str | None
    ) -> ItemPage | None: ...

    async def conversation_item(
        self, project: str, conversation_id: str, item_id: str
    ) -> tuple[bool, dict[str, Any] | None]:
        """(whether the conversation exists, the item or None)."""

    async def delete_conversation_item(
        self, project: str, conversation_id: str, item_id: str
    ) -> tuple[dict[str, Any] | None, bool]:
        """(the conversation or None, whether an item was removed)."""

    async def acquire_conversation(
        self, project: str, conversation_id: str, response_id: str, until_us: int | None
    ) -> str:
        """Take the conversation's in-progress lock: "ok", "locked" or "missing"."""

    async def release_conversation(self, response_id: str) -> None:
        """Release whatever conversation lock ``response_id`` holds."""


@dataclass(slots=True)
class StoredEvent:
    sequence_number: int
    type: str
    data: bytes


@dataclass(slots=True)
class ItemPage:
    data: list[dict[str, Any]]
    has_more: bool
    # False when ``after`` named no item of the list.
    anchor_found: bool = True


@dataclass(slots=True)
class ResponseQuery:
    """What a listing of responses asks for. Times are unix seconds; ``created_after`` is
    inclusive, ``created_before`` exclusive; ``after`` / ``before`` are response ids."""

    limit: int = 20
    ascending: bool = False
    after: str | None = None
    before: str | None = None
    model: str | None = None
    status: str | None = None
    metadata: list[tuple[str, str]] = field(default_factory=list)
    created_after: int | None = None
    created_before: int | None = None
    background: bool | None = None
    q: str | None = None


@dataclass(slots=True)
class ResponsePage:
    data: list[dict[str, Any]]
    has_more: bool
    # False when the ``after`` / ``before`` cursor named no response of the project.
    anchor_found: bool = True


@dataclass(slots=True)
class GraphNode:
    id: str
    previous_response_id: str | None
    created_at: int
    status: str
    model: str | None
    background: bool
    preview: str


@dataclass(slots=True)
class ResponseGraph:
    root_id: str
    nodes: list[GraphNode]
    truncated: bool


@dataclass(slots=True)
class ExpiredRun:
    project: str
    response_id: str
    cancel_requested: bool


@dataclass(slots=True)
class ClaimedRun:
    project: str
    response: dict[str, Any]
    request: dict[str, Any]
    context: list[dict[str, Any]]
    next_sequence: int


@dataclass(slots=True)
class StoredKey:
    id: str
    project: str
    created_at_us: int
    revoked_at_us: int | None


class KeyStore(Protocol):
    async def create_key(self, key_id: str, project: str, key_hash: str) -> None: ...

    async def list_keys(self) -> list[StoredKey]: ...

    async def revoke_key(self, key_id: str) -> bool: ...

    async def key_project(self, key_hash: str) -> str | None:
        """The project of an active key with this hash."""

    async def has_active_keys(self) -> bool: ...

    async def ever_had_keys(self) -> bool:
        """Whether a key was ever created, revoked ones included (they are never deleted)."""

class SecretStore(Protocol):
    async def get_secret(self, name: str) -> str | None: ...

    async def ensure_secret(self, name: str, value: str) -> str:
        """The secret named ``name``, kept as ``value`` if there was none yet."""
