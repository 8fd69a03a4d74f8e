"""uvicorn's HTTP protocol with its writes gathered per turn of the event loop.

uvicorn writes each ASGI message to the socket at once: a JSON answer is two ``send``
system calls (the head, then the body) and a stream of 40 events is 41. Each write here
is kept until the end of the current turn of the loop, then everything written in that
turn goes out in one call. Nothing waits longer than that turn, and the bytes are the
same: HTTP/1.1 chunked framing is added by uvicorn before a write, so each SSE event is
still one HTTP chunk of its own; only the number of system calls changes (the stream
benchmark spent a fifth of its CPU time in them: docs/performance.md).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

# Where a request served by this protocol finds ``write_chunks`` (api/responses.py).
WRITE_CHUNKS = "continuo.write_chunks"
ChunkWriter = Callable[[list[bytes]], Awaitable[None]]


class CorkedTransport:
    """``transport``, with ``write`` gathered until the end of the loop's turn."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._pending = []
        if self._transport.is_closing():
            return
        self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def is_closing(self) -> bool:
        # Asked at the end of every answer: found here, not through ``__getattr__`` (which
        # Python reaches only after a failed lookup has built an AttributeError).
        return self._transport.is_closing()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(data) for data in self._pending)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


async def write_chunks(ref: weakref.ref[RequestResponseCycle], chunks: list[bytes]) -> None:
    """Body chunks of a started chunked answer, each its own HTTP chunk, in one write: what
    uvicorn's ``send`` does for one ``http.response.body`` message (``more_body``), without
    building and reading a message a chunk (a stream's events are most of its messages)."""
    cycle = ref()
    if cycle is None:
        return
    if cycle.flow.write_paused and not cycle.disconnected:
        await cycle.flow.drain()
    if cycle.disconnected:
        return
    if not cycle.response_started or cycle.response_complete or not cycle.chunked_encoding:
        raise RuntimeError("body chunks need a started answer in chunked encoding")
    cycle.transport.write(b"".join([b"%x\r\n%b\r\n" % (len(chunk), chunk) for chunk in chunks if chunk]))


class CorkedHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CorkedTransport(transport, self.loop))  # type: ignore[arg-type]

    def on_headers_complete(self) -> None:
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle is not before:
            # A weak reference: the cycle holds the scope, which would hold it back.
            cycle.scope[WRITE_CHUNKS] = partial(write_chunks, weakref.ref(cycle))  # type: ignore[literal-required]

    def on_response_complete(self) -> None:
        # A whole answer goes out now: a JSON answer's head and body, written in the same
        # turn, leave in one call without waiting for the turn's end.
        self.transport.flush()  # type: ignore[attr-defined]
        super().on_response_complete()
