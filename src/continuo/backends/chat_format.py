"""The Chat Completions format, for every backend that speaks it (an OpenAI-compatible
server, and the embedded llama.cpp): Responses items and tools in its shapes, the table of
parameter names, and its answers (chunks, whole completions, usage) turned into deltas.

One assistant turn in Responses is several items (reasoning, message, function calls);
in Chat Completions it is one assistant message with ``reasoning_content``, ``content``
and ``tool_calls``. Developer messages become system messages, which every
OpenAI-compatible server accepts.

Answers are read defensively: an upstream may send anything, so every field is
type-checked and a shape that cannot be read raises ``Malformed`` (the backend names the
provider in the ``UpstreamError`` it becomes).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from continuo.backends.base import Delta, Finish, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from continuo.backends.tools import flatten

# Responses parameter -> (Chat Completions name, llama.cpp name); None where there is none.
# A Responses upstream takes every one of them under its own (Responses) name.
PARAMS: dict[str, tuple[str | None, str | None]] = {
    "temperature": ("temperature", "temperature"),
    "top_p": ("top_p", "top_p"),
    "max_output_tokens": ("max_tokens", "max_tokens"),
    "seed": ("seed", "seed"),
    "stop": ("stop", "stop"),
    "top_k": ("top_k", "top_k"),
    "repetition_penalty": ("repetition_penalty", "repeat_penalty"),
    "presence_penalty": ("presence_penalty", "presence_penalty"),
    "frequency_penalty": ("frequency_penalty", "frequency_penalty"),
    "user": ("user", None),
    "prompt_cache_key": ("prompt_cache_key", None),
    "reasoning_effort": ("reasoning_effort", None),
}
CHAT = 0
LLAMA_CPP = 1


def params_for(params: dict[str, Any], dialect: int) -> dict[str, Any]:
    """``ModelRequest.params`` under the names of a dialect (``CHAT`` or ``LLAMA_CPP``)."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        names = PARAMS.get(name)
        if names is not None and (target := names[dialect]) is not None and value is not None:
            out[target] = value
    return out


# -- the request -------------------------------------------------------------------------


def _texts(parts: Any, *keys: str) -> list[str]:
    if isinstance(parts, str):
        return [parts]
    out = []
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, dict):
            continue
        for key in keys:
            value = part.get(key)
            if isinstance(value, str):
                out.append(value)
                break
    return out


def _user_content(parts: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if isinstance(parts, str):
        return parts
    if all(p.get("type") == "input_text" for p in parts):
        texts = _texts(parts, "text")
        if len(texts) == 1:
            return texts[0]
    converted: list[dict[str, Any]] = []
    for part in parts:
        kind = part.get("type")
        if kind in ("input_text", "output_text"):
            converted.append({"type": "text", "text": part["text"]})
        elif kind == "input_image":
            image: dict[str, Any] = {"url": part["image_url"]}
            if part.get("detail") not in (None, "auto"):  # auto: the default, left unsaid
                image["detail"] = part["detail"]
            converted.append({"type": "image_url", "image_url": image})
        elif kind == "input_file":
            file = {k: part[k] for k in ("file_data", "file_id", "filename") if part.get(k) is not None}
            if part.get("file_url") and "file_data" not in file:
                file["file_data"] = part["file_url"]
            converted.append({"type": "file", "file": file})
    return converted


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    return "\n".join(_texts(output, "text"))


def to_messages(instructions: str | None, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validated Responses items (see ``core.items``) as Chat Completions messages."""
    messages: list[dict[str, Any]] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
    pending: dict[str, Any] | None = None

    def flush() -> None:
        nonlocal pending
        if pending is not None:
            if pending["content"] is None and not pending.get("tool_calls"):
                pending["content"] = ""
            messages.append(pending)
            pending = None

    def assistant(*, fresh_if_spoken: bool) -> dict[str, Any]:
        nonlocal pending
        if pending is not None and fresh_if_spoken and (pending["content"] is not None or pending.get("tool_calls")):
            flush()
        if pending is None:
            pending = {"role": "assistant", "content": None}
        return pending

    for item in items:
        kind = item.get("type")
        if kind == "message":
            content = item["content"]
            if item["role"] == "assistant":
                turn = assistant(fresh_if_spoken=True)
                turn["content"] = "".join(_texts(content, "text", "refusal"))
            else:
                flush()
                if item["role"] in ("system", "developer"):
                    messages.append({"role": "system", "content": "\n\n".join(_texts(content, "text"))})
                else:
                    messages.append({"role": "user", "content": _user_content(content)})
        elif kind in ("function_call", "custom_tool_call"):
            turn = assistant(fresh_if_spoken=False)
            arguments = item["arguments"] if kind == "function_call" else item["input"]
            turn.setdefault("tool_calls", []).append(
                {"id": item["call_id"], "type": "function", "function": {"name": item["name"], "arguments": arguments}}
            )
        elif kind in ("function_call_output", "custom_tool_call_output"):
            flush()
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": _output_text(item["output"])})
        elif kind == "reasoning":
            text = "".join(_texts(item.get("content"), "text")) or "\n".join(_texts(item.get("summary"), "text"))
            if text:
                turn = assistant(fresh_if_spoken=True)
                turn["reasoning_content"] = turn.get("reasoning_content", "") + text
    flush()
    return messages


def to_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Function tools, with namespaces flattened; hosted tools are left out."""
    return [{"type": "function", "function": spec} for spec, _ in flatten(tools) if spec is not None]


def to_tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice["name"]}}
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools" and choice.get("mode") == "required":
        return "required"
    return "auto"


