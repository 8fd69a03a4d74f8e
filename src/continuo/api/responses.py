"""Response bodies: JSON through orjson, and Server-Sent Events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from continuo.api.corked import WRITE_CHUNKS, ChunkWriter
from continuo.core.builder import Event

_JSON = (b"content-type", b"application/json")
_BODY = "http.response.body"


class JSONResponse(Response):
    """A JSON body, its two headers built directly: Starlette's ``init_headers`` went
    through a ``MutableHeaders`` and a search for each header it might add (80 Python
    steps of an unstored request: docs/performance.md)."""

    def __init__(self, body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> None:
        self.status_code = status
        self.background = None
        self.body = body
        self.raw_headers = [(b"content-length", b"%d" % len(body)), _JSON]
        if headers:
            self.raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # a WebSocket's denial: Starlette's own framing of it
            await super().__call__(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        # The body straight to the server (api/app.py): the middlewares' send wrappers look
        # at the start of an answer only.
        await scope.get("continuo.body_send", send)({"type": _BODY, "body": self.body})


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse(orjson.dumps(body), status, headers)


_HEADS: dict[str, bytes] = {}


def _head(kind: str) -> bytes:
    head = b"event: " + kind.encode() + b"\ndata: "
    if len(_HEADS) < 256:  # event types are few; a bound all the same
        _HEADS[kind] = head
    return head


def sse_frame(kind: str, data: bytes) -> bytes:
    """One event as SSE: LF line ends, a blank line after it."""
    return (_HEADS.get(kind) or _head(kind)) + data + b"\n\n"


def sse_frames(batch: list[Event]) -> list[bytes]:
    """``sse_frame`` of each event of a batch (without a call an event)."""
    heads = _HEADS
    return [(heads.get(kind) or _head(kind)) + data + b"\n\n" for kind, data in batch]


# The content type of every stream (api/observe.py counts the open streams by it).
SSE_CONTENT_TYPE = (b"content-type", b"text/event-stream; charset=utf-8")
_SSE_HEADERS = [
    SSE_CONTENT_TYPE,
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class SSEResponse(Response):
    """A stream of events, one chunk each. Written straight to ``send``: Starlette's
    ``StreamingResponse`` ran every stream in an anyio task group, whose cancel scopes
    cost more than the writing (docs/performance.md). A client that goes away cancels the
    writer, which closes ``events`` (so the run behind them stops); ``on_close`` runs on
    every way out."""

    def __init__(self, events: AsyncIterable[Event], on_close: Callable[[], Awaitable[None]] | None = None) -> None:
        self.events = events
        self.on_close = on_close
        self.status_code = 200
        self.background = None
        self.raw_headers = list(_SSE_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        writer = asyncio.current_task()
        assert writer is not None
        gone = finished = False

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            if not finished:  # the server's "disconnect" once the response is complete
                gone = True
                writer.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        events = self.events
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            body_send = scope.get("continuo.body_send", send)  # api/app.py
            batches = getattr(events, "batches", None)  # core/foreground.py's EventStream
            # Under continuo serve, the protocol's chunk writer (api/corked.py); elsewhere
            # a body message a chunk.
            write_chunks: ChunkWriter | None = scope.get(WRITE_CHUNKS)
            if write_chunks is None:

                async def write_chunks(chunks: list[bytes]) -> None:
                    for chunk in chunks:
                        await body_send({"type": _BODY, "body": chunk, "more_body": True})

            if batches is not None:
                async for batch in batches():
                    await write_chunks(sse_frames(batch))
            else:
                async for kind, data in events:
                    await body_send({"type": _BODY, "body": sse_frame(kind, data), "more_body": True})
            await body_send({"type": _BODY, "body": b"", "more_body": False})
            finished = True
        except asyncio.CancelledError:
            if not gone:
                raise
            writer.uncancel()  # the client's leaving ends the stream, not the server
        finally:
            watcher.cancel()
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()
            if self.on_close is not None:
                await self.on_close()
