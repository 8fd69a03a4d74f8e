"""What every HTTP provider shares: one connection pool, the key from the environment,
and upstream failures mapped to ``UpstreamError`` with a message that names the provider."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from continuo.backends.base import Delta, InBatches, TextDelta, UpstreamError
from continuo.backends.upstream_http import (
    BadAnswer,
    BodyTooLarge,
    ConnectFailed,
    Pool,
    Upstream,
    UpstreamHTTPError,
    UpstreamResponse,
)
from continuo.config import ProviderConfig
from continuo.observability import tracing

log = logging.getLogger("continuo.upstream")


# The longest line an upstream may send. A Responses upstream's final event carries the
# whole response on one line, so this is generous; past it the upstream is misbehaving.
MAX_LINE_BYTES = 16 * 1024 * 1024


class MalformedStream(Exception):
    """The bytes of a stream are not Server-Sent Events (bad UTF-8, a line too long)."""


def _decode(line: bytes) -> str:
    try:
        return line.rstrip(b"\r").decode()
    except UnicodeDecodeError:
        raise MalformedStream("sent a stream that is not valid UTF-8") from None


class SSEParser:
    """Server-Sent Events from bytes as they arrive: ``feed`` a chunk, get the (event
    name, data) of each event it completed. One synchronous loop over the lines of a chunk,
    on bytes (a stream of 32 tokens went through an async generator a line before, which
    cost more than the parsing: docs/performance.md). The data stays bytes, for
    ``orjson.loads``, which checks that it is UTF-8."""

    def __init__(self, line_limit: int = MAX_LINE_BYTES) -> None:
        self.line_limit = line_limit
        self.pending = b""
        self.name: str | None = None
        self.data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        # Split by hand, with a line limit of its own: a Responses upstream's final event
        # carries the whole response on one line, past any usual reader's buffer size.
        if self.pending:
            chunk = self.pending + chunk
        if self.data or self.name is not None or len(chunk) > self.line_limit or b"\r" in chunk:
            return self._by_line(chunk)
        # Most reads are whole events of one ``data: `` line each: split by the blank line
        # that ends an event, a block an event, until a block is anything else; from there
        # on, line by line (a third of the parsing of a 32-token stream: docs/performance.md).
        *blocks, rest = chunk.split(b"\n\n")
        events: list[tuple[str | None, bytes]] = []
        for done, block in enumerate(blocks):
            if block[:6] != b"data: " or b"\n" in block:
                return events + self._by_line(b"\n\n".join(blocks[done:]) + b"\n\n" + rest)
            events.append((None, block[6:]))
        self.pending = rest
        return events

    def _by_line(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        *lines, self.pending = chunk.split(b"\n")
        if len(chunk) > self.line_limit:  # only then can a line be over it
            self._check(lines)
        return self._lines(lines, b"\r" in chunk)

    def close(self) -> list[tuple[str | None, bytes]]:
        """The last event, when the stream ended without a blank line after it."""
        lines = [*self.pending.split(b"\n"), b""]  # (what the block split left may be lines)
        self.pending = b""
        return self._lines(lines, True)

    def _check(self, lines: list[bytes]) -> None:
        limit = self.line_limit
        if len(self.pending) > limit or any(len(line) > limit for line in lines):
            raise MalformedStream(f"sent a stream line over {limit} bytes")

    def _lines(self, lines: list[bytes], cr: bool) -> list[tuple[str | None, bytes]]:
        # Most lines are ``data: ...`` or the blank line after it: those first, the rest
        # (comments, other fields, no space after the colon) in ``_field``.
        events: list[tuple[str | None, bytes]] = []
        for line in lines:
            if cr and line[-1:] == b"\r":
                line = line[:-1]
            if line.startswith(b"data: "):
                self.data.append(line[6:])
            elif not line:
                if data := self.data:
                    events.append((self.name, data[0] if len(data) == 1 else b"\n".join(data)))
                    self.data = []
                self.name = None
            elif line[:1] != b":":
                self._field(line)
        return events

    def _field(self, line: bytes) -> None:
        field, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            self.data.append(value)
        elif field == b"event":
            self.name = _decode(value)


class SSEStream(InBatches):
    """An upstream's Server-Sent Events, each data parsed as JSON and turned into deltas by
    the subclass (``deltas``, then ``end`` once the stream is over). Transport failures
    become an ``UpstreamError`` naming the provider, and the connection is closed on every
    way out before the end (so an upstream still streaming sees the disconnect).

    Reading, parsing and translating happen in this one generator, a batch of deltas for
    each read from the socket: each layer of async generator between the socket and the
    run loop cost about a microsecond a delta (docs/performance.md)."""

    def __init__(self, provider: str, response: UpstreamResponse, line_limit: int = MAX_LINE_BYTES) -> None:
        self.provider = provider
        self.response = response
        self.line_limit = line_limit

    # Set by ``deltas`` once the answer is complete: read no further.
    over = False
    # Set by a subclass once ``quick`` can read its commonest event.
    shaped = False

    def deltas(self, name: str | None, event: dict[str, Any], data: bytes) -> list[Delta]:
        """The deltas of one event (``data``: its bytes, as parsed into ``event``)."""
        raise NotImplementedError

    def quick(self, data: bytes) -> str | None:
        """A subclass's quick reading of its commonest event, from the data's bytes (asked
        once ``shaped``): the text in it, or None when the event must be parsed and given
        to ``deltas``."""
        return None

    def end(self) -> None:
        """Called when the upstream ended its stream (``[DONE]`` or the end of the body):
        raise if it ended unfinished."""

    async def batches(self) -> AsyncIterator[list[Delta]]:
        parser = SSEParser(self.line_limit)
        loads = orjson.loads
        try:
            readany = self.response.readany
            ended = False
            while not ended:
                chunk = await readany()
                batch: list[Delta] = []
                try:
                    for name, data in parser.feed(chunk) if chunk else parser.close():
                        if data == b"[DONE]":
                            ended = True
                            break
                        if self.shaped and (text := self.quick(data)) is not None:
                            if text:
                                batch.append(TextDelta(text))
                            continue
                        event = loads(data)
                        if type(event) is not dict:
                            raise UpstreamError(
                                f"provider '{self.provider}' sent a stream event that is not a JSON object"
                            )
                        batch += self.deltas(name, event, data)
                        if self.over:
                            break
                    else:
                        ended = not chunk
                    if self.over:
                        ended = True
                    elif ended:
                        self.end()
                except (UpstreamError, orjson.JSONDecodeError) as exc:
                    if batch:  # what came before the failure, as it would have one by one
                        yield batch
                    if isinstance(exc, UpstreamError):
                        raise
                    raise UpstreamError(f"provider '{self.provider}' sent a malformed stream event") from None
                if batch:
                    yield batch
        except MalformedStream as exc:
            raise UpstreamError(f"provider '{self.provider}' {exc}") from None
        except TimeoutError:
            raise UpstreamError(f"provider '{self.provider}' timed out", status=504) from None
        except UpstreamHTTPError as exc:
            raise UpstreamError(f"provider '{self.provider}' broke off the stream: {type(exc).__name__}") from None
        finally:
            self.response.close()

    async def aclose(self) -> None:
        self.response.close()


class DeltaList(InBatches):
    """A model call that is already over: its deltas, replayed (one batch)."""

    def __init__(self, deltas: list[Delta]) -> None:
        self.replay = deltas

    async def batches(self) -> AsyncIterator[list[Delta]]:
        if self.replay:
            yield self.replay

    async def aclose(self) -> None:
        return None


def _is_html(response: UpstreamResponse, body: bytes) -> bool:
    return "html" in response.headers.get("content-type", "") or body.lstrip()[:1] == b"<"


def _error_message(provider: str, response: UpstreamResponse, body: bytes) -> str:
    status = response.status
    if _is_html(response, body):
        return f"provider '{provider}' answered {status} with an HTML page instead of JSON"
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        snippet = body[:300].decode("utf-8", "replace").strip()
        return f"provider '{provider}' answered {status}: {snippet or 'no body'}"
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return f"provider '{provider}' answered {status}: {error['message']}"
    if isinstance(error, str):
        return f"provider '{provider}' answered {status}: {error}"
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        return f"provider '{provider}' answered {status}: {parsed['message']}"
    return f"provider '{provider}' answered {status}"


def refusal(provider: str, response: UpstreamResponse, body: bytes) -> UpstreamError:
    """An upstream's error status as Continuo answers it.

    The provider's own 401/403 (Continuo's key for it is wrong) and 402 (its bill) are a
    502: a client that saw 401 would think its own key was refused. The provider's 429 stays
    a 429, so clients back off and retry as they would for OpenAI, but with the code
    ``upstream_rate_limited`` and a message that names the provider. A 408 is a timeout
    (504); other 4xx are about the request and keep their status; 5xx become 502.
    """
    status = response.status
    message = _error_message(provider, response, body)
    if status in (401, 403):
        return UpstreamError(
            f"{message} (the provider refused this server's credentials for it; your API key is fine)",
            status=502,
        )
    if status == 402:
        return UpstreamError(message, status=502)
    if status == 429:
        return UpstreamError(
            f"{message} (the provider is rate-limiting this server; retry later)",
            status=429,
            code="upstream_rate_limited",
        )
    if status == 408:
        return UpstreamError(message, status=504)
    return UpstreamError(message, status=status if status < 500 else 502)


def error_in_body(provider: str, body: dict[str, Any]) -> UpstreamError | None:
    """An ``{"error": ...}`` that came with a 200 (whole body or one stream chunk)."""
    error = body.get("error")
    if error is None or error is False or error == {}:
        return None
    return UpstreamError(f"provider '{provider}' failed: {error_text(error, 'it answered with an error')}")


def error_text(error: Any, fallback: str) -> str:
    if isinstance(error, dict):
        message = error.get("message")
        if isinstance(message, str) and message:
            return message
    if isinstance(error, str) and error:
        return error
    return fallback


class HTTPProvider:
    def __init__(self, config: ProviderConfig) -> None:
        if not config.base_url:
            raise ValueError(f"provider '{config.name}' needs a base_url")
        self.config = config
        self.name = config.name
        self.base_url = config.base_url.rstrip("/")
        self.headers = {"content-type": "application/json", **config.headers}
        if key := config.api_key:
            self.headers["authorization"] = f"Bearer {key}"
        # ``timeout`` bounds each wait for the upstream (headers, every chunk), not the
        # whole answer: a long stream that keeps talking is never cut.
        self.timeout = aiohttp.ClientTimeout(total=None, connect=config.connect_timeout, sock_read=config.timeout)
        # The model calls (upstream_http.py); the aiohttp session below serves the rest
        # (a server's token-counting route).
        self.upstream = Upstream(self.base_url, self.headers)
        self.pool = Pool(config.connect_timeout, config.timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running event loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self.headers,
                timeout=self.timeout,
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
                auto_decompress=True,
                # One session serves every client: a cookie one upstream answer sets must
                # not ride along on another client's calls.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def post(self, path: str, payload: dict[str, Any]) -> UpstreamResponse:
        """Send and return the response with its body unread; raise on an error status.
        A connection that cannot be made is retried ``max_retries`` times: nothing was
        sent yet, so no request can run twice."""
        body = orjson.dumps(payload)
        for attempt in range(self.config.max_retries + 1):
            try:
                response = await self._send(path, body)
                break
            except ConnectFailed as exc:
                if attempt == self.config.max_retries:
                    raise UpstreamError(f"provider '{self.name}' is unreachable: {exc}") from None
                log.warning(
                    "provider %r unreachable (%s); retry %d of %d",
                    self.name,
                    exc,
                    attempt + 1,
                    self.config.max_retries,
                )
                await asyncio.sleep(min(0.25 * 2**attempt, 2.0))
            except TimeoutError:
                raise UpstreamError(f"provider '{self.name}' timed out", status=504) from None
            except BadAnswer as exc:
                raise UpstreamError(f"provider '{self.name}' answered with something unreadable: {exc}") from None
            except UpstreamHTTPError as exc:
                raise UpstreamError(f"provider '{self.name}' is unreachable: {type(exc).__name__}") from None
        if 300 <= response.status < 400:
            response.close()
            where = response.headers.get("location")
            raise UpstreamError(
                f"provider '{self.name}' answered {response.status}, a redirect"
                + (f" to {where}" if where else "")
                + ", which is not followed: set its base_url to where the API is",
                status=502,
            )
        if response.status >= 400:
            try:
                raw = await response.read(self.config.max_response_bytes)
            except (UpstreamHTTPError, TimeoutError):
                raw = b""
            finally:
                response.close()
            raise refusal(self.name, response, raw)
        return response

    async def _send(self, path: str, body: bytes) -> UpstreamResponse:
        if not tracing.enabled():
            return await self.pool.post(self.upstream, path, body)
        upstream = self.upstream
        span, carrier = tracing.start_client_span("POST", self.base_url + path, upstream.host, upstream.port)
        extra = b"".join(b"%s: %s\r\n" % (k.encode("latin-1"), v.encode("latin-1")) for k, v in carrier.items())
        try:
            response = await self.pool.post(upstream, path, body, extra)
        except BaseException as exc:
            tracing.end_span(span, exc)
            raise
        tracing.end_span(span, None, **{"http.response.status_code": response.status})
        return response

    async def read_json(self, response: UpstreamResponse) -> dict[str, Any]:
        limit = self.config.max_response_bytes
        try:
            body = await response.read(limit)
        except BodyTooLarge:
            raise UpstreamError(f"provider '{self.name}' answered with a body over {limit} bytes") from None
        except TimeoutError:
            response.close()
            raise UpstreamError(f"provider '{self.name}' timed out", status=504) from None
        except UpstreamHTTPError as exc:
            response.close()
            raise UpstreamError(f"provider '{self.name}' broke off: {type(exc).__name__}") from None
        except BaseException:
            response.close()
            raise
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            if _is_html(response, body):
                raise UpstreamError(_error_message(self.name, response, body)) from None
            raise UpstreamError(f"provider '{self.name}' answered with a body that is not JSON") from None
        if not isinstance(parsed, dict):
            raise UpstreamError(f"provider '{self.name}' answered with JSON that is not an object")
        if (error := error_in_body(self.name, parsed)) is not None:
            raise error
        return parsed

    async def aclose(self) -> None:
        self.pool.close()
        if self._session is not None:
            await self._session.close()