def to_response_format(fmt: dict[str, Any] | None) -> dict[str, Any] | None:
    if not fmt or fmt["type"] == "text":
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    schema: dict[str, Any] = {"name": fmt["name"], "schema": fmt["schema"]}
    if fmt.get("strict") is not None:
        schema["strict"] = fmt["strict"]
    if fmt.get("description"):
        schema["description"] = fmt["description"]
    return {"type": "json_schema", "json_schema": schema}


# -- the answer --------------------------------------------------------------------------


class Malformed(Exception):
    """An answer whose shape cannot be read; the message says what was wrong."""


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Malformed(f"{what} is not an object")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise Malformed(f"{what} is not an array")
    return value


def _string(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Malformed(f"{what} is not a string")
    return value


def _count(value: Any, what: str) -> int:
    if type(value) is int and value >= 0:  # (most of them)
        return value
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Malformed(f"{what} is not a token count")
    return value


# The names of the two counts and of their detail objects: Chat Completions', Responses'.
_CHAT_USAGE = ("prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details")
_RESPONSES_USAGE = ("input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details")


def parse_usage(raw: Any) -> Usage:
    """Token counts in either naming: Chat Completions (``prompt_tokens``, ...) or
    Responses (``input_tokens``, ...)."""
    usage = _object(raw, "usage")
    names = _RESPONSES_USAGE if "input_tokens" in usage or "output_tokens" in usage else _CHAT_USAGE
    into, out, into_details, out_details = names
    details_in = usage.get(into_details)
    details_out = usage.get(out_details)
    return Usage(
        input_tokens=_count(usage.get(into), "usage." + into),
        output_tokens=_count(usage.get(out), "usage." + out),
        cached_tokens=_count(
            None if details_in is None else _object(details_in, into_details).get("cached_tokens"), "cached_tokens"
        ),
        reasoning_tokens=_count(
            None if details_out is None else _object(details_out, out_details).get("reasoning_tokens"),
            "reasoning_tokens",
        ),
    )


def _reasoning(message: dict[str, Any]) -> str | None:
    value = message.get("reasoning_content")
    if value is None:
        value = message.get("reasoning")
    # Some servers send reasoning as an object (with its own details): only text is kept.
    return value if isinstance(value, str) else None


def _call(call: Any, index: int, what: str) -> ToolCallDelta:
    call = _object(call, what)
    function = _object(call.get("function"), f"{what}.function")
    position = call.get("index", index)
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < 1024:
        raise Malformed(f"{what}.index is not a small integer")
    arguments = function.get("arguments")
    if isinstance(arguments, dict):  # some servers send the object itself
        arguments = orjson.dumps(arguments).decode()
    return ToolCallDelta(
        index=position,
        call_id=_string(call.get("id"), f"{what}.id"),
        name=_string(function.get("name"), f"{what}.function.name"),
        arguments=_string(arguments, f"{what}.function.arguments") or "",
    )


def _finish(value: Any) -> Finish | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Malformed("finish_reason is not a string")
    return Finish(value) if value else None


_PLAIN_DELTA = frozenset(("content", "role"))


def plain_text(chunk: dict[str, Any]) -> str | None:
    """The text of a chunk that carries nothing but text (most of a stream), or None when
    it carries anything else and ``chunk_deltas`` must read it. A few dictionary lookups
    instead of the general reading, which was a tenth of a stream's own work."""
    if "error" in chunk or chunk.get("usage"):
        return None
    choices = chunk.get("choices")
    if type(choices) is not list or len(choices) != 1:
        return None
    choice = choices[0]
    if type(choice) is not dict or choice.get("finish_reason") is not None:
        return None
    delta = choice.get("delta")
    if type(delta) is not dict or not delta.keys() <= _PLAIN_DELTA:
        return None
    content = delta.get("content")
    if content is None:
        return ""
    return content if type(content) is str else None


def chunk_deltas(chunk: dict[str, Any]) -> Iterator[Delta]:
    """The deltas in one streamed ``chat.completion.chunk``."""
    for choice in _list(chunk.get("choices"), "choices"):
        choice = _object(choice, "choices[0]")
        delta = _object(choice.get("delta"), "choices[0].delta")
        if reasoning := _reasoning(delta):
            yield ReasoningDelta(reasoning)
        if content := _string(delta.get("content"), "choices[0].delta.content"):
            yield TextDelta(content)
        for call in _list(delta.get("tool_calls"), "choices[0].delta.tool_calls"):
            yield _call(call, 0, "choices[0].delta.tool_calls[]")
        if (finish := _finish(choice.get("finish_reason"))) is not None:
            yield finish
        break  # n is always 1
    if chunk.get("usage"):
        yield parse_usage(chunk["usage"])


def completion_deltas(body: dict[str, Any]) -> list[Delta]:
    """The deltas of a whole (non-streamed) ``chat.completion``."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise Malformed("the answer has no choices")
    choice = _object(choices[0], "choices[0]")
    message = _object(choice.get("message"), "choices[0].message")
    deltas: list[Delta] = []
    if reasoning := _reasoning(message):
        deltas.append(ReasoningDelta(reasoning))
    if content := _string(message.get("content"), "choices[0].message.content"):
        deltas.append(TextDelta(content))
    for index, call in enumerate(_list(message.get("tool_calls"), "choices[0].message.tool_calls")):
        delta = _call(call, index, f"choices[0].message.tool_calls[{index}]")
        if not delta.name:
            raise Malformed(f"choices[0].message.tool_calls[{index}] has no function name")
        delta.index = index
        deltas.append(delta)
    deltas.append(_finish(choice.get("finish_reason")) or Finish("stop"))
    if body.get("usage"):
        deltas.append(parse_usage(body["usage"]))
    return deltas
