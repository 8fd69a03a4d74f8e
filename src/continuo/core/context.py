"""What the model sees: the stored chain (or the conversation), then the new input with
references resolved."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from continuo.core import conversations
from continuo.errors import InvalidRequest
from continuo.store.base import Store

if TYPE_CHECKING:
    from continuo.core.request import CreateRequest


async def resolve_input(store: Store, project: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replace each ``item_reference`` by the stored item it names."""
    wanted = [item["id"] for item in items if item["type"] == "item_reference"]
    if not wanted:
        return items
    found = await store.find_items(project, wanted)
    resolved = []
    for index, item in enumerate(items):
        if item["type"] == "item_reference":
            stored = found.get(item["id"])
            if stored is None:
                raise InvalidRequest(
                    f"Item with id '{item['id']}' not found.",
                    param=f"input[{index}].id",
                    code="item_not_found",
                )
            item = stored
        resolved.append(item)
    return resolved


async def build_context(
    store: Store, project: str, request: CreateRequest, history: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """``previous.input + previous.output``, recursively, or the conversation's items,
    then this request's input.

    ``history``, when given, is that previous context already in hand (a WebSocket's
    connection-local cache) and the stored chain is not read. Replaces ``request.input``
    by its resolved form, which is what gets stored. A background response reads its
    conversation when it runs, not here.
    """
    if history is None:
        history = []
        if request.conversation is not None and not request.background:
            history = await conversations.history(store, project, request)
        if request.previous_response_id is not None:
            chain = await store.chain_items(project, request.previous_response_id)
            if chain is None:
                raise InvalidRequest(
                    f"Previous response with id '{request.previous_response_id}' not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            history = chain
    request.input = await resolve_input(store, project, request.input)
    return history + request.input
