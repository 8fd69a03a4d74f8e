"""The two specs, OpenAI's and Open Responses', as JSON Schema validators built once per
session, and what each body the server answers must validate against.

The schemas come from ``<repo>/../shared/specs``. OpenAPI 3.1 is JSON Schema 2020-12 apart
from a few leftovers handled generically here: ``nullable: true`` (OpenAPI 3.0) becomes
``anyOf [schema, null]``; ``x-*``, ``discriminator`` and ``format`` are annotations a
validator ignores anyway. Where the specs contradict each other, OpenAI wins: the few
places of the Open Responses spec that are relaxed for that are listed, with the reason,
in ``OPENRESPONSES_EXCEPTIONS``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry
from referencing.jsonschema import DRAFT202012

SPECS = Path(__file__).resolve().parents[2].parent / "shared" / "specs"
OPENAI = "urn:spec:openai"
OPENRESPONSES = "urn:spec:openresponses"


def _openapi_to_2020(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true``, wherever it is, as 2020-12 says it."""
    if isinstance(node, list):
        return [_openapi_to_2020(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _openapi_to_2020(v) for k, v in node.items() if not (k == "nullable" and isinstance(v, bool))}
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


@dataclass(frozen=True)
class Violation:
    what: str  # e.g. "openai Response"
    message: str
    instance_path: str
    schema_path: str

    def __str__(self) -> str:
        return f"{self.what}: {self.message}\n    at {self.instance_path}, schema path {self.schema_path}"


# Where the two specs contradict each other, OpenAI's wins: these parts of the Open
# Responses spec are relaxed, each for the reason given. Nothing else is changed.
OPENRESPONSES_EXCEPTIONS: list[tuple[str, str, Any, str]] = [
    (
        "/components/schemas/Tool",
        "replace",
        {
            "anyOf": [
                {"$ref": "#/components/schemas/FunctionTool"},
                {"type": "object", "required": ["type"], "properties": {"type": {"not": {"const": "function"}}}},
            ]
        },
        "Open Responses defines function tools only; OpenAI's hosted tools and namespaces, which clients send "
        "and the response echoes, are checked against OpenAI's schema alone",
    ),
    (
        "/components/schemas/ItemField",
        "replace",
        {
            "anyOf": [
                {"$ref": "#/components/schemas/Message"},
                {"$ref": "#/components/schemas/FunctionCall"},
                {"$ref": "#/components/schemas/FunctionCallOutput"},
                {"$ref": "#/components/schemas/ReasoningBody"},
                {"$ref": "#/components/schemas/CompactionBody"},
                {
                    "type": "object",
                    "required": ["type"],
                    "properties": {
                        "type": {
                            "not": {
                                "enum": ["message", "function_call", "function_call_output", "reasoning", "compaction"]
                            }
                        }
                    },
                },
            ]
        },
        "Open Responses defines no items for server-side tools (MCP) or custom tools; those are checked against "
        "OpenAI's schema alone",
    ),
    (
        "/components/schemas/ResponseResource/properties/tool_choice",
        "replace",
        {
            "anyOf": [
                {"$ref": "#/components/schemas/FunctionToolChoice"},
                {"$ref": "#/components/schemas/ToolChoiceValueEnum"},
                {"$ref": "#/components/schemas/AllowedToolChoice"},
                {"type": "object", "required": ["type"], "properties": {"type": {"not": {"const": "function"}}}},
            ]
        },
        "Open Responses can choose function tools only; a choice of another tool (an MCP server's tool) is checked "
        "against OpenAI's schema alone",
    ),
    (
        "/components/schemas/JsonSchemaResponseFormat/properties/schema",
        "replace",
        {"type": "object"},
        "Open Responses allows only null here; OpenAI requires the JSON schema itself (an object)",
    ),
    (
        "/components/schemas/JsonSchemaResponseFormat/required",
        "remove",
        "description",
        "Open Responses requires description (string or null); in OpenAI's schema it is an optional string "
        "that is never null, so it is left out when the client sent none",
    ),
]


# OpenAI's own spec, where it contradicts itself.
OPENAI_EXCEPTIONS: list[tuple[str, str, Any, str]] = [
    (
        "/components/schemas/MCPApprovalResponseResource/required",
        "remove",
        "request_id",
        "required names request_id, a property the schema does not define (its properties name the request as "
        "approval_request_id, which is required too)",
    ),
]


def _relax(spec: dict[str, Any], exceptions: list[tuple[str, str, Any, str]]) -> dict[str, Any]:
    for pointer, action, value, _why in exceptions:
        *parents, last = pointer.strip("/").split("/")
        node = spec
        for part in parents:
            node = node[part]
        if action == "replace":
            assert last in node, pointer  # the spec moved on: look at the exception again
            node[last] = value
        else:
            assert value in node[last], pointer
            node[last] = [x for x in node[last] if x != value]
    return spec


def _explain(error: ValidationError) -> ValidationError:
    """The error inside an anyOf/oneOf that says what is wrong: in the branch for the
    instance's ``type`` when the branches are told apart by it, else jsonschema's pick."""
    while error.validator in ("anyOf", "oneOf") and error.context:
        branches: dict[Any, list[ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        typed = [
            errors
            for errors in branches.values()
            if not any(list(e.relative_path) == ["type"] for e in errors)
            and not any(e.validator == "type" and not e.relative_path for e in errors)
        ]
        if len(typed) == 1:
            error = best_match(typed[0])
        else:
            picked = best_match([error])
            if picked is error:
                break
            error = picked
    return error


class Schemas:
    """The two specs, with validators built once."""

    def __init__(self) -> None:
        self.openai = _relax(
            _openapi_to_2020(orjson.loads((SPECS / "openai-openapi.json").read_bytes())), OPENAI_EXCEPTIONS
        )
        self.openresponses = _relax(
            _openapi_to_2020(orjson.loads((SPECS / "openresponses-openapi.json").read_bytes())),
            OPENRESPONSES_EXCEPTIONS,
        )
        self.registry: Registry[Any] = Registry().with_resources(
            [
                (OPENAI, DRAFT202012.create_resource(self.openai)),
                (OPENRESPONSES, DRAFT202012.create_resource(self.openresponses)),
            ]
        )
        self._validators: dict[str, Draft202012Validator] = {}
        self.openai_events = self._event_map(OPENAI, self.openai["components"]["schemas"]["ResponseStreamEvent"])
        stream = self.openresponses["paths"]["/responses"]["post"]["responses"]["200"]["content"]["text/event-stream"]
        self.openresponses_events = self._event_map(OPENRESPONSES, stream["schema"])

    def validator(self, ref: str) -> Draft202012Validator:
        """``ref`` is ``<spec urn>#/json/pointer``."""
        if ref not in self._validators:
            self._validators[ref] = Draft202012Validator({"$ref": ref}, registry=self.registry)
        return self._validators[ref]

    def _event_map(self, urn: str, union: dict[str, Any]) -> dict[str, str]:
        """Event ``type`` -> the ref of its schema, read from the spec's union of events."""
        spec = self.openai if urn == OPENAI else self.openresponses
        found: dict[str, str] = {}
        for member in union.get("anyOf") or union.get("oneOf") or []:
            pointer = member["$ref"].lstrip("#")
            schema = spec
            for part in pointer.strip("/").split("/"):
                schema = schema[part]
            kind = schema.get("properties", {}).get("type", {})
            for name in kind.get("enum", [kind["const"]] if "const" in kind else []):
                found[name] = f"{urn}#{pointer}"
        return found

    def check(self, ref: str, instance: Any, what: str) -> list[Violation]:
        violations = []
        for error in self.validator(ref).iter_errors(instance):
            error = _explain(error)
            violations.append(
                Violation(
                    what=what,
                    message=error.message[:500],
                    instance_path=error.json_path,
                    schema_path="/".join(str(p) for p in error.absolute_schema_path),
                )
            )
        return violations

    # -- what each body must be -----------------------------------------------------------

    def response(self, body: Any, what: str = "response") -> list[Violation]:
        return self.check(f"{OPENAI}#/components/schemas/Response", body, f"{what} vs openai Response") + self.check(
            f"{OPENRESPONSES}#/components/schemas/ResponseResource", body, f"{what} vs openresponses ResponseResource"
        )

    def error_body(self, body: Any) -> list[Violation]:
        # The openai spec declares its 4xx bodies as the bare ``Error``, but the API (and
        # the SDK) send and expect ``{"error": Error}``: ``ErrorResponse``. Open Responses
        # has no HTTP error body; its stream error payload is the same object, so that is
        # checked too.
        return self.check(f"{OPENAI}#/components/schemas/ErrorResponse", body, "error body vs openai ErrorResponse") + (
            self.check(
                f"{OPENRESPONSES}#/components/schemas/ErrorPayload",
                body.get("error") if isinstance(body, dict) else body,
                "error body's error vs openresponses ErrorPayload",
            )
        )

    def event(self, event: Any) -> list[Violation]:
        """One stream event against OpenAI's schema for its type and Open Responses' one.

        Exceptions, on purpose:
        - ``response.cancelled`` is in neither spec's stream (OpenAI has it as a webhook
          only); we end a cancelled background stream with it (docs/behaviour.md), so it
          is checked as a lifecycle event: its ``response`` against both Response schemas.
        - Where the specs name an event differently, OpenAI wins: raw reasoning text is
          ``response.reasoning_text.*`` in OpenAI and ``response.reasoning.*`` in Open
          Responses, so those events are checked against OpenAI's schema only.
        """
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return [Violation("event", "not an object with a string type", "$", "")]
        kind = event["type"]
        if kind == "response.cancelled":
            problems = []
            if not isinstance(event.get("sequence_number"), int):
                problems.append(Violation(kind, "sequence_number is not an integer", "$.sequence_number", ""))
            return problems + self.response(event.get("response"), f"{kind}.response")
        ref = self.openai_events.get(kind)
        if ref is None:
            return [Violation(kind, "no event of this type in openai ResponseStreamEvent", "$.type", "")]
        problems = self.check(ref, event, f"{kind} vs openai {ref.rsplit('/', 1)[-1]}")
        other = self.openresponses_events.get(kind)
        if other is not None:
            problems += self.check(other, event, f"{kind} vs openresponses {other.rsplit('/', 1)[-1]}")
        return problems

    def json_body(self, method: str, path: str, status: int, body: Any) -> list[Violation]:
        """A JSON answer: errors are ErrorResponse; a 200 is what the spec's operation
        for that path and method answers (a Response is checked against both specs)."""
        if status >= 400:
            return self.error_body(body)
        ref = self.operation_schema(method, path.removeprefix("/v1"), status)
        if ref is None:
            return []
        if ref.endswith("/components/schemas/Response"):
            return self.response(body)
        return self.check(ref, body, f"body vs openai {ref.rsplit('/', 1)[-1]}")

    def operation_schema(self, method: str, path: str, status: int) -> str | None:
        for template, pattern in self._path_patterns():
            if pattern.fullmatch(path):
                operation = self.openai["paths"][template].get(method.lower()) or {}
                answer = (operation.get("responses") or {}).get(str(status)) or {}
                schema = (answer.get("content") or {}).get("application/json", {}).get("schema")
                if schema and "$ref" in schema:
                    return f"{OPENAI}{schema['$ref']}"
                return None
        return None

    @functools.cache  # noqa: B019 -- one Schemas per session
    def _path_patterns(self) -> list[tuple[str, re.Pattern[str]]]:
        patterns = []
        for template in self.openai["paths"]:
            if not template.startswith("/responses") or "?" in template:
                continue
            regex = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
            patterns.append((template, re.compile(regex)))
        # Literal paths (/responses/compact) before templated ones (/responses/{id}).
        patterns.sort(key=lambda p: "{" in p[0])
        return patterns


@functools.cache
def schemas() -> Schemas:
    return Schemas()
