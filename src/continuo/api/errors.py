"""Every error leaves as ``{"error": {"message", "type", "param", "code"}}``: never HTML,
never a bare 500."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from continuo.api.responses import json_response
from continuo.errors import APIError

log = logging.getLogger("continuo")


def error_response(error: APIError) -> Response:
    return json_response(error.body(), status=error.status, headers=error.headers)


async def api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return error_response(exc)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"Invalid URL ({request.method} {request.url.path})"
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed for {request.url.path}"
    else:
        message = str(exc.detail)
    error_type = "invalid_request_error" if exc.status_code < 500 else "server_error"
    error = APIError(message, status=exc.status_code, type=error_type, headers=dict(exc.headers or {}))
    return error_response(error)


async def server_error(_request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return error_response(APIError("The server had an error while processing your request."))


EXCEPTION_HANDLERS = {APIError: api_error, HTTPException: http_error, Exception: server_error}
