"""Counting tokens on the embedded model's HTTP server survives a kept-alive connection
that the server closed just as a request went out (llama.cpp's server closes idle ones
after a few seconds): the request is sent once more. A loopback server plays that part."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import pytest

from continuo.backends.base import UpstreamError
from continuo.backends.local_tokens import LocalTokenizer

ANSWERS = {b"/apply-template": {"prompt": "<s>hello</s>"}, b"/tokenize": {"tokens": [1, 2, 3]}}


class DroppingServer:
    """Answers like llama.cpp's ``/apply-template`` and ``/tokenize``, except that it reads
    the first ``drops`` requests and closes their connections without an answer."""

    def __init__(self, drops: int) -> None:
        self.drops = drops
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                path = head.split(b" ", 2)[1]
                self.requests.append(path)
                if self.drops > 0:
                    self.drops -= 1
                    return  # closed unanswered, as a reset kept-alive connection
                body = orjson.dumps(ANSWERS[path])
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b"
                    % (len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


Start = Callable[[int], Awaitable[tuple[DroppingServer, str]]]


@pytest.fixture
async def serve() -> AsyncIterator[tuple[Start, LocalTokenizer]]:
    tokenizer = LocalTokenizer("key")
    servers = []

    async def start(drops: int) -> tuple[DroppingServer, str]:
        fake = DroppingServer(drops)
        server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return fake, f"127.0.0.1:{port}"

    yield start, tokenizer
    await tokenizer.aclose()
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_a_dropped_request_is_sent_once_more(serve: tuple[Start, LocalTokenizer]) -> None:
    start, tokenizer = serve
    fake, address = await start(1)  # the first request dropped
    assert await tokenizer.count(address, [{"role": "user", "content": "hello"}]) == 3
    assert fake.requests == [b"/apply-template", b"/apply-template", b"/tokenize"]


async def test_a_request_dropped_twice_is_an_upstream_error(serve: tuple[Start, LocalTokenizer]) -> None:
    start, tokenizer = serve
    fake, address = await start(2)  # the first two dropped
    with pytest.raises(UpstreamError, match="could not count tokens"):
        await tokenizer.count(address, [{"role": "user", "content": "hello"}])
    assert fake.requests == [b"/apply-template", b"/apply-template"]
