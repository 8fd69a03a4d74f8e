"""Validation against OpenAI's OpenAPI spec (``<repo>/../shared/specs/openai-openapi.json``)
with ``jsonschema``: a stream event by the schema its ``type`` names, a whole response."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema

SPEC = Path(__file__).resolve().parents[2].parent / "shared" / "specs" / "openai-openapi.json"


@functools.cache
def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(SPEC.read_text())
    return spec


@functools.cache
def _event_schemas() -> dict[str, str]:
    """Event type -> schema name, from the ``ResponseStreamEvent`` union."""
    schemas = _spec()["components"]["schemas"]
    out = {}
    for ref in schemas["ResponseStreamEvent"]["anyOf"]:
        name = ref["$ref"].rsplit("/", 1)[1]
        kind = schemas[name]["properties"]["type"]["enum"][0]
        out[kind] = name
    return out


def validate(data: Any, schema_name: str) -> None:
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": _spec()["components"]}
    jsonschema.Draft202012Validator(schema).validate(data)


def validate_event(event: dict[str, Any]) -> None:
    """An event by its own schema; a lifecycle event's output items by ``OutputItem``
    (the Response object's own fields are another test's business)."""
    name = _event_schemas().get(event["type"])
    assert name is not None, f"{event['type']} is not a ResponseStreamEvent"
    if "response" in event:
        for item in event["response"]["output"]:
            validate(item, "OutputItem")
        return
    validate(event, name)
