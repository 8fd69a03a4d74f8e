"""OpenTelemetry traces, when the ``otel`` extra is installed and the standard OTEL_*
variables ask for them (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, or ``OTEL_TRACES_EXPORTER=otlp``;
``OTEL_SDK_DISABLED=true`` turns them off). Otherwise every function here does nothing.

One span per request (its parent: the client's W3C ``traceparent``, if sent), with child
spans for store operations and upstream calls; a model call's HTTP request has a client
span of its own and carries its ``traceparent`` (``start_client_span``, called by
backends/http.py); other upstream requests (token counting, fetched content) get theirs
from OpenTelemetry's aiohttp instrumentation.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
except ImportError:  # the otel extra is not installed
    trace = None  # type: ignore[assignment]

_tracer: Any = None
_instrumentor: Any = None


def enabled() -> bool:
    return _tracer is not None


def _wanted() -> bool:
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return exporter == "otlp" or bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def setup_tracing(provider: Any = None) -> bool:
    """Start tracing: with ``provider`` (a TracerProvider; tests pass one with an
    in-memory exporter), or with an OTLP exporter configured from the environment when
    it asks for one. Whether traces are on."""
    global _tracer, _instrumentor
    if trace is None:
        return False
    if provider is None:
        if not _wanted():
            return False
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            return False
        attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "continuo"}
        provider = TracerProvider(resource=Resource.create(attributes))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    from continuo import __version__

    _tracer = provider.get_tracer("continuo", __version__)
    try:
        from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    except ImportError:
        pass
    else:
        _instrumentor = AioHttpClientInstrumentor()
        _instrumentor.instrument(tracer_provider=provider)
    return True


def shutdown_tracing() -> None:
    global _tracer, _instrumentor
    if _instrumentor is not None:
        _instrumentor.uninstrument()
    _tracer = _instrumentor = None


def start_request_span(name: str, headers: Mapping[str, str], attributes: dict[str, Any]) -> tuple[Any, Any]:
    """A server span for a request, child of the client's ``traceparent``, made current;
    returns (span, token) for ``end_request_span``."""
    if _tracer is None:
        return None, None
    parent = propagate.extract(headers)
    span = _tracer.start_span(name, context=parent, kind=trace.SpanKind.SERVER, attributes=attributes)
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    return span, token


def end_request_span(span: Any, token: Any, status: int) -> None:
    if span is None:
        return
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(trace.Status(trace.StatusCode.ERROR))
    span.end()
    otel_context.detach(token)


def annotate(**attributes: Any) -> None:
    """Attributes for the current span (the request's, below the HTTP layer)."""
    if _tracer is None:
        return
    span = trace.get_current_span()
    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(key, value)


@contextlib.contextmanager
def child_span(name: str, **attributes: Any) -> Iterator[None]:
    """A span under the current one, for the duration of the block; none outside a
    traced request (the background poller would otherwise make a root span a second)."""
    if _tracer is None or not trace.get_current_span().is_recording():
        yield
        return
    with _tracer.start_as_current_span(name, attributes=attributes):
        yield


def start_span(name: str, **attributes: Any) -> Any:
    """A span under the current one, ended by the caller (``end_span``); none outside a
    traced request."""
    if _tracer is None or not trace.get_current_span().is_recording():
        return None
    return _tracer.start_span(name, attributes=attributes)


def start_client_span(method: str, url: str, host: str, port: int) -> tuple[Any, dict[str, str]]:
    """A client span for an HTTP call under the current span (none outside a traced
    request), and the headers that carry it to the server called (``traceparent``)."""
    if _tracer is None or not trace.get_current_span().is_recording():
        return None, {}
    attributes = {"http.request.method": method, "url.full": url, "server.address": host, "server.port": port}
    span = _tracer.start_span(method, kind=trace.SpanKind.CLIENT, attributes=attributes)
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return span, carrier


@contextlib.contextmanager
def within(span: Any) -> Iterator[None]:
    """Make ``span`` current for the block (so what it starts is its child)."""
    if span is None:
        yield
        return
    with trace.use_span(span, end_on_exit=False):
        yield


def end_span(span: Any, error: BaseException | None = None, **attributes: Any) -> None:
    if span is None:
        return
    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(key, value)
    if error is not None:
        span.record_exception(error)
        span.set_status(trace.Status(trace.StatusCode.ERROR, str(error)))
    span.end()
