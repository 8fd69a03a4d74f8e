"""What the embedded local model is sent: chat messages for its own chat template, the
tools described in the system message, and an LLGuidance grammar that enforces structured
outputs and function calls.

SmolLM2's chat template knows nothing of tools, so llama.cpp's own tool-call support does
not apply: tools are described in the system message, a call is the text
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, and the grammar allows either
plain text (which then cannot start with ``<``) or one such call whose arguments match the
function's ``parameters``. Past calls in the history are rendered the same way, and their
outputs as ``tool`` messages. Items become chat messages through the shared converter
(``chat_format.to_messages``); ``for_template`` then renders what this template cannot
take (tool calls, image parts, reasoning) as text or refuses it.
"""

from __future__ import annotations

import json
from typing import Any

from continuo.backends import chat_format as cf
from continuo.backends.base import ModelRequest, UpstreamError

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"

# Compact, deterministic JSON; unsupported schema keywords are ignored rather than making
# llama.cpp drop the whole grammar (it logs a compile error and samples unconstrained).
_GUIDANCE = {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", ", "lenient": True}

_TOOL_PROMPT = (
    "You can call the following functions. To call one, reply with only "
    '<tool_call>{"name": <function name>, "arguments": <JSON object>}</tool_call>. '
    "{mode}\n\nFunctions:\n{functions}"
)
_MODE_AUTO = "If no function is needed, reply in plain text instead."
_MODE_REQUIRED = "You must call a function now."

# -- request conversion ---------------------------------------------------------------------


def _call_text(name: str, arguments: str) -> str:
    try:
        args: Any = json.loads(arguments) if arguments else {}
    except ValueError:
        args = arguments
    return CALL_OPEN + json.dumps({"name": name, "arguments": args}) + CALL_CLOSE


def _text_only(content: Any) -> str:
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for part in content:
        if part.get("type") != "text":
            raise UpstreamError(f"the local model accepts text only, not {part.get('type')!r} content", status=400)
        texts.append(part.get("text") or "")
    return "\n".join(texts)


def for_template(messages: list[dict[str, Any]], tool_prompt: str | None) -> list[dict[str, Any]]:
    """Chat messages as this model's template takes them: the leading system messages
    (instructions, developer messages) and the tool prompt merged into one; tool calls
    rendered as text, parallel calls in one assistant turn; earlier reasoning left out
    (this model does not reason); text content only."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    leading = True
    for message in messages:
        role = message["role"]
        if role == "system" and leading:
            system.append(message["content"])
            continue
        leading = False
        if role == "assistant":
            text = message.get("content") or ""
            calls = [
                _call_text(c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls") or ()
            ]
            if text or not (calls or message.get("reasoning_content")):
                out.append({"role": "assistant", "content": text})
            if calls:
                out.append({"role": "assistant", "content": "\n".join(calls)})
        elif role == "user":
            out.append({"role": "user", "content": _text_only(message["content"])})
        else:  # tool outputs, and system messages after the conversation began
            out.append(message)
    if tool_prompt:
        system.append(tool_prompt)
    if system:
        out.insert(0, {"role": "system", "content": "\n\n".join(system)})
    return out


def to_messages(instructions: str | None, items: list[dict[str, Any]], tool_prompt: str | None) -> list[dict[str, Any]]:
    """Responses items as chat messages for the model's own chat template."""
    for item in items:
        if item.get("type") not in ("message", "function_call", "function_call_output", "reasoning"):
            raise UpstreamError(f"the local model does not support {item.get('type')!r} input items", status=400)
    return for_template(cf.to_messages(instructions, items), tool_prompt)


