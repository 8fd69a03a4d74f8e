"""The tools of one response as the model sees them, and back.

Remote MCP tools and ``custom`` tools are offered to every model as plain functions: an
MCP server's tools under namespaced names (``mcp__<label>__<tool>``, so they never collide
with the client's own functions), a custom tool as a function with one string argument,
``input``. The context is translated the same way: an ``mcp_call`` becomes a function call
with its output, a ``custom_tool_call`` a function call whose arguments hold its input.
Backends therefore see only functions, as they always did; the builder turns the calls
the model makes back into ``mcp_call``, ``mcp_approval_request`` and ``custom_tool_call``
items through ``ToolRef``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

REDACTED = "<redacted>"
MCP_TYPES = frozenset({"mcp_list_tools", "mcp_call", "mcp_approval_request", "mcp_approval_response"})
CUSTOM_TYPES = frozenset({"custom_tool_call", "custom_tool_call_output"})
_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
REFUSED = "The user did not approve this call; it was not run."


@dataclass(frozen=True, slots=True)
class ToolRef:
    """What a function name the model calls stands for."""

    kind: str  # "mcp" or "custom"
    name: str  # the MCP tool's or the custom tool's own name
    server_label: str = ""
    approval: bool = False


@dataclass(slots=True)
class MCPServer:
    """One ``mcp`` tool of the request, with the secrets kept apart from the stored tool."""

    label: str
    tool: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def model_name(label: str, tool: str) -> str:
    name = f"mcp__{_UNSAFE.sub('_', label)}__{_UNSAFE.sub('_', tool)}"
    if len(name) > 64:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[:55]}_{digest}"
    return name


def _matches(spec: Any, tool: dict[str, Any]) -> bool:
    """Whether an MCP tool filter (``tool_names`` / ``read_only``) or name list matches."""
    if isinstance(spec, list):
        return tool["name"] in spec
    if not isinstance(spec, dict):
        return False
    if tool["name"] in (spec.get("tool_names") or ()):
        return True
    annotations = tool.get("annotations") or {}
    return bool(spec.get("read_only")) and bool(annotations.get("readOnlyHint"))


def allowed(tool_spec: dict[str, Any], tool: dict[str, Any]) -> bool:
    rule = tool_spec.get("allowed_tools")
    return rule is None or _matches(rule, tool)


def needs_approval(tool_spec: dict[str, Any], tool: dict[str, Any]) -> bool:
    """``require_approval``: "always" (OpenAI's default), "never", or per-tool filters
    (a tool matched by neither filter needs approval)."""
    rule = tool_spec.get("require_approval")
    if rule is None or rule == "always":
        return True
    if rule == "never":
        return False
    if isinstance(rule, dict):
        if _matches(rule.get("never"), tool):
            return False
        return True
    return True


def redact_tools(tools: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Replace the secrets of each ``mcp`` tool by ``<redacted>`` (in place) and return
    them, by server label, as the HTTP headers to send."""
    secrets: dict[str, dict[str, str]] = {}
    for index, tool in enumerate(tools):
        if tool.get("type") != "mcp":
            continue
        headers = dict(tool.get("headers") or {})
        if tool.get("authorization"):
            headers["Authorization"] = f"Bearer {tool['authorization']}"
        if not headers:
            continue
        secrets[str(tool.get("server_label"))] = headers
        redacted = dict(tool)
        if tool.get("headers"):
            redacted["headers"] = dict.fromkeys(tool["headers"], REDACTED)
        if tool.get("authorization"):
            redacted["authorization"] = REDACTED
        tools[index] = redacted
    return secrets


class ToolSet:
    """The server-side tools of one response: its MCP servers (with the tools listed for
    each, from the context or from this response) and its custom tools."""

    def __init__(self, tools: list[dict[str, Any]], secrets: dict[str, dict[str, str]] | None = None) -> None:
        self.tools = tools
        self.servers: dict[str, MCPServer] = {}
        self.custom: set[str] = set()
        secrets = secrets or {}
        for tool in tools:
            if tool.get("type") == "mcp" and isinstance(tool.get("server_label"), str):
                label = tool["server_label"]
                self.servers[label] = MCPServer(label, tool, secrets.get(label, {}))
            elif tool.get("type") == "custom" and isinstance(tool.get("name"), str):
                self.custom.add(tool["name"])
        self.listed: dict[str, list[dict[str, Any]]] = {}
        # Calls left before MCP tools are no longer offered (None: no limit).
        self.budget: int | None = None
        # Model calls made after tool calls ran (a forced tool_choice holds for the first only).
        self.rounds = 0
        self.active = bool(self.servers or self.custom)

    def learn(self, items: list[dict[str, Any]]) -> None:
        """Take the tool lists already in the context: a server listed earlier in the
        chain is not listed again."""
        for item in items:
            if item.get("type") == "mcp_list_tools" and item.get("server_label") in self.servers:
                if not item.get("error"):
                    self.listed[item["server_label"]] = list(item.get("tools") or [])

    def unlisted(self) -> list[MCPServer]:
        return [server for label, server in self.servers.items() if label not in self.listed]

    def refs(self) -> dict[str, ToolRef]:
        refs = {name: ToolRef("custom", name) for name in self.custom}
        if self.budget is not None and self.budget <= 0:
            return refs
        for label, tools in self.listed.items():
            spec = self.servers[label].tool
            for tool in tools:
                if allowed(spec, tool):
                    refs[model_name(label, tool["name"])] = ToolRef(
                        "mcp", tool["name"], label, needs_approval(spec, tool)
                    )
        return refs

    def find(self, label: str, name: str) -> dict[str, Any] | None:
        for tool in self.listed.get(label, ()):
            if tool["name"] == name:
                return tool
        return None

    # -- what the model is given ----------------------------------------------------------

    def model_tools(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offer_mcp = self.budget is None or self.budget > 0
        for tool in self.tools:
            kind = tool.get("type")
            if kind == "mcp":
                if offer_mcp:
                    out.extend(self._mcp_functions(tool))
            elif kind == "custom":
                out.append(_custom_function(tool))
            else:
                out.append(tool)
        return out

    def _mcp_functions(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        label = spec["server_label"]
        about = spec.get("server_description")
        functions = []
        for tool in self.listed.get(label, ()):
            if not allowed(spec, tool):
                continue
            description = tool.get("description") or ""
            prefix = f"[MCP server {label}{': ' + about if about else ''}] "
            functions.append(
                {
                    "type": "function",
                    "name": model_name(label, tool["name"]),
                    "description": prefix + description,
                    "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
                    "strict": False,
                }
            )
        return functions

    def model_choice(self, choice: Any) -> Any:
        if self.rounds and (choice == "required" or isinstance(choice, dict)):
            return "auto"
        if isinstance(choice, dict):
            if choice.get("type") == "mcp" and choice.get("name"):
                return {"type": "function", "name": model_name(str(choice.get("server_label")), choice["name"])}
            if choice.get("type") == "custom" and choice.get("name"):
                return {"type": "function", "name": choice["name"]}
            if choice.get("type") == "mcp":
                return "required"
        return choice


def _custom_function(tool: dict[str, Any]) -> dict[str, Any]:
    description = tool.get("description") or ""
    fmt = tool.get("format") or {}
    about = "The tool's whole input, as free-form text."
    if fmt.get("type") == "grammar":
        about += f" It must follow this {fmt.get('syntax', '')} grammar:\n{fmt.get('definition', '')}"
    return {
        "type": "function",
        "name": tool["name"],
        "description": description,
        "parameters": {
            "type": "object",
            "properties": {"input": {"type": "string", "description": about}},
            "required": ["input"],
            "additionalProperties": False,
        },
        "strict": None,
    }


def needs_translation(items: list[dict[str, Any]]) -> bool:
    return any(item.get("type") in MCP_TYPES or item.get("type") in CUSTOM_TYPES for item in items)


def mcp_history(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A context for a request without server-side tools: earlier MCP calls are still
    shown to the model (as function calls with their outputs), not dropped. Custom tool
    items stay as they are (without the custom tool offered, backends send their input)."""
    if not any(item.get("type") in MCP_TYPES for item in items):
        return items
    return model_items(items, custom=False)


def model_items(items: list[dict[str, Any]], *, custom: bool = True) -> list[dict[str, Any]]:
    """The context as the model sees it: MCP and custom items as function calls."""
    if not needs_translation(items):
        return items
    refused = {
        item.get("approval_request_id"): item.get("reason")
        for item in items
        if item.get("type") == "mcp_approval_response" and not item.get("approve")
    }
    out: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type")
        if kind == "mcp_call":
            result = item.get("output")
            if result is None:
                error = item.get("error")
                result = "Error: " + error_text(error) if error else "The call did not complete."
            out.extend(_call_pair(item["id"], model_name(item["server_label"], item["name"]), item, str(result)))
        elif kind == "mcp_approval_request":
            if item.get("id") in refused:
                reason = refused[item["id"]]
                text = REFUSED + (f" Reason: {reason}" if reason else "")
                out.extend(_call_pair(item["id"], model_name(item["server_label"], item["name"]), item, text))
        elif kind in ("mcp_list_tools", "mcp_approval_response"):
            continue
        elif kind in CUSTOM_TYPES and not custom:
            out.append(item)
        elif kind == "custom_tool_call":
            arguments = orjson.dumps({"input": item.get("input", "")}).decode()
            call = {k: v for k, v in item.items() if k != "input"}
            out.append({**call, "type": "function_call", "arguments": arguments})
        elif kind == "custom_tool_call_output":
            out.append({**item, "type": "function_call_output"})
        else:
            out.append(item)
    return out


def _call_pair(call_id: str, name: str, item: dict[str, Any], output: str) -> list[dict[str, Any]]:
    return [
        {"type": "function_call", "id": call_id, "call_id": call_id, "name": name, "arguments": item["arguments"]},
        {"type": "function_call_output", "call_id": call_id, "output": output},
    ]


def error_text(error: Any) -> str:
    if isinstance(error, dict):
        if error.get("message"):
            return str(error["message"])
        content = error.get("content")
        if isinstance(content, list):
            return "\n".join(str(part.get("text", part)) if isinstance(part, dict) else str(part) for part in content)
        return orjson.dumps(error).decode()
    return str(error)
