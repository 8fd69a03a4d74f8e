"""The HTTP routes: parse the request, call core, frame the answer. Nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from continuo.api import long_context
from continuo.api.console import CONSOLE_ROUTES
from continuo.api.conversations import ROUTES as CONVERSATION_ROUTES
from continuo.api.errors import error_response, http_error
from continuo.api.listing import ROUTES as LISTING_ROUTES
from continuo.api.observe import metrics_endpoint
from continuo.api.params import bounded_int
from continuo.api.params import json_body as _json_body
from continuo.api.params import limit as _limit
from continuo.api.params import order as _order
from continuo.api.params import project as _project
from continuo.api.responses import SSEResponse, json_response
from continuo.core.builder import Event
from continuo.core.limits import Limiter
from continuo.core.service import ResponsesService
from continuo.errors import APIError, NotFound
from continuo.observability import note_request, tracing


def _service(request: Request) -> ResponsesService:
    service: ResponsesService = request.app.state.service
    return service


async def _stream(request: Request, events: AsyncIterable[Event]) -> Response:
    """An SSE response that holds one of the caller's concurrent-stream slots."""
    limiter: Limiter = request.app.state.limiter
    caller: str = request.state.caller
    slot = await limiter.open_stream(caller)
    if slot is None:
        raise APIError(
            "Too many concurrent streams on this key.", status=429, type="requests", code="rate_limit_exceeded"
        )

    async def release() -> None:
        await limiter.close_stream(slot)

    return SSEResponse(events, on_close=release)


async def create_response(request: Request) -> Response:
    body = await _json_body(request)
    if isinstance(body, dict):
        note_request(model=body.get("model"))
    project = _project(request)
    service = _service(request)
    answer = await service.create(body, project)
    if tracing.enabled():  # the only thing it would do with the id
        note_request(response_id=answer.response_id)
    if answer.events is not None:
        return await _stream(request, answer.events)
    return json_response(answer.body)


class _Plain:
    """A handler as a plain ASGI app. Starlette wraps a function endpoint in a second
    layer of exception handling (``request_response``) inside the one its
    ``ExceptionMiddleware`` already has; the create route, the hot one, goes without it:
    its errors reach the same handlers one layer out."""

    def __init__(self, handler: Callable[[Request], Awaitable[Response]]) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handler(Request(scope, receive, send))
        await response(scope, receive, send)


class DirectCreate:
    """``POST /v1/responses``, the hot route, called by the app without Starlette's router
    and its ``ExceptionMiddleware`` (api/app.py): the same route in the scope, the same
    handlers for the errors it raises, four layers of calls fewer a request. Its errors
    are raised before the answer starts (the handler builds the answer first, and a
    stream reports its own failures as events), so they are caught around the handler."""

    def __init__(self, route: Route) -> None:
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self.route
        scope["endpoint"] = self.route.endpoint
        scope["path_params"] = {}
        request = Request(scope, receive, send)
        try:
            response = await create_response(request)
        except APIError as exc:
            response = error_response(exc)
        except HTTPException as exc:
            response = await http_error(request, exc)
        await response(scope, receive, send)


def _starting_after(request: Request) -> int | None:
    raw = request.query_params.get("starting_after")
    # Checked before any header is sent: past the events column's 32 bits (PostgreSQL) the
    # database would fail mid-stream.
    return None if raw is None else bounded_int(raw, "starting_after", 2**31 - 1)


async def get_response(request: Request) -> Response:
    response_id = request.path_params["response_id"]
    service = _service(request)
    if request.query_params.get("stream") in ("true", "1"):
        events = await service.follow(_project(request), response_id, _starting_after(request))
        return await _stream(request, events)
    return json_response(await service.retrieve(_project(request), response_id))


async def cancel_response(request: Request) -> Response:
    return json_response(await _service(request).cancel(_project(request), request.path_params["response_id"]))


async def delete_response(request: Request) -> Response:
    result = await _service(request).delete(_project(request), request.path_params["response_id"])
    return json_response(result)


async def list_input_items(request: Request) -> Response:
    page = await _service(request).input_items(
        _project(request),
        request.path_params["response_id"],
        limit=_limit(request),
        order=_order(request),
        after=request.query_params.get("after"),
    )
    return json_response(page)


def _model(name: str, provider: str | None) -> dict[str, Any]:
    # owned_by: the configured provider that serves the name (the console shows it).
    return {"id": name, "object": "model", "created": 0, "owned_by": provider or "continuo"}


async def list_models(request: Request) -> Response:
    service = _service(request)
    models = [_model(name, service.provider_name(name)) for name in service.model_names()]
    return json_response({"object": "list", "data": models})


async def get_model(request: Request) -> Response:
    name = request.path_params["model"]
    if not _service(request).serves(name):
        raise NotFound(f"The model '{name}' does not exist.", param="model", code="model_not_found")
    return json_response(_model(name, _service(request).provider_name(name)))


async def healthz(request: Request) -> Response:
    try:
        await _service(request).ping()
    except Exception:
        return json_response({"status": "unavailable"}, status=503)
    return json_response({"status": "ok"})


CREATE_ROUTE = Route("/v1/responses", _Plain(create_response), methods=["POST"])
ROUTES = [
    CREATE_ROUTE,
    *LISTING_ROUTES,
    *long_context.LONG_CONTEXT_ROUTES,
    Route("/v1/responses/{response_id}", get_response, methods=["GET"]),
    Route("/v1/responses/{response_id}", delete_response, methods=["DELETE"]),
    Route("/v1/responses/{response_id}/cancel", cancel_response, methods=["POST"]),
    Route("/v1/responses/{response_id}/input_items", list_input_items, methods=["GET"]),
    *CONVERSATION_ROUTES,
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model:path}", get_model, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/metrics", metrics_endpoint, methods=["GET"]),
    *CONSOLE_ROUTES,
]
