"""Upstreams that misbehave: a catalogue of faults for the fake Chat Completions and
Responses servers.

A ``Fault`` is queued like any ``Reply`` (``Reply(fault=...)``); the fake then answers
with the fault's raw bytes, picking the streamed or the non-streamed form by what Continuo
asked for, and ends the answer as the fault says: normally, by breaking the connection
(``reset``), or by never finishing (``hang``; Continuo's upstream timeout must end it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
from starlette.responses import Response, StreamingResponse

# What the fault servers' providers accept per line or body (max_response_bytes).
LINE_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Answer:
    chunks: tuple[bytes, ...]
    content_type: str = "text/event-stream"
    end: str = "close"  # "close", "reset" or "hang"


@dataclass(frozen=True)
class Fault:
    name: str
    json: Answer  # the answer to a non-streamed request
    sse: Answer  # the answer to a streamed request
    timeout: bool = False  # Continuo should call it a timeout (504), not a failure (502)
    # Streamed, it fails before any event (an HTML page): a 502 before response.created.
    early: bool = False

    def response(self, streamed: bool) -> Response:
        answer = self.sse if streamed else self.json
        return StreamingResponse(_send(answer), media_type=answer.content_type)


async def _send(answer: Answer) -> AsyncIterator[bytes]:
    for chunk in answer.chunks:
        yield chunk
    if answer.end == "reset":
        raise ConnectionResetError("scripted reset")
    if answer.end == "hang":
        await asyncio.sleep(60)  # until Continuo gives up and disconnects


def _json(value: object) -> bytes:
    return orjson.dumps(value)


def _data(value: object) -> bytes:
    return b"data: " + (value if isinstance(value, bytes) else _json(value)) + b"\n\n"


def _body(value: object) -> Answer:
    return Answer((value if isinstance(value, bytes) else _json(value),), "application/json")


HTML = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"
HUGE = b"x" * (LINE_LIMIT + 1024)


# -- Chat Completions ---------------------------------------------------------------------

_CHUNK = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Hel"}}]}


def _completion(**message: object) -> dict[str, object]:
    return {"id": "c", "object": "chat.completion", "choices": [{"index": 0, "message": message}]}


def _chat_shape(name: str, whole: object, chunk: object) -> Fault:
    return Fault(name, _body(whole), Answer((_data(_CHUNK), _data(chunk), _data(b"[DONE]"))))


CHAT_FAULTS = [
    Fault(
        "reset",
        Answer((b'{"id": "c", "choices": [',), "application/json", end="reset"),
        Answer((_data(_CHUNK),), end="reset"),
    ),
    Fault("hang", Answer((), "application/json", end="hang"), Answer((_data(_CHUNK),), end="hang"), timeout=True),
    Fault("html", Answer((HTML,), "text/html"), Answer((HTML,), "text/html"), early=True),
    Fault("html-as-event-stream", _body(HTML), Answer((HTML,))),
    _chat_shape("choices-string", {"choices": "oops"}, {"choices": "oops"}),
    _chat_shape("choice-string", {"choices": ["oops"]}, {"choices": ["oops"]}),
    _chat_shape("message-string", {"choices": [{"message": "hi"}]}, {"choices": [{"delta": "hi"}]}),
    _chat_shape("content-number", _completion(content=42), {"choices": [{"delta": {"content": 42}}]}),
    _chat_shape(
        "usage-list",
        {**_completion(content="hi"), "usage": [1, 2]},
        {"choices": [], "usage": [1, 2]},
    ),
    _chat_shape("json-array", [1, 2, 3], [1, 2, 3]),
    _chat_shape(
        "tool-call-malformed",
        _completion(content=None, tool_calls=[{"id": "call_1", "function": "get_weather"}]),
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": "get_weather"}]}}]},
    ),
    _chat_shape(
        "tool-call-without-name",
        _completion(content=None, tool_calls=[{"id": "call_1", "function": {"arguments": "{}"}}]),
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"arguments": "{}"}}]}}]},
    ),
    _chat_shape(
        "finish-reason-number",
        {"choices": [{"message": {"content": "hi"}, "finish_reason": 7}]},
        {"choices": [{"delta": {}, "finish_reason": 7}]},
    ),
    Fault(
        "invalid-utf8",
        _body(b'{"choices": [{"message": {"content": "\xff\xfe"}, "finish_reason": "stop"}]}'),
        Answer((_data(_CHUNK), b'data: {"choices": [{"delta": {"content": "\xff\xfe"}}]}\n\n')),
    ),
    _chat_shape(
        "error-in-200",
        {"error": {"message": "model overloaded", "type": "server_error"}},
        {"error": {"message": "model overloaded", "type": "server_error"}},
    ),
    Fault(
        "huge-line",
        _body(_completion(content=HUGE.decode())),
        Answer((_data(_CHUNK), _data({"choices": [{"delta": {"content": HUGE.decode()}}]}))),
    ),
    Fault("not-json", Answer((b"plain words",), "text/plain"), Answer((_data(_CHUNK), b"data: {oops\n\n"))),
]


# -- Responses ----------------------------------------------------------------------------

_EVENT = {"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "Hel"}


def _responses_shape(name: str, whole: object, event: object) -> Fault:
    return Fault(name, _body(whole), Answer((_data(_EVENT), _data(event))))


def _resp(**fields: object) -> dict[str, object]:
    return {"id": "r", "object": "response", "status": "completed", "error": None, "output": [], **fields}


RESPONSES_FAULTS = [
    Fault(
        "reset",
        Answer((b'{"id": "r", "output": [',), "application/json", end="reset"),
        Answer((_data(_EVENT),), end="reset"),
    ),
    Fault("hang", Answer((), "application/json", end="hang"), Answer((_data(_EVENT),), end="hang"), timeout=True),
    Fault("html", Answer((HTML,), "text/html"), Answer((HTML,), "text/html"), early=True),
    _responses_shape(
        "output-string", _resp(output="hi"), {"type": "response.completed", "response": _resp(output="hi")}
    ),
    _responses_shape("item-string", _resp(output=["hi"]), {"type": "response.output_item.done", "item": "hi"}),
    _responses_shape(
        "response-string", _resp(output=[], usage="many"), {"type": "response.completed", "response": "done"}
    ),
    _responses_shape(
        "usage-list", _resp(usage=[1, 2]), {"type": "response.completed", "response": _resp(usage=[1, 2])}
    ),
    _responses_shape("json-array", [1, 2], [1, 2]),
    _responses_shape(
        "tool-call-malformed",
        _resp(output=[{"type": "function_call", "call_id": "c", "name": 5, "arguments": {}}]),
        {"type": "response.output_item.added", "output_index": 1, "item": {"type": "function_call", "name": 5}},
    ),
    Fault(
        "invalid-utf8",
        _body(b'{"id": "r", "output": [], "status": "completed", "x": "\xff"}'),
        Answer((_data(_EVENT), b'data: {"type": "response.output_text.delta", "delta": "\xff"}\n\n')),
    ),
    _responses_shape(
        "error-in-200",
        {"error": {"message": "model overloaded", "type": "server_error"}},
        {"type": "error", "message": "model overloaded"},
    ),
    Fault(
        "huge-line",
        _body(
            _resp(
                output=[
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": HUGE.decode()}],
                    }
                ]
            )
        ),
        Answer((_data(_EVENT), _data({**_EVENT, "delta": HUGE.decode()}))),
    ),
]
