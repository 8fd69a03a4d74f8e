"""Responses items and tools in Chat Completions' shapes.

One assistant turn in Responses is several items (reasoning, message, function calls);
in Chat Completions it is one assistant message with ``reasoning_content``, ``content``
and ``tool_calls``. Developer messages become system messages, which every
OpenAI-compatible server accepts.
"""

from __future__ import annotations

from typing import Any

from continuo.backends.tools import flatten


def _texts(parts: list[dict[str, Any]], *keys: str) -> list[str]:
    out = []
    for part in parts:
        for key in keys:
            value = part.get(key)
            if isinstance(value, str):
                out.append(value)
                break
    return out


def _user_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
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
            text = "".join(_texts(item.get("content") or [], "text")) or "\n".join(
                _texts(item.get("summary") or [], "text")
            )
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
