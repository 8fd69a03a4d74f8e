"""What the routes read from a request: the caller's project, the JSON body (within the
size limit), list parameters."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.types import Scope

from continuo.api.encoding import decompress, encoding_of
from continuo.errors import APIError, InvalidRequest


def project(request: Request) -> str:
    # Set by AuthMiddleware: the project of the caller's key ("" on an open server). Read
    # from the scope: ``request.state`` is Starlette's ``State``, whose attributes are
    # found by ``__getattr__`` after a failed lookup.
    project: str = request.scope["state"]["project"]
    return project


def too_large(limit: int) -> APIError:
    return APIError(
        f"Request body too large: the limit is {limit} bytes.",
        status=413,
        type="invalid_request_error",
        code="request_too_large",
    )


# Where a request's headers are kept as a dictionary once looked at (``headers_of``).
_HEADERS = "continuo.headers"


def headers_of(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers by (lower-case) name, the first of each name: made once a
    request, for every layer that reads one (the request id, the body's length and
    encoding, the key). Starlette's ``headers.get`` scans the list at each call, and raises
    a KeyError inside for each header that is absent (content-encoding, mostly)."""
    found: dict[bytes, bytes] | None = scope.get(_HEADERS)
    if found is None:
        found = scope[_HEADERS] = dict(reversed(scope["headers"]))  # reversed: the first one wins
    return found


def header(scope: Scope, name: bytes) -> str | None:
    value = headers_of(scope).get(name)
    return None if value is None else value.decode("latin-1")


async def json_body(request: Request) -> Any:
    limit: int = request.app.state.config.server.max_body_bytes
    declared, encoding = header(request.scope, b"content-length"), header(request.scope, b"content-encoding")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    # Read from ``receive`` here: Starlette's ``body()`` reads through an async generator
    # (``stream()``), a dozen calls more a request. Its cache is filled all the same.
    receive = request.receive
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = request._body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    # Codex may compress; the size limit holds after decompression too.
    body = decompress(body, encoding_of(encoding), limit, too_large)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. The body must be valid JSON.",
            code="invalid_json",
        ) from None


def bounded_int(raw: str, name: str, maximum: int, expected: str = "an integer") -> int:
    """A query parameter that must be an integer from 0 to ``maximum``: the 400 naming it
    otherwise (``expected`` says what kind of integer, in the message)."""
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(
            f"Invalid '{name}': expected {expected}, got '{raw[:40]}'.", param=name, code="invalid_type"
        ) from None
    if not 0 <= value <= maximum:
        raise InvalidRequest(
            f"Invalid '{name}': expected a value between 0 and {maximum}, got {raw[:40]}.",
            param=name,
            code="invalid_value",
        )
    return value


def limit(request: Request) -> int:
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


def order(request: Request) -> str:
    value = request.query_params.get("order", "desc")
    if value not in ("asc", "desc"):
        raise InvalidRequest(
            f"Invalid value: '{value}'. Supported values are: 'asc', 'desc'.", param="order", code="invalid_value"
        )
    return value
