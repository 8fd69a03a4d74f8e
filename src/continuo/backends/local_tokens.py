"""Exact token counts for the embedded model: its own chat template and tokenizer.

xllamacpp embeds llama.cpp's HTTP server (loopback, a random port, locked with a key only
the backend knows). Its ``/apply-template`` renders the chat messages exactly as a chat
completion would, and ``/tokenize`` (with the special tokens a prompt gets) counts them,
so a count equals the ``prompt_tokens`` the same request reports. Neither route takes the
model's generation slot: counting never waits behind a generation.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from continuo.backends.base import UpstreamError


class LocalTokenizer:
    def __init__(self, key: str) -> None:
        self.key = key
        self._session: aiohttp.ClientSession | None = None

    async def _post(self, address: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"authorization": f"Bearer {self.key}"}, timeout=aiohttp.ClientTimeout(total=60)
            )
        url = (address if address.startswith("http") else f"http://{address}") + path
        try:
            try:
                return await self._send(self._session, url, body)
            except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
                # llama.cpp's server closes a kept-alive connection after a few seconds idle
                # (or a few requests), and a request sent on it just then is reset. Both
                # routes change nothing: the request is sent once more.
                return await self._send(self._session, url, body)
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"local model could not count tokens: {type(exc).__name__}") from None

    @staticmethod
    async def _send(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
        async with session.post(url, json=body) as response:
            result = await response.json(content_type=None)
            if response.status >= 400 or not isinstance(result, dict):
                raise UpstreamError(f"local model could not count tokens: {result}", status=502)
            return result

    async def count(self, address: str, messages: list[dict[str, Any]]) -> int:
        """Tokens of the prompt a chat completion of ``messages`` would be given."""
        rendered = await self._post(address, "/apply-template", {"messages": messages})
        tokens = await self._post(address, "/tokenize", {"content": rendered["prompt"], "add_special": True})
        return len(tokens["tokens"])

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
