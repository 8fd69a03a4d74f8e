"""WebSocket mode on ``/v1/responses``: what one socket means. No HTTP here.

The client sends ``response.create`` events (a create body plus ``type``, and optionally
``stream_id`` and ``generate``); each becomes a foreground response run by the run driver
with a ``SocketSink``, whose events leave as the very bytes an SSE stream carries (with the
request's ``stream_id`` added where it gave one). Rules, as docs/behaviour.md states them:

- Lanes: requests with the same ``stream_id`` (or none) run one at a time, first in first
  out; different lanes run side by side. At most ``max_streams`` lanes in use and
  ``max_active_responses`` responses running or waiting per socket.
- The socket lives at most ``max_age_seconds``: then waiting requests are refused, running
  ones finish, an ``error`` event says why and the socket is closed normally.
- ``store: false`` responses are kept in a connection-local ``ContextCache`` so that they
  can be continued on this socket; a continuation that fails evicts the id it continued.
- ``generate: false`` prepares a response (its context, its id) without calling the model.
- Every refusal is an ``error`` event; the socket stays usable.
- A client that leaves cancels what runs: the driver settles it as ``cancelled`` and
  stores it where it was to be stored, as for an SSE client that leaves.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from continuo.backends.base import Delta, InBatches
from continuo.config import WebSocketConfig
from continuo.core import validation as v
from continuo.core.builder import Event, ResponseBuilder
from continuo.core.driver import Job
from continuo.core.limits import Limiter, retry_after
from continuo.core.request import CreateRequest, parse_create_request
from continuo.core.service import ResponsesService
from continuo.core.socket_cache import ContextCache
from continuo.core.status import Status
from continuo.errors import APIError, InvalidRequest

log = logging.getLogger("continuo")

Send = Callable[[bytes], Awaitable[None]]
Close = Callable[[int], Awaitable[None]]

_STREAM_ID = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")
_CACHED = frozenset({Status.COMPLETED, Status.INCOMPLETE})


def error_event(error: APIError, stream_id: str | None = None) -> bytes:
    """An ``error`` event valid against both specs (a string code, always a status)."""
    payload: dict[str, Any] = {
        "type": "error",
        "status": error.status,
        "error": {
            "type": error.type,
            "code": error.code or error.type,
            "message": error.message,
            "param": error.param,
        },
    }
    if error.headers:
        payload["error"]["headers"] = error.headers
    if stream_id is not None:
        payload["stream_id"] = stream_id
    return orjson.dumps(payload)


def with_stream_id(data: bytes, stream_id: str | None) -> bytes:
    """An event's JSON with the lane's ``stream_id`` added (events are encoded once, as
    objects, so the field goes in before the closing brace)."""
    if stream_id is None:
        return data
    return data[:-1] + b',"stream_id":' + orjson.dumps(stream_id) + b"}"


class _NoModel(InBatches):
    """The model call of a ``generate: false`` response: it says nothing."""

    async def batches(self) -> AsyncIterator[list[Delta]]:
        return
        yield  # pragma: no cover

    async def aclose(self) -> None:
        return None


class SocketSink:
    """Events go out on the socket as they happen; the settled response is stored when it
    was asked to be, and a ``store: false`` one that completed is kept in the socket's
    cache for continuation."""

    persists_events = False

    def __init__(self, session: SocketSession, job: Job, stream_id: str | None, frame_size: int, base: int) -> None:
        self.session = session
        self.job = job
        self.stream_id = stream_id
        self.frame_size = frame_size
        self.base = base  # the cached size of the context this one continues

    async def emit(self, events: list[Event]) -> None:
        for _, data in events:
            await self.session.send(with_stream_id(data, self.stream_id))

    async def persist(self, builder: ResponseBuilder, closing: list[Event]) -> None:
        response = builder.response
        request = self.job.request
        if request.store:
            await self.session.service.store.save_response(self.job.project, response, request.input)
        elif response["status"] in _CACHED:
            size = self.base + self.frame_size + sum(len(data) for _, data in closing)
            self.session.cache.put(response["id"], self.job.context + response["output"], size)


@dataclass(slots=True)
class _Lane:
    pending: deque[tuple[dict[str, Any], int]] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None


class SocketSession:
    def __init__(
        self,
        service: ResponsesService,
        limiter: Limiter,
        config: WebSocketConfig,
        project: str,
        caller: str,
        send: Send,
        close: Close,
    ) -> None:
        self.service = service
        self.limiter = limiter
        self.config = config
        self.project = project
        self.caller = caller
        self.send = send
        self._close = close
        self.cache = ContextCache(config.cache_responses, config.cache_bytes)
        self.lanes: dict[str | None, _Lane] = {}
        self.active = 0
        self.closing = False
        self._timer: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the clock of the connection's age limit."""
        self._timer = asyncio.get_running_loop().create_task(self._expire())

    # -- frames in ---------------------------------------------------------------------

    async def receive(self, text: str | None) -> None:
        """One frame from the client (``None`` for a binary one). Never raises: whatever
        is wrong with it is answered by an ``error`` event."""
        stream_id: str | None = None
        try:
            body = _event(text)
            if body.get("type") == "response.processed":
                return  # Codex acknowledges a response it has handled; nothing to do
            stream_id = _stream_id(body)
            await self._count()
            self._admit(stream_id)  # no await between this check and the frame joining its lane
        except APIError as exc:
            await self.send(error_event(exc, stream_id))
            return
        self.active += 1
        lane = self.lanes.setdefault(stream_id, _Lane())
        lane.pending.append((body, len(text or "")))
        if lane.task is None:
            lane.task = asyncio.get_running_loop().create_task(self._work(stream_id, lane))
            self.service.tasks.add(lane.task)
            lane.task.add_done_callback(self.service.tasks.discard)

    def _admit(self, stream_id: str | None) -> None:
        if self.closing:
            raise self._age_error()
        if stream_id not in self.lanes and len(self.lanes) >= self.config.max_streams:
            raise InvalidRequest(
                f"This WebSocket connection has reached its stream limit ({self.config.max_streams} "
                "streams with a response running or waiting).",
                param="stream_id",
                code="websocket_stream_limit_reached",
            )
        if self.active >= self.config.max_active_responses:
            raise InvalidRequest(
                "This WebSocket connection has reached its limit of responses running or waiting "
                f"({self.config.max_active_responses}).",
                code="websocket_response_limit_reached",
            )

    async def _count(self) -> None:
        """Each response.create is a request for the per-minute limit."""
        if (wait := await self.limiter.take(self.caller)) is not None:
            raise APIError(
                "Rate limit reached for requests per minute on this key. Try again later.",
                status=429,
                type="requests",
                code="rate_limit_exceeded",
                headers={"retry-after": retry_after(wait)},
            )

    # -- lanes -------------------------------------------------------------------------

    async def _work(self, stream_id: str | None, lane: _Lane) -> None:
        try:
            while lane.pending:
                body, size = lane.pending[0]
                try:
                    await self._respond(body, size, stream_id)
                finally:
                    if lane.pending:
                        lane.pending.popleft()
                        self.active -= 1
        finally:
            lane.task = None
            if not lane.pending and self.lanes.get(stream_id) is lane:
                del self.lanes[stream_id]

    async def _respond(self, body: dict[str, Any], size: int, stream_id: str | None) -> None:
        continued: str | None = None  # the cached response this one continues
        job: Job | None = None
        try:
            request, generate = _create_request(body, self.service.max_input_items)
            self.service.driver.router.check(request.model)
            history: list[dict[str, Any]] | None = None
            base = 0
            if request.previous_response_id is not None:
                cached = self.cache.get(request.previous_response_id)
                if cached is not None:
                    continued = request.previous_response_id
                    history, base = cached.items, cached.size
            job = await self.service.prepare(self.project, request, history)
            _check_tool_outputs(job.context)
            if continued is not None and request.store:
                # Its parent is not stored: it is stored with the whole context as input.
                request.input = job.context
            upstream = await self.service.open(job) if generate else _NoModel()
        except Exception as exc:
            if not isinstance(exc, APIError):
                log.exception("a WebSocket response.create failed before its response began")
                exc = APIError("The server had an error while processing your request.")
            if continued is not None:
                self.cache.evict(continued)
            if job is not None:
                await self.service.release(job)
            await self.send(error_event(exc, stream_id))
            return
        job.builder.start()
        try:
            await self.service.driver.run(job, SocketSink(self, job, stream_id, size, base), upstream)
        finally:
            await self.service.release(job)
        if continued is not None and job.response["status"] == Status.FAILED:
            self.cache.evict(continued)

    # -- the end -----------------------------------------------------------------------

    def _age_error(self) -> APIError:
        minutes = self.config.max_age_seconds / 60
        return InvalidRequest(
            f"Responses websocket connection limit reached ({minutes:g} minutes). "
            "Create a new websocket connection to continue.",
            code="websocket_connection_limit_reached",
        )

    async def _expire(self) -> None:
        await asyncio.sleep(self.config.max_age_seconds)
        self.closing = True
        refused = self._age_error()
        dropped = self._drop_waiting()
        for stream_id in dropped:
            await self.send(error_event(refused, stream_id))
        running = [lane.task for lane in self.lanes.values() if lane.task is not None]
        if running:
            await asyncio.wait(running)
        await self.send(error_event(refused))
        await self._close(1000)

    def _drop_waiting(self) -> list[str | None]:
        """Take out every request that waits behind a running one; their lanes, in order."""
        dropped: list[str | None] = []
        for stream_id, lane in self.lanes.items():
            while len(lane.pending) > 1:  # the first one runs (or is about to)
                lane.pending.pop()
                self.active -= 1
                dropped.append(stream_id)
        return dropped[::-1]

    async def aclose(self) -> None:
        """The socket is gone: cancel what runs (each settles as cancelled and is stored
        where it was to be) and free the cache."""
        if self._timer is not None and self._timer is not asyncio.current_task():
            self._timer.cancel()
        tasks = [lane.task for lane in self.lanes.values() if lane.task is not None]
        self._drop_waiting()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self.cache.clear()


