"""Who is calling: the API key's project on every ``/v1/`` request, and its rate limit.

With no key configured anywhere the server is open and every caller is the project "".
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from continuo.api.errors import error_response
from continuo.api.params import header
from continuo.core.keys import KeyRing
from continuo.core.limits import Limiter, retry_after
from continuo.errors import APIError

ANONYMOUS = "anonymous"

log = logging.getLogger("continuo.auth")


def _error(message: str, status: int, error_type: str, code: str, headers: dict[str, str] | None = None) -> Any:
    return error_response(APIError(message, status=status, type=error_type, code=code, headers=headers))


def _bearer(scope: Scope) -> str | None:
    value = header(scope, b"authorization")
    if value is not None:
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


async def _refuse(scope: Scope, receive: Receive, send: Send, response: Any) -> None:
    """Answer a refused caller: the JSON error on HTTP; on a WebSocket the same JSON error
    as the handshake's HTTP answer where the server can send one, else a refused handshake."""
    if scope["type"] == "http":
        await response(scope, receive, send)
        return
    if scope["type"] == "websocket" and "websocket.http.response" in scope.get("extensions", {}):
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
        await send({"type": "websocket.http.response.start", "status": response.status_code, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": response.body})
        return
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})


class AuthMiddleware:
    """Refuses by default: every scope but the lifespan and plain HTTP outside ``/v1/``
    (the health check) goes through the key check and the rate limit; a scope of any
    other kind is refused outright."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan" or (kind == "http" and not scope["path"].startswith("/v1/")):
            await self.app(scope, receive, send)
            return
        if kind not in ("http", "websocket"):
            return
        state = scope["app"].state
        keyring: KeyRing = state.keyring
        limiter: Limiter = state.limiter
        project, caller = "", ANONYMOUS
        if await keyring.required():
            token = _bearer(scope)
            if token is None:
                response = _error(
                    "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
                    401,
                    "invalid_request_error",
                    "missing_api_key",
                )
                await _refuse(scope, receive, send, response)
                return
            found = await keyring.project_of(token)
            if found is None:
                # Which route, never which key.
                log.warning("refused %s %s: unknown or revoked API key", scope.get("method", kind), scope["path"])
                response = _error("Incorrect API key provided.", 401, "invalid_request_error", "invalid_api_key")
                await _refuse(scope, receive, send, response)
                return
            project, caller = found, token
        if (wait := await limiter.take(caller)) is not None:
            response = _error(
                "Rate limit reached for requests per minute on this key. Try again later.",
                429,
                "requests",
                "rate_limit_exceeded",
                headers={"retry-after": retry_after(wait)},
            )
            await _refuse(scope, receive, send, response)
            return
        scope.setdefault("state", {})
        scope["state"]["project"] = project
        scope["state"]["caller"] = caller
        await self.app(scope, receive, send)
