"""The HTTP side of observability: a request id on every request (the client's
``x-request-id`` when sent, returned in the answer), request metrics and the request's
span, an access log line; and ``GET /metrics``."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from continuo.api.errors import error_response
from continuo.api.params import header
from continuo.api.responses import SSE_CONTENT_TYPE
from continuo.config import MetricsConfig
from continuo.errors import APIError
from continuo.observability import metrics, tracing
from continuo.observability.context import RequestContext, _current, request_id_from

log = logging.getLogger("continuo.access")


def _route(scope: Scope) -> str:
    """The route template ("/v1/responses/{response_id}"), never the raw path (ids would
    make every request a metric of its own)."""
    route = scope.get("route")
    if route is None:  # answered before routing (a 401, a 429): match it here
        for candidate in scope["app"].routes:
            if candidate.matches(scope)[0] is Match.FULL:
                route = candidate
                break
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class _Counted:
    """The metric children of one (route, method, status, model): ``labels`` looked them
    up at every request, a few microseconds each."""

    __slots__ = ("added", "requests", "seconds")

    def __init__(self, route: str, method: str, status: int, model: str) -> None:
        self.requests = metrics.REQUESTS.labels(route, method, str(status), model)
        self.seconds = metrics.REQUEST_SECONDS.labels(route, method)
        self.added = metrics.ADDED_SECONDS.labels(route)


_COUNTED: dict[tuple[str, str, int, str], _Counted] = {}


def _counted(route: str, method: str, status: int, model: str) -> _Counted:
    key = (route, method, status, model)
    found = _COUNTED.get(key)
    if found is None:
        found = _Counted(route, method, status, model)
        if len(_COUNTED) < 4096:  # routes, methods and statuses are few; models are bounded
            _COUNTED[key] = found
    return found


class ObserveMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.access: bool | None = None  # ``[logging] access``, read at the first request

    def _access_log(self, scope: Scope) -> bool:
        access = self.access
        if access is None:  # the app's state has the configuration once its lifespan started
            access = self.access = bool(scope["app"].state.config.logging.access)
        return access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            metrics.ACTIVE_WEBSOCKETS.inc()
            try:
                await self.app(scope, receive, send)
            finally:
                metrics.ACTIVE_WEBSOCKETS.dec()
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        ctx = RequestContext(request_id_from(header(scope, b"x-request-id")))
        token = _current.set(ctx)
        request_id = ctx.request_id.encode()
        method = scope["method"]
        span = span_token = None
        if tracing.enabled():
            span, span_token = tracing.start_request_span(
                method,  # renamed "METHOD /route/{template}" once routed
                {
                    k.decode("latin-1"): v.decode("latin-1")
                    for k, v in scope["headers"]
                    if k in (b"traceparent", b"tracestate")
                },
                {"http.request.method": method, "url.path": scope["path"], "continuo.request_id": ctx.request_id},
            )
        status = 500
        streaming = False

        async def send_observed(message: Message) -> None:
            nonlocal status, streaming
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                # Every stream is an SSEResponse, whose content type is this very header.
                streaming = SSE_CONTENT_TYPE in headers
                if streaming:
                    metrics.ACTIVE_STREAMS.inc()
                headers.append((b"x-request-id", request_id))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            if streaming:
                metrics.ACTIVE_STREAMS.dec()
            elapsed = time.perf_counter() - started
            route = _route(scope)
            counted = _counted(route, method, status, ctx.model)
            counted.requests.inc()
            counted.seconds.observe(elapsed)
            if ctx.upstream_calls:
                counted.added.observe(max(0.0, elapsed - ctx.upstream_seconds))
            if span is not None:
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                tracing.end_request_span(span, span_token, status)
            if self._access_log(scope):
                log.info(
                    "%s %s %d",
                    method,
                    route,
                    status,
                    extra={"status": status, "duration_ms": round(elapsed * 1000, 3), "model": ctx.model or None},
                )
            _current.reset(token)


def _loopback(host: str | None) -> bool:
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def metrics_allowed(config: MetricsConfig, client_host: str | None, authorization: str | None) -> APIError | None:
    """Who may scrape: anyone with the metrics key when one is set; else loopback
    clients, or anyone when ``public``. The refusal, or None."""
    if not config.enabled:
        return APIError("Invalid URL (GET /metrics)", status=404, type="invalid_request_error")
    if config.key_env is not None:
        expected = os.environ.get(config.key_env, "")
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and expected and hmac.compare_digest(token.strip(), expected):
            return None
        return APIError(
            "The metrics key is missing or wrong.", status=401, type="invalid_request_error", code="invalid_api_key"
        )
    if config.public or _loopback(client_host):
        return None
    return APIError(
        "Metrics are served to loopback clients only.", status=403, type="invalid_request_error", code="forbidden"
    )


async def metrics_endpoint(request: Request) -> Response:
    config: Any = request.app.state.config
    client = request.client.host if request.client else None
    refusal = metrics_allowed(config.metrics, client, request.headers.get("authorization"))
    if refusal is not None:
        return error_response(refusal)
    from continuo.store.stats import background_counts

    try:
        metrics.set_background_counts(await background_counts(request.app.state.service.store))
    except Exception:  # the rest of the metrics are worth serving when the store is down
        logging.getLogger("continuo").warning("metrics: could not count background runs", exc_info=True)
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
