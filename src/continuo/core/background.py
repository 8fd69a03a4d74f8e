"""Background runs: a queue in the store, a bounded set of runs per replica, leases.

The queue is the ``responses`` table itself: a queued row holds the create request, any
replica with room claims the oldest one (exactly once), renews a lease while it runs, and
writes every stream event, so any replica can replay and follow it. Runs are owned by
leases on SQLite exactly as on PostgreSQL: a run whose owner stopped renewing (its
process died) is ended once its lease runs out, as ``failed``, or as ``cancelled`` when a
cancel had been asked for. A run stopped by a clean shutdown is ended as ``failed`` at
once. Queued runs simply wait for the next replica with room.

The model call itself is made by the run driver; this module only feeds it claims and
gives it a sink that writes events to the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from continuo.config import BackgroundConfig
from continuo.core.builder import Event, ResponseBuilder, new_response
from continuo.core.driver import Job, RunDriver
from continuo.core.request import CreateRequest, parse_create_request
from continuo.core.status import TERMINAL_STATUSES, Status
from continuo.errors import APIError
from continuo.ids import new_id
from continuo.notify import Notifier
from continuo.store.base import ClaimedRun, ExpiredRun, Store, StoredEvent

log = logging.getLogger("continuo")

QUEUE = "queue"
RESTARTED = "The server running this response stopped before it finished; the response was not completed."


def stored(events: list[Event], first: int) -> list[StoredEvent]:
    return [StoredEvent(first + i, kind, data) for i, (kind, data) in enumerate(events)]


def _micros() -> int:
    return time.time_ns() // 1000


def _begin(response: dict[str, Any], first: int) -> list[StoredEvent]:
    """A claimed run begins: applied by the store in the claim's own transaction."""
    builder = ResponseBuilder(response, sequence=first)
    builder.begin()
    return stored(builder.drain(), first)


class StoreSink:
    """A background run's sink: every event is written to the store (so any replica can
    replay it) and announced; finished output items are saved as they finish."""

    persists_events = True

    def __init__(self, store: Store, notifier: Notifier, builder: ResponseBuilder, first: int) -> None:
        self.store = store
        self.notifier = notifier
        self.builder = builder
        self.written = first
        self.items_saved = builder.items_done

    async def emit(self, events: list[Event]) -> None:
        if not events:
            return
        response = self.builder.response
        batch = stored(events, self.written)
        self.written += len(batch)
        if self.builder.items_done != self.items_saved:
            self.items_saved = self.builder.items_done
            await self.store.update_run(response["id"], response, batch)
        else:
            await self.store.append_events(response["id"], batch)
        await self.notifier.notify(response["id"])

    async def persist(self, builder: ResponseBuilder, closing: list[Event]) -> None:
        response = builder.response
        events = stored(closing, self.written)
        if await self.store.finish_run(response["id"], response, events, from_statuses=(Status.IN_PROGRESS,)):
            self.written += len(events)
            await self.notifier.notify(response["id"])


