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

from continuo.config import SecurityConfig
from continuo.errors import InvalidRequest


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class Fetcher:
    def __init__(self, config: SecurityConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.fetch_timeout))
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
        if not infos or not all(_public(str(info[4][0])) for info in infos):
            raise InvalidRequest(
                f"Cannot fetch '{url[:200]}': it points to a private, loopback or link-local address.",
                param=param,
                code="url_not_allowed",
            )

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


def _remote(part: Any) -> bool:
    if not isinstance(part, dict):
        return False
    url = part.get("image_url") if part.get("type") == "input_image" else part.get("file_url")
    return part.get("type") in ("input_image", "input_file") and isinstance(url, str) and url.startswith("http")
