"""What every HTTP provider shares: one connection pool, the key from the environment,
and upstream failures mapped to ``UpstreamError`` with a message that names the provider."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from continuo.backends.base import Delta, UpstreamError
from continuo.config import ProviderConfig

log = logging.getLogger("continuo.upstream")


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str | None, str]]:
    """(event name, data) of each Server-Sent Event."""
    name: str | None = None
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = None, []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    if data:
        yield name, "\n".join(data)


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    # Split by hand: aiohttp's own line reader refuses lines over its buffer size, and a
    # Responses upstream's final event carries the whole response on one line.
    pending = b""
    async for chunk in response.content.iter_any():
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.rstrip(b"\r").decode()
    if pending:
        yield pending.rstrip(b"\r").decode()


class SSEStream:
    """An upstream's Server-Sent Events, each data parsed as JSON. Transport failures
    become an ``UpstreamError`` naming the provider, and the connection is closed on every
    way out before the end (so an upstream still streaming sees the disconnect)."""

    def __init__(self, provider: str, response: aiohttp.ClientResponse) -> None:
        self.provider = provider
        self.response = response

    async def events(self) -> AsyncIterator[tuple[str | None, Any]]:
        try:
            async for name, data in sse_events(_lines(self.response)):
                if data == "[DONE]":
                    return
                try:
                    yield name, orjson.loads(data)
                except orjson.JSONDecodeError:
                    raise UpstreamError(f"provider '{self.provider}' sent a malformed stream event") from None
        except TimeoutError:
            raise UpstreamError(f"provider '{self.provider}' timed out", status=504) from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"provider '{self.provider}' broke off the stream: {type(exc).__name__}") from None
        finally:
            self.response.close()

    async def aclose(self) -> None:
        self.response.close()


class DeltaList:
    """A model call that is already over: its deltas, replayed."""

    def __init__(self, deltas: list[Delta]) -> None:
        self.deltas = deltas

    async def __aiter__(self) -> AsyncIterator[Delta]:
        for delta in self.deltas:
            yield delta

    async def aclose(self) -> None:
        return None


def _is_html(response: aiohttp.ClientResponse, body: bytes) -> bool:
    return "html" in response.headers.get("content-type", "") or body.lstrip()[:1] == b"<"


def _error_message(provider: str, response: aiohttp.ClientResponse, body: bytes) -> str:
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
            )
        return self._session

    async def post(self, path: str, payload: dict[str, Any]) -> aiohttp.ClientResponse:
        """Send and return the response with its body unread; raise on an error status.
        A connection that cannot be made is retried ``max_retries`` times: nothing was
        sent yet, so no request can run twice."""
        body = orjson.dumps(payload)
        url = self.base_url + path
        for attempt in range(self.config.max_retries + 1):
            try:
                response = await self.session.post(url, data=body)
                break
            except aiohttp.ClientConnectorError as exc:
                if attempt == self.config.max_retries:
                    raise UpstreamError(f"provider '{self.name}' is unreachable: {type(exc).__name__}") from None
                log.warning(
                    "provider %r unreachable (%s); retry %d of %d",
                    self.name,
                    type(exc).__name__,
                    attempt + 1,
                    self.config.max_retries,
                )
                await asyncio.sleep(min(0.25 * 2**attempt, 2.0))
            except TimeoutError:
                raise UpstreamError(f"provider '{self.name}' timed out", status=504) from None
            except aiohttp.ClientError as exc:
                raise UpstreamError(f"provider '{self.name}' is unreachable: {type(exc).__name__}") from None
        if response.status >= 400:
            try:
                raw = await response.read()
            except (aiohttp.ClientError, TimeoutError):
                raw = b""
            finally:
                response.close()
            status = response.status if response.status < 500 else 502
            raise UpstreamError(_error_message(self.name, response, raw), status=status)
        return response

    async def read_json(self, response: aiohttp.ClientResponse) -> dict[str, Any]:
        try:
            body = await response.read()
        except TimeoutError:
            raise UpstreamError(f"provider '{self.name}' timed out", status=504) from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"provider '{self.name}' broke off: {type(exc).__name__}") from None
        finally:
            response.release()
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            if _is_html(response, body):
                raise UpstreamError(_error_message(self.name, response, body)) from None
            raise UpstreamError(f"provider '{self.name}' answered with a body that is not JSON") from None
        if not isinstance(parsed, dict):
            raise UpstreamError(f"provider '{self.name}' answered with JSON that is not an object")
        return parsed

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
