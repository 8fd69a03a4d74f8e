"""Input token counts: exact where the backend can count, an estimate otherwise.

A backend that can count (``count_tokens``: the embedded model's own tokenizer, a Chat
Completions server with a tokenize route) gives the exact count of the prompt its model
would receive. Every other one (a Responses upstream, a Chat Completions server without a
tokenize route) gets an estimate with OpenAI's ``o200k_base`` encoding (``bpe-openai``
ships its ranks in the wheel, so nothing is downloaded at run time), counted the way
OpenAI documents for chat messages: the text of each item, a few tokens per item, the
tool definitions as JSON.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import orjson

from continuo.backends.base import ModelRequest
from continuo.core.routing import Route

PER_ITEM = 3  # role and separators around each message
PRIMING = 3  # the assistant turn the prompt ends with
PER_IMAGE = 85  # an image counted as OpenAI's low-detail tile; files by their text only

_encoding: Any = None
_lock = threading.Lock()


def _encoder() -> Any:
    global _encoding
    with _lock:
        if _encoding is None:
            import bpe_openai

            _encoding = bpe_openai.get_encoding("o200k_base")
        return _encoding


async def load_estimator() -> None:
    """Load the encoding now, off the event loop (it takes a few seconds)."""
    await asyncio.to_thread(_encoder)


def _text_tokens(text: str) -> int:
    return len(_encoder().encode_ordinary(text)) if text else 0


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return _text_tokens(content)
    total = 0
    for part in content or ():
        if not isinstance(part, dict):
            continue
        if part.get("type") == "input_image":
            total += PER_IMAGE
            continue
        for key in ("text", "refusal"):
            if isinstance(part.get(key), str):
                total += _text_tokens(part[key])
    return total


def item_tokens(item: dict[str, Any]) -> int:
    """An estimate of one input item's share of a prompt."""
    kind = item.get("type")
    if kind == "message":
        return PER_ITEM + _content_tokens(item.get("content"))
    if kind in ("function_call", "custom_tool_call"):
        body = item.get("arguments") if kind == "function_call" else item.get("input")
        return PER_ITEM + _text_tokens(str(item.get("name", ""))) + _text_tokens(str(body or ""))
    if kind in ("function_call_output", "custom_tool_call_output"):
        return PER_ITEM + _content_tokens(item.get("output"))
    if kind == "reasoning":
        return _content_tokens(item.get("summary")) + _content_tokens(item.get("content"))
    return PER_ITEM + _text_tokens(orjson.dumps(item).decode())


def estimate(request: ModelRequest) -> int:
    total = PRIMING
    if request.instructions:
        total += PER_ITEM + _text_tokens(request.instructions)
    total += sum(item_tokens(item) for item in request.items)
    if request.tools:
        total += _text_tokens(orjson.dumps(request.tools).decode())
    return total


class TokenCounter:
    """Counts through the route's backend when it can, estimates otherwise."""

    async def count(self, route: Route, request: ModelRequest) -> int:
        counter = getattr(route.backend, "count_tokens", None)
        if counter is not None:
            counted = await counter(request)
            if counted is not None:
                return int(counted)
        return await asyncio.to_thread(estimate, request)

    async def item_weights(self, items: list[dict[str, Any]]) -> list[int]:
        """Each item's estimated share, to choose what to drop (then counted exactly)."""
        return await asyncio.to_thread(lambda: [item_tokens(item) for item in items])

    @staticmethod
    def window(route: Route) -> int | None:
        """The context window: configured for the model, else what the backend knows."""
        if route.context_window:
            return route.context_window
        known = getattr(route.backend, "context_window", None)
        return known if isinstance(known, int) and known > 0 else None
