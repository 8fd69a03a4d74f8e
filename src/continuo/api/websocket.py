"""WebSocket mode on ``GET /v1/responses``: accept, read frames, send frames. Nothing else.

The key check and the per-minute limit already ran in the auth middleware (a bad key is
refused at the handshake). The socket holds one of the key's concurrent-stream slots for
its whole life, as an SSE stream does. What the frames mean is core's
(``continuo.core.socket_session``); events leave as the same JSON bytes SSE carries.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.websockets import WebSocket, WebSocketState

from continuo.api.errors import error_response
from continuo.core.limits import Limiter
from continuo.core.service import ResponsesService
from continuo.core.socket_session import SocketSession
from continuo.errors import APIError

log = logging.getLogger("continuo")


class _Wire:
    """Frames out, one at a time; a socket that is gone swallows them (the reader sees the
    disconnect and stops what runs)."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.lock = asyncio.Lock()
        self.gone = False

    async def send(self, data: bytes) -> None:
        if self.gone:
            return
        async with self.lock:
            try:
                await self.websocket.send({"type": "websocket.send", "text": data.decode()})
            except Exception:
                self.gone = True

    async def close(self, code: int) -> None:
        async with self.lock:
            if self.gone or self.websocket.application_state != WebSocketState.CONNECTED:
                return
            self.gone = True
            try:
                await self.websocket.close(code)
            except Exception:
                log.debug("closing a WebSocket failed", exc_info=True)


async def _refuse(websocket: WebSocket, error: APIError) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(error_response(error))
    else:
        await websocket.close(1008)


async def responses_socket(websocket: WebSocket) -> None:
    state = websocket.app.state
    service: ResponsesService = state.service
    limiter: Limiter = state.limiter
    caller: str = websocket.state.caller
    slot = await limiter.open_stream(caller)
    if slot is None:
        error = APIError(
            "Too many concurrent streams on this key.", status=429, type="requests", code="rate_limit_exceeded"
        )
        await _refuse(websocket, error)
        return
    try:
        await websocket.accept()
        wire = _Wire(websocket)
        session = SocketSession(
            service, limiter, state.config.websocket, websocket.state.project, caller, wire.send, wire.close
        )
        session.start()
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                await session.receive(message.get("text"))
        finally:
            wire.gone = True
            await session.aclose()
    finally:
        await limiter.close_stream(slot)
