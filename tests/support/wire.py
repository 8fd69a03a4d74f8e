"""What the servers under test put on the wire, recorded and checked against the specs.

``record(app)`` wraps a Continuo ASGI app (``ServerThread`` does it for every app that is
not a fake upstream) and keeps, for every ``/v1/responses...`` request, the status, the
content type and the body exactly as the app sent it: one chunk per ASGI body message, so
the SSE framing can be checked too. ``tests/conftest.py`` checks everything a test
produced when it ends (``problems``): JSON bodies and every stream event against
OpenAI's schema and the Open Responses one, and each stream against the contract in
``tests/support/stream_contract.py``.

The schemas come from ``<repo>/../shared/specs``; they are compiled once per session.
OpenAPI 3.1 is JSON Schema 2020-12 apart from a few leftovers handled generically here:
``nullable: true`` (OpenAPI 3.0) becomes ``anyOf [schema, null]``; ``x-*``,
``discriminator`` and ``format`` are annotations a validator ignores anyway.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from tests.support import contract

SPECS = Path(__file__).resolve().parents[2].parent / "shared" / "specs"
OPENAI = "urn:spec:openai"
OPENRESPONSES = "urn:spec:openresponses"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


# -- the recorder ------------------------------------------------------------------------


@dataclass
class Exchange:
    """One ``/v1/responses...`` request and the answer the app sent."""

    recorder: Recorder
    method: str
    path: str
    query: str
    headers: dict[str, str]
    status: int = 0
    content_type: str = ""
    chunks: list[bytes] = field(default_factory=list)
    complete: bool = False  # the last body message (more_body false) was sent
    disconnected: bool = False  # the client went away first
    raised: str | None = None  # the app raised instead of answering
    finished: threading.Event = field(default_factory=threading.Event)
    analysis: Analysis | None = None
    stored_answer: tuple[int, Any] | None = None  # GET /v1/responses/{id} once it ended

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def is_stream(self) -> bool:
        return self.content_type.startswith("text/event-stream")

    def describe(self) -> str:
        where = f"{self.method} {self.path}" + (f"?{self.query}" if self.query else "")
        return f"{where} -> {self.status} ({self.content_type or 'no body'})"


class Log:
    """Every exchange of the session, in order; tests look at the ones since a mark."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._exchanges: list[Exchange] = []

    def add(self, exchange: Exchange) -> None:
        with self._lock:
            self._exchanges.append(exchange)

    def mark(self) -> int:
        with self._lock:
            return len(self._exchanges)

    def since(self, mark: int) -> list[Exchange]:
        with self._lock:
            return self._exchanges[mark:]


LOG = Log()


