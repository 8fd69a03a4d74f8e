"""A plain WebSocket client for WebSocket mode (the ``websockets`` package), and a check
of every event it receives against both specs' schemas."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from websockets.sync.client import ClientConnection, connect

from tests.support.specs import OPENAI, OPENRESPONSES, schemas

TERMINAL = {"response.completed", "response.failed", "response.incomplete", "response.cancelled"}


def check_event(event: dict[str, Any]) -> None:
    """Raise unless the event is valid against both specs: a stream event as the SSE
    checker holds it (tests/support/specs.py) and as OpenAI's WebSocket stream event; an
    error as OpenAI's ``ResponseWsError`` and Open Responses' ``WebSocketErrorEvent``."""
    spec = schemas()
    if event.get("type") == "error":
        problems = spec.check(f"{OPENAI}#/components/schemas/ResponseWsError", event, "openai ResponseWsError")
        problems += spec.check(
            f"{OPENRESPONSES}#/components/schemas/WebSocketErrorEvent", event, "openresponses WebSocketErrorEvent"
        )
    else:
        problems = spec.event(event)
        problems += spec.check(
            f"{OPENAI}#/components/schemas/ResponsesWebSocketStreamEvent", event, "openai ResponsesWebSocketStreamEvent"
        )
    assert not problems, "\n".join(str(p) for p in problems)


def ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://", 1) + "/v1/responses"


class Socket:
    """One WebSocket to /v1/responses; every event received is checked against the specs."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.received: list[dict[str, Any]] = []
        self.unread: list[dict[str, Any]] = []

    def send(self, event: dict[str, Any] | str | bytes) -> None:
        if isinstance(event, dict):
            event = orjson.dumps(event).decode()
        self.connection.send(event)

    def create(self, **body: Any) -> None:
        self.send({"type": "response.create", **body})

    def recv(self, timeout: float = 20) -> dict[str, Any]:
        raw = self.connection.recv(timeout=timeout)
        assert isinstance(raw, str), "events are text frames"
        event: dict[str, Any] = orjson.loads(raw)
        check_event(event)
        self.received.append(event)
        return event

    def until(self, done: Callable[[dict[str, Any]], bool], timeout: float = 20) -> list[dict[str, Any]]:
        """Events up to and including the first one ``done`` accepts."""
        events = []
        while True:
            event = self.recv(timeout)
            events.append(event)
            if done(event):
                return events

    def response(self, stream_id: str | None = None, timeout: float = 20) -> list[dict[str, Any]]:
        """One response's events on one lane, up to its terminal event or an error. Events
        of other lanes read meanwhile are kept for their own call."""
        events: list[dict[str, Any]] = []
        while True:
            mine = [e for e in self.unread if e.get("stream_id") == stream_id]
            for event in mine:
                self.unread.remove(event)
                events.append(event)
                if event["type"] in TERMINAL or event["type"] == "error":
                    return events
            self.unread.append(self.recv(timeout))

    def error(self, stream_id: str | None = None) -> dict[str, Any]:
        """The next error of a lane (after the events of a response running there)."""
        event = self.response(stream_id)[-1]
        assert event["type"] == "error", event
        return event


@contextmanager
def open_socket(http_url: str, key: str | None = "sk-client", **options: Any) -> Iterator[Socket]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with connect(ws_url(http_url), additional_headers=headers, open_timeout=10, **options) as connection:
        yield Socket(connection)
