"""Fetching remote content on a model's behalf, safely.

Only for providers that cannot fetch URLs themselves (``fetch_remote_content``): http(s)
images and files in the input are downloaded and sent inline as data URLs. Addresses on
loopback, link-local, private and other non-public ranges are refused unless the config
allows them, and every fetch is bounded in size and time.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from continuo.config import SecurityConfig
from continuo.errors import InvalidRequest

# IPv6 ranges that carry an IPv4 address in their last 32 bits: NAT64 (RFC 6052) and the
# deprecated IPv4-compatible form. 6to4 and IPv4-mapped addresses have their own accessors.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")
# Local-use NAT64 (RFC 8215): a translator of the operator's own, never public.
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


def _embedded(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if ip in _NAT64 or ip in _V4_COMPATIBLE:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def public(address: str) -> bool:
    """Whether an address is on the public internet, looking through the IPv6 forms that
    embed an IPv4 address (mapped, NAT64, 6to4, Teredo, IPv4-compatible): each embedded
    address must be public too."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL:
            return False
        embedded = _embedded(ip)
        if ip.ipv4_mapped is not None:
            return _global(embedded[0])
        if embedded and not all(_global(v4) for v4 in embedded):
            return False
    return _global(ip)


def _global(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not ip.is_multicast


class NotPublic(OSError):
    """A host that resolved to an address the guard refuses."""


class VettedResolver(AbstractResolver):
    """Resolves a host and hands aiohttp only addresses that passed the guard, so the
    address connected to is the address checked: a DNS answer that changes between a
    check and the connection (rebinding) cannot slip a private address in."""

    def __init__(self) -> None:
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not results or not all(public(result["host"]) for result in results):
            raise NotPublic(f"{host} resolves to a private, loopback or link-local address")
        return results

    async def close(self) -> None:
        await self._inner.close()


class Fetcher:
    def __init__(self, config: SecurityConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Without allow_private_urls every connection goes through the guard again, to
            # the exact addresses it vetted (an IP literal skips the resolver, but _check
            # has vetted it and it cannot change).
            connector = (
                None
                if self.config.allow_private_urls
                else aiohttp.TCPConnector(resolver=VettedResolver(), use_dns_cache=False)
            )
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.fetch_timeout), connector=connector
            )
        return self._session

    async def _check(self, url: str, param: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequest(f"Cannot fetch '{url[:200]}': only http(s) URLs are fetched.", param=param)
        if self.config.allow_private_urls:
            return
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
            )
        except OSError:
            raise InvalidRequest(f"Cannot fetch '{url[:200]}': the host does not resolve.", param=param) from None
        if not infos or not all(public(str(info[4][0])) for info in infos):
            raise _not_allowed(url, param)

    async def check_url(self, url: str, param: str) -> None:
        """Refuse a URL the server must not reach (also used for MCP servers)."""
        await self._check(url, param)

    async def fetch(self, url: str, param: str) -> tuple[bytes, str]:
        await self._check(url, param)
        limit = self.config.fetch_max_bytes
        try:
            async with self.session.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    raise InvalidRequest(f"Cannot fetch '{url[:200]}': it answered {response.status}.", param=param)
                chunks, size = [], 0
                async for chunk in response.content.iter_any():
                    size += len(chunk)
                    if size > limit:
                        raise InvalidRequest(f"Cannot fetch '{url[:200]}': larger than {limit} bytes.", param=param)
                    chunks.append(chunk)
                kind = response.headers.get("content-type", "application/octet-stream").split(";")[0].strip()
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, NotPublic):
                raise _not_allowed(url, param) from None
            raise InvalidRequest(f"Cannot fetch '{url[:200]}': {type(exc).__name__}.", param=param) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise InvalidRequest(f"Cannot fetch '{url[:200]}': {type(exc).__name__}.", param=param) from None
        return b"".join(chunks), kind

    async def _data_url(self, url: str, param: str) -> str:
        body, kind = await self.fetch(url, param)
        return f"data:{kind};base64,{base64.b64encode(body).decode()}"

    async def inline(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The items with remote images and files replaced by data URLs."""
        out = []
        for i, item in enumerate(items):
            content = item.get("content") if item.get("type") == "message" else None
            if isinstance(content, list) and any(_remote(part) for part in content):
                parts = []
                for j, part in enumerate(content):
                    if _remote(part) and part["type"] == "input_image":
                        url = await self._data_url(part["image_url"], f"input[{i}].content[{j}].image_url")
                        part = {**part, "image_url": url}
                    elif _remote(part):
                        url = await self._data_url(part["file_url"], f"input[{i}].content[{j}].file_url")
                        part = {k: v for k, v in part.items() if k != "file_url"} | {"file_data": url}
                    parts.append(part)
                item = {**item, "content": parts}
            out.append(item)
        return out

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _not_allowed(url: str, param: str) -> InvalidRequest:
    return InvalidRequest(
        f"Cannot fetch '{url[:200]}': it points to a private, loopback or link-local address.",
        param=param,
        code="url_not_allowed",
    )


def _remote(part: Any) -> bool:
    if not isinstance(part, dict):
        return False
    url = part.get("image_url") if part.get("type") == "input_image" else part.get("file_url")
    return (
        part.get("type") in ("input_image", "input_file")
        and isinstance(url, str)
        and url[:8].lower().startswith(("http://", "https://"))
    )
