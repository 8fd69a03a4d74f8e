"""Watching Continuo run: Prometheus metrics, OpenTelemetry traces, and logs that carry
a request id. The interface the rest of the code calls:

- ``api.observe.ObserveMiddleware`` (HTTP): request ids, request metrics and spans;
- ``observe_backend`` (core/routing.py): upstream timing, tokens, errors, spans;
- ``timed_store`` (store/sql.py): store operation latency and spans;
- ``tracing.start_client_span`` (backends/http.py): a model call's HTTP span and ``traceparent``;
- ``note_request`` (api/routes.py): the model and response id of the current request;
- ``setup_logging`` and ``setup_tracing`` (the CLI, at start).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from continuo.observability import metrics, tracing
from continuo.observability.context import RequestContext, current, request_id_from
from continuo.observability.logs import setup_logging
from continuo.observability.tracing import setup_tracing, shutdown_tracing

__all__ = [
    "RequestContext",
    "current",
    "metrics",
    "note_request",
    "observe_backend",
    "request_id_from",
    "setup_logging",
    "setup_tracing",
    "shutdown_tracing",
    "timed_store",
]

Runner = TypeVar("Runner", bound=Callable[..., Awaitable[Any]])


def observe_backend(backend: Any, provider: str, model: str) -> Any:
    from continuo.observability.upstream import ObservedBackend

    return ObservedBackend(backend, provider, model)


def note_request(model: Any = None, response_id: Any = None) -> None:
    """What the current request is about, once the handler knows it."""
    ctx = current()
    if ctx is not None and isinstance(model, str):
        ctx.model = metrics.model_label(model)
    if tracing.enabled():
        tracing.annotate(
            **{"gen_ai.request.model": model if isinstance(model, str) else None, "gen_ai.response.id": response_id}
        )


def timed_store(runner: Runner) -> Runner:
    """Wrap a store's operation runner (``async def _read(self, operation, *args)``):
    each operation's latency, by the operation's name, and a span."""

    # One histogram child per operation, looked up once (``labels`` costs microseconds).
    observers: dict[str, Callable[[float], None]] = {}

    @functools.wraps(runner)
    async def timed(self: Any, operation: Callable[..., Any], *args: Any) -> Any:
        name = operation.__name__.lstrip("_")
        observe = observers.get(name)
        if observe is None:
            observe = observers[name] = metrics.STORE_SECONDS.labels(name).observe
        started = time.perf_counter()
        try:
            if not tracing.enabled():
                return await runner(self, operation, *args)
            with tracing.child_span(f"store {name}", **{"db.operation.name": name}):
                return await runner(self, operation, *args)
        finally:
            observe(time.perf_counter() - started)

    return cast(Runner, timed)
