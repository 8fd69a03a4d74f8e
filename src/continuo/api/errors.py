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


async def api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return json_response(exc.body(), status=exc.status)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"Invalid URL ({request.method} {request.url.path})"
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed for {request.url.path}"
    else:
        message = str(exc.detail)
    error_type = "invalid_request_error" if exc.status_code < 500 else "server_error"
    body = {"error": {"message": message, "type": error_type, "param": None, "code": None}}
    return json_response(body, status=exc.status_code, headers=exc.headers)


async def server_error(_request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    body = {
        "error": {
            "message": "The server had an error while processing your request.",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    return json_response(body, status=500)


EXCEPTION_HANDLERS = {APIError: api_error, HTTPException: http_error, Exception: server_error}