def _event(text: str | None) -> dict[str, Any]:
    if text is None:
        raise InvalidRequest(
            "Binary frames are not supported: send each event as a JSON text frame.", code="invalid_frame"
        )
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON of this event. Each event must be a JSON object.", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("Each event must be a JSON object.", code="invalid_json")
    kind = body.get("type")
    if kind is None:
        raise v.missing("type")
    if kind not in ("response.create", "response.processed"):
        raise v.invalid_value("type", kind, ("response.create",))
    return body


def _stream_id(body: dict[str, Any]) -> str | None:
    stream_id = v.opt_str(body, "stream_id")
    if stream_id is not None and not _STREAM_ID.match(stream_id):
        raise InvalidRequest(
            "Invalid 'stream_id': expected 1 to 256 characters from A-Z, a-z, 0-9, '_', '.' and '-'.",
            param="stream_id",
            code="invalid_value",
        )
    return stream_id


def _create_request(body: dict[str, Any], max_input_items: int) -> tuple[CreateRequest, bool]:
    """The create body of a ``response.create`` event, and whether to call the model."""
    if v.opt_bool(body, "background") is True:
        raise InvalidRequest(
            "Unsupported parameter: 'background' is not supported in WebSocket mode.",
            param="background",
            code="unsupported_parameter",
        )
    if v.opt_bool(body, "stream") is False:
        # `stream: true` is tolerated: it is what the mode does anyway, and Codex sends it.
        raise InvalidRequest(
            "Unsupported parameter: responses over a WebSocket are always streamed; leave 'stream' out.",
            param="stream",
            code="unsupported_parameter",
        )
    generate = v.opt_bool(body, "generate", True)
    request = parse_create_request(body, max_input_items)
    request.stream = True
    return request, bool(generate)


def _check_tool_outputs(context: list[dict[str, Any]]) -> None:
    """Every tool output answers a call made earlier in the context."""
    calls: set[str] = set()
    for item in context:
        call_id = item.get("call_id")
        if not isinstance(call_id, str):
            continue
        if not item.get("type", "").endswith("_output"):
            calls.add(call_id)
        elif call_id not in calls:
            raise InvalidRequest(
                f"No tool call found for {item['type'].replace('_', ' ')} with call_id {call_id}.",
                param="input",
                code="invalid_value",
            )
