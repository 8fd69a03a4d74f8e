"""The HTTP routes: parse the request, call core, frame the answer. Nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from continuo.api.observe import metrics_endpoint
from continuo.api.responses import json_response, sse_response
from continuo.core.builder import Event
from continuo.core.limits import Limiter
from continuo.core.service import ResponsesService
from continuo.errors import APIError, InvalidRequest, NotFound
from continuo.observability import note_request


def _service(request: Request) -> ResponsesService:
    service: ResponsesService = request.app.state.service
    return service


def _project(request: Request) -> str:
    # Set by AuthMiddleware: the project of the caller's key ("" on an open server).
    project: str = request.state.project
    return project


def _stream(request: Request, events: AsyncIterator[Event]) -> Response:
    """An SSE response that holds one of the caller's concurrent-stream slots."""
    limiter: Limiter = request.app.state.limiter
    caller: str = request.state.caller
    if not limiter.open_stream(caller):
        raise APIError(
            "Too many concurrent streams on this key.", status=429, type="requests", code="rate_limit_exceeded"
        )

    async def held() -> AsyncIterator[Event]:
        try:
            async for event in events:
                yield event
        finally:
            limiter.close_stream(caller)

    return sse_response(held())


def _too_large(limit: int) -> APIError:
    return APIError(
        f"Request body too large: the limit is {limit} bytes.",
        status=413,
        type="invalid_request_error",
        code="request_too_large",
    )


async def _json_body(request: Request) -> Any:
    limit: int = request.app.state.config.server.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        if int(declared) > limit:
            raise _too_large(limit)
        body = await request.body()  # the server never reads past the declared length
    else:
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        body = b"".join(chunks)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. The body must be valid JSON.",
            code="invalid_json",
        ) from None


async def create_response(request: Request) -> Response:
    body = await _json_body(request)
    if isinstance(body, dict):
        note_request(model=body.get("model"))
    project = _project(request)
    service = _service(request)
    created = await service.create(body, project)
    note_request(response_id=created["id"] if isinstance(created, dict) else created.response["id"])
    if isinstance(created, dict):  # queued in the background
        if body.get("stream") is True:
            return _stream(request, await service.follow(project, created["id"], None))
        return json_response(created)
    if created.request.stream:
        return _stream(request, created.stream())
    return json_response(await created.result())


def _starting_after(request: Request) -> int | None:
    raw = request.query_params.get("starting_after")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(
            f"Invalid 'starting_after': expected an integer, got '{raw}'.", param="starting_after", code="invalid_type"
        ) from None


async def get_response(request: Request) -> Response:
    response_id = request.path_params["response_id"]
    service = _service(request)
    if request.query_params.get("stream") in ("true", "1"):
        events = await service.follow(_project(request), response_id, _starting_after(request))
        return _stream(request, events)
    return json_response(await service.retrieve(_project(request), response_id))


async def cancel_response(request: Request) -> Response:
    return json_response(await _service(request).cancel(_project(request), request.path_params["response_id"]))


async def delete_response(request: Request) -> Response:
    result = await _service(request).delete(_project(request), request.path_params["response_id"])
    return json_response(result)


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "20")
    try:
        limit = int(raw)
    except ValueError:
        raise InvalidRequest(
            f"Invalid 'limit': expected an integer, got '{raw}'.", param="limit", code="invalid_type"
        ) from None
    if not 1 <= limit <= 100:
        raise InvalidRequest(
            f"Invalid 'limit': expected a value between 1 and 100, got {limit}.", param="limit", code="invalid_value"
        )
    return limit


async def list_input_items(request: Request) -> Response:
    order = request.query_params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest(
            f"Invalid value: '{order}'. Supported values are: 'asc', 'desc'.", param="order", code="invalid_value"
        )
    page = await _service(request).input_items(
        _project(request),
        request.path_params["response_id"],
        limit=_limit(request),
        order=order,
        after=request.query_params.get("after"),
    )
    return json_response(page)


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "continuo"}


async def list_models(request: Request) -> Response:
    names = _service(request).router.model_names()
    return json_response({"object": "list", "data": [_model(name) for name in names]})


async def get_model(request: Request) -> Response:
    name = request.path_params["model"]
    if not _service(request).router.serves(name):
        raise NotFound(f"The model '{name}' does not exist.", param="model", code="model_not_found")
    return json_response(_model(name))


async def healthz(request: Request) -> Response:
    try:
        await _service(request).store.ping()
    except Exception:
        return json_response({"status": "unavailable"}, status=503)
    return json_response({"status": "ok"})


ROUTES = [
    Route("/v1/responses", create_response, methods=["POST"]),
    Route("/v1/responses/{response_id}", get_response, methods=["GET"]),
    Route("/v1/responses/{response_id}", delete_response, methods=["DELETE"]),
    Route("/v1/responses/{response_id}/cancel", cancel_response, methods=["POST"]),
    Route("/v1/responses/{response_id}/input_items", list_input_items, methods=["GET"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model:path}", get_model, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/metrics", metrics_endpoint, methods=["GET"]),
]
