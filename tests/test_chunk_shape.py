"""A Chat Completions stream read by the shape of its chunks (backends/chat_completions.py):
once one plain-text chunk showed the bytes around its text, later chunks with the same
ends are read by parsing the text alone. The deltas must be exactly those the general
reading gives, whatever the upstream sends; here a real HTTP upstream on 127.0.0.1 sends
scripted bytes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp import web

from continuo.backends.base import Delta, Finish, ModelRequest, TextDelta, UpstreamError, Usage
from continuo.backends.chat_completions import ChatCompletionsBackend
from continuo.config import ProviderConfig

HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}


def chunk(delta: Any, finish: Any = None, **extra: Any) -> bytes:
    body = {**HEAD, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return b"data: " + orjson.dumps(body) + b"\n\n"


USAGE = {**HEAD, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}}
FINISH = chunk({}, "stop") + b"data: " + orjson.dumps(USAGE) + b"\n\n" + b"data: [DONE]\n\n"


async def read(body: bytes) -> tuple[list[Delta], bool]:
    """The deltas of a stream whose bytes are ``body``, and whether the shape was learnt."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for i in range(0, len(body), 97):  # in pieces that cut events and lines anywhere
            await response.write(body[i : i + 97])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    backend = ChatCompletionsBackend(
        ProviderConfig(name="up", type="chat_completions", base_url=f"http://127.0.0.1:{port}/v1")
    )
    try:
        stream = await backend.open(ModelRequest(model="m", items=[], stream=True))
        deltas: list[Delta] = []
        try:
            async for batch in stream.batches():
                deltas += batch
        finally:
            await stream.aclose()
        return deltas, getattr(stream, "shaped", False)
    finally:
        await backend.aclose()
        await runner.cleanup()


def texts(deltas: list[Delta]) -> list[str]:
    return [d.text for d in deltas if isinstance(d, TextDelta)]


TOKENS = ["Hello", ", ", 'quote " and \\ back', "line\nbreak", "wörld 🌍", "\u2028", "</script>", "end"]


async def test_a_stream_of_one_shape_is_read_by_it_to_the_same_deltas() -> None:
    body = chunk({"role": "assistant", "content": ""}) + b"".join(chunk({"content": t}) for t in TOKENS) + FINISH
    deltas, learnt = await read(body)
    assert learnt
    assert texts(deltas) == TOKENS
    assert deltas[-2:] == [Finish("stop"), Usage(input_tokens=3, output_tokens=5)]


async def test_a_chunk_with_the_same_ends_but_no_string_between_them_is_read_in_full() -> None:
    # The ends match the learnt shape; what stands between them is null, then a number.
    body = b"".join(chunk({"content": t}) for t in ("a", "b")) + chunk({"content": None}) + chunk({"content": "c"})
    deltas, learnt = await read(body + FINISH)
    assert learnt and texts(deltas) == ["a", "b", "c"]
    with pytest.raises(UpstreamError, match="malformed chunk"):
        await read(body + chunk({"content": 7}) + FINISH)


async def test_chunks_that_change_around_the_text_are_read_in_full() -> None:
    # A field that changes at every chunk (OpenAI's obfuscation padding does), and a
    # finish or usage riding on a text chunk: never read by the shape.
    body = b"".join(chunk({"content": f"t{i}"}, obfuscation="x" * i) for i in range(6))
    body += chunk({"content": "last"}, "length")
    deltas, _ = await read(body + chunk({"content": "u"}, usage={"prompt_tokens": 1, "completion_tokens": 1}))
    assert texts(deltas) == [f"t{i}" for i in range(6)] + ["last", "u"]
    assert Finish("length") in deltas and Usage(input_tokens=1, output_tokens=1) in deltas


async def test_an_upstream_that_escapes_otherwise_is_read_in_full() -> None:
    # Text escaped as \\uXXXX (as Python's json.dumps does): orjson's bytes for the text
    # are not in the chunk, so no shape is learnt and every chunk is parsed.
    escaped = [
        b"data: "
        + orjson.dumps({**HEAD, "choices": [{"index": 0, "delta": {"content": "X"}, "finish_reason": None}]}).replace(
            b'"X"', b'"\\u00e9\\u00e9"'
        )
        + b"\n\n"
    ] * 6
    deltas, learnt = await read(b"".join(escaped) + FINISH)
    assert not learnt
    assert texts(deltas) == ["éé"] * 6
