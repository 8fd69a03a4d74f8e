"""Background runs: a queue in the store, a bounded set of runs per replica, leases.

The queue is the ``responses`` table itself: a queued row holds the create request, any
replica with room claims the oldest one (exactly once), renews a lease while it runs, and
writes every stream event, so any replica can replay and follow it. A run whose replica
died is ended as ``failed`` once its lease runs out; a run stopped by a clean shutdown is
ended as ``failed`` at once. Queued runs simply wait for the next replica with room.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from continuo.backends.base import UpstreamError
from continuo.config import BackgroundConfig
from continuo.core.builder import TERMINAL_STATUSES, Event, ResponseBuilder, new_response, terminal_event
from continuo.core.fetch import Fetcher
from continuo.core.notify import Notifier
from continuo.core.request import CreateRequest, parse_create_request
from continuo.core.routing import Router
from continuo.core.run import drive, model_request
from continuo.errors import APIError
from continuo.ids import new_id
from continuo.store.base import ClaimedRun, Store, StoredEvent

log = logging.getLogger("continuo")

QUEUE = "queue"
RESTARTED = "The server running this response stopped before it finished; the response was not completed."
SHUTDOWN = "The server shut down while this response was running; the response was not completed."


def stored(events: list[Event], first: int) -> list[StoredEvent]:
    return [StoredEvent(first + i, kind, data) for i, (kind, data) in enumerate(events)]


def _micros() -> int:
    return time.time_ns() // 1000


class BackgroundRunner:
    def __init__(
        self,
        store: Store,
        router: Router,
        notifier: Notifier,
        config: BackgroundConfig,
        fetcher: Fetcher | None = None,
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.router = router
        self.notifier = notifier
        self.config = config
        self.owner = new_id("replica")[:32]
        self.tasks: dict[str, asyncio.Task[None]] = {}
        # Why a local run is being cancelled: "cancel" (asked for) or "shutdown".
        self.reasons: dict[str, str] = {}
        self.loops: list[asyncio.Task[None]] = []

    # -- life cycle -----------------------------------------------------------------------

    async def start(self, *, single_replica: bool) -> None:
        """With a store only this process uses (SQLite), every run still in progress was
        left by an earlier life of this server: end them now rather than after a lease."""
        if single_replica:
            for project, response_id in await self.store.expired_runs(now_us=2**62):
                await self.fail_abandoned(project, response_id)
        self.loops = [asyncio.create_task(self._dispatch()), asyncio.create_task(self._heartbeat())]

    async def stop(self) -> None:
        for loop in self.loops:
            loop.cancel()
        for response_id, task in list(self.tasks.items()):
            self.reasons[response_id] = "shutdown"
            task.cancel()
        await asyncio.gather(*self.loops, *self.tasks.values(), return_exceptions=True)

    # -- the queue ------------------------------------------------------------------------

    async def enqueue(self, project: str, request: CreateRequest, body: dict[str, Any]) -> dict[str, Any]:
        response = new_response(request, new_id("resp"), int(time.time()))
        response["status"] = "queued"
        builder = ResponseBuilder(response)
        builder.lifecycle("response.created")
        builder.lifecycle("response.queued")
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
                        claimed = await self.store.claim_queued(self.owner, self._lease())
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
            self.reasons.pop(response_id, None)
            self.notifier.wake(QUEUE)  # a slot is free here; other replicas poll

        task.add_done_callback(done)

    # -- one run --------------------------------------------------------------------------

    async def _run(self, claimed: ClaimedRun) -> None:
        response = claimed.response
        response_id = response["id"]
        response["status"] = "in_progress"
        builder = ResponseBuilder(response, sequence=claimed.next_sequence)
        builder.lifecycle("response.in_progress")
        written = claimed.next_sequence
        items_saved = -1  # the first batch saves the new status too

        async def sink(events: list[Event]) -> None:
            nonlocal written, items_saved
            batch = stored(events, written)
            written += len(batch)
            if builder.items_done != items_saved:
                items_saved = builder.items_done
                await self.store.update_run(response_id, response, batch)
            else:
                await self.store.append_events(response_id, batch)
            await self.notifier.notify(response_id)

        try:
            await sink(builder.drain())
            request = parse_create_request({**claimed.request, "background": False})
            route = self.router.resolve(request.model)
            context = claimed.context
            if route.provider.fetch_remote_content and self.fetcher is not None:
                context = await self.fetcher.inline(context)
            call = model_request(request, route.upstream_model, context)
            call.stream = True
            upstream = await route.backend.open(call)
            await drive(builder, upstream, sink)
        except asyncio.CancelledError:
            if self.reasons.get(response_id) == "shutdown":
                builder.fail(SHUTDOWN)
            else:
                builder.cancel()
        except (UpstreamError, APIError) as exc:
            builder.fail(exc.message)
        except Exception as exc:
            log.exception("background run %s failed", response_id)
            builder.fail(f"The run failed: {type(exc).__name__}")
        events = builder.drain()
        builder.terminal()
        events += builder.drain()
        await self.store.finish_run(response_id, response, stored(events, written), from_statuses=("in_progress",))
        await self.notifier.notify(response_id)

    # -- cancel ---------------------------------------------------------------------------

    async def cancel(self, project: str, response: dict[str, Any]) -> None:
        """Stop a queued or running background response, wherever it runs, and return
        once it has ended (or a few poll intervals have passed)."""
        response_id = response["id"]
        if response["status"] == "queued":
            response = {**response, "status": "cancelled"}
            first = await self.store.next_sequence(response_id)
            builder = ResponseBuilder(response, sequence=first)
            builder.terminal()
            events = stored(builder.drain(), first)
            if await self.store.finish_run(response_id, response, events, from_statuses=("queued",)):
                await self.notifier.notify(response_id)
                return
        task = self.tasks.get(response_id)
        if task is not None:
            self.reasons[response_id] = "cancel"
            task.cancel()
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
                    await self.store.renew_leases(self.owner, self._lease())
                    for response_id in await self.store.cancel_requests(self.owner):
                        task = self.tasks.get(response_id)
                        if task is not None and response_id not in self.reasons:
                            self.reasons[response_id] = "cancel"
                            task.cancel()
                    await self._end_expired()
                    await signal.wait(interval)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background heartbeat failed; retrying")
                await asyncio.sleep(interval)

    async def _end_expired(self) -> None:
        for project, response_id in await self.store.expired_runs(_micros()):
            if response_id in self.tasks:
                continue
            await self.fail_abandoned(project, response_id)

    async def fail_abandoned(self, project: str, response_id: str) -> None:
        response = await self.store.get_response(project, response_id)
        if response is None or response["status"] != "in_progress":
            return
        response["status"] = "failed"
        response["error"] = {"code": "server_error", "message": RESTARTED}
        first = await self.store.next_sequence(response_id)
        builder = ResponseBuilder(response, sequence=first)
        builder.lifecycle(terminal_event("failed"))
        events = stored(builder.drain(), first)
        if await self.store.finish_run(response_id, response, events, from_statuses=("in_progress",)):
            log.warning("background response %s was abandoned by its server; marked failed", response_id)
            await self.notifier.notify(response_id)
