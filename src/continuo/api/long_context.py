"""HTTP routes for long contexts: count input tokens, compact a context."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from continuo.api.params import json_body, project
from continuo.api.responses import json_response
from continuo.core.long_context import LongContextService


def _service(request: Request) -> LongContextService:
    service: LongContextService = request.app.state.long_context
    return service


async def input_tokens(request: Request) -> Response:
    body = await json_body(request)
    return json_response(await _service(request).input_tokens(body, project(request)))


async def compact(request: Request) -> Response:
    body = await json_body(request)
    return json_response(await _service(request).compact(body, project(request)))


# Before ``/v1/responses/{response_id}``, which would otherwise take these paths.
LONG_CONTEXT_ROUTES: list[Route] = [
    Route("/v1/responses/input_tokens", input_tokens, methods=["POST"]),
    Route("/v1/responses/compact", compact, methods=["POST"]),
]
