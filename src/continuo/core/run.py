"""Driving one model call: deltas into the builder, events out, the result stored."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from continuo.backends.base import DeltaStream, ModelRequest, UpstreamError
from continuo.core import conversations
from continuo.core.builder import Event, ResponseBuilder
from continuo.core.request import CreateRequest
from continuo.errors import APIError, InvalidRequest, UpstreamFailure
from continuo.store.base import Store

log = logging.getLogger("continuo")

Sink = Callable[[list[Event]], Awaitable[None]]


def upstream_failure(error: UpstreamError) -> APIError:
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
        stream=request.stream,
    )


async def drive(builder: ResponseBuilder, upstream: DeltaStream, sink: Sink | None) -> UpstreamError | None:
    """Feed every delta to the builder and each batch of events to ``sink``; settle the
    status (completed, incomplete or failed, returning the upstream's error). Cancellation
    leaves the status to the caller. The upstream is closed on every way out, so it sees
    a disconnect."""
    try:
        async for delta in upstream:
            builder.feed(delta)
            if sink is not None and builder.events:
                await sink(builder.drain())
        builder.complete()
    except UpstreamError as exc:
        builder.fail(exc.message)
        return exc
    finally:
        await upstream.aclose()
    return None


class Run:
    """A foreground model call on its way to becoming a Response."""

    def __init__(
        self,
        store: Store,
        project: str,
        request: CreateRequest,
        builder: ResponseBuilder,
        upstream: DeltaStream,
        tasks: set[asyncio.Task[Any]],
    ) -> None:
        self.store = store
        self.project = project
        self.request = request
        self.builder = builder
        self.upstream = upstream
        self.tasks = tasks

    @property
    def response(self) -> dict[str, Any]:
        return self.builder.response

    async def _save(self) -> None:
        if self.request.store:
            # Appends to the response's conversation and releases it, in one transaction.
            await self.store.save_response(self.project, self.response, self.request.input)
        else:
            # [conversations hook 3] store:false still appends to its conversation
            await conversations.save_unstored(self.store, self.project, self.request, self.response)

    async def result(self) -> dict[str, Any]:
        """Run to the end and return the finished Response (non-streamed). A failure
        here is an HTTP error, and nothing is stored."""
        try:
            error = await drive(self.builder, self.upstream, None)
            if error is not None:
                raise upstream_failure(error)
            await self._save()
        finally:
            # [conversations hook 4] every way out lets the conversation go
            await conversations.release(self.store, self.request, self.response["id"])
        return self.response

    def stream(self) -> AsyncIterator[Event]:
        """The stream events. The model call runs in a task of its own, so a client that
        goes away stops it cleanly: the upstream is closed and what was produced is
        stored as ``cancelled``."""
        queue: asyncio.Queue[list[Event] | None] = asyncio.Queue()
        task = asyncio.get_running_loop().create_task(self._produce(queue))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return self._consume(queue, task)

    async def _store(self) -> None:
        """Store the response; shielded, so a client leaving now cannot undo it halfway.
        A store that fails turns the response into a failed one, said so in the stream."""
        try:
            await asyncio.shield(self._save())
        except Exception:
            log.exception("could not store response %s", self.response["id"])
            self.builder.fail("The response could not be stored.")

    async def _produce(self, queue: asyncio.Queue[list[Event] | None]) -> None:
        builder = self.builder
        try:
            builder.start()
            await queue.put(builder.drain())
            try:
                await drive(builder, self.upstream, queue.put)
            except asyncio.CancelledError:
                builder.cancel()
                await self._store()
                return
            await queue.put(builder.drain())
            await self._store()
            builder.terminal()
            await queue.put(builder.drain())
        except Exception:
            log.exception("stream of %s failed", self.response["id"])
        finally:
            # [conversations hook 5] every way out lets the conversation go
            await conversations.release(self.store, self.request, self.response["id"])
            await queue.put(None)

    async def _consume(
        self, queue: asyncio.Queue[list[Event] | None], task: asyncio.Task[None]
    ) -> AsyncIterator[Event]:
        finished = False
        try:
            while (batch := await queue.get()) is not None:
                for event in batch:
                    yield event
            finished = True
        finally:
            if not finished:
                task.cancel()
