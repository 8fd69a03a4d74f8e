"""The run driver: the one place where a model call is opened and driven to its end.

Foreground JSON answers, foreground streams and background runs all go through
``RunDriver``; they differ only in their ``Sink`` (where events go while the model talks,
and how the settled response is kept). Whatever happens after ``response.created`` (the
upstream failing, a malformed delta, a bug, the client leaving, a shutdown, the store
failing), the response settles on a status in the builder, is persisted through the sink
and gets exactly one terminal event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from continuo.backends.base import DeltaStream, ModelRequest, UpstreamError
from continuo.core.builder import Event, ResponseBuilder
from continuo.core.fetch import Fetcher
from continuo.core.mcp import MCPClients
from continuo.core.request import CreateRequest
from continuo.core.routing import Route, Router
from continuo.core.shielded import shielded
from continuo.core.tool_loop import ToolLoop
from continuo.core.toolset import ToolSet, mcp_history, model_items
from continuo.errors import APIError, InvalidRequest, UpstreamFailure

if TYPE_CHECKING:
    from continuo.core.window import Window

log = logging.getLogger("continuo")

SHUTDOWN = "The server shut down while this response was running; the response was not completed."
STORE_FAILED = "The response could not be stored."


def upstream_failure(error: UpstreamError) -> APIError:
    """The HTTP error for an upstream failure that happened before anything was sent."""
    if 400 <= error.status < 500:
        return InvalidRequest(error.message, status=error.status, code=error.code)
    code = "upstream_timeout" if error.status == 504 else "upstream_error"
    return UpstreamFailure(error.message, status=error.status, code=code)


def model_request(request: CreateRequest, upstream_model: str, items: list[dict[str, Any]]) -> ModelRequest:
    params: dict[str, Any] = dict(request.extra)
    for name in ("temperature", "top_p", "max_output_tokens", "prompt_cache_key"):
        if (value := getattr(request, name)) is not None:
            params[name] = value
    if (user := request.safety_identifier or request.user) is not None:
        params["user"] = user
    if request.reasoning.get("effort") is not None:
        params["reasoning_effort"] = request.reasoning["effort"]
    if request.reasoning.get("summary") is not None:
        # Only a Responses upstream has a use for it; Chat Completions has no such field.
        params["reasoning_summary"] = request.reasoning["summary"]
    if request.tools:
        params["parallel_tool_calls"] = request.parallel_tool_calls
    return ModelRequest(
        model=upstream_model,
        items=items,
        instructions=request.instructions,
        tools=request.tools,
        tool_choice=request.tool_choice,
        text_format=request.text["format"],
        params=params,
        # Every call streams from the upstream, except a foreground JSON answer's.
        stream=request.stream or request.background,
    )


class Sink(Protocol):
    """Where a run's events go and how its settled response is kept."""

    # Whether ``persist`` also writes the closing events (then they are not emitted).
    persists_events: bool

    async def emit(self, events: list[Event]) -> None:
        """Events as they happen (before the closing ones)."""

    async def persist(self, builder: ResponseBuilder, closing: list[Event]) -> None:
        """Keep the settled response; raise if it could not be kept."""


@dataclass(slots=True)
class Job:
    """One response being made: who asked, what for, by which route, from which context."""

    project: str
    request: CreateRequest
    route: Route
    context: list[dict[str, Any]]
    builder: ResponseBuilder
    # Why the run was stopped from outside: "cancel" (asked for) or "shutdown".
    stop_reason: str | None = None
    # The upstream's failure, when that is what ended it.
    error: UpstreamError | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The server-side tools (MCP, custom) of the response.
    tools: ToolSet | None = None
    # The HTTP error a foreground JSON answer gives when the run failed before the model spoke.
    failure: APIError | None = None

    @property
    def response(self) -> dict[str, Any]:
        return self.builder.response


