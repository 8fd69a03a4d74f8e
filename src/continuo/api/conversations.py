"""The Conversations routes: parse the request, call core, frame the answer."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from continuo.api import params
from continuo.api.responses import json_response
from continuo.core.conversations import ConversationService


def _service(request: Request) -> ConversationService:
    service: ConversationService = request.app.state.conversations
    return service


def _id(request: Request) -> str:
    conversation_id: str = request.path_params["conversation_id"]
    return conversation_id


async def create_conversation(request: Request) -> Response:
    body = await params.json_body(request)
    return json_response(await _service(request).create(params.project(request), body))


async def get_conversation(request: Request) -> Response:
    return json_response(await _service(request).retrieve(params.project(request), _id(request)))


async def update_conversation(request: Request) -> Response:
    body = await params.json_body(request)
    return json_response(await _service(request).update(params.project(request), _id(request), body))


async def delete_conversation(request: Request) -> Response:
    return json_response(await _service(request).delete(params.project(request), _id(request)))


async def create_items(request: Request) -> Response:
    body = await params.json_body(request)
    return json_response(await _service(request).add_items(params.project(request), _id(request), body))


async def list_items(request: Request) -> Response:
    # ``include`` is accepted: every item is listed whole already.
    page = await _service(request).list_items(
        params.project(request),
        _id(request),
        limit=params.limit(request),
        order=params.order(request),
        after=request.query_params.get("after"),
    )
    return json_response(page)


async def get_item(request: Request) -> Response:
    item_id = request.path_params["item_id"]
    return json_response(await _service(request).get_item(params.project(request), _id(request), item_id))


async def delete_item(request: Request) -> Response:
    item_id = request.path_params["item_id"]
    return json_response(await _service(request).delete_item(params.project(request), _id(request), item_id))


ROUTES = [
    Route("/v1/conversations", create_conversation, methods=["POST"]),
    Route("/v1/conversations/{conversation_id}", get_conversation, methods=["GET"]),
    Route("/v1/conversations/{conversation_id}", update_conversation, methods=["POST"]),
    Route("/v1/conversations/{conversation_id}", delete_conversation, methods=["DELETE"]),
    Route("/v1/conversations/{conversation_id}/items", create_items, methods=["POST"]),
    Route("/v1/conversations/{conversation_id}/items", list_items, methods=["GET"]),
    Route("/v1/conversations/{conversation_id}/items/{item_id}", get_item, methods=["GET"]),
    Route("/v1/conversations/{conversation_id}/items/{item_id}", delete_item, methods=["DELETE"]),
]
