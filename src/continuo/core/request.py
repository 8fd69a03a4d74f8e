"""The body of ``POST /v1/responses``, validated into a ``CreateRequest``.

Unknown fields are tolerated (real clients send fields that are in neither spec); known
fields of the wrong type or out of range are a 400 naming the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from continuo.core import validation as v
from continuo.core.items import normalize_input
from continuo.errors import InvalidRequest

EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
SUMMARIES = ("auto", "concise", "detailed")
TOOL_CHOICE_MODES = ("none", "auto", "required")
FORMAT_TYPES = ("text", "json_object", "json_schema")
TRUNCATIONS = ("auto", "disabled")
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass(slots=True)
class CreateRequest:
    model: str
    input: list[dict[str, Any]]
    instructions: str | None = None
    previous_response_id: str | None = None
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


def parse_create_request(body: Any, max_input_items: int = 4096) -> CreateRequest:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    if body.get("conversation") is not None:
        raise InvalidRequest(
            "Conversations are not supported by this server yet.",
            param="conversation",
            code="unsupported_parameter",
        )
    model = v.req_str(body, "model")
    previous = v.opt_str(body, "previous_response_id")
    raw_input = body.get("input")
    if isinstance(raw_input, list) and len(raw_input) > max_input_items:
        raise InvalidRequest(
            f"Invalid 'input': array too long. Expected an array with maximum length {max_input_items}, "
            f"but got an array with length {len(raw_input)} instead.",
            param="input",
            code="array_above_max_length",
        )
    items = normalize_input(raw_input)
    if not items and previous is None:
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
        store=bool(v.opt_bool(body, "store", True)),
        stream=bool(v.opt_bool(body, "stream", False)),
        background=bool(v.opt_bool(body, "background", False)),
        tools=tools,
        tool_choice=_tool_choice(body.get("tool_choice"), tools),
        parallel_tool_calls=bool(v.opt_bool(body, "parallel_tool_calls", True)),
        text=_text(body.get("text")),
        reasoning=_reasoning(body.get("reasoning")),
        metadata=_metadata(body.get("metadata")),
        max_output_tokens=v.opt_int(body, "max_output_tokens", minimum=1),
        max_tool_calls=v.opt_int(body, "max_tool_calls", minimum=1),
        temperature=v.opt_number(body, "temperature", minimum=0, maximum=2),
        top_p=v.opt_number(body, "top_p", minimum=0, maximum=1),
        top_logprobs=v.opt_int(body, "top_logprobs", minimum=0, maximum=20),
        user=v.opt_str(body, "user"),
        safety_identifier=v.opt_str(body, "safety_identifier"),
        prompt_cache_key=v.opt_str(body, "prompt_cache_key"),
        service_tier=v.opt_str(body, "service_tier"),
        truncation=_choice(body, "truncation", TRUNCATIONS) or "disabled",
        include=_include(body.get("include")),
        extra=_pass_through(body),
    )
    return request


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


def _pass_through(body: dict[str, Any]) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if (seed := v.opt_int(body, "seed")) is not None:
        extra["seed"] = seed
    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
            extra["stop"] = stop
        else:
            raise v.invalid_type("stop", "a string or an array of strings", stop)
    if (top_k := v.opt_int(body, "top_k", minimum=0)) is not None:
        extra["top_k"] = top_k
    if (penalty := v.opt_number(body, "repetition_penalty", minimum=0)) is not None:
        extra["repetition_penalty"] = penalty
    # Responses fields too (Open Responses has them; OpenAI echoes them): kept here so
    # they reach the model's params with the others, and echoed in the response.
    for name in ("presence_penalty", "frequency_penalty"):
        if (value := v.opt_number(body, name, minimum=-2, maximum=2)) is not None:
            extra[name] = value
    return extra


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise v.invalid_type("metadata", "an object", value)
    if len(value) > 16:
        raise InvalidRequest(
            "Invalid 'metadata': too many properties. Expected an object with at most 16 "
            f"properties, but got an object with {len(value)} properties instead.",
            param="metadata",
            code="object_above_max_properties",
        )
    for key, item in value.items():
        if len(key) > 64:
            raise InvalidRequest(
                f"Invalid 'metadata': key '{key[:80]}' is too long. Expected a key of at most "
                f"64 characters, but got {len(key)} characters instead.",
                param="metadata",
                code="invalid_value",
            )
        if not isinstance(item, str):
            raise v.invalid_type(f"metadata.{key}", "a string", item)
        if len(item) > 512:
            raise InvalidRequest(
                f"Invalid 'metadata.{key}': string too long. Expected a string with maximum "
                f"length 512, but got a string with length {len(item)} instead.",
                param=f"metadata.{key}",
                code="string_above_max_length",
            )
    return dict(value)


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
