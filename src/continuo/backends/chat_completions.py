"""Any OpenAI-compatible Chat Completions server (vLLM, llama.cpp, Ollama, a cloud API)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from continuo.backends import chat_messages as cm
from continuo.backends.base import (
    Delta,
    Finish,
    ModelRequest,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    UpstreamError,
    Usage,
)
from continuo.backends.http import DeltaList, HTTPProvider, SSEStream

# Responses parameter name -> Chat Completions parameter name.
PARAMS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "max_output_tokens": "max_tokens",
    "seed": "seed",
    "stop": "stop",
    "top_k": "top_k",
    "repetition_penalty": "repetition_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "user": "user",
    "prompt_cache_key": "prompt_cache_key",
    "reasoning_effort": "reasoning_effort",
}


def _usage(raw: dict[str, Any]) -> Usage:
    prompt = raw.get("prompt_tokens_details") or {}
    completion = raw.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=raw.get("prompt_tokens") or 0,
        output_tokens=raw.get("completion_tokens") or 0,
        cached_tokens=prompt.get("cached_tokens") or 0,
        reasoning_tokens=completion.get("reasoning_tokens") or 0,
    )


def _reasoning(message: dict[str, Any]) -> str | None:
    value = message.get("reasoning_content")
    if value is None:
        value = message.get("reasoning")
    return value if isinstance(value, str) else None


def chunk_deltas(chunk: dict[str, Any]) -> Iterator[Delta]:
    """The deltas in one streamed ``chat.completion.chunk``."""
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if reasoning := _reasoning(delta):
            yield ReasoningDelta(reasoning)
        if content := delta.get("content"):
            yield TextDelta(content)
        for call in delta.get("tool_calls") or ():
            function = call.get("function") or {}
            yield ToolCallDelta(
                index=call.get("index", 0),
                call_id=call.get("id"),
                name=function.get("name"),
                arguments=function.get("arguments") or "",
            )
        if reason := choice.get("finish_reason"):
            yield Finish(reason)
        break  # n is always 1
    if usage := chunk.get("usage"):
        yield _usage(usage)


def completion_deltas(body: dict[str, Any]) -> list[Delta]:
    """The deltas of a whole (non-streamed) ``chat.completion``."""
    deltas: list[Delta] = []
    choices = body.get("choices") or []
    if choices:
        choice = choices[0]
        message = choice.get("message") or {}
        if reasoning := _reasoning(message):
            deltas.append(ReasoningDelta(reasoning))
        if content := message.get("content"):
            deltas.append(TextDelta(content))
        for index, call in enumerate(message.get("tool_calls") or ()):
            function = call.get("function") or {}
            deltas.append(ToolCallDelta(index, call.get("id"), function.get("name"), function.get("arguments") or ""))
        deltas.append(Finish(choice.get("finish_reason") or "stop"))
    if usage := body.get("usage"):
        deltas.append(_usage(usage))
    return deltas


class _ChunkStream(SSEStream):
    async def __aiter__(self) -> AsyncIterator[Delta]:
        finished = False
        async for _name, chunk in self.events():
            if isinstance(chunk, dict) and "error" in chunk:
                error = chunk["error"]
                message = error.get("message") if isinstance(error, dict) else str(error)
                raise UpstreamError(f"provider '{self.provider}' failed: {message}")
            for delta in chunk_deltas(chunk):
                finished = finished or isinstance(delta, Finish)
                yield delta
        if not finished:
            raise UpstreamError(f"provider '{self.provider}' ended the stream before finishing")


class ChatCompletionsBackend(HTTPProvider):
    def payload(self, request: ModelRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": cm.to_messages(request.instructions, request.items),
        }
        tools = cm.to_tools(request.tools)
        if tools and request.tool_choice != "none":
            body["tools"] = tools
            body["tool_choice"] = cm.to_tool_choice(request.tool_choice)
            if "parallel_tool_calls" in request.params:
                body["parallel_tool_calls"] = request.params["parallel_tool_calls"]
        if (fmt := cm.to_response_format(request.text_format)) is not None:
            body["response_format"] = fmt
        for name, value in request.params.items():
            if (target := PARAMS.get(name)) is not None:
                body[target] = value
        if request.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        for name in self.config.drop_params:
            body.pop(name, None)
        return body

    async def open(self, request: ModelRequest) -> _ChunkStream | DeltaList:
        response = await self.post("/chat/completions", self.payload(request))
        if request.stream:
            return _ChunkStream(self.name, response)
        body = await self.read_json(response)
        return DeltaList(completion_deltas(body))
