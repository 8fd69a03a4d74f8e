"""What the local-model tests share: the function tools and their argument schemas."""

from __future__ import annotations

from typing import Any

import jsonschema

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
ADD = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "function", "name": "get_weather", "description": "Weather in a city", "parameters": WEATHER},
    {"type": "function", "name": "add", "description": "Add two integers", "parameters": ADD, "strict": True},
]


def check(value: Any, schema: dict[str, Any]) -> None:
    """``value`` is valid under the JSON Schema ``schema``."""
    jsonschema.validate(value, schema)
