"""A scripted Chat Completions server that records what it received.

Tests queue ``Reply`` objects; each request takes the next one (or, with none queued,
echoes the last user message). Everything a request carried is kept in ``requests``.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.support.faults import Fault


@dataclass
class Reply:
    text: str | None = None
    reasoning: str | None = None
    # (name, arguments JSON) for each call
    tool_calls: list[tuple[str, str]] = field(default_factory=list)
    finish_reason: str | None = None
    chunk_size: int = 4
    # Seconds to wait before answering at all.
    wait: float = 0.0
    delay: float = 0.0
    # Streamed: after the first piece of content, wait for this to be set (at most 30 s).
    hold: threading.Event | None = None
    # Streamed: break the connection after this many chunks.
    break_after: int | None = None
    # Streamed: send an error object as a chunk after this many chunks.
    error_after: int | None = None
    # A raw answer (any status) instead of a completion.
    status: int = 200
    body: bytes | None = None
    content_type: str = "application/json"
    # A misbehaving answer instead (see tests/support/faults.py).
    fault: Fault | None = None
    prompt_tokens: int = 11
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    reasoning_field: str = "reasoning_content"
    # Headers of a non-streamed completion (a Set-Cookie, say).
    headers: dict[str, str] = field(default_factory=dict)


def fake_token_count(messages: list[dict[str, Any]], tools: Any = None) -> int:
    """The fake's own tokenizer: 4 per message, 1 per word of its text and tool calls,
    2 for the reply's start, 1 per word of the tools' JSON."""
    total = 2
    for message in messages:
        total += 4
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        total += len(str(content or "").split())
        for call in message.get("tool_calls") or ():
            total += len(str(call["function"]["arguments"]).split()) + 1
    if tools:
        total += len(orjson.dumps(tools).decode().split())
    return total


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _required_function(body: dict[str, Any]) -> str | None:
    """The function a request's ``tool_choice`` requires a call to, if it requires one."""
    choice, tools = body.get("tool_choice"), body.get("tools") or []
    if choice == "required" and tools:
        return str(tools[0]["function"]["name"])
    if isinstance(choice, dict) and choice.get("type") == "function":
        return str(choice["function"]["name"])
    return None


class FakeChatUpstream:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.replies: deque[Reply] = deque()
        self.disconnects = 0
        self.counter = itertools.count()
        # vLLM's tokenize route (off: the route answers 404, as on a server without one).
        self.tokenize_route = True
        self.max_model_len: int | None = None
        self.tokenize_requests: list[dict[str, Any]] = []
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.handle, methods=["POST"]),
                Route("/tokenize", self.tokenize, methods=["POST"]),
                Route("/files/{name}", self.file, methods=["GET"]),
            ]
        )
        self.app.state.fake_upstream = True  # not Continuo: its wire is not checked

    async def file(self, request: Request) -> Response:
        """A small image to fetch, for the remote-content tests."""
        return Response(b"\x89PNG fake image " + request.path_params["name"].encode(), media_type="image/png")

    async def tokenize(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.tokenize_requests.append(body)
        if not self.tokenize_route:
            return Response(b'{"detail": "Not Found"}', status_code=404, media_type="application/json")
        count = fake_token_count(body["messages"], body.get("tools"))
        answer: dict[str, Any] = {"count": count, "tokens": list(range(count))}
        if self.max_model_len is not None:
            answer["max_model_len"] = self.max_model_len
        return Response(orjson.dumps(answer), media_type="application/json")

    def reset(self) -> None:
        self.tokenize_requests.clear()
        self.requests.clear()
        self.headers.clear()
        self.replies.clear()
        self.disconnects = 0

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    @property
    def last(self) -> dict[str, Any]:
        return self.requests[-1]

    async def handle(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        reply = self.replies.popleft() if self.replies else Reply()
        if reply.wait:
            await asyncio.sleep(reply.wait)
        if reply.fault is not None:
            return reply.fault.response(bool(body.get("stream")))
        if reply.status != 200 or reply.body is not None:
            return Response(reply.body or b"", status_code=reply.status, media_type=reply.content_type)
        if reply.text is None and not reply.tool_calls:
            if (required := _required_function(body)) is not None:
                reply.tool_calls = [(required, "{}")]  # a well-behaved upstream keeps tool_choice
            else:
                reply.text = "echo: " + _last_user_text(body["messages"])
        if body.get("stream"):
            return StreamingResponse(self._stream(body, reply), media_type="text/event-stream")
        return Response(
            orjson.dumps(self._completion(body, reply)), media_type="application/json", headers=reply.headers
        )

    def _usage(self, reply: Reply, completion_tokens: int) -> dict[str, Any]:
        return {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": reply.prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
        }

    def _finish(self, reply: Reply) -> str:
        return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")

    def _calls(self, reply: Reply) -> list[dict[str, Any]]:
        return [
            {"id": f"call_{next(self.counter)}", "type": "function", "function": {"name": name, "arguments": args}}
            for name, args in reply.tool_calls
        ]

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.reasoning:
            message[reply.reasoning_field] = reply.reasoning
        if reply.tool_calls:
            message["tool_calls"] = self._calls(reply)
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": self._finish(reply)}],
            "usage": self._usage(reply, len(reply.text or "") // 4 + 1),
        }

    def _chunks(self, reply: Reply) -> list[dict[str, Any]]:
        size = reply.chunk_size
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        if reply.reasoning:
            for i in range(0, len(reply.reasoning), size):
                deltas.append({reply.reasoning_field: reply.reasoning[i : i + size]})
        if reply.text:
            for i in range(0, len(reply.text), size):
                deltas.append({"content": reply.text[i : i + size]})
        for index, call in enumerate(self._calls(reply)):
            args = call["function"]["arguments"]
            half = len(args) // 2
            first = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            deltas.append({"tool_calls": [first]})
            for piece in (args[:half], args[half:]):
                if piece:
                    deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        return [{"choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]

    async def _stream(self, body: dict[str, Any], reply: Reply) -> Any:
        chunks = self._chunks(reply)
        try:
            for n, chunk in enumerate(chunks):
                if reply.break_after is not None and n >= reply.break_after:
                    raise ConnectionAbortedError("scripted break")
                if reply.error_after is not None and n >= reply.error_after:
                    yield b'data: {"error": {"message": "scripted failure", "type": "server_error"}}\n\n'
                    return
                chunk.update({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": body["model"]})
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
                if n == 1 and reply.hold is not None:
                    await asyncio.to_thread(reply.hold.wait, 30)
                if reply.delay:
                    await asyncio.sleep(reply.delay)
            final = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": body["model"]}
            yield (
                b"data: "
                + orjson.dumps({**final, "choices": [{"index": 0, "delta": {}, "finish_reason": self._finish(reply)}]})
                + b"\n\n"
            )
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = self._usage(reply, len(chunks))
                yield b"data: " + orjson.dumps({**final, "choices": [], "usage": usage}) + b"\n\n"
            yield b"data: [DONE]\n\n"
        except asyncio.CancelledError:
            self.disconnects += 1
            raise
