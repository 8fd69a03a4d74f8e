"""The HTTP/1.1 client of the model calls: a pool of kept-alive connections per upstream,
each an asyncio protocol whose bytes httptools parses in C.

aiohttp's client took 130 Python calls to send a request and read its answer, a third of
the Python time of an unstored request, and about 13,500 instructions for each HTTP chunk
of a stream (it feeds, splits, reads and resumes the transport a chunk at a time):
docs/performance.md. Here a request is one write, an answer is read as the socket delivers
it (a stream's chunks of one read come out together), and the only Python calls a chunk
are httptools' ``on_body``.

What it does: plain and TLS connections (the default certificate checks); a body framed
by ``Content-Length``, chunked, or ended by the server closing; gzip and deflate bodies
(none is asked for, so none is expected); a bound on every wait for the upstream (the
connection, then each read); flow control (reading pauses while a reader is behind).
What it does not: proxies, redirects (a 3xx is answered as it is), HTTP/2. Other
upstream requests (token counting, fetching remote content) still go through aiohttp.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httptools

from continuo import __version__

# Reading pauses when this much is waiting for a reader, and resumes once it is read.
_HIGH_WATER = 1 << 20
# The most an answer's head may hold (aiohttp allowed 8 KiB a line).
_MAX_HEAD = 64 * 1024
_USER_AGENT = f"continuo/{__version__}".encode()


class UpstreamHTTPError(Exception):
    """The upstream's HTTP went wrong; the class says how (its name ends up in messages)."""


class ConnectFailed(UpstreamHTTPError):
    """No connection could be made: nothing was sent."""


class Disconnected(UpstreamHTTPError):
    """The connection closed before the answer was whole."""


class BadAnswer(UpstreamHTTPError):
    """The bytes are not an HTTP/1.1 answer this client can read."""


class BodyTooLarge(UpstreamHTTPError):
    """The body ran past the limit the reader set."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"its body is over {limit} bytes")


def _decoder(encoding: str) -> Callable[[bytes], bytes] | None:
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        # gzip and zlib headers are told apart by zlib itself; a raw deflate stream has none.
        state: list[Any] = [zlib.decompressobj(47)]

        def decode(data: bytes) -> bytes:
            try:
                return bytes(state[0].decompress(data))
            except zlib.error:
                if encoding != "deflate" or state[0].unused_data or state[0].eof:
                    raise BadAnswer(f"its {encoding} body is corrupt") from None
                state[0] = zlib.decompressobj(-15)
                return bytes(state[0].decompress(data))

        return decode
    raise BadAnswer(f"it sent its body encoded as {encoding!r}")


class _Connection(asyncio.Protocol):
    """One connection and the answer being read on it."""

    def __init__(self, pool: Pool, key: tuple[str, int, bool]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        # The parser holds this protocol's methods, a cycle that ``connection_lost`` breaks
        # (so that reference counting frees a connection, not the cyclic collector).
        self.parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self.lost = False
        self.idle_since = 0.0
        # Whether a request is out on it; bytes that come while none is are not an answer.
        self.active = True
        self._answer()

    def _answer(self) -> None:
        self.status = 0
        self.header_list: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.headers_done = False
        self.keep_alive = False
        self.body: list[bytes] = []
        self.buffered = 0
        self.complete = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.timed_out = False
        self.paused = False

    # -- asyncio -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self.parser is not None
        if not self.active:  # nothing was asked: the connection is not fit for reuse
            _close(self)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            ours = exc.__context__  # what a callback here raised, if one did
            if isinstance(ours, BadAnswer):
                self._fail(BadAnswer(*ours.args))  # (a copy: the raised one holds this frame)
            else:
                self._fail(BadAnswer(f"it sent a malformed HTTP answer ({exc})"))
            if self.transport is not None:
                self.transport.close()
            return
        if self.buffered > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.parser = None
        if not self.complete and self.error is None:
            if self.headers_done and not self._framed():
                self.complete = True  # a body that ends when the server closes
            else:
                reason = f" ({type(exc).__name__})" if exc is not None else ""
                self.error = Disconnected(f"the connection closed before the answer was whole{reason}")
        self._wake()

    # -- httptools ---------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value)
        if self.head_size > _MAX_HEAD:
            raise BadAnswer(f"its answer's head is over {_MAX_HEAD} bytes")
        self.header_list.append((name, value))

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue, 103): the real one follows
            self.header_list = []
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        if self.headers_done:  # (not the end of an interim answer)
            self.complete = True

    # -- the reader's side -------------------------------------------------------------

    def _framed(self) -> bool:
        for name, value in self.header_list:
            lower = name.lower()
            if lower == b"content-length" or (lower == b"transfer-encoding" and b"chunked" in value.lower()):
                return True
        return False

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, ready: Callable[[], bool], seconds: float | None) -> None:
        """Until ``ready()``, an error, or ``seconds`` without it (TimeoutError).

        Errors are raised as new objects, never one this connection holds, and the waiter
        only ever gets a result: a raised exception keeps the frames it passed, and one of
        them would hold this connection or the waiter back in a cycle."""
        while not ready():
            if self.error is not None:
                raise type(self.error)(*self.error.args)
            if self.lost:
                raise Disconnected("the connection closed before the answer was whole")
            loop = self.pool.loop
            waiter = self.waiter = loop.create_future()
            timer = loop.call_later(seconds, self._time_out, waiter) if seconds is not None else None
            try:
                await waiter
            finally:
                self.waiter = None
                if timer is not None:
                    timer.cancel()
            if self.timed_out:
                self.timed_out = False
                raise TimeoutError()

    def _time_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            self.timed_out = True
            waiter.set_result(None)

    def take(self) -> bytes:
        """What the answer's body has brought since the last take."""
        body = self.body
        data = body[0] if len(body) == 1 else b"".join(body)
        self.body = []
        self.buffered = 0
        if self.paused and self.transport is not None and not self.lost:
            self.paused = False
            self.transport.resume_reading()
        return data


