"""A minimal, fast fake Chat Completions server for the benchmarks.

Raw asyncio protocol on uvloop, HTTP/1.1 keep-alive, no framework: the benchmark must
measure Continuo, not the fake behind it.

    python -m benchmarks.upstream --port 9000 [--tokens 32] [--slow-interval 1.0]

- ``POST /v1/chat/completions`` answers a fixed ``chat.completion`` (non-streamed), or,
  with ``"stream": true``, the role chunk, ``--tokens`` content chunks, the finish chunk,
  a usage chunk when ``stream_options.include_usage`` is true, and ``data: [DONE]``;
  each SSE event is its own HTTP chunk (chunked transfer encoding).
- Slow mode, per request: a ``model`` whose name starts with ``slow`` streams its first
  content chunk at once, then one chunk every ``--slow-interval`` seconds, for
  ``--slow-tokens`` chunks in all (bounded: it ends by itself). It stops early when the
  client goes away.
- ``GET /health`` answers 200; ``GET /stats`` the connections accepted and requests
  answered so far, as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

import orjson

TOKEN = "tok "  # one "token" of output text


class Replies:
    """Precomputed response bytes, cached per (model, stream, include_usage)."""

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens
        self.text = TOKEN * tokens
        self.cache: dict[tuple[str, bool, bool], bytes] = {}

    def usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": 11,
            "completion_tokens": self.tokens,
            "total_tokens": 11 + self.tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }

    def completion(self, model: str) -> bytes:
        key = (model, False, False)
        if (cached := self.cache.get(key)) is None:
            body = orjson.dumps(
                {
                    "id": "chatcmpl-bench",
                    "object": "chat.completion",
                    "created": 1700000000,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": self.text}, "finish_reason": "stop"}
                    ],
                    "usage": self.usage(),
                }
            )
            cached = (
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            if len(self.cache) < 1024:
                self.cache[key] = cached
        return cached

    def chunk(self, model: str, delta: dict[str, Any] | None, finish: str | None = None) -> bytes:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        data: dict[str, Any] = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": model,
            "choices": choices,
        }
        if delta is None:
            data["usage"] = self.usage()
        return frame(b"data: " + orjson.dumps(data) + b"\n\n")

    def stream_parts(self, model: str, include_usage: bool, tokens: int) -> list[bytes]:
        """The HTTP head, then one element per SSE event (already chunk-framed), then the
        terminating zero chunk."""
        parts = [STREAM_HEAD, self.chunk(model, {"role": "assistant", "content": ""})]
        parts.extend(self.chunk(model, {"content": TOKEN}) for _ in range(tokens))
        parts.append(self.chunk(model, {}, "stop"))
        if include_usage:
            parts.append(self.chunk(model, None))
        parts.append(frame(b"data: [DONE]\n\n"))
        parts.append(b"0\r\n\r\n")
        return parts

    def stream(self, model: str, include_usage: bool) -> bytes:
        key = (model, True, include_usage)
        if (cached := self.cache.get(key)) is None:
            cached = b"".join(self.stream_parts(model, include_usage, self.tokens))
            if len(self.cache) < 1024:
                self.cache[key] = cached
        return cached


STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
OK_HEALTH = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 9\r\n\r\nnot found"
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 11\r\n\r\nbad request"


def frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _dechunk(buf: bytearray, start: int) -> tuple[bytes, int] | None:
    """A chunked request body starting at ``start``: (body, end offset) or None if incomplete."""
    body = bytearray()
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n", pos)  # no trailers expected
            return (bytes(body), end + 2) if end >= 0 else None
        if len(buf) < pos + size + 2:
            return None
        body += buf[pos : pos + size]
        pos += size + 2


STATS = {"connections": 0, "requests": 0}


class Upstream(asyncio.Protocol):
    replies: Replies
    slow_interval: float
    slow_tokens: int

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.slow_task: asyncio.Task[None] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        STATS["connections"] += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.slow_task is not None:
            self.slow_task.cancel()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.slow_task is None:
            self.process()

    def process(self) -> None:
        buf = self.buf
        while self.slow_task is None and not self.closed:
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            lines = bytes(buf[:head_end]).split(b"\r\n")
            try:
                method, path, _ = lines[0].split(b" ", 2)
            except ValueError:
                self.fail()
                return
            length = 0
            chunked = close = False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    close = b"close" in value.lower()
            start = head_end + 4
            if chunked:
                got = _dechunk(buf, start)
                if got is None:
                    return
                body, end = got
            else:
                if len(buf) < start + length:
                    return
                body, end = bytes(buf[start : start + length]), start + length
            del buf[:end]
            self.handle(method, path, body)
            if close and self.slow_task is None and self.transport is not None:
                self.transport.close()
                return

    def fail(self) -> None:
        assert self.transport is not None
        self.transport.write(BAD_REQUEST)
        self.transport.close()
        self.closed = True

    def handle(self, method: bytes, path: bytes, body: bytes) -> None:
        transport = self.transport
        assert transport is not None
        if method == b"GET" and path == b"/health":
            transport.write(OK_HEALTH)
            return
        if method == b"GET" and path == b"/stats":
            body = orjson.dumps(STATS)
            transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )
            return
        STATS["requests"] += 1
        if method != b"POST" or not path.endswith(b"/chat/completions"):
            transport.write(NOT_FOUND)
            return
        try:
            request = orjson.loads(body)
            model = str(request.get("model", "bench"))
        except (orjson.JSONDecodeError, AttributeError):
            transport.write(BAD_REQUEST)
            return
        if not request.get("stream"):
            transport.write(self.replies.completion(model))
            return
        options = request.get("stream_options") or {}
        include_usage = bool(options.get("include_usage")) if isinstance(options, dict) else False
        if model.startswith("slow"):
            self.slow_task = asyncio.get_running_loop().create_task(self.slow(model, include_usage))
            return
        transport.write(self.replies.stream(model, include_usage))

    async def slow(self, model: str, include_usage: bool) -> None:
        transport = self.transport
        assert transport is not None
        parts = self.replies.stream_parts(model, include_usage, self.slow_tokens)
        try:
            # Head, role chunk and the first token at once; then one part per interval.
            transport.write(b"".join(parts[:3]))
            for part in parts[3:-3]:
                await asyncio.sleep(self.slow_interval)
                if self.closed:
                    return
                transport.write(part)
            transport.write(b"".join(parts[-3:]))
        except asyncio.CancelledError:
            return
        finally:
            self.slow_task = None
        if self.buf and not self.closed:
            self.process()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, host, port, backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"upstream listening on http://{host}:{port} (pid {os.getpid()})", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--tokens", type=int, default=32, help="content chunks per stream (and tokens per answer)")
    parser.add_argument("--slow-interval", type=float, default=1.0, help="seconds between chunks in slow mode")
    parser.add_argument("--slow-tokens", type=int, default=120, help="content chunks of a slow stream")
    args = parser.parse_args(argv)
    Upstream.replies = Replies(args.tokens)
    Upstream.slow_interval = args.slow_interval
    Upstream.slow_tokens = max(args.slow_tokens, 1)
    try:
        import uvloop

        uvloop.run(serve(args.host, args.port))
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
