"""The body of ``POST /v1/responses``, validated into a ``CreateRequest``.

Unknown fields are tolerated (real clients send fields that are in neither spec); known
fields of the wrong type or out of range are a 400 naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from continuo.core import conversations
from continuo.core import validation as v
from continuo.core.items import normalize_input
from continuo.errors import InvalidRequest

EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
SUMMARIES = ("auto", "concise", "detailed")
TOOL_CHOICE_MODES = ("none", "auto", "required")
FORMAT_TYPES = ("text", "json_object", "json_schema")
TRUNCATIONS = ("auto", "disabled")
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# Checks one field of a body: ``check(body, name)``.
Check = Callable[[dict[str, Any], str], Any]


@dataclass(slots=True)
class CreateRequest:
    model: str
    input: list[dict[str, Any]]
    instructions: str | None = None
    previous_response_id: str | None = None
    conversation: str | None = None
    store: bool = True
    stream: bool = False
    background: bool = False
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    text: dict[str, Any] = field(default_factory=lambda: {"format": {"type": "text"}, "verbosity": "medium"})
    reasoning: dict[str, Any] = field(default_factory=lambda: {"effort": None, "summary": None})
    metadata: dict[str, str] = field(default_factory=dict)
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_logprobs: int | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    service_tier: str | None = None
    truncation: str = "disabled"
    include: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    # Long contexts: ``[{"type": "compaction", "compact_threshold": N}]`` (core/window.py).
    context_management: list[dict[str, Any]] = field(default_factory=list)


def parse_create_request(body: Any, max_input_items: int = 4096) -> CreateRequest:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    v.check_json(body)
    model = v.req_str(body, "model")
    previous = v.opt_str(body, "previous_response_id")
    conversation = conversations.parse_param(body)
    raw_input = body.get("input")
    if isinstance(raw_input, list) and len(raw_input) > max_input_items:
        raise InvalidRequest(
            f"Invalid 'input': array too long. Expected an array with maximum length {max_input_items}, "
            f"but got an array with length {len(raw_input)} instead.",
            param="input",
            code="array_above_max_length",
        )
    items = normalize_input(raw_input)
    if not items and previous is None and conversation is None:
        raise v.missing("input")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise v.invalid_type("instructions", "a string", instructions)
    tools = _tools(body.get("tools"))
    request = CreateRequest(
        model=model,
        input=items,
        instructions=instructions,
        previous_response_id=previous,
        conversation=conversation,
        tools=tools,
        tool_choice=_tool_choice(body.get("tool_choice"), tools),
    )
    # The other fields, each checked only when the body has it, in the body's order: most
    # bodies carry three or four of them (checking all thirty cost more than the rest of
    # the parsing: docs/performance.md).
    extra = request.extra
    for key in body:
        if (check := _FIELDS.get(key)) is not None:
            setattr(request, key, check(body, key))
        elif (check := _EXTRA.get(key)) is not None and (value := check(body, key)) is not None:
            extra[key] = value
    return request


def _context_management(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise v.invalid_type("context_management", "an array", value)
    entries = []
    for i, entry in enumerate(value):
        where = f"context_management[{i}]"
        if not isinstance(entry, dict):
            raise v.invalid_type(where, "an object", entry)
        kind = v.req_str(entry, "type", f"{where}.type")
        if kind != "compaction":
            raise v.invalid_value(f"{where}.type", kind, ("compaction",))
        limit = entry.get("compact_threshold")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise v.invalid_type(f"{where}.compact_threshold", "a positive integer", limit)
        entries.append({"type": kind, "compact_threshold": limit})
    return entries


def _choice(body: dict[str, Any], key: str, choices: tuple[str, ...]) -> str | None:
    value = v.opt_str(body, key)
    if value is not None and value not in choices:
        raise v.invalid_value(key, value, choices)
    return value


def _include(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise v.invalid_type("include", "an array of strings", value)
    return value


def _function_tool(tool: dict[str, Any], where: str) -> dict[str, Any]:
    name = v.req_str(tool, "name", f"{where}.name")
    if not _NAME.match(name):
        raise InvalidRequest(
            f"Invalid '{where}.name': string does not match pattern. Expected a string that "
            "matches the pattern '^[a-zA-Z0-9_-]{1,64}$'.",
            param=f"{where}.name",
            code="invalid_value",
        )
    parameters = v.opt_dict(tool, "parameters", f"{where}.parameters")
    strict = tool.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise v.invalid_type(f"{where}.strict", "a boolean", strict)
    v.opt_str(tool, "description", f"{where}.description")
    return {
        **tool,
        "type": "function",
        "name": name,
        "description": tool.get("description"),
        "parameters": parameters,
        "strict": strict,
    }


def _tools(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise v.invalid_type("tools", "an array", value)
    tools = []
    for i, tool in enumerate(value):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise v.invalid_type(where, "an object", tool)
        kind = tool.get("type")
        if kind is None:
            raise v.missing(f"{where}.type")
        if not isinstance(kind, str):
            raise v.invalid_type(f"{where}.type", "a string", kind)
        if kind == "function":
            tools.append(_function_tool(tool, where))
        elif kind == "namespace":
            inner = tool.get("tools")
            if not isinstance(inner, list):
                raise v.invalid_type(f"{where}.tools", "an array", inner)
            functions = []
            for j, fn in enumerate(inner):
                if not isinstance(fn, dict):
                    raise v.invalid_type(f"{where}.tools[{j}]", "an object", fn)
                functions.append(_function_tool(fn, f"{where}.tools[{j}]"))
            tools.append({**tool, "tools": functions})
        else:
            # Hosted tools (web_search, file_search, mcp, ...) are accepted and echoed;
            # each backend leaves out what its model cannot take.
            tools.append(tool)
    return tools


def _flag(default: bool) -> Check:
    return lambda body, key: bool(v.opt_bool(body, key, default))


def _stop(body: dict[str, Any], key: str) -> Any:
    stop = body[key]
    if stop is None or isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        return stop
    raise v.invalid_type(key, "a string or an array of strings", stop)


def function_names(tools: list[dict[str, Any]]) -> set[str]:
    names = set()
    for tool in tools:
        if tool["type"] == "function":
            names.add(tool["name"])
        elif tool["type"] == "namespace":
            names.update(fn["name"] for fn in tool["tools"])
    return names


def _tool_choice(value: Any, tools: list[dict[str, Any]]) -> Any:
    if value is None:
        return "auto"
    if isinstance(value, str):
        if value not in TOOL_CHOICE_MODES:
            raise v.invalid_value("tool_choice", value, TOOL_CHOICE_MODES)
        return value
    if not isinstance(value, dict):
        raise v.invalid_type("tool_choice", "a string or an object", value)
    kind = value.get("type")
    if kind == "function":
        name = v.req_str(value, "name", "tool_choice.name")
        if name not in function_names(tools):
            raise InvalidRequest(
                f"Tool choice '{name}' not found in 'tools' parameter.",
                param="tool_choice",
                code="invalid_value",
            )
        return {"type": "function", "name": name}
    if kind is None:
        raise v.missing("tool_choice.type")
    return value


def _text(value: Any) -> dict[str, Any]:
    if value is None:
        return {"format": {"type": "text"}, "verbosity": "medium"}
    if not isinstance(value, dict):
        raise v.invalid_type("text", "an object", value)
    fmt = value.get("format") or {"type": "text"}
    if not isinstance(fmt, dict):
        raise v.invalid_type("text.format", "an object", fmt)
    kind = fmt.get("type")
    if kind not in FORMAT_TYPES:
        raise v.invalid_value("text.format.type", kind, FORMAT_TYPES)
    if kind == "json_schema":
        name = v.req_str(fmt, "name", "text.format.name")
        if not _NAME.match(name):
            raise InvalidRequest(
                "Invalid 'text.format.name': expected a string that matches '^[a-zA-Z0-9_-]{1,64}$'.",
                param="text.format.name",
                code="invalid_value",
            )
        schema = fmt.get("schema")
        if schema is None:
            raise v.missing("text.format.schema")
        if not isinstance(schema, dict):
            raise v.invalid_type("text.format.schema", "an object", schema)
        strict = fmt.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise v.invalid_type("text.format.strict", "a boolean", strict)
        fmt = {
            "type": "json_schema",
            "name": name,
            "schema": schema,
            "strict": strict,
            "description": v.opt_str(fmt, "description", "text.format.description"),
        }
    else:
        fmt = {"type": kind}
    verbosity = value.get("verbosity") or "medium"
    if verbosity not in ("low", "medium", "high"):
        raise v.invalid_value("text.verbosity", verbosity, ("low", "medium", "high"))
    return {"format": fmt, "verbosity": verbosity}


def _reasoning(value: Any) -> dict[str, Any]:
    if value is None:
        return {"effort": None, "summary": None}
    if not isinstance(value, dict):
        raise v.invalid_type("reasoning", "an object", value)
    effort = value.get("effort")
    if effort is not None and effort not in EFFORTS:
        raise v.invalid_value("reasoning.effort", effort, EFFORTS)
    summary = value.get("summary", value.get("generate_summary"))
    if summary is not None and summary not in SUMMARIES:
        raise v.invalid_value("reasoning.summary", summary, SUMMARIES)
    return {"effort": effort, "summary": summary}


# The optional fields of a request, by name: what checks the body's value (absent or null:
# the field's default) and gives the request's.
_FIELDS: dict[str, Check] = {
    "store": _flag(True),
    "stream": _flag(False),
    "background": _flag(False),
    "parallel_tool_calls": _flag(True),
    "text": lambda body, key: _text(body[key]),
    "reasoning": lambda body, key: _reasoning(body[key]),
    "metadata": lambda body, key: v.metadata(body[key]),
    "max_output_tokens": partial(v.opt_int, minimum=1),
    "max_tool_calls": partial(v.opt_int, minimum=1),
    "temperature": partial(v.opt_number, minimum=0, maximum=2),
    "top_p": partial(v.opt_number, minimum=0, maximum=1),
    "top_logprobs": partial(v.opt_int, minimum=0, maximum=20),
    "user": v.opt_str,
    "safety_identifier": v.opt_str,
    "prompt_cache_key": v.opt_str,
    "service_tier": v.opt_str,
    "truncation": lambda body, key: _choice(body, key, TRUNCATIONS) or "disabled",
    "include": lambda body, key: _include(body[key]),
    "context_management": lambda body, key: _context_management(body[key]),
}

# Sampling parameters passed through to the model (``extra``) when set. The penalties are
# Responses fields too (Open Responses has them; OpenAI echoes them): kept here so they
# reach the model's params with the others, and echoed in the response.
_EXTRA: dict[str, Check] = {
    "seed": partial(v.opt_int, minimum=v.INT64_MIN, maximum=v.INT64_MAX),
    "stop": _stop,
    "top_k": partial(v.opt_int, minimum=0),
    "repetition_penalty": partial(v.opt_number, minimum=0),
    "presence_penalty": partial(v.opt_number, minimum=-2, maximum=2),
    "frequency_penalty": partial(v.opt_number, minimum=-2, maximum=2),
}
