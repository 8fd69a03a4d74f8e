"""What every HTTP provider shares: one connection pool, the key from the environment,
and upstream failures mapped to ``UpstreamError`` with a message that names the provider."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from continuo.backends.base import Delta, UpstreamError
from continuo.config import ProviderConfig


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


class SSEStream:
    """An upstream's Server-Sent Events, each data parsed as JSON. httpx failures become
    an ``UpstreamError`` naming the provider, and the response is closed on every way out
    (so an upstream still streaming sees the disconnect)."""

    def __init__(self, provider: str, response: httpx.Response) -> None:
        self.provider = provider
        self.response = response

    async def events(self) -> AsyncIterator[tuple[str | None, Any]]:
        try:
            async for name, data in sse_events(self.response.aiter_lines()):
                if data == "[DONE]":
                    return
                try:
                    yield name, orjson.loads(data)
                except orjson.JSONDecodeError:
                    raise UpstreamError(f"provider '{self.provider}' sent a malformed stream event") from None
        except httpx.TimeoutException:
            raise UpstreamError(f"provider '{self.provider}' timed out", status=504) from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"provider '{self.provider}' broke off the stream: {exc}") from None
        finally:
            await self.response.aclose()

    async def aclose(self) -> None:
        await self.response.aclose()


class DeltaList:
    """A model call that is already over: its deltas, replayed."""

    def __init__(self, deltas: list[Delta]) -> None:
        self.deltas = deltas

    async def __aiter__(self) -> AsyncIterator[Delta]:
        for delta in self.deltas:
            yield delta

    async def aclose(self) -> None:
        return None


def _is_html(response: httpx.Response, body: bytes) -> bool:
    return "html" in response.headers.get("content-type", "") or body.lstrip()[:1] == b"<"


def _error_message(provider: str, response: httpx.Response, body: bytes) -> str:
    status = response.status_code
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
        headers = {"content-type": "application/json", **config.headers}
        if key := config.api_key:
            headers["authorization"] = f"Bearer {key}"
        self.client = httpx.AsyncClient(
            base_url=config.base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
            transport=httpx.AsyncHTTPTransport(retries=config.max_retries),
        )

    async def post(self, path: str, payload: dict[str, Any]) -> httpx.Response:
        """Send and return the response with its body unread; raise on an error status."""
        request = self.client.build_request("POST", path, content=orjson.dumps(payload))
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TimeoutException:
            raise UpstreamError(f"provider '{self.name}' timed out", status=504) from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"provider '{self.name}' is unreachable: {type(exc).__name__}") from None
        if response.status_code >= 400:
            try:
                body = await response.aread()
            except httpx.HTTPError:
                body = b""
            finally:
                await response.aclose()
            status = response.status_code if response.status_code < 500 else 502
            raise UpstreamError(_error_message(self.name, response, body), status=status)
        return response

    async def read_json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = await response.aread()
        except httpx.TimeoutException:
            raise UpstreamError(f"provider '{self.name}' timed out", status=504) from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"provider '{self.name}' broke off: {type(exc).__name__}") from None
        finally:
            await response.aclose()
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
        await self.client.aclose()