class UpstreamResponse:
    """An answer whose head has arrived; its body is read with ``readany`` or ``read``."""

    def __init__(self, connection: _Connection, read_timeout: float | None) -> None:
        self._connection = connection
        self._timeout = read_timeout
        self.status = connection.status
        headers: dict[str, str] = {}
        for name, value in connection.header_list:
            headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        self.headers = headers
        self._decode = _decoder(headers.get("content-encoding", "").strip().lower())
        self._done = False

    async def readany(self) -> bytes:
        """The next bytes of the body (whatever has arrived, at least one byte), or b""
        at its end."""
        connection = self._connection
        while not self._done:
            await connection.wait(lambda: bool(connection.body) or connection.complete, self._timeout)
            data = connection.take()
            if connection.complete:
                self._finish()
            if self._decode is not None and data:
                data = self._decode(data)
            if data:
                return data
        return b""

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body; BodyTooLarge (and the connection closed) past ``limit`` bytes."""
        chunks = []
        size = 0
        while chunk := await self.readany():
            size += len(chunk)
            if limit is not None and size > limit:
                self.close()
                raise BodyTooLarge(limit)
            chunks.append(chunk)
        return b"".join(chunks)

    def _finish(self) -> None:
        self._done = True
        connection = self._connection
        if connection.keep_alive and not connection.lost and connection.error is None:
            connection.pool.put(connection)
        else:
            _close(connection)

    def close(self) -> None:
        """Done with it, read or not: a connection with unread body is closed."""
        if not self._done:
            self._done = True
            _close(self._connection)


def _close(connection: _Connection) -> None:
    connection.lost = True
    if connection.transport is not None:
        connection.transport.close()


class Upstream:
    """Where the calls of one provider go: the base URL's host, and the head every request
    carries."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http:// or https:// URL: {base_url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/")
        default_port = (443 if self.tls else 80) == self.port
        host = self.host if ":" not in self.host else f"[{self.host}]"
        address = host if default_port else f"{host}:{self.port}"
        lines = [b"Host: " + (address.encode() if address.isascii() else address.encode("idna"))]
        given = {name.lower() for name in headers}
        if "user-agent" not in given:
            lines.append(b"User-Agent: " + _USER_AGENT)
        if "accept" not in given:
            lines.append(b"Accept: */*")
        for name, value in headers.items():
            if "\r" in name + value or "\n" in name + value:
                raise ValueError(f"header {name!r} has a line break")
            lines.append(name.encode("latin-1") + b": " + value.encode("latin-1"))
        self.head = b"\r\n".join(lines) + b"\r\n"


class Pool:
    """Kept-alive connections by (host, port, TLS), reused newest first; one that stayed
    idle for ``keepalive`` seconds is closed rather than reused."""

    def __init__(self, connect_timeout: float | None, read_timeout: float | None, keepalive: float = 30.0) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive = keepalive
        self._idle: dict[tuple[str, int, bool], deque[_Connection]] = {}
        self._ssl: ssl.SSLContext | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def put(self, connection: _Connection) -> None:
        connection._answer()
        connection.active = False
        now = connection.idle_since = time.monotonic()
        idle = self._idle.setdefault(connection.key, deque())
        # The oldest first: those closed meanwhile, or idle too long, go (a burst's extra
        # connections do not stay open for ever behind the ones in use).
        while idle and (idle[0].lost or now - idle[0].idle_since > self.keepalive):
            _close(idle.popleft())
        idle.append(connection)

    async def _connection(self, upstream: Upstream) -> _Connection:
        key = (upstream.host, upstream.port, upstream.tls)
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.lost or connection.transport is None or connection.transport.is_closing():
                continue
            if time.monotonic() - connection.idle_since > self.keepalive:
                _close(connection)
                continue
            connection.active = True
            return connection
        loop = self.loop
        if upstream.tls and self._ssl is None:
            self._ssl = ssl.create_default_context()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(self, key),
                    upstream.host,
                    upstream.port,
                    ssl=self._ssl if upstream.tls else None,
                ),
                self.connect_timeout,
            )
        except TimeoutError:
            raise ConnectFailed("connecting timed out") from None
        except OSError as exc:
            raise ConnectFailed(f"{type(exc).__name__}: {exc.strerror or exc}") from None
        return protocol

    async def post(self, upstream: Upstream, path: str, body: bytes, extra: bytes = b"") -> UpstreamResponse:
        """Send ``body`` (JSON) to ``path`` under the upstream's base path; the answer once
        its head has arrived."""
        connection = await self._connection(upstream)
        request = b"POST %s HTTP/1.1\r\n%b%bContent-Length: %d\r\n\r\n" % (
            (upstream.prefix + path).encode("ascii"),
            upstream.head,
            extra,
            len(body),
        )
        transport = connection.transport
        assert transport is not None
        transport.write(request + body)
        try:
            await connection.wait(lambda: connection.headers_done, self.read_timeout)
            return UpstreamResponse(connection, self.read_timeout)
        except BaseException:
            _close(connection)
            raise

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                _close(connection)
        self._idle.clear()
