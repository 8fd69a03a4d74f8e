"""Hypothesis strategies for JSON values that follow a schema of an OpenAPI document.

hypothesis-jsonschema would be the obvious choice, but its last release (0.23.1) fails
on current Hypothesis (it calls an internal API that is gone), so this covers the subset
of JSON Schema that OpenAI's spec uses for request bodies: ``$ref`` (recursion cut at a
depth), ``allOf`` / ``anyOf`` / ``oneOf``, ``const``, ``enum``, ``type`` (one or several),
``properties`` / ``required`` / ``additionalProperties``, ``items``, string lengths,
numeric bounds. ``pattern`` and ``format`` are ignored: the server must answer a string
that breaks them with a 400 anyway.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

SPECS = Path(__file__).resolve().parents[2].parent / "shared" / "specs"

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
ANY_JSON = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@cache
def _components(spec: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((SPECS / spec).read_text())
    schemas: dict[str, Any] = document["components"]["schemas"]
    return schemas


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """``allOf`` of object schemas as one object schema (enough for request bodies)."""
    merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
    for part in parts:
        merged["properties"].update(part.get("properties") or {})
        merged["required"].extend(part.get("required") or [])
    return merged


class SchemaStrategies:
    def __init__(self, spec: str, max_depth: int = 6) -> None:
        self.schemas = _components(spec)
        self.max_depth = max_depth

    def for_component(self, name: str) -> st.SearchStrategy[Any]:
        return self.strategy({"$ref": f"#/components/schemas/{name}"}, 0)

    def _resolve(self, schema: dict[str, Any], depth: int) -> tuple[dict[str, Any], int]:
        while "$ref" in schema:
            schema = self.schemas[schema["$ref"].rsplit("/", 1)[1]]
            depth += 1
        return schema, depth

    def strategy(self, schema: Any, depth: int) -> st.SearchStrategy[Any]:
        if not isinstance(schema, dict) or not schema:
            return ANY_JSON
        schema, depth = self._resolve(schema, depth)
        if depth > self.max_depth:
            return ANY_JSON
        if "const" in schema:
            return st.just(schema["const"])
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        if "allOf" in schema:
            parts = [self._resolve(part, depth)[0] for part in schema["allOf"]]
            if all(p.get("type") == "object" or "properties" in p for p in parts):
                return self.strategy(_merge(parts), depth + 1)
            return self.strategy(parts[-1], depth + 1)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return st.one_of([self.strategy(option, depth + 1) for option in schema[key]])
        kind = schema.get("type")
        if isinstance(kind, list):
            return st.one_of([self.strategy({**schema, "type": k}, depth) for k in kind])
        if kind == "object" or "properties" in schema:
            return self._object(schema, depth)
        if kind == "array":
            items = schema.get("items")
            low = schema.get("minItems", 0)
            return st.lists(
                self.strategy(items, depth + 1), min_size=low, max_size=max(low, min(schema.get("maxItems", 3), 3))
            )
        if kind == "string":
            low = schema.get("minLength", 0)
            return st.text(min_size=low, max_size=max(low, min(schema.get("maxLength", 24), 24)))
        if kind == "integer":
            return st.integers(schema.get("minimum", -(2**40)), schema.get("maximum", 2**40))
        if kind == "number":
            return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False)
        if kind == "boolean":
            return st.booleans()
        if kind == "null":
            return st.none()
        return ANY_JSON

    def _object(self, schema: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
        properties = schema.get("properties") or {}
        required = [name for name in schema.get("required") or () if name in properties]
        return st.fixed_dictionaries(
            {name: self.strategy(properties[name], depth + 1) for name in required},
            optional={name: self.strategy(sub, depth + 1) for name, sub in properties.items() if name not in required},
        )
