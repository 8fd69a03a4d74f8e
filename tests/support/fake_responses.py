"""A scripted, stateless Responses server that records what it received.

It refuses what stateless providers refuse (``store`` not false, ``previous_response_id``,
``background``, ``conversation``) and answers with ids of its own (``resp_up_…``,
``msg_up_…``, ``fc_up_…``, ``rs_up_…``) and sequence numbers from 100, so tests can
prove none of them reaches a Continuo client. Tests queue ``Reply`` objects; with none
queued it echoes the last user text.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

UPSTREAM_MARKER = "_up_"  # in every id this server makes up
FIRST_SEQUENCE = 100


@dataclass
class Reply:
    text: str | None = None
    reasoning: str | None = None
    # "text": raw reasoning (reasoning_text); "summary": summary parts, split on "\n\n".
    reasoning_kind: str = "text"
    # (name, arguments JSON) for each call
    tool_calls: list[tuple[str, str]] = field(default_factory=list)
    # "max_output_tokens" or "content_filter": answer status incomplete
    incomplete: str | None = None
    # Answer status failed with this message (response.failed when streamed).
    failure: str | None = None
    # Streamed: an ``error`` event after this many events.
    error_after: int | None = None
    # Streamed: end the stream without a terminal event.
    cut_before_terminal: bool = False
    # Streamed: send only output_item.done items, no deltas.
    items_only: bool = False
    chunk_size: int = 5
    # Seconds to wait before answering at all.
    wait: float = 0.0
    # A raw answer (any status) instead of a Response.
    status: int = 200
    body: bytes | None = None
    content_type: str = "application/json"
    input_tokens: int = 17
    cached_tokens: int = 3
    reasoning_tokens: int = 5


def error_body(
    message: str, *, type: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type, "param": param, "code": code}})


def _last_user_text(items: Any) -> str:
    if isinstance(items, str):
        return items
    for item in reversed(items or []):
        if item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


class FakeResponsesUpstream:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.replies: deque[Reply] = deque()
        self.disconnects = 0
        self.counter = itertools.count(1)
        self.url = ""
        self.app = Starlette(routes=[Route("/v1/responses", self.handle, methods=["POST"])])
        self.app.state.fake_upstream = True  # not Continuo: its wire is not checked

    def reset(self) -> None:
        self.requests.clear()
        self.headers.clear()
        self.replies.clear()
        self.disconnects = 0

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    @property
    def last(self) -> dict[str, Any]:
        return self.requests[-1]

    def _id(self, prefix: str) -> str:
        return f"{prefix}{UPSTREAM_MARKER}{next(self.counter)}"

    # -- the request ---------------------------------------------------------------------

    def _refusal(self, body: dict[str, Any]) -> Response | None:
        def bad(message: str, param: str, code: str) -> Response:
            return Response(error_body(message, param=param, code=code), status_code=400, media_type="application/json")

        if body.get("store", True) is not False:
            return bad("This endpoint is stateless: 'store' must be false.", "store", "unsupported_value")
        if "previous_response_id" in body:
            return bad(
                f"Previous response with id '{body['previous_response_id']}' not found.",
                "previous_response_id",
                "previous_response_not_found",
            )
        if body.get("background"):
            return bad("Background mode is not supported.", "background", "unsupported_parameter")
        if "conversation" in body:
            return bad("Conversations are not supported.", "conversation", "unsupported_parameter")
        return None

    async def handle(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        if (refused := self._refusal(body)) is not None:
            return refused
        reply = self.replies.popleft() if self.replies else Reply()
        if reply.wait:
            await asyncio.sleep(reply.wait)
        if reply.status != 200 or reply.body is not None:
            return Response(reply.body or b"", status_code=reply.status, media_type=reply.content_type)
        if reply.text is None and not reply.tool_calls:
            reply.text = "echo: " + _last_user_text(body.get("input"))
        response = self._response(body, reply)
        if body.get("stream"):
            return StreamingResponse(self._stream(response, reply), media_type="text/event-stream")
        if reply.failure:
            response["status"] = "failed"
            response["error"] = {"code": "server_error", "message": reply.failure}
            response["output"] = []
        return Response(orjson.dumps(response), media_type="application/json")

    # -- the answer ----------------------------------------------------------------------

    def _output(self, reply: Reply) -> list[dict[str, Any]]:
        output: list[dict[str, Any]] = []
        if reply.reasoning:
            item: dict[str, Any] = {"id": self._id("rs"), "type": "reasoning", "summary": [], "status": "completed"}
            if reply.reasoning_kind == "summary":
                item["summary"] = [{"type": "summary_text", "text": t} for t in reply.reasoning.split("\n\n")]
            else:
                item["content"] = [{"type": "reasoning_text", "text": reply.reasoning}]
            output.append(item)
        if reply.text:
            output.append(
                {
                    "id": self._id("msg"),
                    "type": "message",
                    "role": "assistant",
                    "status": "incomplete" if reply.incomplete else "completed",
                    "content": [{"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []}],
                }
            )
        for name, arguments in reply.tool_calls:
            output.append(
                {
                    "id": self._id("fc"),
                    "type": "function_call",
                    "status": "completed",
                    # A call id is the model's name for the call; Continuo passes it on.
                    "call_id": f"call_{next(self.counter)}",
                    "name": name,
                    "arguments": arguments,
                }
            )
        return output

    def _response(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        output = self._output(reply)
        output_tokens = sum(len(orjson.dumps(item)) for item in output) // 16 + 1
        return {
            "id": self._id("resp"),
            "object": "response",
            "created_at": 1_700_000_000,
            "status": "incomplete" if reply.incomplete else "completed",
            "incomplete_details": {"reason": reply.incomplete} if reply.incomplete else None,
            "error": None,
            "model": body.get("model"),
            "output": output,
            "store": False,
            "usage": {
                "input_tokens": reply.input_tokens,
                "input_tokens_details": {"cached_tokens": reply.cached_tokens},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
                "total_tokens": reply.input_tokens + output_tokens,
            },
        }

    def _events(self, response: dict[str, Any], reply: Reply) -> list[dict[str, Any]]:
        """The whole event sequence, OpenAI's way, without sequence numbers."""
        size = reply.chunk_size
        pending = {**response, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
        events: list[dict[str, Any]] = [
            {"type": "response.created", "response": pending},
            {"type": "response.in_progress", "response": pending},
        ]

        def pieces(text: str) -> list[str]:
            return [text[i : i + size] for i in range(0, len(text), size)]

        for index, item in enumerate(response["output"]):
            at = {"item_id": item["id"], "output_index": index}
            if reply.items_only:
                events.append({"type": "response.output_item.done", "output_index": index, "item": item})
                continue
            if item["type"] == "function_call":
                added = {**item, "arguments": "", "status": "in_progress"}
                events.append({"type": "response.output_item.added", "output_index": index, "item": added})
                for piece in pieces(item["arguments"]):
                    events.append({"type": "response.function_call_arguments.delta", **at, "delta": piece})
                events.append({"type": "response.function_call_arguments.done", **at, "arguments": item["arguments"]})
            elif item["type"] == "reasoning":
                empty = {**item, "summary": [], "status": "in_progress"}
                if "content" in empty:
                    empty["content"] = []
                events.append({"type": "response.output_item.added", "output_index": index, "item": empty})
                for part in item.get("content") or []:
                    for piece in pieces(part["text"]):
                        events.append(
                            {"type": "response.reasoning_text.delta", **at, "content_index": 0, "delta": piece}
                        )
                    events.append(
                        {"type": "response.reasoning_text.done", **at, "content_index": 0, "text": part["text"]}
                    )
                for n, part in enumerate(item["summary"]):
                    events.append({"type": "response.reasoning_summary_part.added", **at, "summary_index": n})
                    for piece in pieces(part["text"]):
                        events.append(
                            {"type": "response.reasoning_summary_text.delta", **at, "summary_index": n, "delta": piece}
                        )
                    events.append(
                        {"type": "response.reasoning_summary_text.done", **at, "summary_index": n, "text": part["text"]}
                    )
                    events.append({"type": "response.reasoning_summary_part.done", **at, "summary_index": n})
            else:
                empty = {**item, "content": [], "status": "in_progress"}
                events.append({"type": "response.output_item.added", "output_index": index, "item": empty})
                part = item["content"][0]
                events.append(
                    {"type": "response.content_part.added", **at, "content_index": 0, "part": {**part, "text": ""}}
                )
                for piece in pieces(part["text"]):
                    events.append(
                        {"type": "response.output_text.delta", **at, "content_index": 0, "delta": piece, "logprobs": []}
                    )
                events.append({"type": "response.output_text.done", **at, "content_index": 0, "text": part["text"]})
                events.append({"type": "response.content_part.done", **at, "content_index": 0, "part": part})
            events.append({"type": "response.output_item.done", "output_index": index, "item": item})
        if reply.failure:
            failed = {**response, "status": "failed", "error": {"code": "server_error", "message": reply.failure}}
            events.append({"type": "response.failed", "response": failed})
        elif response["status"] == "incomplete":
            events.append({"type": "response.incomplete", "response": response})
        else:
            events.append({"type": "response.completed", "response": response})
        return events

    async def _stream(self, response: dict[str, Any], reply: Reply) -> AsyncIterator[bytes]:
        events = self._events(response, reply)
        if reply.cut_before_terminal:
            events = events[:-1]
        try:
            for n, event in enumerate(events):
                sequence = FIRST_SEQUENCE + n
                if reply.error_after is not None and n >= reply.error_after:
                    error = {"type": "error", "code": "server_error", "message": "scripted failure", "param": None}
                    yield b"event: error\ndata: " + orjson.dumps({**error, "sequence_number": sequence}) + b"\n\n"
                    return
                event["sequence_number"] = sequence
                yield f"event: {event['type']}\n".encode() + b"data: " + orjson.dumps(event) + b"\n\n"
        except asyncio.CancelledError:
            self.disconnects += 1
            raise
