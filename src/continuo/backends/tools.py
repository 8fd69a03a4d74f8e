"""Tools as upstreams take them: every function (namespaces flattened), and hosted tools."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def function_spec(tool: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": tool["name"],
        "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
    }
    if tool.get("description"):
        spec["description"] = tool["description"]
    if tool.get("strict") is not None:
        spec["strict"] = tool["strict"]
    return spec


def flatten(tools: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any] | None, dict[str, Any]]]:
    """In order: ``(spec, tool)`` for each function, namespaced or not; ``(None, tool)``
    for each hosted tool (web search, MCP, ...)."""
    for tool in tools:
        kind = tool.get("type")
        if kind == "function":
            yield function_spec(tool), tool
        elif kind == "namespace":
            for inner in tool.get("tools") or ():
                yield function_spec(inner), inner
        else:
            yield None, tool