def function_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Function tools, namespaces flattened; other tool types are not offered to the model."""
    out: list[dict[str, Any]] = []
    for tool in tools:
        if tool.get("type") == "function":
            out.append(tool)
        elif tool.get("type") == "namespace":
            out.extend(t for t in tool.get("tools", ()) if t.get("type", "function") == "function")
    return out


def select_tools(tools: list[dict[str, Any]], choice: Any) -> tuple[list[dict[str, Any]], bool]:
    """The functions the model may call and whether it must call one."""
    if not tools or choice == "none":
        return [], False
    if choice is None or choice == "auto":
        return tools, False
    if choice == "required":
        return tools, True
    if isinstance(choice, dict):
        by_name = {t["name"]: t for t in tools}
        if choice.get("type") == "function":
            name = choice.get("name")
            if name not in by_name:
                raise UpstreamError(f"tool_choice names unknown function {name!r}", status=400)
            return [by_name[name]], True
        if choice.get("type") == "allowed_tools":
            allowed = [by_name[t["name"]] for t in choice.get("tools", ()) if t.get("name") in by_name]
            if not allowed:
                raise UpstreamError("tool_choice allows none of the offered functions", status=400)
            return allowed, choice.get("mode") == "required"
    raise UpstreamError(f"unsupported tool_choice {choice!r}", status=400)


def _lark_string(text: str) -> str:
    return json.dumps(text)


def _json_rule(schema: dict[str, Any]) -> str:
    schema = dict(schema)
    schema["x-guidance"] = {**_GUIDANCE, **(schema.get("x-guidance") or {})}
    return "%json " + json.dumps(schema)


def _parameters(tool: dict[str, Any]) -> dict[str, Any]:
    params = tool.get("parameters")
    return params if isinstance(params, dict) and params else {"type": "object", "properties": {}}


def _text_rule(text_format: dict[str, Any] | None) -> str | None:
    if not text_format or text_format.get("type") in (None, "text"):
        return None
    if text_format["type"] == "json_object":
        return _json_rule({"type": "object"})
    if text_format["type"] == "json_schema":
        schema = text_format.get("schema")
        if not isinstance(schema, dict):
            raise UpstreamError("text.format json_schema needs a schema object", status=400)
        return _json_rule(schema)
    raise UpstreamError(f"unsupported text format {text_format['type']!r}", status=400)


def build_grammar(text_format: dict[str, Any] | None, tools: list[dict[str, Any]], required: bool) -> str | None:
    """An LLGuidance (Lark) grammar for the output, or None when it is free text."""
    text = _text_rule(text_format)
    if not tools:
        return None if text is None else f"%llguidance {{}}\nstart: {text}\n"
    lines = ["%llguidance {}"]
    calls = []
    for i, tool in enumerate(tools):
        head = CALL_OPEN + '{"name": ' + json.dumps(tool["name"]) + ', "arguments": '
        lines.append(f"call{i}: {_lark_string(head)} args{i} {_lark_string('}' + CALL_CLOSE)}")
        lines.append(f"args{i}: {_json_rule(_parameters(tool))}")
        calls.append(f"call{i}")
    options = list(calls)
    if not required:
        if text is None:
            lines.append(r"TEXT: /[^<](.|\n)*/")
            options.append("TEXT")
        else:
            lines.append(f"text: {text}")
            options.append("text")
    lines.insert(1, "start: " + " | ".join(options))
    return "\n".join(lines) + "\n"


def tool_prompt(tools: list[dict[str, Any]], required: bool) -> str:
    functions = []
    for tool in tools:
        fn: dict[str, Any] = {"name": tool["name"]}
        if tool.get("description"):
            fn["description"] = tool["description"]
        fn["parameters"] = _parameters(tool)
        functions.append(json.dumps(fn))
    mode = _MODE_REQUIRED if required else _MODE_AUTO
    return _TOOL_PROMPT.replace("{mode}", mode).replace("{functions}", "\n".join(functions))


def parse_call(text: str, tools: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(name, arguments JSON) of a complete, well-formed call to an offered tool."""
    text = text.strip()
    if not (text.startswith(CALL_OPEN) and text.endswith(CALL_CLOSE)):
        return None
    try:
        call = json.loads(text[len(CALL_OPEN) : -len(CALL_CLOSE)])
    except ValueError:
        return None
    if not isinstance(call, dict) or set(call) != {"name", "arguments"}:
        return None
    if call["name"] not in {t["name"] for t in tools} or not isinstance(call["arguments"], dict):
        return None
    return call["name"], json.dumps(call["arguments"])


def build_payload(request: ModelRequest) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
    """The llama.cpp chat request, the callable tools, and whether a call is required."""
    tools, required = select_tools(function_tools(request.tools), request.tool_choice)
    prompt = tool_prompt(tools, required) if tools else None
    body: dict[str, Any] = {
        "messages": to_messages(request.instructions, request.items, prompt),
        "stream": True,
        "stream_options": {"include_usage": True},
        "cache_prompt": True,
    }
    grammar = build_grammar(request.text_format, tools, required)
    if grammar is not None:
        body["grammar"] = grammar
    body.update(cf.params_for(request.params, cf.LLAMA_CPP))
    return body, tools, required