class Recorder:
    """An ASGI middleware that copies what the app answers on ``/v1/responses...``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.url: str | None = None  # set by ServerThread once the port is known
        self.running = False

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if (
            scope["type"] != "http"
            or not scope["path"].startswith("/v1/responses")
            or any(k.decode("latin-1").lower() == CHECK_HEADER for k, _ in scope.get("headers", []))
        ):
            await self.app(scope, receive, send)
            return
        exchange = Exchange(
            recorder=self,
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])},
        )
        LOG.add(exchange)

        async def receive_recorded() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect" and not exchange.complete:
                exchange.disconnected = True
            return message

        async def send_recorded(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                for key, value in message.get("headers", []):
                    if key.decode("latin-1").lower() == "content-type":
                        exchange.content_type = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                if body := message.get("body", b""):
                    exchange.chunks.append(bytes(body))
                if not message.get("more_body", False):
                    exchange.complete = True
            try:
                await send(message)
            except OSError:
                exchange.disconnected = True
                raise

        try:
            await self.app(scope, receive_recorded, send_recorded)
        except BaseException as exc:
            if not exchange.disconnected:
                exchange.raised = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            exchange.finished.set()


def record(app: Any) -> Recorder:
    return Recorder(app)


# -- the schemas -------------------------------------------------------------------------


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
        self.openai = _openapi_to_2020(orjson.loads((SPECS / "openai-openapi.json").read_bytes()))
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

    def json_body(self, exchange: Exchange, body: Any) -> list[Violation]:
        """A JSON answer: errors are ErrorResponse; a 200 is what the spec's operation
        for that path and method answers (a Response is checked against both specs)."""
        if exchange.status >= 400:
            return self.error_body(body)
        ref = self.operation_schema(exchange.method, exchange.path[len("/v1") :], exchange.status)
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


# -- checking what a test produced -------------------------------------------------------

CHECK_HEADER = "x-wire-check"  # the checker's own requests are not recorded


@dataclass
class Analysis:
    problems: list[str]
    # A response this exchange says is stored (a stream's terminal response, a finished
    # non-streamed one), to compare with GET /v1/responses/{id}.
    stored: dict[str, Any] | None = None


def _first_sequence(exchange: Exchange) -> int:
    query = parse_qs(exchange.query)
    if exchange.method == "GET" and "starting_after" in query:
        return int(query["starting_after"][0]) + 1
    return 0


def analyse(exchange: Exchange) -> Analysis:
    """Schema and contract problems of one finished exchange (cached on it)."""
    if exchange.analysis is not None:
        return exchange.analysis
    problems: list[str] = []
    stored: dict[str, Any] | None = None
    if exchange.raised is not None:
        problems.append(f"[answer] the app raised {exchange.raised}")
    elif not exchange.complete and not exchange.disconnected:
        problems.append("[answer] the app returned without finishing its answer")
    if exchange.is_stream:
        events, problems_framing = contract.parse_sse(exchange.chunks)
        problems += [f"[framing] {p}" for p in problems_framing]
        for event in events:
            problems += [f"[schema] seq {event.get('sequence_number')}: {v}" for v in schemas().event(event)]
        ended = exchange.complete and not exchange.disconnected
        found = contract.stream_problems(events, first_sequence=_first_sequence(exchange), ended=ended)
        problems += [f"[stream] {p}" for p in found]
        last = events[-1] if events else {}
        if ended and last.get("type") in contract.TERMINAL and isinstance(last.get("response"), dict):
            stored = last["response"] if last["response"].get("store") else None
    elif exchange.content_type.startswith("application/json") and exchange.complete:
        try:
            body = orjson.loads(exchange.body)
        except orjson.JSONDecodeError as exc:
            problems.append(f"[answer] the JSON body does not parse: {exc}")
        else:
            problems += [f"[schema] {v}" for v in schemas().json_body(exchange, body)]
            if exchange.status == 200 and isinstance(body, dict) and body.get("object") == "response":
                problems += [f"[response] {p}" for p in contract.response_problems(body)]
                finished = body.get("status") in contract.TERMINAL.values()
                if exchange.method == "POST" and finished and body.get("store"):
                    stored = body
    elif exchange.complete and exchange.status != 204:
        problems.append(f"[json-answer] a {exchange.status} that is neither JSON nor an event stream")
    exchange.analysis = Analysis(problems, stored)
    return exchange.analysis


def settle(exchanges: list[Exchange], timeout: float = 10.0) -> None:
    """Wait for the exchanges to finish and fetch, through their still running servers,
    the stored copy of every response they say was stored. Runs in a test thread (never
    in a server's), before a server stops and when a test ends."""
    deadline = time.monotonic() + timeout
    for exchange in exchanges:
        exchange.finished.wait(max(0.0, deadline - time.monotonic()))
    for exchange in exchanges:
        if not exchange.finished.is_set() or exchange.stored_answer is not None:
            continue
        expected = analyse(exchange).stored
        recorder = exchange.recorder
        if expected is None or not recorder.running or recorder.url is None:
            continue
        headers = {CHECK_HEADER: "1"}
        if "authorization" in exchange.headers:
            headers["authorization"] = exchange.headers["authorization"]
        answer = httpx.get(f"{recorder.url}/v1/responses/{expected['id']}", headers=headers, timeout=30)
        exchange.stored_answer = (answer.status_code, answer.json() if answer.status_code == 200 else None)


def _deleted(response_id: str) -> bool:
    return any(
        e.method == "DELETE" and e.path == f"/v1/responses/{response_id}" and e.status == 200 for e in LOG.since(0)
    )


def problems(exchanges: list[Exchange], exempt: frozenset[str] = frozenset()) -> list[str]:
    """Everything wrong with what these exchanges put on the wire, one entry each."""
    settle(exchanges)
    found = []
    for exchange in exchanges:
        if not exchange.finished.is_set():
            continue  # still running after the wait: nothing settled to check
        analysis = analyse(exchange)
        lines = [p for p in analysis.problems if not any(p.startswith(f"[{rule}]") for rule in exempt)]
        if analysis.stored is not None and exchange.stored_answer is not None and "stored" not in exempt:
            status, stored = exchange.stored_answer
            response_id = analysis.stored["id"]
            if status == 404 and not _deleted(response_id):
                lines.append(f"[stored] GET /v1/responses/{response_id} is a 404 although it says store: true")
            elif status == 200 and stored != analysis.stored:
                lines.append(
                    f"[stored] the stored response differs from the one this answer ended with:\n"
                    f"    stored:   {orjson.dumps(stored).decode()[:3000]}\n"
                    f"    answered: {orjson.dumps(analysis.stored).decode()[:3000]}"
                )
        if lines:
            body = exchange.body.decode("utf-8", "replace")
            found.append(
                f"{exchange.describe()}\n"
                + "\n".join(f"  - {line}" for line in lines)
                + f"\n  body ({len(body)} chars): {body[:4000]}"
            )
    return found
