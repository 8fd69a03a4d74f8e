"""Reading a Chat Completions stream chunk: the quick path for plain text chunks says
exactly what the general reading says, and steps aside for anything else."""

from __future__ import annotations

from typing import Any

import pytest

from continuo.backends import chat_format as cf
from continuo.backends.base import TextDelta


def chunk(delta: Any = None, finish: Any = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": {"content": "x"} if delta is None else delta, "finish_reason": finish}
    return {"id": "c", "object": "chat.completion.chunk", "choices": [choice], **extra}


PLAIN = [
    chunk({"content": "Hello"}),
    chunk({"role": "assistant", "content": ""}),
    chunk({"role": "assistant"}),
    chunk({"content": None}),
    chunk({}),
    chunk({"content": " wörld 🌍"}),
]
OTHER = [
    chunk({"content": "a"}, finish="stop"),
    chunk({"reasoning_content": "thinking"}),
    chunk({"content": "a", "reasoning": "r"}),
    chunk({"tool_calls": [{"index": 0, "id": "call", "function": {"name": "f", "arguments": ""}}]}),
    chunk({"content": "a"}, usage={"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}),
    chunk({"content": "a"}, error={"message": "boom"}),
    chunk({"content": 7}),
    chunk("not an object"),
    {"choices": []},
    {"choices": [chunk()["choices"][0], chunk()["choices"][0]]},
    {"choices": "no"},
]


@pytest.mark.parametrize("value", PLAIN)
def test_plain_text_chunks_read_as_the_general_reading_does(value):
    text = cf.plain_text(value)
    assert text is not None
    assert ([TextDelta(text)] if text else []) == list(cf.chunk_deltas(value))


@pytest.mark.parametrize("value", OTHER)
def test_anything_else_goes_to_the_general_reading(value):
    assert cf.plain_text(value) is None
