"""Exact token counts from a Chat Completions server that offers a tokenize route.

Two shapes are known, both at the server's root (beside ``/v1``):

* vLLM: ``POST /tokenize`` with ``messages`` (and ``tools``), the chat template applied
  with the generation prompt; answers ``count`` and ``max_model_len``.
* llama.cpp's server: ``POST /apply-template`` renders the messages, then
  ``POST /tokenize`` with ``content`` and ``add_special`` counts the prompt.

The first count finds out which one the server speaks (or that it has none) and the
answer is remembered for the backend's life: a server without either is never asked
again, and its counts are estimates (core's job, not this module's).
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import orjson

log = logging.getLogger("continuo")

VLLM = "vllm"
LLAMA_CPP = "llama.cpp"
NONE = "none"


def server_root(base_url: str) -> str:
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


class TokenizeRoute:
    def __init__(self, root: str) -> None:
        self.root = root
        self.kind: str | None = None  # found on first use
        self.max_model_len: int | None = None

    async def _post(self, session: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The JSON object answered, or None for any failure (the route is not there)."""
        try:
            async with session.post(self.root + path, data=orjson.dumps(body)) as response:
                if response.status >= 400:
                    return None
                parsed = orjson.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
            return None
        return parsed if isinstance(parsed, dict) else None

    async def _vllm(
        self, session: aiohttp.ClientSession, model: str, messages: list[dict[str, Any]], tools: Any
    ) -> int | None:
        body: dict[str, Any] = {"model": model, "messages": messages, "add_generation_prompt": True}
        if tools:
            body["tools"] = tools
        answer = await self._post(session, "/tokenize", body)
        if answer is None or not isinstance(answer.get("count"), int):
            return None
        if isinstance(answer.get("max_model_len"), int):
            self.max_model_len = answer["max_model_len"]
        count: int = answer["count"]
        return count

    async def _llama_cpp(
        self, session: aiohttp.ClientSession, messages: list[dict[str, Any]], tools: Any
    ) -> int | None:
        body: dict[str, Any] = {"messages": messages}
        if tools:
            body["tools"] = tools
        rendered = await self._post(session, "/apply-template", body)
        if rendered is None or not isinstance(rendered.get("prompt"), str):
            return None
        tokens = await self._post(session, "/tokenize", {"content": rendered["prompt"], "add_special": True})
        if tokens is None or not isinstance(tokens.get("tokens"), list):
            return None
        return len(tokens["tokens"])

    async def count(
        self, session: aiohttp.ClientSession, model: str, messages: list[dict[str, Any]], tools: Any
    ) -> int | None:
        """The prompt's tokens, or None when the server has no tokenize route."""
        if self.kind == NONE:
            return None
        if self.kind in (None, VLLM):
            counted = await self._vllm(session, model, messages, tools)
            if counted is not None:
                self.kind = VLLM
                return counted
            if self.kind == VLLM:
                return None  # it answered before: a passing failure, not a missing route
        counted = await self._llama_cpp(session, messages, tools)
        if counted is not None:
            self.kind = LLAMA_CPP
            return counted
        if self.kind is None:
            self.kind = NONE
            log.info("%s has no tokenize route: token counts for it are estimates", self.root)
        return None
