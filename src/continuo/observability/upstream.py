"""Upstream calls, watched: time to first token and total time, tokens, errors, and a
span per call (with a child span per tool call the model makes). ``observe_backend``
wraps a backend where core resolves it, so neither core's run loop nor the backends
know about any of this."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from continuo.backends.base import (
    Backend,
    Delta,
    DeltaStream,
    InBatches,
    ModelRequest,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    UpstreamError,
    Usage,
)
from continuo.observability import metrics, tracing
from continuo.observability.context import current


def error_kind(error: UpstreamError) -> str:
    if error.status == 504:
        return "timeout"
    if 400 <= error.status < 500:
        return "rejected"
    return "failed"


class _Metrics:
    """The metric children of one (provider, model), looked up once."""

    __slots__ = ("first_token", "input_tokens", "output_tokens", "seconds")

    def __init__(self, provider: str, model: str) -> None:
        self.first_token = metrics.UPSTREAM_FIRST_TOKEN_SECONDS.labels(provider, model)
        self.seconds = metrics.UPSTREAM_SECONDS.labels(provider, model)
        self.input_tokens = metrics.TOKENS.labels(model, "input")
        self.output_tokens = metrics.TOKENS.labels(model, "output")


class ObservedBackend:
    """``backend`` as called for the client model name ``model`` through ``provider``."""

    def __init__(self, backend: Backend, provider: str, model: str) -> None:
        self.backend = backend
        self.provider = provider
        self.model = metrics.model_label(model)
        self.metrics = _Metrics(provider, self.model)

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def context_window(self) -> int | None:
        # Read at every request (core/tokens.py), and may change (a backend learns it):
        # passed on here, not found through ``__getattr__`` after a failed lookup.
        found: int | None = getattr(self.backend, "context_window", None)
        return found

    def __getattr__(self, name: str) -> Any:
        # The backend's other optional capabilities (count_tokens, …) pass through
        # unobserved: core finds them on the route's backend by name. A method
        # found is kept on this object, so the next lookup finds it at once (Python calls
        # ``__getattr__`` only after a failed lookup has built an AttributeError).
        found = getattr(self.backend, name)
        if callable(found):
            self.__dict__[name] = found
        return found

    async def open(self, request: ModelRequest) -> DeltaStream:
        started = time.perf_counter()
        span = None
        if tracing.enabled():  # without a tracer, no span's dictionaries are built at all
            span = tracing.start_span(
                "upstream",
                **{
                    "continuo.provider": self.provider,
                    "gen_ai.request.model": self.model,
                    "continuo.upstream_model": request.model,
                    "continuo.stream": request.stream,
                },
            )
        try:
            if span is None:
                stream = await self.backend.open(request)
            else:
                with tracing.within(span):
                    stream = await self.backend.open(request)
        except BaseException as exc:
            ObservedStream(None, self, started, span).finish(exc)
            raise
        watched = ObservedStream(stream, self, started, span)
        replay = getattr(stream, "replay", None)
        if replay is not None:
            # A call already over (a JSON answer, read whole): watched now, and handed on
            # as it is, without a generator around its one batch.
            watched.saw(replay)
            watched.finish()
            return stream
        return watched

    async def aclose(self) -> None:
        await self.backend.aclose()


class ObservedStream(InBatches):
    """An upstream call's deltas, passed on as they come, watched on the way."""

    def __init__(self, stream: DeltaStream | None, backend: ObservedBackend, started: float, span: Any) -> None:
        self.stream = stream
        self.backend_metrics = backend.metrics
        self.provider = backend.provider
        self.started = started
        self.span = span
        self.request = current()
        self.first_token = False
        self.tools: dict[int, Any] = {}
        self.done = False
        self.usage: Usage | None = None

    async def batches(self) -> AsyncIterator[list[Delta]]:
        assert self.stream is not None
        try:
            async for batch in self.stream.batches():
                self.saw(batch)
                yield batch
        except UpstreamError as exc:
            self.finish(exc)
            raise

    def saw(self, batch: list[Delta]) -> None:
        for delta in batch:
            # Text after the first token tells the call nothing new; after it only usage
            # and tool calls do.
            if type(delta) is not TextDelta or not self.first_token:
                if isinstance(delta, Usage):
                    self.usage = delta
                elif not self.first_token or type(delta) is ToolCallDelta:
                    self.delta(delta)

    async def aclose(self) -> None:
        try:
            if self.stream is not None:
                await self.stream.aclose()
        finally:
            self.finish()

    def delta(self, delta: Delta) -> None:
        if not self.first_token and isinstance(delta, TextDelta | ReasoningDelta | ToolCallDelta):
            self.first_token = True
            elapsed = time.perf_counter() - self.started
            self.backend_metrics.first_token.observe(elapsed)
        if isinstance(delta, Usage):
            self.usage = delta
        elif isinstance(delta, ToolCallDelta) and delta.index not in self.tools and self.span is not None:
            with tracing.within(self.span):
                self.tools[delta.index] = tracing.start_span(
                    f"tool_call {delta.name or ''}".strip(),
                    **{"gen_ai.tool.name": delta.name, "gen_ai.tool.call.id": delta.call_id},
                )

    def finish(self, error: BaseException | None = None) -> None:
        if self.done:
            return
        self.done = True
        elapsed = time.perf_counter() - self.started
        self.backend_metrics.seconds.observe(elapsed)
        if self.request is not None:
            self.request.upstream_seconds += elapsed
            self.request.upstream_calls += 1
        if isinstance(error, UpstreamError):
            metrics.UPSTREAM_ERRORS.labels(self.provider, error_kind(error)).inc()
        usage = self.usage
        if usage is not None:
            self.backend_metrics.input_tokens.inc(usage.input_tokens)
            self.backend_metrics.output_tokens.inc(usage.output_tokens)
        if self.span is None:
            return
        for tool in self.tools.values():
            tracing.end_span(tool)
        tracing.end_span(
            self.span,
            error,
            **{
                "gen_ai.usage.input_tokens": usage.input_tokens if usage else None,
                "gen_ai.usage.output_tokens": usage.output_tokens if usage else None,
            },
        )