class BackgroundRunner:
    def __init__(self, store: Store, driver: RunDriver, notifier: Notifier, config: BackgroundConfig) -> None:
        self.store = store
        self.driver = driver
        self.notifier = notifier
        self.config = config
        self.owner = new_id("replica")[:32]
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.jobs: dict[str, Job] = {}
        self.loops: list[asyncio.Task[None]] = []

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self.loops = [asyncio.create_task(self._dispatch()), asyncio.create_task(self._heartbeat())]

    async def stop(self) -> None:
        for loop in self.loops:
            loop.cancel()
        for response_id in list(self.tasks):
            self._stop(response_id, "shutdown")
        await asyncio.gather(*self.loops, *self.tasks.values(), return_exceptions=True)

    def _stop(self, response_id: str, reason: str) -> None:
        task = self.tasks.get(response_id)
        if task is None:
            return
        job = self.jobs.get(response_id)
        if job is not None and job.stop_reason is None:
            job.stop_reason = reason
        task.cancel()

    # -- the queue ------------------------------------------------------------------------

    async def enqueue(self, project: str, request: CreateRequest, body: dict[str, Any]) -> dict[str, Any]:
        response = new_response(request, new_id("resp"), int(time.time()))
        builder = ResponseBuilder(response)
        builder.queue()
        # The run is rebuilt from this body later, with the input as resolved now.
        await self.store.create_background(project, response, request.input, body, stored(builder.drain(), 0))
        await self.notifier.notify(QUEUE)
        return response

    def _lease(self) -> int:
        return _micros() + int(self.config.lease_seconds * 1_000_000)

    async def _dispatch(self) -> None:
        while True:
            try:
                with self.notifier.listen(QUEUE) as signal:
                    while len(self.tasks) < self.config.max_concurrent:
                        claimed = await self.store.claim_queued(self.owner, self._lease(), _begin)
                        if claimed is None:
                            break
                        self._launch(claimed)
                    await signal.wait(self.config.poll_seconds)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background dispatch failed; retrying")
                await asyncio.sleep(self.config.poll_seconds)

    def _launch(self, claimed: ClaimedRun) -> None:
        response_id = claimed.response["id"]
        task = asyncio.create_task(self._run(claimed))
        self.tasks[response_id] = task

        def done(_: asyncio.Task[None]) -> None:
            self.tasks.pop(response_id, None)
            self.jobs.pop(response_id, None)
            self.notifier.wake(QUEUE)  # a slot is free here; other replicas poll

        task.add_done_callback(done)

    # -- one run --------------------------------------------------------------------------

    async def _run(self, claimed: ClaimedRun) -> None:
        builder = ResponseBuilder(claimed.response, sequence=claimed.next_sequence)
        sink = StoreSink(self.store, self.notifier, builder, claimed.next_sequence)
        try:
            request = parse_create_request({**claimed.request, "stream": False})
            secrets = self.driver.mcp.take(claimed.request) if self.driver.mcp is not None else None
            job = self.driver.job(claimed.project, request, claimed.context, builder, secrets)
        except APIError as exc:  # a request that no longer routes (the configuration changed)
            builder.fail(f"The run could not start: {exc.message}")
            await self.driver.end(builder, sink)
            return
        self.jobs[builder.response["id"]] = job
        try:
            await self.driver.run(job, sink)
        except asyncio.CancelledError:
            pass  # settled and stored by the driver; the task simply ends

    # -- cancel ---------------------------------------------------------------------------

    async def cancel(self, project: str, response: dict[str, Any]) -> None:
        """Stop a queued or running background response, wherever it runs, and return
        once it has ended (or a few poll intervals have passed)."""
        response_id = response["id"]
        if response["status"] == Status.QUEUED:
            first = await self.store.next_sequence(response_id)
            builder = ResponseBuilder(response, sequence=first)
            builder.cancel()
            builder.terminal()
            events = stored(builder.drain(), first)
            if await self.store.finish_run(response_id, response, events, from_statuses=(Status.QUEUED,)):
                await self.notifier.notify(response_id)
                return
        task = self.tasks.get(response_id)
        if task is not None:
            self._stop(response_id, "cancel")
            await asyncio.wait({task}, timeout=10)
            return
        await self.store.request_cancel(project, response_id)
        await self.notifier.notify("cancel")
        deadline = time.monotonic() + 10 * self.config.poll_seconds + self.config.lease_seconds
        while time.monotonic() < deadline:
            with self.notifier.listen(response_id) as signal:
                current = await self.store.get_response(project, response_id)
                if current is None or current["status"] in TERMINAL_STATUSES:
                    return
                await signal.wait(self.config.poll_seconds)

    # -- leases ---------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        interval = max(self.config.lease_seconds / 3, 0.05)
        while True:
            try:
                with self.notifier.listen("cancel") as signal:
                    await self.store.renew_leases(self.owner, list(self.tasks), self._lease())
                    for response_id in await self.store.cancel_requests(self.owner):
                        self._stop(response_id, "cancel")
                    await self._end_expired()
                    await signal.wait(interval)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background heartbeat failed; retrying")
                await asyncio.sleep(interval)

    async def _end_expired(self) -> None:
        for run in await self.store.expired_runs(_micros()):
            if run.response_id not in self.tasks:
                await self.end_abandoned(run)

    async def end_abandoned(self, run: ExpiredRun) -> None:
        """End a run whose owner died: through the same builder and driver code as any
        other ending. A cancel asked for before the lease ran out wins: the client asked
        to stop it, and it never finished."""
        response = await self.store.get_response(run.project, run.response_id)
        if response is None or response["status"] != Status.IN_PROGRESS:
            return
        first = await self.store.next_sequence(run.response_id)
        builder = ResponseBuilder(response, sequence=first)
        if run.cancel_requested:
            builder.cancel()
        else:
            builder.fail(RESTARTED)
        sink = StoreSink(self.store, self.notifier, builder, first)
        await self.driver.end(builder, sink)
        log.warning(
            "background response %s was abandoned by its server; ended %s", run.response_id, builder.response["status"]
        )