class RunDriver:
    def __init__(self, router: Router, fetcher: Fetcher | None = None, mcp: MCPClients | None = None) -> None:
        self.router = router
        self.fetcher = fetcher
        # Long contexts (core/window.py): set by the wiring once the sealing key is loaded.
        self.window: Window | None = None
        self.mcp = mcp

    def job(
        self,
        project: str,
        request: CreateRequest,
        context: list[dict[str, Any]],
        builder: ResponseBuilder,
        secrets: dict[str, dict[str, str]] | None = None,
    ) -> Job:
        job = Job(project, request, self.router.resolve(request.model), context, builder)
        if self.mcp is not None and self.mcp.servers:
            self.mcp.fill(request.tools)
        tools = ToolSet(request.tools, secrets)
        if tools.active:
            tools.learn(context)
            job.tools = tools
        return job

    def opens_late(self, job: Job) -> bool:
        """Whether the model call can only be opened inside the run (MCP servers to list
        or approved calls to run first)."""
        tools = job.tools
        if tools is None:
            return False
        approvals = any(item.get("type") == "mcp_approval_response" for item in job.request.input)
        return bool(tools.unlisted()) or approvals

    async def open(self, job: Job) -> DeltaStream:
        """Open the model call: the only place in Continuo that does. Raises
        ``UpstreamError`` when the upstream fails before its first delta."""
        context = job.context
        if self.window is not None:
            context = await self.window.prepare(job)
        tools = job.tools
        if tools is not None:
            context = model_items(context + job.builder.response["output"])
        elif job.request.previous_response_id is not None or len(context) > 1:
            context = mcp_history(context)
        if job.route.provider.fetch_remote_content and self.fetcher is not None:
            context = await self.fetcher.inline(context)
        call = model_request(job.request, job.route.upstream_model, context)
        if tools is not None:
            call.tools = tools.model_tools()
            call.tool_choice = tools.model_choice(call.tool_choice)
            job.builder.tool_refs = tools.refs()
        return await job.route.backend.open(call)

    async def run(self, job: Job, sink: Sink, upstream: DeltaStream | None = None) -> None:
        """Drive the call to a settled response, persist it and emit the terminal event.

        ``upstream`` is the call when it was opened already (a foreground stream opens it
        before ``response.created``, so that a refusal is still an HTTP error). A
        cancellation settles the response (cancelled, or failed on shutdown), persists it
        and is then raised again.
        """
        builder = job.builder
        cancelled = False
        loop = ToolLoop(self.mcp, job, sink) if job.tools is not None and self.mcp is not None else None
        try:
            await sink.emit(builder.drain())
            if loop is not None:
                await loop.prepare()
            while True:
                if upstream is None:
                    upstream = await self.open(job)
                for item in job.extra.pop("output_items", ()):
                    builder.add_item(item)  # a compaction made while opening the call
                if builder.events:
                    await sink.emit(builder.drain())
                await self._drive(builder, upstream, sink)
                if loop is None:
                    break
                await _close(upstream)
                upstream = None
                if not await loop.after_call():
                    break
            builder.complete()
        except asyncio.CancelledError:
            cancelled = True
            if job.stop_reason == "shutdown":
                builder.fail(SHUTDOWN)
            else:
                builder.cancel()
        except UpstreamError as exc:
            job.error = exc
            builder.fail(exc.message)
        except APIError as exc:
            job.failure = exc
            builder.fail(exc.message, exc.code or "server_error")
        except Exception as exc:
            log.exception("response %s failed", job.response["id"])
            builder.fail(f"The response failed: {type(exc).__name__} inside the server.")
        finally:
            if upstream is not None:
                await _close(upstream)
            if loop is not None:
                await loop.aclose()
        await self.end(builder, sink)
        if cancelled:
            raise asyncio.CancelledError

    async def _drive(self, builder: ResponseBuilder, upstream: DeltaStream, sink: Sink) -> None:
        # A sink that takes events without waiting says so with ``push``: one call a
        # batch instead of a coroutine a batch (a stream's deltas are most of its work).
        push: Callable[[list[Event]], None] | None = getattr(sink, "push", None)
        feed = builder.feed
        async for batch in upstream.batches():
            for delta in batch:
                feed(delta)
            if builder.events:
                if push is not None:
                    push(builder.drain())
                else:
                    await sink.emit(builder.drain())

    async def end(self, builder: ResponseBuilder, sink: Sink) -> None:
        """Persist a settled response with its terminal event. Shielded: a client that
        leaves now cannot undo it halfway. When it cannot be kept, the response fails
        (said so in the stream) and that is kept instead, where the store allows."""
        pending = builder.drain()
        mark = builder.sequence
        builder.terminal()
        closing = pending + builder.drain()
        try:
            await shielded(sink.persist(builder, closing))
        except Exception:
            log.exception("could not store response %s", builder.response["id"])
            builder.sequence = mark  # that terminal event never left
            builder.fail(STORE_FAILED)
            builder.terminal()
            closing = pending + builder.drain()
            if sink.persists_events:
                try:
                    await shielded(sink.persist(builder, closing))
                except Exception:
                    log.exception("could not store the failure of response %s", builder.response["id"])
                return
        if not sink.persists_events:
            await sink.emit(closing)


async def _close(upstream: DeltaStream) -> None:
    try:
        await shielded(upstream.aclose())
    except Exception:
        log.warning("closing an upstream call failed", exc_info=True)
