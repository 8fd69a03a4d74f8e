"""Foreground responses: a JSON answer or a stream, both made by the run driver."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from continuo.backends.base import DeltaStream
from continuo.core import conversations
from continuo.core.builder import Event, ResponseBuilder
from continuo.core.driver import Job, RunDriver, upstream_failure
from continuo.core.status import Status
from continuo.errors import APIError
from continuo.store.base import Store


class _Keep:
    """Stores the settled response once (when the request asked for it)."""

    persists_events = False

    def __init__(self, store: Store, job: Job) -> None:
        self.store = store
        self.job = job

    async def persist(self, builder: ResponseBuilder, closing: list[Event]) -> None:
        if self.job.request.store:
            # Also appends to the response's conversation and releases it, in one transaction.
            await self.store.save_response(self.job.project, builder.response, self.job.request.input)
        else:
            # [conversations hook 3] store:false still appends to its conversation
            await conversations.save_unstored(self.store, self.job.project, self.job.request, builder.response)


class JSONSink(_Keep):
    """A non-streamed answer: no events; a failure is an HTTP error and nothing is kept."""

    async def emit(self, events: list[Event]) -> None:
        return None

    async def persist(self, builder: ResponseBuilder, closing: list[Event]) -> None:
        if builder.response["status"] != Status.FAILED:
            await super().persist(builder, closing)


class _Channel:
    """Batches of events from the run's task to the stream's, in order; ``None`` ends
    them. A deque and one waiting future: ``asyncio.Queue`` cost twice as much a batch."""

    __slots__ = ("batches", "waiter")

    def __init__(self) -> None:
        self.batches: deque[list[Event] | None] = deque()
        self.waiter: asyncio.Future[None] | None = None

    def put(self, batch: list[Event] | None) -> None:
        self.batches.append(batch)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> list[Event] | None:
        while not self.batches:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.batches.popleft()


class QueueSink(_Keep):
    """A stream: events go to the HTTP response through a channel."""

    def __init__(self, store: Store, job: Job) -> None:
        super().__init__(store, job)
        self.queue = _Channel()

    async def emit(self, events: list[Event]) -> None:
        self.push(events)

    def push(self, events: list[Event]) -> None:
        if events:
            self.queue.put(events)


async def answer(driver: RunDriver, store: Store, job: Job, upstream: DeltaStream | None) -> dict[str, Any]:
    """Run the opened call to the end and return the finished Response, or raise the
    HTTP error."""
    try:
        await driver.run(job, JSONSink(store, job), upstream)
    finally:
        # [conversations hook 4] every way out lets the conversation go
        await conversations.release(store, job.request, job.response["id"])
    response = job.response
    if response["status"] == Status.FAILED:
        if job.error is not None:
            raise upstream_failure(job.error)
        if job.failure is not None:
            raise job.failure
        error = response.get("error") or {}
        raise APIError(error.get("message", "The response failed."), code=error.get("code"))
    return response


def stream(
    driver: RunDriver, store: Store, job: Job, upstream: DeltaStream | None, tasks: set[asyncio.Task[Any]]
) -> EventStream:
    """The stream events. The run goes on in a task of its own, so a client that goes
    away stops it cleanly: the upstream is closed and what was produced is stored as
    ``cancelled``."""
    sink = QueueSink(store, job)
    job.builder.start()

    async def produce() -> None:
        try:
            await driver.run(job, sink, upstream)
        finally:
            # [conversations hook 5] every way out lets the conversation go
            await conversations.release(store, job.request, job.response["id"])
            sink.queue.put(None)

    task = asyncio.get_running_loop().create_task(produce())
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return EventStream(sink.queue, task)


class EventStream:
    """A foreground stream's events, one at a time (``async for``) or a batch at a time
    (``batches``: what the SSE writer takes, one resumption of a generator a batch instead
    of one an event). Left before its end, it stops the run."""

    def __init__(self, queue: _Channel, task: asyncio.Task[None]) -> None:
        self.queue = queue
        self.task = task
        self.finished = False

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        async for batch in self.batches():
            for event in batch:
                yield event

    async def batches(self) -> AsyncIterator[list[Event]]:
        queue, waiting = self.queue, self.queue.batches
        try:
            while (batch := waiting.popleft() if waiting else await queue.get()) is not None:
                yield batch
            self.finished = True
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if not self.finished:
            self.task.cancel()
