"""The Responses semantics: create (streamed, not, or in the background), retrieve,
follow, cancel, delete, list input items.

No HTTP and no SQL here: requests come in as parsed JSON, errors leave as ``APIError``,
state goes through the ``Store`` interface.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

from continuo.backends.base import DeltaStream, UpstreamError
from continuo.core import conversations
from continuo.core.background import BackgroundRunner
from continuo.core.builder import Event, ResponseBuilder, new_response
from continuo.core.context import build_context
from continuo.core.driver import Job, RunDriver, upstream_failure
from continuo.core.foreground import answer, stream
from continuo.core.request import CreateRequest, parse_create_request
from continuo.core.status import TERMINAL_EVENTS, TERMINAL_STATUSES
from continuo.core.tool_loop import resolve
from continuo.core.toolset import ToolSet, redact_tools
from continuo.errors import InvalidRequest, NotFound
from continuo.ids import new_id
from continuo.notify import Notifier
from continuo.store.base import Store


@dataclass(slots=True)
class Answer:
    """What a create returns: a JSON body, or a stream of events."""

    body: dict[str, Any] | None = None
    events: AsyncIterable[Event] | None = None
    response_id: str | None = None


class ResponsesService:
    def __init__(
        self,
        store: Store,
        driver: RunDriver,
        notifier: Notifier,
        background: BackgroundRunner,
        *,
        max_input_items: int = 4096,
    ) -> None:
        self.store = store
        self.max_input_items = max_input_items
        self.driver = driver
        self.notifier = notifier
        self.background = background
        # Foreground streams run in tasks of their own; kept here so none is lost.
        self.tasks: set[asyncio.Task[Any]] = set()

    async def create(self, body: Any, project: str) -> Answer:
        """Validate, build the context, then answer: a JSON body (a finished response, or
        a queued background one), or a stream (a foreground one, or a background one
        followed from its start). Errors up to the first event are plain HTTP errors;
        after that a run reports failures in the Response itself."""
        request = parse_create_request(body, self.max_input_items)
        self.driver.router.check(request.model)  # an unknown model is a 400 before anything else
        # MCP secrets are used for the calls and never stored nor echoed.
        secrets = redact_tools(request.tools)
        if self.driver.mcp is not None and any(tool.get("type") == "mcp" for tool in request.tools):
            await resolve(self.driver.mcp, ToolSet(request.tools, secrets))  # refused servers are a 400 now
        if request.background:
            items = await build_context(self.store, project, request)
            if self.driver.window is not None:
                self.driver.window.compactor.expand(project, items)  # a compaction item that does not open: 400 now
            if not request.store:
                raise InvalidRequest(
                    "Background responses must be stored: 'background' requires 'store' to be true.",
                    param="store",
                    code="invalid_value",
                )
            # (A background response takes its conversation in Store.create_background.)
            if secrets and self.driver.mcp is not None:
                body = self.driver.mcp.hold(body, secrets)
            queued = await self.background.enqueue(project, request, body)
            if request.stream:
                return Answer(events=self._follow(project, queued["id"], -1), response_id=queued["id"])
            return Answer(body=queued, response_id=queued["id"])
        job = await self.prepare(project, request, secrets=secrets)
        upstream = await self.open(job)
        if not request.stream:
            return Answer(body=await answer(self.driver, self.store, job, upstream), response_id=job.response["id"])
        return Answer(events=stream(self.driver, self.store, job, upstream, self.tasks), response_id=job.response["id"])

    async def prepare(
        self,
        project: str,
        request: CreateRequest,
        history: list[dict[str, Any]] | None = None,
        secrets: dict[str, dict[str, str]] | None = None,
    ) -> Job:
        """A foreground response about to run: its context (from ``history`` when the
        caller has it in hand, else from the store) and its new Response object."""
        response_id = new_id("resp")
        # Hold the conversation (if any) before reading it; whatever fails from here on
        # before the run starts lets it go again.
        if request.conversation is not None:  # (a coroutine less for every other response)
            await conversations.acquire(self.store, project, request, response_id)
        try:
            items = await build_context(self.store, project, request, history)
            if self.driver.window is not None:
                self.driver.window.compactor.expand(project, items)  # a compaction item that does not open: 400 now
            response = new_response(request, response_id, int(time.time()))
            builder = ResponseBuilder(response, emit=request.stream)
            return self.driver.job(project, request, items, builder, secrets)
        except BaseException:
            await conversations.release(self.store, request, response_id)
            raise

    async def open(self, job: Job) -> DeltaStream | None:
        """Open the job's model call; a refusal before any delta is an ``APIError``.
        None when the call can only be opened inside the run (MCP servers to list or
        approved calls to run first)."""
        if self.driver.opens_late(job):
            return None
        try:
            try:
                return await self.driver.open(job)
            except UpstreamError as exc:
                raise upstream_failure(exc) from None
        except BaseException:
            await self.release(job)
            raise

    async def release(self, job: Job) -> None:
        """Let the job's conversation go (a no-op without one, or once it was stored)."""
        await conversations.release(self.store, job.request, job.response["id"])

    def model_names(self) -> list[str]:
        return self.driver.router.model_names()

    def serves(self, model: str) -> bool:
        return self.driver.router.serves(model)

    def provider_name(self, model: str) -> str | None:
        return self.driver.router.provider_name(model)

    async def ping(self) -> bool:
        return await self.store.ping()

    async def retrieve(self, project: str, response_id: str) -> dict[str, Any]:
        response = await self.store.get_response(project, response_id)
        if response is None:
            raise not_found(response_id)
        return response

    async def follow(self, project: str, response_id: str, starting_after: int | None) -> AsyncIterator[Event]:
        """Replay a background response's events after ``starting_after``, then follow
        the live ones until the terminal event."""
        response = await self.retrieve(project, response_id)
        if not response.get("background"):
            raise InvalidRequest(
                "This response cannot be streamed: only background responses can be.",
                param="stream",
                code="invalid_value",
            )
        return self._follow(project, response_id, -1 if starting_after is None else starting_after)

    async def _follow(self, project: str, response_id: str, after: int) -> AsyncIterator[Event]:
        poll = self.background.config.poll_seconds
        ended = False
        while True:
            with self.notifier.listen(response_id) as signal:
                batch = await self.store.events_after(project, response_id, after)
                for event in batch:
                    yield event.type, event.data
                    after = event.sequence_number
                    if event.type in TERMINAL_EVENTS:
                        return
                if batch:
                    continue
                if ended:
                    return  # ended without a terminal event (deleted meanwhile)
                current = await self.store.get_response(project, response_id)
                if current is None or current["status"] in TERMINAL_STATUSES:
                    # Its last events may have landed after the read above: read once more.
                    ended = True
                    continue
                await signal.wait(poll)

    async def cancel(self, project: str, response_id: str) -> dict[str, Any]:
        response = await self.retrieve(project, response_id)
        if not response.get("background"):
            raise InvalidRequest(
                "Only responses created with 'background': true can be cancelled.",
                param="response_id",
                code="invalid_value",
            )
        if response["status"] in TERMINAL_STATUSES:
            return response
        await self.background.cancel(project, response)
        return await self.retrieve(project, response_id)

    async def delete(self, project: str, response_id: str) -> dict[str, Any]:
        if not await self.store.delete_response(project, response_id):
            raise not_found(response_id)
        return {"id": response_id, "object": "response", "deleted": True}

    async def input_items(
        self, project: str, response_id: str, *, limit: int = 20, order: str = "desc", after: str | None = None
    ) -> dict[str, Any]:
        page = await self.store.input_items(project, response_id, limit=limit, ascending=order == "asc", after=after)
        if page is None:
            raise not_found(response_id)
        if not page.anchor_found:
            raise InvalidRequest(f"No item with id '{after}' in this list.", param="after", code="invalid_value")
        data = page.data
        return {
            "object": "list",
            "data": data,
            "first_id": data[0].get("id") if data else None,
            "last_id": data[-1].get("id") if data else None,
            "has_more": page.has_more,
        }

    async def aclose(self) -> None:
        """Let foreground streams that are still finishing store their results."""
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=10)


def not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param="response_id")
