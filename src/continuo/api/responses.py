"""Response bodies: JSON through orjson, and Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse

from continuo.core.builder import Event


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type="application/json")


async def _frames(events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
    # One chunk per event, LF line ends, a blank line after each.
    async for kind, data in events:
        yield b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


def sse_response(events: AsyncIterator[Event]) -> StreamingResponse:
    return StreamingResponse(
        _frames(events),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )
