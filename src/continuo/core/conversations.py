"""Conversations: durable lists of items that responses read from and append to.

The API's semantics (create, retrieve, update, delete, items) and the few hooks the run
driver calls: ``acquire`` before a foreground response reads the conversation, ``release``
on every way out, ``save_unstored`` for ``store: false``. A stored response appends its
items itself, in the transaction that stores it (``Store.save_response`` / ``finish_run``
read the response's ``conversation``). No HTTP and no SQL here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from continuo.core import context
from continuo.core import validation as v
from continuo.core.items import normalize_input
from continuo.core.shielded import shielded
from continuo.core.status import Status
from continuo.errors import InvalidRequest, NotFound, conversation_not_found, conversation_unavailable
from continuo.ids import new_id
from continuo.store.base import Store
from continuo.store.schema import now_us

if TYPE_CHECKING:
    from continuo.core.request import CreateRequest

log = logging.getLogger("continuo")

MAX_ITEMS = 20
# A foreground response holds its conversation at most this long: a server that died
# mid-response leaves a lock that ends by itself. (A background response holds it while
# it is queued or in progress, which its lease already bounds.)
FOREGROUND_LOCK_SECONDS = 600
# A response appends its input and output to its conversation when it ends so.
APPENDING_STATUSES = (Status.COMPLETED, Status.INCOMPLETE)


# -- the ``conversation`` parameter of a create ------------------------------------------------


def parse_param(body: dict[str, Any]) -> str | None:
    """``conversation``: an id, or ``{"id": ...}``; not together with ``previous_response_id``."""
    value = body.get("conversation")
    if value is None:
        return None
    if isinstance(value, dict):
        conversation_id = v.req_str(value, "id", "conversation.id")
    elif isinstance(value, str):
        conversation_id = value
    else:
        raise v.invalid_type("conversation", "a string or an object", value)
    if body.get("previous_response_id") is not None:
        raise InvalidRequest(
            "Mutually exclusive parameters: Ensure you are only providing one of: "
            "'previous_response_id' or 'conversation'.",
            param=None,
            code="mutually_exclusive_parameters",
        )
    return conversation_id


# -- hooks for the run driver -------------------------------------------------------------------


async def acquire(store: Store, project: str, request: CreateRequest, response_id: str) -> None:
    """Hold the conversation for a foreground response, or answer why not (404, or 400
    ``conversation_locked`` while another response is in progress on it). A background
    response takes it when it is queued (``Store.create_background``)."""
    if request.conversation is None or request.background:
        return
    until = now_us() + FOREGROUND_LOCK_SECONDS * 1_000_000
    outcome = await store.acquire_conversation(project, request.conversation, response_id, until)
    if outcome != "ok":
        raise conversation_unavailable(request.conversation, outcome)


async def release(store: Store, request: CreateRequest, response_id: str) -> None:
    """Let the conversation go, whatever became of the response (a no-op when storing
    the response released it already). Shielded: it runs on the way out of cancelled
    tasks too."""
    if request.conversation is None:
        return
    try:
        await shielded(store.release_conversation(response_id))
    except Exception:
        # The lock's own end (its time limit) frees the conversation anyway.
        log.exception("could not release the conversation of %s", response_id)


async def history(store: Store, project: str, request: CreateRequest) -> list[dict[str, Any]]:
    """The conversation's items, which the model sees before the new input."""
    assert request.conversation is not None
    items = await store.conversation_history(project, request.conversation)
    if items is None:
        raise conversation_not_found(request.conversation, param="conversation")
    return items


async def save_unstored(store: Store, project: str, request: CreateRequest, response: dict[str, Any]) -> None:
    """``store: false`` on a conversation: the response is not kept, but the conversation
    gets its input and output items (as items of its own), then is released."""
    if request.conversation is None:
        return
    added: list[dict[str, Any]] = []
    if response["status"] in APPENDING_STATUSES:
        added = request.input + response["output"]
    await store.add_conversation_items(project, request.conversation, added, release=response["id"])


# -- the Conversations API ----------------------------------------------------------------------


def _items(store_body: Any, key: str, *, required: bool) -> Any:
    value = store_body.get(key)
    if value is None:
        if required:
            raise v.missing(key)
        return []
    if not isinstance(value, list):
        raise v.invalid_type(key, "an array", value)
    if len(value) > MAX_ITEMS:
        raise InvalidRequest(
            f"Invalid '{key}': array too long. Expected an array with maximum length {MAX_ITEMS}, "
            f"but got an array with length {len(value)} instead.",
            param=key,
            code="array_above_max_length",
        )
    return value


def _body(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return body


def item_list(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "first_id": items[0].get("id") if items else None,
        "last_id": items[-1].get("id") if items else None,
        "has_more": has_more,
    }


class ConversationService:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def _new_items(self, project: str, raw: list[Any], key: str) -> list[dict[str, Any]]:
        items = normalize_input(raw, key)
        return await context.resolve_input(self.store, project, items)

    async def create(self, project: str, body: Any) -> dict[str, Any]:
        body = _body(body)
        metadata = v.metadata(body.get("metadata"))
        items = await self._new_items(project, _items(body, "items", required=False), "items")
        return await self.store.create_conversation(project, new_id("conv"), metadata, items)

    async def retrieve(self, project: str, conversation_id: str) -> dict[str, Any]:
        conversation = await self.store.get_conversation(project, conversation_id)
        if conversation is None:
            raise conversation_not_found(conversation_id)
        return conversation

    async def update(self, project: str, conversation_id: str, body: Any) -> dict[str, Any]:
        body = _body(body)
        if body.get("metadata") is None:
            raise v.missing("metadata")
        metadata = v.metadata(body["metadata"])
        conversation = await self.store.update_conversation(project, conversation_id, metadata)
        if conversation is None:
            raise conversation_not_found(conversation_id)
        return conversation

    async def delete(self, project: str, conversation_id: str) -> dict[str, Any]:
        if not await self.store.delete_conversation(project, conversation_id):
            raise conversation_not_found(conversation_id)
        return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}

    async def add_items(self, project: str, conversation_id: str, body: Any) -> dict[str, Any]:
        items = await self._new_items(project, _items(_body(body), "items", required=True), "items")
        if not await self.store.add_conversation_items(project, conversation_id, items):
            raise conversation_not_found(conversation_id)
        return item_list(items, False)

    async def list_items(
        self, project: str, conversation_id: str, *, limit: int, order: str, after: str | None
    ) -> dict[str, Any]:
        page = await self.store.conversation_items(project, conversation_id, limit=limit, order=order, after=after)
        if page is None:
            raise conversation_not_found(conversation_id)
        if not page.anchor_found:
            raise InvalidRequest(
                f"No item with id '{after}' in this conversation.", param="after", code="invalid_value"
            )
        return item_list(page.data, page.has_more)

    async def get_item(self, project: str, conversation_id: str, item_id: str) -> dict[str, Any]:
        exists, item = await self.store.conversation_item(project, conversation_id, item_id)
        if not exists:
            raise conversation_not_found(conversation_id)
        if item is None:
            raise item_not_found(item_id)
        return item

    async def delete_item(self, project: str, conversation_id: str, item_id: str) -> dict[str, Any]:
        conversation, deleted = await self.store.delete_conversation_item(project, conversation_id, item_id)
        if conversation is None:
            raise conversation_not_found(conversation_id)
        if not deleted:
            raise item_not_found(item_id)
        return conversation


def item_not_found(item_id: str) -> NotFound:
    return NotFound(f"Item with id '{item_id}' not found.", param="item_id")
